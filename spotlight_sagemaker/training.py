"""The adapter behind ``entry_points/train.py``: SageMaker environment in, core, files out.

``main()`` reads the training container's environment (:class:`TrainingEnv`) and the
hyperparameters the toolkit passes as ``--name value`` (:mod:`.training_args`), trains the core
model with a checkpoint per epoch, prints one metric line per epoch and the validation metrics
(:mod:`.metrics`), then writes ``metrics.json`` into the output data folder and the artifact
into the model folder, last. A user error ends with one sentence in ``<output>/failure`` and exit
code 1, an internal error with exit code 2; the model folder is then left untouched.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from . import __version__
from .checkpoints import (
    CheckpointMismatchError,
    discard_checkpoints,
    find_resumable,
    fingerprint,
    save_checkpoint,
)
from .core import EpochStats, ImplicitFactorizationModel, SpotlightError, evaluate
from .metrics import format_epoch_line, format_validation_line
from .training_args import UserError, parse_hyperparameters
from .training_data import load_training_data

logger = logging.getLogger("spotlight_sagemaker.training")

EXIT_OK, EXIT_USER_ERROR, EXIT_INTERNAL_ERROR = 0, 1, 2
DEFAULT_BASE_DIR = "/opt/ml"
FAILURE_MAX_CHARS = 1024  # SageMaker keeps this much of the failure file as FailureReason


@dataclass(frozen=True)
class TrainingEnv:
    """Where the training container keeps things (``SM_*`` variables, else ``/opt/ml/...``)."""

    base_dir: Path
    model_dir: Path
    output_dir: Path
    output_data_dir: Path
    channels: dict[str, Path]
    num_gpus: int

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> TrainingEnv:
        """Read ``SM_MODEL_DIR``, ``SM_OUTPUT_DIR``, ``SM_OUTPUT_DATA_DIR``, ``SM_CHANNELS``,
        ``SM_CHANNEL_<NAME>`` and ``SM_NUM_GPUS``; ``SAGEMAKER_BASE_DIR`` relocates the
        ``/opt/ml`` defaults."""
        base = Path(environ.get("SAGEMAKER_BASE_DIR") or DEFAULT_BASE_DIR)
        output = Path(environ.get("SM_OUTPUT_DIR") or base / "output")
        try:
            gpus = int(environ.get("SM_NUM_GPUS") or 0)
        except ValueError:
            gpus = 0
        return cls(
            base_dir=base,
            model_dir=Path(environ.get("SM_MODEL_DIR") or base / "model"),
            output_dir=output,
            output_data_dir=Path(environ.get("SM_OUTPUT_DATA_DIR") or output / "data"),
            channels=_channels(environ, base),
            num_gpus=gpus,
        )


def _channels(environ: Mapping[str, str], base: Path) -> dict[str, Path]:
    names: list[str] = []
    try:
        listed = json.loads(environ.get("SM_CHANNELS") or "null")
        if isinstance(listed, list):
            names = [str(n) for n in listed]
    except json.JSONDecodeError:
        pass
    found = {
        n: Path(environ.get(f"SM_CHANNEL_{n.upper()}") or base / "input" / "data" / n)
        for n in names
    }
    for key, value in environ.items():
        if key.startswith("SM_CHANNEL_") and key != "SM_CHANNELS" and value:
            found.setdefault(key[len("SM_CHANNEL_") :].lower(), Path(value))
    data = base / "input" / "data"
    if not found and data.is_dir():  # run by hand: every folder under input/data is a channel
        found = {p.name: p for p in sorted(data.iterdir()) if p.is_dir()}
    return found


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run one training job; returns the process exit code (0, 1 user error, 2 internal)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    environ = os.environ if environ is None else environ
    handler = _configure_logging()
    env: TrainingEnv | None = None
    try:
        env = TrainingEnv.from_environ(environ)
        run(env, argv)
        return EXIT_OK
    except (UserError, SpotlightError, CheckpointMismatchError) as exc:
        reason = _one_line(str(exc))
        logger.error("training failed (user error): %s", reason)
        _write_failure(env, environ, reason)
        return EXIT_USER_ERROR
    except Exception as exc:  # noqa: BLE001 - every other failure is ours: report, exit 2
        logger.error("training failed (internal error):\n%s", traceback.format_exc())
        reason = _one_line(f"Internal error in train.py: {type(exc).__name__}: {exc}")
        _write_failure(env, environ, reason + " (the job log has the traceback)")
        return EXIT_INTERNAL_ERROR
    finally:
        logging.getLogger("spotlight_sagemaker").removeHandler(handler)


def run(env: TrainingEnv, argv: Sequence[str]) -> dict[str, Any]:
    """Train from ``argv`` hyperparameters in ``env``; returns what ``metrics.json`` holds."""
    started = time.perf_counter()
    hp, opts, ignored = parse_hyperparameters(argv, env.base_dir)
    if ignored:
        logger.info("ignoring arguments train.py does not use: %s", ", ".join(ignored))
    try:
        fresh = ImplicitFactorizationModel(opts["preset"], **hp)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    logger.info(
        "spotlight-sagemaker %s, torch %s, device %s (SM_NUM_GPUS=%d)",
        __version__,
        torch.__version__,
        fresh.device,
        env.num_gpus,
    )
    if env.num_gpus > 0 and fresh.device.type != "cuda":
        logger.warning(
            "the instance has %d GPUs but training runs on %s", env.num_gpus, fresh.device
        )
    logger.info("hyperparameters: %s", json.dumps(fresh.hyperparameters, sort_keys=True))
    logger.info("options: %s", json.dumps({k: str(v) for k, v in opts.items()}, sort_keys=True))

    t0 = time.perf_counter()
    data = load_training_data(env.channels, opts)
    load_seconds = time.perf_counter() - t0
    model, state, resumed_from = _model_to_train(fresh, data.train, opts)

    t0 = time.perf_counter()
    _train(model, data, opts, state)
    train_seconds = time.perf_counter() - t0

    t0 = time.perf_counter()
    final = None
    if data.validation is not None:
        final = evaluate(model, data.validation, data.train, k=10)
        print(format_validation_line(final), flush=True)
    evaluate_seconds = time.perf_counter() - t0

    model.metrics = {
        "validation": final,
        "validation_history": state["validation_history"],
        "data": data.counts,
    }
    timings = {
        "load_data_seconds": load_seconds,
        "train_seconds": train_seconds,
        "evaluate_seconds": evaluate_seconds,
        "total_seconds": time.perf_counter() - started,
    }
    summary = _summary(model, opts, ignored, data.counts, resumed_from, timings)
    _write_json_atomic(env.output_data_dir / "metrics.json", summary)
    model.save(env.model_dir)  # last: a model folder only ever holds a finished model
    logger.info(
        "saved the model (%d epochs) to %s and metrics to %s",
        model.epochs_trained,
        env.model_dir,
        env.output_data_dir / "metrics.json",
    )
    return summary


def _summary(
    model: ImplicitFactorizationModel,
    opts: dict[str, Any],
    ignored: list[str],
    counts: dict[str, Any],
    resumed_from: int | None,
    timings: dict[str, float],
) -> dict[str, Any]:
    """What metrics.json holds (docs/training.md lists the keys)."""
    return {
        "status": "completed",
        "package_version": __version__,
        "torch_version": torch.__version__,
        "device": str(model.device),
        "preset": opts["preset"],
        "hyperparameters": model.hyperparameters,
        "seed": model.seed,
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in opts.items()},
        "ignored_arguments": ignored,
        "data": counts,
        "epochs_trained": model.epochs_trained,
        "resumed_from_epoch": resumed_from,
        "history": [s.__dict__ for s in model.history],
        "validation": model.metrics["validation"],
        "validation_history": model.metrics["validation_history"],
        "timings": timings,
    }


def _model_to_train(fresh: ImplicitFactorizationModel, train, opts: dict[str, Any]):
    """The checkpointed model to continue, or ``fresh``; plus the run state and resume epoch."""
    expected = fingerprint(train, fresh.hyperparameters)
    state: dict[str, Any] = {"fingerprint": expected, "validation_history": []}
    folder: Path | None = opts["checkpoint_dir"]
    if folder is None:
        logger.info("checkpoints disabled (checkpoint_dir=none)")
        return fresh, state, None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()  # writable?
    except OSError as exc:
        raise UserError(
            f"checkpoint_dir {folder} cannot be created ({exc.strerror or exc}); pass a "
            "writable folder or checkpoint_dir=none"
        ) from None
    if opts["resume"] == "never":
        n = discard_checkpoints(folder)
        logger.info("resume=never: discarded %d checkpoints in %s", n, folder)
        return fresh, state, None
    n_iter = fresh.hyperparameters["n_iter"]
    found = find_resumable(folder, expected, n_iter, fresh.hyperparameters["device"])
    if found is None:
        logger.info("no checkpoint in %s: starting fresh", folder)
        return fresh, state, None
    model, stored, path = found
    model.hyperparameters["n_iter"] = n_iter
    state["validation_history"] = list(stored.get("validation_history", []))
    logger.info("resuming from checkpoint %s at epoch %d of %d", path, model.epochs_trained, n_iter)
    return model, state, model.epochs_trained


def _train(model: ImplicitFactorizationModel, data, opts: dict[str, Any], state: dict) -> None:
    n_iter = model.hyperparameters["n_iter"]
    every, folder = opts["eval_every"], opts["checkpoint_dir"]

    def on_epoch(stats: EpochStats) -> None:
        print(
            format_epoch_line(
                stats.epoch, stats.loss, stats.seconds, stats.interactions_per_second
            ),
            flush=True,
        )
        if (
            every
            and data.validation is not None
            and stats.epoch % every == 0
            and stats.epoch < n_iter
        ):
            m = evaluate(model, data.validation, data.train, k=10)
            print(format_validation_line(m, epoch=stats.epoch), flush=True)
            state["validation_history"].append({"epoch": stats.epoch, **m})
        if folder is not None:
            model.metrics = {
                "checkpoint": {
                    **state["fingerprint"],
                    "validation_history": state["validation_history"],
                }
            }
            save_checkpoint(model, folder)

    remaining = n_iter - model.epochs_trained
    if model.is_fitted:
        model.fit_partial(data.train, n_iter=remaining, callback=on_epoch)
    else:
        model.fit(data.train, callback=on_epoch)


# ---------------------------------------------------------------------- plumbing
class _DropCoreEpochLog(logging.Filter):
    """The core logs each epoch too; train.py prints its own metric line instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name == "spotlight_sagemaker" and str(record.msg).startswith("epoch"))


def _configure_logging() -> logging.Handler:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_DropCoreEpochLog())
    root = logging.getLogger("spotlight_sagemaker")
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return handler


def _one_line(text: str) -> str:
    return " ".join(text.split())[:FAILURE_MAX_CHARS]


def _write_failure(env: TrainingEnv | None, environ: Mapping[str, str], reason: str) -> None:
    if env is not None:
        folder = env.output_dir
    else:
        base = Path(environ.get("SAGEMAKER_BASE_DIR") or DEFAULT_BASE_DIR)
        folder = Path(environ.get("SM_OUTPUT_DIR") or base / "output")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "failure").write_text(reason + "\n", encoding="utf-8")
    except OSError as exc:
        logger.error("could not write %s: %s", folder / "failure", exc)


def _write_json_atomic(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str), encoding="utf-8")
    os.replace(tmp, path)
