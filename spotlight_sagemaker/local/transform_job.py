"""Run a CreateTransformJob request on this machine with SageMaker Batch Transform's semantics.

Every input file (the file, or every file under the folder, that ``S3Uri`` names) is split
into records by line (``SplitType="Line"``; blank lines are skipped) or taken whole
(``SplitType=None``), optionally gunzipped first (``CompressionType="Gzip"``). Records are
batched: ``MultiRecord`` puts as many newline-joined records in one request as fit in
``MaxPayloadInMB``, ``SingleRecord`` sends one per request. Each request is POSTed to the
model server's ``/invocations`` with the job's ``ContentType`` and ``Accept``; a response
that fails with a 5xx or a dropped connection is retried (``InvocationsMaxRetries``, default 3),
any other failure fails the job. Responses are concatenated per input file into
``<output path>/<relative path>.out``, with a newline after each response when
``AssembleWith="Line"``: the same bytes as on AWS.

Output is written to a hidden staging folder beside the destination and moved into place only
when the whole job succeeded, so a failing job leaves no ``.out`` file, whole or partial.
"""

from __future__ import annotations

import gzip
import os
import shutil
import sys
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol, TextIO

from .paths import LocalPathError, list_files, to_path

MB = 1024 * 1024
DEFAULT_MAX_PAYLOAD_MB = 6
DEFAULT_MAX_RETRIES = 3
DEFAULT_TIMEOUT_S = 600
SPLIT_TYPES = (None, "None", "Line")
STRATEGIES = ("MultiRecord", "SingleRecord")


class TransformFailed(RuntimeError):
    """A transform job that failed; the message is the job's FailureReason."""


class Invoker(Protocol):
    """The model server as the transform job sees it."""

    def invoke(
        self, body: bytes, content_type: str | None, accept: str | None, timeout: float
    ) -> tuple[int, bytes, str | None]:
        """POST ``body`` to ``/invocations``; returns (HTTP status, body, content type)."""


@dataclass(frozen=True)
class TransformPlan:
    """A checked CreateTransformJob request: what to read, how to batch, where to write."""

    name: str
    files: list[tuple[Path, str]]  # (input file, output path relative to the output folder)
    output_dir: Path
    content_type: str | None
    accept: str | None
    split_type: str | None
    gzip: bool
    strategy: str
    max_payload_bytes: int  # 0: unlimited
    assemble_line: bool
    max_retries: int
    timeout_s: float


def plan_transform(request: dict[str, Any], root: Path) -> TransformPlan:
    """Check a CreateTransformJob request and resolve its paths.

    Raises:
        ValueError: an unsupported option (manifest input, RecordIO split, bad strategy...).
        FileNotFoundError: the input does not exist.
        LocalPathError: an empty input folder or an S3 URI of another bucket.
    """
    tin, tout = request["TransformInput"], request["TransformOutput"]
    processing = request.get("DataProcessing") or {}
    asked = {
        "input_filter": processing.get("InputFilter", "$"),
        "output_filter": processing.get("OutputFilter", "$"),
        "join_source": processing.get("JoinSource", "None"),
    }
    ignored = {k: v for k, v in asked.items() if v not in (None, "", "$", "None")}
    if ignored:  # never silently: the output would not be what AWS writes
        raise ValueError(
            "local mode does not implement Batch Transform's data processing ("
            + ", ".join(f"{k}={v!r}" for k, v in ignored.items())
            + "): drop it, or run the transform on AWS with an ml.* instance type"
        )
    source = tin["DataSource"]["S3DataSource"]
    if source.get("S3DataType", "S3Prefix") != "S3Prefix":
        raise ValueError(
            f"S3DataType {source['S3DataType']!r} is not supported in local mode (use S3Prefix: "
            "a file or a folder)"
        )
    split = tin.get("SplitType")
    if split not in SPLIT_TYPES:
        raise ValueError(f"SplitType must be 'Line' or None in local mode, got {split!r}")
    compression = tin.get("CompressionType") or "None"
    if compression not in ("None", "Gzip"):
        raise ValueError(f"CompressionType must be 'Gzip' or None, got {compression!r}")
    strategy = request.get("BatchStrategy") or "MultiRecord"
    if strategy not in STRATEGIES:
        raise ValueError(f"BatchStrategy must be one of {list(STRATEGIES)}, got {strategy!r}")
    payload_mb = request.get("MaxPayloadInMB")
    payload_mb = DEFAULT_MAX_PAYLOAD_MB if payload_mb is None else int(payload_mb)
    if not 0 <= payload_mb <= 100:
        raise ValueError(f"MaxPayloadInMB must be between 0 and 100, got {payload_mb}")
    assemble = tout.get("AssembleWith") or "None"
    if assemble not in ("None", "Line"):
        raise ValueError(f"AssembleWith must be 'Line' or None, got {assemble!r}")
    client = request.get("ModelClientConfig") or {}
    input_path = to_path(source["S3Uri"], root, "data")
    files = list_files(input_path, "data")
    base = input_path if input_path.is_dir() else input_path.parent
    return TransformPlan(
        name=request["TransformJobName"],
        files=[(f, str(f.relative_to(base)) + ".out") for f in files],
        output_dir=to_path(tout["S3OutputPath"], root, "output_path"),
        content_type=tin.get("ContentType"),
        accept=tout.get("Accept"),
        split_type=None if split in (None, "None") else split,
        gzip=compression == "Gzip",
        strategy=strategy,
        max_payload_bytes=payload_mb * MB,
        assemble_line=assemble == "Line",
        max_retries=int(client.get("InvocationsMaxRetries", DEFAULT_MAX_RETRIES)),
        timeout_s=float(client.get("InvocationsTimeoutInSeconds", DEFAULT_TIMEOUT_S)),
    )


