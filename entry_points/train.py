"""SageMaker training entry point: ``python train.py --name value ...`` in /opt/ml/code.

Reads the training container's environment and hyperparameters, trains the core model with
checkpoints (inside a SageMaker job), and writes the artifact to SM_MODEL_DIR and metrics.json to
SM_OUTPUT_DATA_DIR. All the logic lives in :mod:`spotlight_sagemaker.container.training.job`
(docs/training.md).
"""

import sys

from spotlight_sagemaker.container.training.job import main

if __name__ == "__main__":
    sys.exit(main())
