"""The adapter behind ``entry_points/train.py``: SageMaker environment in, core, files out.

``main()`` reads the training container's environment (:class:`TrainingEnv`) and the
hyperparameters the toolkit passes as ``--name value``
(:mod:`spotlight_sagemaker.contract.hyperparameters`), trains the core model with checkpoints
(``checkpoint_interval``), prints one metric line per epoch and the validation metrics
(:mod:`spotlight_sagemaker.contract.metric_lines`), then writes ``metrics.json`` into the output
data folder and the artifact into the model folder, last. A user error ends with one sentence in
``<output>/failure`` and exit code 1, an internal error with exit code 2; the model folder is
then left untouched.
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

from ... import __version__
from ...contract.hyperparameters import UserError, parse_hyperparameters
from ...contract.metric_lines import format_epoch_line, format_validation_line
from ...core import EpochStats, ImplicitFactorizationModel, SpotlightError, evaluate
from ...core.evaluation import NdcgAtK
from ...core.factorization import EPOCH_LOGGER
from ...core.parallel import DataParallel
from ...core.warm_start import check_dim, warm_start
from . import distributed
from .checkpoints import (
    discard_checkpoints,
    find_resumable,
    fingerprint,
    save_checkpoint,
)
from .data import load_training_data
from .model_channel import (
    MODEL_CHANNEL,
    PreviousModel,
    coverage,
    exclude_previous_rows,
    read_model_channel,
)

logger = logging.getLogger("spotlight_sagemaker.container.training.job")

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
    #: inside a SageMaker training job (``TRAINING_JOB_NAME`` or ``TRAINING_JOB_ARN`` set, as
    #: SageMaker and local mode set them): only there do checkpoints default to on
    in_job: bool = False
    #: processes a launcher started (torchrun's ``WORLD_SIZE``, MPI's ``OMPI_COMM_WORLD_SIZE``),
    #: this one's rank, and the variable that said so
    processes: int = 1
    rank: int = 0
    launched_by: str = ""

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> TrainingEnv:
        """Read ``SM_MODEL_DIR``, ``SM_OUTPUT_DIR``, ``SM_OUTPUT_DATA_DIR``, ``SM_CHANNELS``,
        ``SM_CHANNEL_<NAME>``, ``SM_NUM_GPUS`` and ``TRAINING_JOB_NAME``/``TRAINING_JOB_ARN``;
        ``SAGEMAKER_BASE_DIR`` relocates the ``/opt/ml`` defaults."""
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
            in_job=bool(environ.get("TRAINING_JOB_NAME") or environ.get("TRAINING_JOB_ARN")),
            **_launch(environ),
        )


#: (size, rank) variables of the launchers the PyTorch training image runs with
#: ``distribution=``: torchrun (torch_distributed, pytorchddp) and MPI (mpi, smdistributed).
_LAUNCH_VARIABLES = (("WORLD_SIZE", "RANK"), ("OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK"))


def _launch(environ: Mapping[str, str]) -> dict[str, Any]:
    for size_var, rank_var in _LAUNCH_VARIABLES:
        try:
            size, rank = int(environ.get(size_var) or 1), int(environ.get(rank_var) or 0)
        except ValueError:
            continue
        if size > 1:
            return {"processes": size, "rank": rank, "launched_by": size_var}
    return {}


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
        parallel = None
        if env.processes > 1:
            if env.launched_by != "WORLD_SIZE":
                if env.rank != 0:
                    return EXIT_OK  # rank 0 reports it, once; the launcher's exit code is its
                raise distributed.refuse_mpi(env.processes, env.launched_by)
            parallel = distributed.start(environ)
            if not parallel.is_main:  # rank 0 logs the job; the others only their problems
                logging.getLogger("spotlight_sagemaker").setLevel(logging.WARNING)
        run(env, argv, parallel)
        return EXIT_OK
    except SpotlightError as exc:  # UserError, CheckpointMismatchError and the core's errors
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
        distributed.stop()
        logging.getLogger("spotlight_sagemaker").removeHandler(handler)


def run(
    env: TrainingEnv, argv: Sequence[str], parallel: DataParallel | None = None
) -> dict[str, Any]:
    """Train from ``argv`` hyperparameters in ``env``; returns what ``metrics.json`` holds.

    With ``parallel`` (a torchrun launch) every rank trains the same model data-parallel;
    rank 0 alone scores validation, prints the metric lines and writes checkpoints,
    ``metrics.json`` and the model."""
    started = time.perf_counter()
    hp, opts, ignored = parse_hyperparameters(argv, env.base_dir, in_job=env.in_job)
    if ignored:
        logger.info("ignoring arguments train.py does not use: %s", ", ".join(ignored))
    try:
        fresh = ImplicitFactorizationModel(opts["preset"], **hp)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if opts["choose_epochs"] and fresh.hyperparameters["lr_decay"] != "none":
        raise UserError(
            "lr_decay='linear' decays over n_iter epochs, so it needs an explicit n_iter; "
            "give n_iter or set lr_decay=none to let early stopping choose the epochs"
        )
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
    previous = read_model_channel(env.channels)
    if previous is not None:
        _check_warm_start(previous, fresh)
    data = load_training_data(env.channels, opts)
    if parallel is not None:
        distributed.check_same(parallel, _data_identity(data), "their training data")
    warm = None
    if previous is not None:
        data = exclude_previous_rows(data, previous)
        warm = {**coverage(previous, data.train), "previous": previous.info}
        warm["validation_rows_known_to_previous_model"] = data.counts.get(
            "validation_rows_known_to_previous_model", 0
        )
        logger.info(
            "warm start: %d of %d users and %d of %d items start from the previous model",
            warm["users_kept"],
            data.train.num_users,
            warm["items_kept"],
            data.train.num_items,
        )
    load_seconds = time.perf_counter() - t0
    folder = _checkpoint_folder(opts, parallel)
    job = _Job(hp, opts, data, folder, previous, parallel)
    if opts["choose_epochs"] and data.validation is None:
        logger.info(
            "no validation rows: n_iter is not chosen, the preset's n_iter=%d is used",
            fresh.hyperparameters["n_iter"],
        )

    t0 = time.perf_counter()
    report = job.stored_report()  # a refit that was interrupted knows its validation already
    if report is None and data.validation is not None:
        report = job.validate()
    validate_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    model = job.final_model(report)
    refit_seconds = time.perf_counter() - t0

    validation = None if report is None else report["validation"]
    model.metrics = {
        "validation": validation,
        "validation_history": [] if report is None else report["validation_history"],
        "validated_model": None if report is None else report["validated_model"],
        "data": data.counts,
        "warm_start": warm,
    }
    timings = {
        "load_data_seconds": load_seconds,
        "validate_seconds": validate_seconds,
        "refit_seconds": refit_seconds,
        "train_seconds": validate_seconds + refit_seconds,
        "total_seconds": time.perf_counter() - started,
    }
    summary = _summary(model, opts, ignored, data.counts, job.resumed_from, timings, report)
    if parallel is not None:
        summary["data_parallel"] = {"processes": parallel.world_size}
        if not parallel.is_main:
            parallel.barrier()  # rank 0 writes the files
            return summary
    _write_json_atomic(env.output_data_dir / "metrics.json", summary)
    model.save(env.model_dir)  # last: a model folder only ever holds a finished model
    if parallel is not None:
        parallel.barrier()
    logger.info(
        "saved the model (%d epochs on %d rows) to %s and metrics to %s",
        model.epochs_trained,
        len(data.train),
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
    report: dict[str, Any] | None,
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
        "epochs": None if report is None else report["epochs"],
        "refit": None if report is None else report["refit"],
        "popularity_prior": None if report is None else report.get("popularity_prior"),
        "resumed_from_epoch": resumed_from,
        "warm_start": model.metrics.get("warm_start"),
        "history": [s.__dict__ for s in model.history],
        "validation": model.metrics["validation"],
        "validated_model": model.metrics["validated_model"],
        "validation_history": model.metrics["validation_history"],
        "timings": timings,
    }


def _check_warm_start(previous: PreviousModel, fresh: ImplicitFactorizationModel) -> None:
    """Refuse a previous model of another embedding_dim; log the hyperparameters that differ
    from the previous model's (this job's own hyperparameters and defaults are used)."""
    try:
        check_dim(previous.model, fresh.hyperparameters["embedding_dim"])
    except ValueError as exc:
        raise UserError(f"the '{MODEL_CHANNEL}' channel: {exc}") from None
    old, new = previous.model.hyperparameters, fresh.hyperparameters
    differ = [
        f"{k} ({old.get(k)!r} there, {v!r} here)"
        for k, v in sorted(new.items())
        if k not in ("device", "random_state", "n_iter")
        and old.get(k) != v
        and not (k == "l2" and v == "auto")
    ]
    if differ:
        logger.info(
            "warm start: this job's hyperparameters differ from the previous model's: %s",
            ", ".join(differ),
        )


def _data_identity(data) -> list[str | None]:
    """The hashes of the training, fit and validation rows and their vocabularies."""
    parts = (data.train, data.fit, data.validation)
    return [None if p is None else fingerprint(p, {})["data_sha256"] for p in parts]


def _checkpoint_folder(opts: dict[str, Any], parallel: DataParallel | None = None) -> Path | None:
    """The checkpoint folder, checked writable (``resume=never`` empties it), or None."""
    folder: Path | None = opts["checkpoint_dir"]
    if folder is None:
        logger.info("checkpoints disabled (checkpoint_dir=none)")
        return None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()  # writable?
    except OSError as exc:
        raise UserError(
            f"checkpoint_dir {folder} cannot be created ({exc.strerror or exc}); pass a "
            "writable folder or checkpoint_dir=none"
        ) from None
    if opts["resume"] == "never" and (parallel is None or parallel.is_main):
        n = discard_checkpoints(folder) + discard_checkpoints(folder / HOLDOUT_FOLDER)
        logger.info("resume=never: discarded %d checkpoints in %s", n, folder)
    if parallel is not None:
        parallel.barrier()  # no rank reads the folder before rank 0 has emptied it
    return folder


#: Where the checkpoints of the model trained on the hold-out's remainder go, under
#: ``checkpoint_dir`` (the served model's checkpoints are in ``checkpoint_dir`` itself).
HOLDOUT_FOLDER = "holdout"


class _Job:
    """The models one job trains, each checkpointed and resumable.

    With validation rows, the *validated* model trains on ``data.fit`` and is scored on
    ``data.validation`` (each epoch, for early stopping, when the epochs are chosen). With a
    validation channel that model is the served one (``fit`` is every training row). With a
    hold-out the served model is *refit* on every training row for the chosen epochs. Without
    validation rows one model trains for ``n_iter`` epochs.
    """

    def __init__(
        self,
        hp: dict[str, Any],
        opts: dict[str, Any],
        data,
        folder: Path | None,
        previous: PreviousModel | None = None,
        parallel: DataParallel | None = None,
    ):
        self.hp, self.opts, self.data, self.folder = hp, opts, data, folder
        self.previous = previous
        self.parallel = parallel
        self.is_main = parallel is None or parallel.is_main
        self.choose = bool(opts["choose_epochs"]) and data.validation is not None
        self.resumed_from: int | None = None
        self.validated: ImplicitFactorizationModel | None = None  # set by validate()

    def _print(self, line: str) -> None:
        """A metric line: printed once, by rank 0 (tuning jobs parse them)."""
        if self.is_main:
            print(line, flush=True)

    def _share(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank (itself without data parallelism)."""
        return value if self.parallel is None else self.parallel.broadcast_object(value)

    def _continue(self, model: ImplicitFactorizationModel, train, n_iter: int, callback) -> None:
        _continue(model, train, n_iter, callback, self.parallel)

    def _fresh(self, **override: Any) -> ImplicitFactorizationModel:
        return ImplicitFactorizationModel(self.opts["preset"], **{**self.hp, **override})

    def _start(self, fresh: ImplicitFactorizationModel, train) -> ImplicitFactorizationModel:
        """The initial state of a model that no checkpoint continues: ``fresh`` (``fit`` will
        initialise it), or with a ``model`` channel, ``fresh``'s hyperparameters warm-started
        from the previous model on ``train``."""
        if self.previous is None:
            return fresh
        return warm_start(self.previous.model, train, fresh.preset, **fresh.hyperparameters)

    def _fingerprint(self, train, hyperparameters: dict[str, Any], phase: str | None):
        start = None if self.previous is None else self.previous.identity
        return fingerprint(train, hyperparameters, phase, warm_start=start)

    def _cap(self, model: ImplicitFactorizationModel) -> int:
        return self.opts["max_epochs"] if self.choose else model.hyperparameters["n_iter"]

    # ------------------------------------------------------------------ resume
    def _resume(
        self,
        fresh: ImplicitFactorizationModel,
        train,
        folder: Path | None,
        phase: str | None,
        n_iter: int,
    ) -> tuple[ImplicitFactorizationModel, dict[str, Any]]:
        """The checkpointed model of this phase to continue (a checkpoint wins over a warm
        start: it continues this job), else the initial state (:meth:`_start`); and its state."""
        expected = self._fingerprint(train, fresh.hyperparameters, phase)
        state: dict[str, Any] = {"fingerprint": expected, "validation_history": []}
        if folder is None:
            return self._start(fresh, train), state
        found = find_resumable(folder, expected, n_iter, fresh.hyperparameters["device"])
        epoch = None if found is None else found[0].epochs_trained
        distributed.check_same(self.parallel, epoch, f"the checkpoint they resume in {folder}")
        if found is None:
            start = "from the previous model" if self.previous is not None else "fresh"
            logger.info("no checkpoint in %s: starting %s", folder, start)
            return self._start(fresh, train), state
        model, stored, path = found
        model.hyperparameters["n_iter"] = fresh.hyperparameters["n_iter"]
        state["validation_history"] = list(stored.get("validation_history", []))
        if "report" in stored:
            state["report"] = stored["report"]
        self.resumed_from = model.epochs_trained
        logger.info(
            "resuming from checkpoint %s at epoch %d of %d", path, model.epochs_trained, n_iter
        )
        return model, state

    def stored_report(self) -> dict[str, Any] | None:
        """The validation report kept in the refit's checkpoint, when a refit was interrupted."""
        if not self.data.holdout or self.folder is None:
            return None
        fresh = self._fresh()
        n = self._cap(fresh)
        expected = self._fingerprint(self.data.train, fresh.hyperparameters, "refit")
        found = find_resumable(self.folder, expected, n, fresh.hyperparameters["device"])
        report = None if found is None else found[1].get("report")
        distributed.check_same(self.parallel, report is None, f"the checkpoints in {self.folder}")
        if report is None:
            return None
        chosen = report["epochs"]
        same = (
            chosen["patience"] == self.opts["patience"] and chosen["max_epochs"] == n
            if self.choose
            else chosen["chosen_by"] == "n_iter" and chosen["n_iter"] == n
        )
        if not same:  # validated under other epoch settings: validate again (it resumes)
            return None
        logger.info("the refit's checkpoint holds the validation report: not validating again")
        self._print(format_validation_line(report["validation"]))
        return report

    # ------------------------------------------------------------------ the validated model
    def validate(self) -> dict[str, Any]:
        """Train on ``data.fit``, score on ``data.validation``; the report of what was chosen."""
        data, opts = self.data, self.opts
        fresh = self._fresh()
        cap = self._cap(fresh)
        if self.choose:
            fresh.hyperparameters["n_iter"] = cap
        phase = "validate" if data.holdout else None
        folder = self.folder
        if folder is not None and data.holdout:
            folder = folder / HOLDOUT_FOLDER
        model, state = self._resume(fresh, data.fit, folder, phase, cap)
        history: list[dict[str, Any]] = state["validation_history"]
        # the relevance is prepared once: the model's seen items are data.fit's
        scorer = NdcgAtK(data.validation, data.fit.tocsr(), 10) if self.is_main else None
        best_epoch = _best_epoch(history)
        best: dict[str, Any] = {
            "epoch": best_epoch,
            "value": next((h["ndcg@10"] for h in history if h["epoch"] == best_epoch), None),
            "params": None,
        }

        def on_epoch(stats: EpochStats) -> bool:
            self._print(_epoch_line(stats))
            entry: dict[str, Any] = {"epoch": stats.epoch}
            every = opts["eval_every"]
            if self.is_main:  # scored once; the decisions follow from the shared entry
                if every and stats.epoch % every == 0 and stats.epoch < cap:
                    m = evaluate(model, data.validation, data.fit, k=10)
                    self._print(format_validation_line(m, epoch=stats.epoch))
                    entry.update(m)
                if self.choose:
                    assert scorer is not None
                    entry.setdefault("ndcg@10", scorer(model))
            entry = self._share(entry)
            if self.choose:
                if best["value"] is None or entry["ndcg@10"] > best["value"]:
                    best.update(epoch=stats.epoch, value=entry["ndcg@10"])
                    best["params"] = _copy_params(model)
                logger.info(
                    "epoch %d: validation ndcg@10 %.6f (best %.6f at epoch %d)",
                    stats.epoch,
                    entry["ndcg@10"],
                    best["value"],
                    best["epoch"],
                )
            if len(entry) > 1:
                history.append(entry)
            stop = self.choose and _should_stop(history, opts["patience"], cap)
            self._checkpoint(model, folder, state, last=stop or stats.epoch >= cap)
            return stop

        if not (self.choose and history and _should_stop(history, opts["patience"], cap)):
            self._continue(model, data.fit, cap, on_epoch)
        epochs = model.epochs_trained
        if self.choose:
            chosen = _best_epoch(history)
            assert chosen is not None, "the epoch search scores every epoch it trains"
            epochs = best["epoch"] = chosen
            if best["params"] is not None:
                _restore_params(model, best["params"], epochs)
            elif epochs != model.epochs_trained:  # resumed past the best epoch: rebuild it
                logger.info("rebuilding the model of epoch %d (its snapshot was lost)", epochs)
                model = self._start(self._fresh(n_iter=epochs, random_state=model.seed), data.fit)
                self._continue(model, data.fit, epochs, None)
            model.hyperparameters["n_iter"] = epochs
        prior = metrics = None
        if self.is_main:
            assert scorer is not None
            prior = _choose_prior(model, scorer) if opts["choose_prior"] else None
            metrics = evaluate(model, data.validation, data.fit, k=10)
            self._print(format_validation_line(metrics))
        prior, metrics = self._share((prior, metrics))
        if prior is not None and not self.is_main:
            model.set_popularity_prior(prior["value"])
        self.validated = model
        return {
            "validation": metrics,
            "validation_history": history,
            "validated_model": {
                "trained_on": "training channel less the hold-out"
                if data.holdout
                else "every training-channel row",
                "rows": len(data.fit),
                "epochs": epochs,
                "seed": model.seed,
            },
            "epochs": {
                "n_iter": epochs,
                "chosen_by": "early stopping on validation ndcg@10" if self.choose else "n_iter",
                "epochs_searched": max((h["epoch"] for h in history), default=epochs)
                if self.choose
                else epochs,
                "patience": opts["patience"] if self.choose else None,
                "max_epochs": cap if self.choose else None,
            },
            "refit": {"rows": len(data.train), "epochs": epochs} if data.holdout else None,
            "popularity_prior": prior,
        }

    # ------------------------------------------------------------------ the served model
    def final_model(self, report: dict[str, Any] | None) -> ImplicitFactorizationModel:
        """The model to serve, trained on every training-channel row."""
        data = self.data
        if report is not None and not data.holdout:
            assert self.validated is not None, "validate() ran first"
            return self.validated  # a validation channel: the validated model trained on all
        override: dict[str, Any] = {}
        phase = None
        if report is not None:  # refit on every row for the validated model's epochs
            override = {"n_iter": report["epochs"]["n_iter"]}
            if report.get("popularity_prior"):
                override["popularity_prior"] = report["popularity_prior"]["value"]
            phase = "refit"
            logger.info(
                "refitting on all %d training rows for %d epochs",
                len(data.train),
                override["n_iter"],
            )
        fresh = self._fresh(**override)
        n_iter = fresh.hyperparameters["n_iter"]
        model, state = self._resume(fresh, data.train, self.folder, phase, n_iter)
        if report is not None:
            state["report"] = report

        def on_epoch(stats: EpochStats) -> None:
            self._print(_epoch_line(stats))
            self._checkpoint(model, self.folder, state, last=stats.epoch >= n_iter)

        self._continue(model, data.train, n_iter, on_epoch)
        if "popularity_prior" in override:
            model.set_popularity_prior(override["popularity_prior"])
        return model

    def _checkpoint(
        self, model, folder: Path | None, state: dict[str, Any], last: bool = False
    ) -> None:
        """Checkpoint a model's first epoch of this run, its last, and otherwise once
        ``checkpoint_interval`` seconds have passed since the previous checkpoint (writing every
        epoch costs more than a small model's epoch; an interruption loses at most that
        interval of training)."""
        if folder is None or not self.is_main:  # rank 0 alone writes checkpoints
            return
        now = time.monotonic()
        first = state.get("checkpointed_at") is None
        if not (
            first or last or now - state["checkpointed_at"] >= self.opts["checkpoint_interval"]
        ):
            return
        state["checkpointed_at"] = now
        extra = {"report": state["report"]} if "report" in state else {}
        progress = {"validation_history": state["validation_history"], **extra}
        save_checkpoint(model, folder, {**state["fingerprint"], **progress})


