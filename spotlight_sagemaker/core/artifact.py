"""The pickle-free model artifact: ``spotlight-model.json`` + ``spotlight-model.npz``.

The JSON holds the format version, package and torch versions, hyperparameters, seed, epochs,
training metrics, the raw id lists and the SHA-256 of the npz; the npz holds only numeric arrays
(read with ``allow_pickle=False``): embeddings, biases, what each user has seen (CSR), item
popularity and, in checkpoints, the optimizer and RNG state. Files are written under temporary
names and renamed, so a crash never leaves a half-written artifact that looks complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .. import __version__
from .config import PARAMS, auto_softmax_negatives
from .errors import ArtifactError
from .idmap import IdMap
from .trainer import make_optimizer

if TYPE_CHECKING:
    from .factorization import ImplicitFactorizationModel
    from .network import BilinearNet
    from .optim import Adam, LazyAdam

FORMAT = "spotlight-sagemaker/implicit-factorization"
FORMAT_VERSION = 1
CONFIG_FILE = "spotlight-model.json"
ARRAYS_FILE = "spotlight-model.npz"
_PARAMS = ("user_embeddings", "item_embeddings", "user_biases", "item_biases")


#: hyperparameters newer artifacts hold and older ones lack, with the values those trained with:
#: softmax_negatives "auto", resolved at load time from the artifact's tables (the exact softmax
#: up to 2**31 users x items cells), and l2_balance 1 (users and items penalised alike)
ADDED_SINCE = {"softmax_negatives": "auto", "l2_balance": 1.0}


def save_model(
    model: ImplicitFactorizationModel,
    path: str | os.PathLike,
    *,
    include_optimizer: bool = False,
    checkpoint: dict[str, Any] | None = None,
) -> None:
    """Write ``model`` into the folder ``path`` (created if needed)."""
    net = model._require()
    # a fitted model (fit() or load()) has its vocabularies and training data set with the net
    assert model.user_map is not None and model.item_map is not None and model.seen is not None
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {name: getattr(net, name).detach().float().cpu().numpy() for name in _PARAMS}
    arrays["user_biases"] = arrays["user_biases"].reshape(-1)  # stored flat, as Spotlight's
    arrays["item_biases"] = arrays["item_biases"].reshape(-1)
    for name in _PARAMS:
        if not np.isfinite(arrays[name]).all():
            raise ArtifactError(f"refusing to save a model whose {name} are not all finite")
    arrays["seen_indptr"], arrays["seen_indices"] = model.seen
    arrays["item_counts"] = model.item_counts
    if include_optimizer:
        arrays.update(_optimizer_arrays(model))
    npz_tmp = _write_temp(folder, ARRAYS_FILE, lambda fh: np.savez(fh, **arrays))
    digest = _sha256(npz_tmp)
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "package_version": __version__,
        "torch_version": torch.__version__.split("+")[0],
        "preset": model.preset,
        "hyperparameters": model.hyperparameters,
        "seed": model.seed,
        "epochs_trained": model.epochs_trained,
        "history": [s.__dict__ for s in model.history],
        "metrics": model.metrics,
        "num_users": len(arrays["user_biases"]),
        "num_items": len(arrays["item_biases"]),
        "user_ids": model.user_map.to_list(),
        "item_ids": model.item_map.to_list(),
        "has_optimizer_state": include_optimizer,
        "arrays_sha256": digest,
    }
    if checkpoint is not None:
        config["checkpoint"] = checkpoint
    json_tmp = _write_temp(
        folder, CONFIG_FILE, lambda fh: fh.write(json.dumps(config).encode("utf-8"))
    )
    os.replace(npz_tmp, folder / ARRAYS_FILE)
    os.replace(json_tmp, folder / CONFIG_FILE)


def is_artifact(path: str | os.PathLike) -> bool:
    """True when ``path`` holds both artifact files."""
    p = Path(path)
    return (p / CONFIG_FILE).is_file() and (p / ARRAYS_FILE).is_file()


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """The artifact's JSON, checked for format and version."""
    cfg_path = Path(path) / CONFIG_FILE
    if not cfg_path.is_file():
        raise ArtifactError(f"{cfg_path} not found: not a spotlight-sagemaker model folder")
    try:
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{cfg_path} is not valid JSON (truncated?): {exc}") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ArtifactError(
            f"{cfg_path} is not a spotlight-sagemaker model (format "
            f"{config.get('format') if isinstance(config, dict) else None!r})"
        )
    version = config.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ArtifactError(
            f"{cfg_path} has format version {version!r}; this spotlight-sagemaker "
            f"({__version__}) reads up to {FORMAT_VERSION}: upgrade the package"
        )
    return config


