"""Per-epoch training checkpoints for managed spot training (used by ``train.py``).

Layout: one folder per epoch, ``<checkpoint_dir>/epoch-000007/``, each a complete model artifact
with the optimizer and RNG state (``model.save(..., include_optimizer=True)``). A checkpoint is
written into a hidden temporary folder and renamed into place, so a folder named ``epoch-*`` is
always complete; the newest two are kept, so that a checkpoint whose upload to S3 was cut short
can fall back to the one before.

A checkpoint records what it was trained on (:func:`fingerprint`): the SHA-256 of the training
interactions (ids and vocabularies) and every model hyperparameter except ``device``, the
scoring-only ``popularity_prior`` and, unless a learning-rate decay makes the schedule depend on
it, ``n_iter``; and, for a warm-started job, which previous model it started from. Resuming a
checkpoint whose fingerprint differs would silently mix two runs, so it is refused
(:func:`find_resumable`); a larger ``n_iter`` (without decay) continues training.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ...contract.hyperparameters import UserError
from ...core import ArtifactError, ImplicitFactorizationModel, Interactions
from ...core.artifact import read_config

logger = logging.getLogger("spotlight_sagemaker.container.training.job")

_FOLDER = re.compile(r"^epoch-([0-9]{6,})$")
_TMP_PREFIX = ".epoch-"
KEEP = 2
#: Scoring-only hyperparameters: they never change what training computes.
_SCORING_ONLY = ("popularity_prior",)
_NOT_FINGERPRINTED = ("n_iter", "device", *_SCORING_ONLY)


class CheckpointMismatchError(UserError):
    """A checkpoint exists but was written by another configuration or other data."""


def fingerprint(
    train: Interactions,
    hyperparameters: dict[str, Any],
    phase: str | None = None,
    warm_start: str | None = None,
) -> dict[str, Any]:
    """What a checkpoint must match to be resumed: the data hash, the hyperparameters, for
    a job that trains more than one model which of them (``phase``: train.py's "validate" or
    "refit") and, for a warm-started job, the previous model it started from (``warm_start``:
    the SHA-256 of its arrays)."""
    h = hashlib.sha256()
    for ids in (train.user_map.ids, train.item_map.ids):
        h.update("\n".join(ids.tolist()).encode("utf-8"))
        h.update(b"\0")
    h.update(np.ascontiguousarray(train.user_ids, dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(train.item_ids, dtype=np.int64).tobytes())
    if train.weights is not None:
        h.update(np.ascontiguousarray(train.weights, dtype=np.float32).tobytes())
    skip: tuple[str, ...] = _NOT_FINGERPRINTED
    if hyperparameters.get("lr_decay", "none") != "none":
        skip = ("device", *_SCORING_ONLY)  # the schedule depends on n_iter: it must match too
    hp = {k: v for k, v in hyperparameters.items() if k not in skip}
    out: dict[str, Any] = {"data_sha256": h.hexdigest(), "hyperparameters": hp}
    if phase is not None:
        out["phase"] = phase
    if warm_start is not None:
        out["warm_start"] = warm_start
    return out


def list_checkpoints(folder: Path) -> list[Path]:
    """The ``epoch-*`` folders in ``folder``, newest first."""
    if not folder.is_dir():
        return []
    found = [
        (int(m.group(1)), p)
        for p in folder.iterdir()
        if p.is_dir() and (m := _FOLDER.match(p.name))
    ]
    return [p for _, p in sorted(found, reverse=True)]


def save_checkpoint(
    model: ImplicitFactorizationModel, folder: Path, state: dict[str, Any], keep: int = KEEP
) -> Path:
    """Write ``model`` as ``folder/epoch-<n>`` atomically, with ``state`` (the fingerprint and
    the run's progress) in the artifact's ``checkpoint`` field, and prune older checkpoints."""
    folder.mkdir(parents=True, exist_ok=True)
    name = f"epoch-{model.epochs_trained:06d}"
    tmp = folder / f"{_TMP_PREFIX}{model.epochs_trained:06d}.{os.getpid()}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save(tmp, include_optimizer=True, checkpoint=state)
    final = folder / name
    if final.exists():  # left by an interrupted run that got this far before
        shutil.rmtree(final)
    os.rename(tmp, final)
    for old in list_checkpoints(folder)[keep:]:
        shutil.rmtree(old, ignore_errors=True)
    for stale in folder.glob(f"{_TMP_PREFIX}*.tmp"):
        if stale != tmp:
            shutil.rmtree(stale, ignore_errors=True)
    return final


def discard_checkpoints(folder: Path) -> int:
    """Delete every ``epoch-*`` checkpoint in ``folder``; returns how many."""
    found = list_checkpoints(folder)
    for path in found:
        shutil.rmtree(path)
    return len(found)


def _mismatch(stored: dict[str, Any], expected: dict[str, Any]) -> str | None:
    if not stored:
        return "it carries no training fingerprint"
    if stored.get("phase") != expected.get("phase"):
        return (
            f"it belongs to another stage of the job ({stored.get('phase') or 'single model'}, "
            f"not {expected.get('phase') or 'single model'})"
        )
    if stored.get("warm_start") != expected.get("warm_start"):
        return (
            f"it started from {_start_name(stored.get('warm_start'))}, this job from "
            f"{_start_name(expected.get('warm_start'))}"
        )
    old_hp, new_hp = stored.get("hyperparameters", {}), expected["hyperparameters"]
    for key in sorted((set(old_hp) | set(new_hp)) - set(_SCORING_ONLY)):
        if old_hp.get(key) != new_hp.get(key):
            return (
                f"hyperparameter {key} was {old_hp.get(key)!r} there and is {new_hp.get(key)!r} now"
            )
    if stored.get("data_sha256") != expected["data_sha256"]:
        return "it was trained on other data (training channel or validation split differ)"
    return None


def _start_name(warm_start: str | None) -> str:
    return "scratch" if warm_start is None else f"the model with arrays sha256 {warm_start[:12]}"


def find_resumable(
    folder: Path, expected: dict[str, Any], n_iter: int, device: str
) -> tuple[ImplicitFactorizationModel, dict[str, Any], Path] | None:
    """Load the newest readable checkpoint in ``folder`` that matches ``expected``.

    Returns:
        ``(model, stored_state, path)``, or ``None`` when ``folder`` holds no checkpoint.

    Raises:
        CheckpointMismatchError: the newest readable checkpoint belongs to another run, has
            more epochs than ``n_iter``, or no checkpoint there can be read.
    """
    found = list_checkpoints(folder)
    if not found:
        return None
    problems = []
    for path in found:
        try:
            config = read_config(path)
        except ArtifactError as exc:
            logger.warning("checkpoint %s cannot be read (%s); trying an older one", path, exc)
            problems.append(str(exc))
            continue
        # (checkpoints written before the field existed kept it under metrics)
        stored = config.get("checkpoint") or (config.get("metrics") or {}).get("checkpoint") or {}
        why = _mismatch(stored, expected)
        epochs = int(config.get("epochs_trained", 0))
        if why is None and epochs > n_iter:
            why = f"it has {epochs} epochs, more than n_iter={n_iter}"
        if why is not None:
            raise CheckpointMismatchError(
                f"the checkpoint {path} cannot be resumed: {why}; use a new checkpoint "
                "location (checkpoint_s3_uri) or set the hyperparameter resume=never to "
                "discard it"
            )
        try:
            model = ImplicitFactorizationModel.load(path, device=device)
        except ArtifactError as exc:
            logger.warning("checkpoint %s cannot be loaded (%s); trying an older one", path, exc)
            problems.append(str(exc))
            continue
        return model, stored, path
    raise CheckpointMismatchError(
        f"none of the {len(found)} checkpoints in {folder} can be read ({problems[0]}); set the "
        "hyperparameter resume=never to discard them"
    )