#: The popularity priors ``popularity_prior=auto`` chooses from (on validation ndcg@10).
PRIOR_CANDIDATES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)


def _choose_prior(model: ImplicitFactorizationModel, scorer: NdcgAtK) -> dict[str, Any]:
    """Set the candidate prior with the best validation ndcg@10 (the smallest of ties) on
    ``model``; the prior is scoring-only, so no training is repeated."""
    scores = {}
    for c in PRIOR_CANDIDATES:
        model.set_popularity_prior(c)
        scores[c] = scorer(model)
    best = max(PRIOR_CANDIDATES, key=lambda c: (scores[c], -c))
    model.set_popularity_prior(best)
    logger.info(
        "popularity_prior %s chosen on validation ndcg@10 (%s)",
        best,
        ", ".join(f"{c}: {v:.4f}" for c, v in scores.items()),
    )
    return {
        "value": best,
        "chosen_by": "validation ndcg@10",
        "candidates": {str(c): v for c, v in scores.items()},
    }


def _continue(
    model: ImplicitFactorizationModel,
    train,
    n_iter: int,
    callback,
    parallel: DataParallel | None = None,
) -> None:
    """Train ``model`` up to ``n_iter`` epochs in all (fresh, or on from a checkpoint)."""
    if model.is_fitted:
        more = n_iter - model.epochs_trained
        model.fit_partial(train, n_iter=more, callback=callback, parallel=parallel)
    else:
        model.fit(train, callback=callback, parallel=parallel)