def load_model(path: str | os.PathLike, device: str = "auto") -> ImplicitFactorizationModel:
    """Read the artifact in folder ``path`` onto ``device`` (any saved device -> any device)."""
    from .factorization import EpochStats, ImplicitFactorizationModel
    from .network import BilinearNet

    config = read_config(path)
    arrays = _read_arrays(Path(path), config)
    try:
        # hyperparameters added since the format's first release, with the value that trains
        # as the artifacts written before them were trained
        hp = {**ADDED_SINCE, **config["hyperparameters"], "device": device}
        # every hyperparameter is written: a missing one would silently take today's default
        missing = sorted(set(PARAMS) - set(hp))
        if missing:
            raise ArtifactError(
                f"{Path(path) / CONFIG_FILE} lacks the hyperparameter(s) {', '.join(missing)}: "
                "it was not written by a released spotlight-sagemaker; retrain the model"
            )
        model = ImplicitFactorizationModel(config.get("preset", "default"), **hp)
        model.seed = config["seed"]
        model.epochs_trained = int(config["epochs_trained"])
        model.history = [EpochStats(**h) for h in config.get("history", [])]
        model.metrics = dict(config.get("metrics", {}))
        model.user_map = IdMap.from_list(config["user_ids"])
        model.item_map = IdMap.from_list(config["item_ids"])
        if model.hyperparameters["softmax_negatives"] == "auto":  # an older artifact's
            model.hyperparameters["softmax_negatives"] = auto_softmax_negatives(
                len(model.user_map), len(model.item_map)
            )
        _check_arrays(arrays, len(model.user_map), len(model.item_map), path)
        gen = torch.Generator()
        net = BilinearNet(
            len(model.user_map),
            len(model.item_map),
            arrays["user_embeddings"].shape[1],
            gen,
            sparse=model.hyperparameters["sparse"],
        )
        with torch.no_grad():
            for name in _PARAMS:
                param = getattr(net, name)
                param.copy_(torch.from_numpy(arrays[name]).reshape(param.shape))
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        if isinstance(exc, ArtifactError):
            raise
        raise ArtifactError(f"{path}: inconsistent artifact ({exc})") from None
    model._net = net.to(model.device).eval()
    model.seen = (arrays["seen_indptr"].astype(np.int64), arrays["seen_indices"].astype(np.int64))
    model.item_counts = arrays["item_counts"].astype(np.int64)
    model._apply_popularity_prior()
    model._opt = make_optimizer(model._net.parameters(), model.hyperparameters)
    model._gen = torch.Generator(device=model.device).manual_seed(model.seed + model.epochs_trained)
    if config.get("has_optimizer_state"):
        _restore_optimizer(model, arrays)
    return model


