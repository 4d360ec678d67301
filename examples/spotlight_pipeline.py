"""A SageMaker Pipeline: train -> create the model -> Batch Transform, with step caching.

    python examples/spotlight_pipeline.py --role arn:aws:iam::<account>:role/<name> \
        --data s3://<bucket>/ml-100k/ --requests s3://<bucket>/requests/ [--start]

upserts the pipeline ``spotlight`` (and starts an execution with ``--start``). The training and
transform steps cache (``CacheConfig``): run it again with the same code, data and settings,
and both steps are reused. That works because the package stages its code in a folder named
after its content, so two processes build the same definition (docs/sdk.md, "Pipelines").
``--print`` prints the definition instead of upserting (what the tests compare).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from sagemaker.workflow.model_step import ModelStep
from sagemaker.workflow.pipeline import Pipeline
from sagemaker.workflow.pipeline_context import PipelineSession
from sagemaker.workflow.steps import CacheConfig, TrainingStep, TransformStep

from spotlight_sagemaker import SpotlightEstimator, SpotlightModel


def build_pipeline(
    session: PipelineSession,
    role: str,
    data: str,
    requests: str,
    instance_type: str = "ml.g4dn.xlarge",
    transform_instance_type: str = "ml.m5.xlarge",
    name: str = "spotlight",
) -> Pipeline:
    """The three steps, with the package's defaults (default job, transform settings)."""
    cache = CacheConfig(enable_caching=True, expire_after="P30D")
    estimator = SpotlightEstimator(
        role=role, instance_type=instance_type, sagemaker_session=session
    )
    train = TrainingStep(name="Train", step_args=estimator.fit(data), cache_config=cache)
    model = SpotlightModel(
        train.properties.ModelArtifacts.S3ModelArtifacts, role=role, sagemaker_session=session
    )
    create = ModelStep(name="Model", step_args=model.create(instance_type=transform_instance_type))
    transformer = model.transformer(
        instance_type=transform_instance_type, model_name=create.properties.ModelName
    )
    transform = TransformStep(
        name="Transform", step_args=transformer.transform(requests), cache_config=cache
    )
    return Pipeline(name=name, steps=[train, create, transform], sagemaker_session=session)


def main(argv: Any = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", required=True)
    parser.add_argument("--data", required=True, help="s3:// prefix of user_id,item_id CSV")
    parser.add_argument("--requests", required=True, help="s3:// prefix of JSON-lines requests")
    parser.add_argument("--bucket", help="default bucket of the pipeline session")
    parser.add_argument("--print", action="store_true", help="print the definition and stop")
    parser.add_argument("--start", action="store_true", help="start an execution after upsert")
    args = parser.parse_args(argv)
    session = PipelineSession(default_bucket=args.bucket)
    pipeline = build_pipeline(session, args.role, args.data, args.requests)
    if args.print:
        print(json.dumps(json.loads(pipeline.definition()), sort_keys=True))
        return 0
    pipeline.upsert(role_arn=args.role)
    if args.start:
        print(pipeline.start().arn)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