def _epoch_line(stats: EpochStats) -> str:
    return format_epoch_line(stats.epoch, stats.loss, stats.seconds, stats.interactions_per_second)


def _best_epoch(history: list[dict[str, Any]]) -> int | None:
    """The first epoch with the highest validation ndcg@10 in ``history`` (None if empty)."""
    scored = [h for h in history if "ndcg@10" in h]
    if not scored:
        return None
    top = max(h["ndcg@10"] for h in scored)
    return next(h["epoch"] for h in scored if h["ndcg@10"] == top)


def _should_stop(history: list[dict[str, Any]], patience: int, max_epochs: int) -> bool:
    """Early stopping: ``patience`` epochs without a better ndcg@10, or ``max_epochs`` done."""
    best = _best_epoch(history)
    last = max((h["epoch"] for h in history), default=0)
    return last >= max_epochs or (best is not None and last - best >= patience)


def _copy_params(model: ImplicitFactorizationModel) -> dict[str, torch.Tensor]:
    return model.copy_parameters()


def _restore_params(model: ImplicitFactorizationModel, params, epochs: int) -> None:
    model.load_parameters(params)
    model.epochs_trained = epochs
    model.history = model.history[:epochs]


# ---------------------------------------------------------------------- plumbing
def _configure_logging() -> logging.Handler:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    # the core logs each epoch on its own logger; train.py prints its metric line instead
    handler.addFilter(lambda record: record.name != EPOCH_LOGGER)
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
    several = env is not None and env.processes > 1
    if several and env is not None and env.rank != 0:
        reason = _one_line(f"rank {env.rank} of {env.processes}: {reason}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # several ranks share one output folder on a host: the first failure is the one kept
        with open(folder / "failure", "x" if several else "w", encoding="utf-8") as fh:
            fh.write(reason + "\n")
    except FileExistsError:
        logger.error("another rank wrote %s first", folder / "failure")
    except OSError as exc:
        logger.error("could not write %s: %s", folder / "failure", exc)


def _write_json_atomic(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str), encoding="utf-8")
    os.replace(tmp, path)