# ---------------------------------------------------------------------- internals
def _write_temp(folder: Path, name: str, write) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
    try:
        # mkstemp creates 0600: a serving image running as another user could not read it
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def _check_arrays(arrays: dict[str, np.ndarray], n_users: int, n_items: int, path: Any) -> None:
    """Every array's dtype and shape agrees with the id lists, parameters are finite and the
    seen-items CSR is well formed; else an ArtifactError naming the array (a model that loads
    must be able to answer every request)."""
    ue = arrays["user_embeddings"]
    dim = ue.shape[-1] if ue.ndim == 2 else -1
    want = {
        "user_embeddings": (n_users, dim),
        "item_embeddings": (n_items, dim),
        "user_biases": (n_users,),
        "item_biases": (n_items,),
        "seen_indptr": (n_users + 1,),
        "item_counts": (n_items,),
    }
    for name, shape in want.items():
        a = arrays[name]
        kind = "f" if name in _PARAMS else "iu"
        if a.dtype.kind not in kind or a.shape != shape:
            raise ArtifactError(
                f"{path}: inconsistent artifact: {name} has shape {a.shape} and dtype {a.dtype}, "
                f"expected {shape} for {n_users} users x {n_items} items"
            )
        if name in _PARAMS and not np.isfinite(a).all():
            raise ArtifactError(f"{path}: the artifact holds non-finite {name}; retrain the model")
    indptr, indices = arrays["seen_indptr"], arrays["seen_indices"]
    if (
        indices.ndim != 1
        or indices.dtype.kind not in "iu"
        or indptr[0] != 0
        or indptr[-1] != len(indices)
        or (np.diff(indptr) < 0).any()
        or (len(indices) and (indices.min() < 0 or indices.max() >= n_items))
    ):
        raise ArtifactError(f"{path}: inconsistent artifact: a malformed seen_indptr/seen_indices")
    if (arrays["item_counts"] < 0).any():
        raise ArtifactError(f"{path}: inconsistent artifact: negative item_counts")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_arrays(folder: Path, config: dict[str, Any]) -> dict[str, np.ndarray]:
    npz_path = folder / ARRAYS_FILE
    if not npz_path.is_file():
        raise ArtifactError(f"{npz_path} not found")
    if config.get("arrays_sha256") != _sha256(npz_path):
        raise ArtifactError(
            f"{npz_path} does not match its checksum in {CONFIG_FILE} (truncated or replaced)"
        )
    try:
        with np.load(npz_path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise ArtifactError(f"{npz_path} cannot be read: {exc}") from None
    missing = [
        k for k in (*_PARAMS, "seen_indptr", "seen_indices", "item_counts") if k not in arrays
    ]
    if missing:
        raise ArtifactError(f"{npz_path} lacks arrays {missing}")
    return arrays


def _training_state(
    model: ImplicitFactorizationModel,
) -> tuple[BilinearNet, Adam | LazyAdam, torch.Generator]:
    """The net, optimizer and RNG of a fitted model (fit() and load() set all three)."""
    net, opt, gen = model._net, model._opt, model._gen
    assert net is not None and opt is not None and gen is not None
    return net, opt, gen


def _optimizer_arrays(model: ImplicitFactorizationModel) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    net, opt, gen = _training_state(model)
    names = dict(net.named_parameters())
    for name, param in names.items():
        state = opt.state.get(param, {})
        for key in ("exp_avg", "exp_avg_sq", "step"):
            if key in state:
                out[f"opt.{name}.{key}"] = torch.as_tensor(state[key]).detach().cpu().numpy()
    out["rng_state"] = gen.get_state().cpu().numpy()
    return out


def _restore_optimizer(model: ImplicitFactorizationModel, arrays: dict[str, np.ndarray]) -> None:
    net, opt, gen = _training_state(model)
    for name, param in net.named_parameters():
        state: dict[str, torch.Tensor] = {}
        for key in ("exp_avg", "exp_avg_sq", "step"):
            arr = arrays.get(f"opt.{name}.{key}")
            if arr is not None:
                t = torch.from_numpy(np.array(arr))
                state[key] = t.float() if key == "step" else t.to(model.device)
        if state:
            opt.state[param] = state
    if "rng_state" in arrays:
        # an RNG state of another device type does not fit: keep the derived seed then
        with contextlib.suppress(RuntimeError):
            gen.set_state(torch.from_numpy(np.array(arrays["rng_state"])))