def batch_environment(request: dict[str, Any], model_env: dict[str, str]) -> dict[str, str]:
    """The serving container's environment in a transform job (as the platform sets it)."""
    strategy = request.get("BatchStrategy") or "MultiRecord"
    payload = request.get("MaxPayloadInMB")
    env = dict(model_env or {})
    env.update(
        SAGEMAKER_BATCH="true",
        SAGEMAKER_MAX_PAYLOAD_IN_MB=str(DEFAULT_MAX_PAYLOAD_MB if payload is None else payload),
        SAGEMAKER_BATCH_STRATEGY="SINGLE_RECORD" if strategy == "SingleRecord" else "MULTI_RECORD",
        SAGEMAKER_MAX_CONCURRENT_TRANSFORMS="1",
    )
    env.update(request.get("Environment") or {})
    return env


def read_records(path: Path, split_type: str | None, gzipped: bool) -> Iterator[bytes]:
    """The records of one input file: its non-blank lines, or the whole file."""
    try:
        data = gzip.decompress(path.read_bytes()) if gzipped else path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise TransformFailed(f"cannot read input file {path}: {exc}") from None
    if split_type is None:
        yield data
        return
    for line in data.splitlines():
        if line.strip():
            yield line


def batches(
    records: Iterator[bytes], strategy: str, max_bytes: int, source: str
) -> Iterator[tuple[int, int, bytes]]:
    """Group records into request bodies: ``(first record number, last, body)`` (1-based).

    Raises:
        TransformFailed: a single record larger than the payload limit.
    """
    current: list[bytes] = []
    size = 0
    first = 1
    n = 0
    for n, record in enumerate(records, 1):
        if max_bytes and len(record) > max_bytes:
            raise TransformFailed(
                f"{source}: record {n} is {len(record):,} bytes, more than MaxPayloadInMB="
                f"{max_bytes // MB}; raise max_payload"
            )
        if strategy == "SingleRecord":
            yield n, n, record
            continue
        added = len(record) + (1 if current else 0)
        if current and max_bytes and size + added > max_bytes:
            yield first, n - 1, b"\n".join(current)
            current, size, first = [], 0, n
            added = len(record)
        current.append(record)
        size += added
    if current:
        yield first, n, b"\n".join(current)


def run_transform(plan: TransformPlan, server: Invoker, stream: TextIO | None = None) -> None:
    """Run every request of ``plan`` against ``server`` and publish the ``.out`` files.

    Raises:
        TransformFailed: a request failed (after retries) or an input could not be read; no
            output file of this job is left behind.
    """
    stream = stream or sys.stdout
    plan.output_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{plan.name[:40]}-", dir=plan.output_dir))
    try:
        for path, rel in plan.files:
            target = staging / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            requests = 0
            with open(target, "wb") as out:
                records = read_records(path, plan.split_type, plan.gzip)
                for first, last, body in batches(
                    records, plan.strategy, plan.max_payload_bytes, str(path)
                ):
                    out.write(_invoke(plan, server, body, f"{path.name}, records {first}-{last}"))
                    if plan.assemble_line:
                        out.write(b"\n")
                    requests += 1
            print(
                f"Transform job {plan.name}: {path.name} -> {rel} ({requests} requests)",
                file=stream,
                flush=True,
            )
        for _, rel in plan.files:
            final = plan.output_dir / rel
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / rel, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _invoke(plan: TransformPlan, server: Invoker, body: bytes, where: str) -> bytes:
    last_error = ""
    for _attempt in range(1 + max(plan.max_retries, 0)):
        try:
            status, data, _ = server.invoke(body, plan.content_type, plan.accept, plan.timeout_s)
        except OSError as exc:  # connection refused/reset, timeout
            last_error = f"no response from the model server ({exc})"
            continue
        if status == 200:
            return data
        last_error = f"HTTP {status}: {_message(data)}"
        if status < 500:
            break
    raise TransformFailed(f"{where}: {last_error}")


def _message(data: bytes, limit: int = 600) -> str:
    text = data.decode("utf-8", errors="replace").strip()
    return text if len(text) <= limit else text[:limit] + "..."


def now() -> datetime:
    """UTC now (job timestamps)."""
    return datetime.now(timezone.utc)


__all__ = [
    "LocalPathError",
    "TransformFailed",
    "TransformPlan",
    "batch_environment",
    "batches",
    "now",
    "plan_transform",
    "read_records",
    "run_transform",
]
