"""``train.py``'s ``model`` channel: the previous model a job warm-starts from.

The SDK's ``model_uri=`` (``EstimatorBase``'s model channel, name ``model``) or a ``model``
channel given to ``fit()`` puts a previous artifact in ``/opt/ml/input/data/model/``: the
``model.tar.gz`` a training job wrote (SageMaker copies the object as it is), or the artifact's
two files already extracted. :func:`read_model_channel` finds it, extracts the archive safely
(only the two artifact files are read, each written under its own fixed name, so no member can
land outside the temporary folder; sizes are bounded) and loads it on the CPU.

:func:`exclude_previous_rows` keeps validation honest: a validation row the previous model
trained on is scored by vectors fitted to it, so such rows are dropped from validation and
counted.
"""

from __future__ import annotations

import logging
import shutil
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...contract.hyperparameters import UserError
from ...core import ArtifactError, ImplicitFactorizationModel, Interactions
from ...core.artifact import ARRAYS_FILE, CONFIG_FILE, is_artifact, read_config
from .data import TrainingData

logger = logging.getLogger("spotlight_sagemaker.container.training.job")

MODEL_CHANNEL = "model"
#: What an archive in the model channel may hold in the artifact's files, in all: well above
#: the largest tables a job may train (12 GiB with gradients and Adam state is 3 GiB of
#: parameters) plus the ids and seen items.
MAX_ARTIFACT_BYTES = 16 << 30
#: Archive members read before giving up on finding the artifact (a repacked model.tar.gz holds
#: the artifact beside a code/ folder of a few hundred files).
MAX_MEMBERS = 100_000
_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
_WANTED = (CONFIG_FILE, ARRAYS_FILE)


@dataclass
class PreviousModel:
    """The model a job warm-starts from, and what the job records about it."""

    model: ImplicitFactorizationModel
    info: dict[str, Any]

    @property
    def identity(self) -> str:
        """The SHA-256 of the previous artifact's arrays: which model a checkpoint started from."""
        return str(self.info["arrays_sha256"])


def read_model_channel(channels: dict[str, Path]) -> PreviousModel | None:
    """The previous model of the ``model`` channel, or None when the job has no such channel.

    Raises:
        UserError: the channel holds no spotlight-sagemaker model, or a corrupt, unsafe or
            oversized one (the message names the channel folder and the reason).
    """
    folder = channels.get(MODEL_CHANNEL)
    if folder is None:
        return None
    try:
        return _read(Path(folder))
    except ArtifactError as exc:
        raise UserError(
            f"the '{MODEL_CHANNEL}' channel ({folder}) cannot be used to warm-start: {exc}"
        ) from None


def _read(folder: Path) -> PreviousModel:
    if folder.is_dir() and is_artifact(folder):
        return _load(folder, source=str(folder))
    archive = _find_archive(folder)
    with tempfile.TemporaryDirectory(prefix="spotlight-warm-start-") as tmp:
        extract_artifact(archive, Path(tmp))
        return _load(Path(tmp), source=str(archive))


def _find_archive(path: Path) -> Path:
    if path.is_file():
        return path
    if not path.is_dir():
        raise ArtifactError("the channel folder does not exist")
    files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    archives = [p for p in files if p.name.endswith(_ARCHIVE_SUFFIXES)]
    if len(archives) > 1:
        named = [p for p in archives if p.name == "model.tar.gz"]
        if len(named) != 1:
            raise ArtifactError(
                f"it holds {len(archives)} archives ({', '.join(p.name for p in archives)}); "
                "give it one model.tar.gz"
            )
        archives = named
    if not archives:
        listed = ", ".join(p.name for p in sorted(path.iterdir())[:10]) or "nothing"
        raise ArtifactError(
            f"it holds neither a model.tar.gz nor the artifact files {CONFIG_FILE} and "
            f"{ARRAYS_FILE} (found: {listed}); pass the model.tar.gz of a spotlight-sagemaker "
            "training job (estimator.model_data)"
        )
    return archives[0]


def extract_artifact(archive: Path, dest: Path, max_bytes: int = MAX_ARTIFACT_BYTES) -> None:
    """Write the artifact's two files from ``archive`` (a tar, gzipped or not) into ``dest``.

    Only members named ``spotlight-model.json`` / ``spotlight-model.npz`` (at the archive root,
    optionally as ``./name``) are read, and each is written as ``dest/<that name>``: other
    members (a repacked model's ``code/``) are skipped, never extracted, so no member name can
    reach a path outside ``dest``.

    Raises:
        ArtifactError: not a readable tar archive, an artifact file that is missing, repeated,
            not a regular file (a link), or larger than ``max_bytes`` in all.
    """
    found: dict[str, int] = {}
    try:
        with tarfile.open(archive, "r:*") as tar:
            for n, member in enumerate(tar):
                if n >= MAX_MEMBERS:
                    break
                name = member.name[2:] if member.name.startswith("./") else member.name
                if name not in _WANTED:
                    continue
                if name in found:
                    raise ArtifactError(f"{archive.name} holds {name} twice")
                if not member.isfile():
                    raise ArtifactError(f"{archive.name}: {name} is not a regular file (a link?)")
                if sum(found.values()) + member.size > max_bytes:
                    raise ArtifactError(
                        f"{archive.name}: the artifact files are over {max_bytes} bytes"
                    )
                source = tar.extractfile(member)
                if source is None:  # pragma: no cover - isfile() members always have data
                    raise ArtifactError(f"{archive.name}: {name} cannot be read")
                with source, open(dest / name, "wb") as out:
                    shutil.copyfileobj(source, out, 1 << 20)
                found[name] = member.size
                if len(found) == len(_WANTED):
                    break
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise ArtifactError(
            f"{archive.name} cannot be read as a tar archive ({type(exc).__name__}: {exc}); "
            "truncated, or not a model.tar.gz"
        ) from None
    missing = [n for n in _WANTED if n not in found]
    if missing:
        raise ArtifactError(
            f"{archive.name} is not a spotlight-sagemaker model: it lacks {', '.join(missing)}"
        )


def _load(folder: Path, source: str) -> PreviousModel:
    config = read_config(folder)
    model = ImplicitFactorizationModel.load(folder, device="cpu")
    assert model.user_map is not None and model.item_map is not None
    info = {
        "source": source,
        "arrays_sha256": config["arrays_sha256"],
        "package_version": config.get("package_version"),
        "epochs_trained": model.epochs_trained,
        "seed": model.seed,
        "embedding_dim": int(model._require().user_embeddings.shape[1]),
        "users": len(model.user_map),
        "items": len(model.item_map),
        "rows": int(len(model.seen[1])) if model.seen is not None else None,
        "warm_started": bool((model.metrics or {}).get("warm_start")),
    }
    logger.info(
        "warm start: previous model from %s (%d users, %d items, dim %d, %d epochs)",
        source,
        info["users"],
        info["items"],
        info["embedding_dim"],
        info["epochs_trained"],
    )
    return PreviousModel(model, info)


def coverage(previous: PreviousModel, train: Interactions) -> dict[str, int]:
    """How many of ``train``'s users and items start from the previous model's vectors, how
    many are new, and how many of the previous model's are not in ``train`` (dropped)."""
    prev = previous.model
    assert prev.user_map is not None and prev.item_map is not None
    users = int(np.count_nonzero(prev.user_map.lookup(train.user_map.ids) >= 0))
    items = int(np.count_nonzero(prev.item_map.lookup(train.item_map.ids) >= 0))
    return {
        "users_kept": users,
        "users_new": train.num_users - users,
        "users_dropped": len(prev.user_map) - users,
        "items_kept": items,
        "items_new": train.num_items - items,
        "items_dropped": len(prev.item_map) - items,
    }


def exclude_previous_rows(data: TrainingData, previous: PreviousModel) -> TrainingData:
    """``data`` without the validation rows the previous model was trained on.

    The previous model's training rows are its seen items (every row of its training channel).
    A validation row among them would be scored by vectors fitted to it: validation (and the
    epochs and prior chosen on it) would be optimistic. Rows only an earlier model in a chain
    of warm starts trained on are not known here.
    """
    validation, fit = data.validation, data.fit
    if validation is None or fit is None:
        return data
    prev = previous.model
    assert prev.user_map is not None and prev.item_map is not None and prev.seen is not None
    users = prev.user_map.lookup(validation.user_map.ids)[validation.user_ids]
    items = prev.item_map.lookup(validation.item_map.ids)[validation.item_ids]
    indptr, indices = prev.seen
    width = max(len(prev.item_map), 1)
    seen_keys = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr)) * width + indices
    known = (users >= 0) & (items >= 0)
    known[known] = np.isin(users[known] * width + items[known], seen_keys)
    dropped = int(known.sum())
    data.counts["validation_rows_known_to_previous_model"] = dropped
    if dropped == 0:
        return data
    keep = np.flatnonzero(~known)
    data.counts["validation_rows"] = len(keep)
    logger.info(
        "warm start: %d of %d validation rows were training rows of the previous model: not "
        "validated on (its vectors were fitted to them)",
        dropped,
        len(validation),
    )
    if len(keep) == 0:
        logger.warning(
            "every validation row was a training row of the previous model: no validation "
            "metrics; the model trains on every row for n_iter epochs"
        )
        return TrainingData(data.train, None, None, data.counts)
    return TrainingData(data.train, fit, validation.subset(keep), data.counts)
