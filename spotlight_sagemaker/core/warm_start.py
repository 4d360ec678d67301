"""Warm start: a new model whose known users and items begin where a previous model left them.

Incremental training: when new interactions arrive, ``warm_start(previous, data)`` builds the
model for ``data`` exactly as ``fit(data)`` would initialise it (same seed, same N(0, 1/dim)
embeddings and zero biases, ``l2=auto`` resolved on ``data``), then overwrites the rows of every
user and item that the previous model knows, matched by raw id, with the previous model's
embedding and bias. Users and items new in ``data`` keep their fresh initialisation; ids the
previous model knew but ``data`` lacks are dropped (the new model's vocabulary is ``data``'s).

The returned model is initialised but untrained (``epochs_trained == 0``): continue it with
``fit_partial(data, n_iter=...)`` (``fit`` would start from scratch again). Its optimizer state
is new: a served artifact carries no Adam moments, only checkpoints do.

Hyperparameters are the caller's (with the preset's defaults for the rest), never the previous
model's: the previous model contributes only parameters. ``embedding_dim`` must equal the
previous model's, since the vectors are copied as they are.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .errors import HyperparameterError
from .factorization import ImplicitFactorizationModel
from .idmap import IdMap
from .interactions import Interactions


def match_ids(previous: IdMap, current: IdMap) -> np.ndarray:
    """For each id of ``current`` (in index order), its index in ``previous``, or ``-1``."""
    return previous.lookup(current.ids)


def check_dim(previous: ImplicitFactorizationModel, embedding_dim: int) -> None:
    """Refuse a warm start from ``previous`` into a model of another ``embedding_dim``.

    Raises:
        HyperparameterError: the dimensions differ (the message names both).
    """
    old = int(previous._require().user_embeddings.shape[1])
    if int(embedding_dim) != old:
        raise HyperparameterError(
            f"cannot warm-start: embedding_dim is {int(embedding_dim)} for the new model and "
            f"{old} in the previous model; give embedding_dim={old} (the vectors are copied as "
            "they are) or train from scratch"
        )


def warm_start(
    previous: ImplicitFactorizationModel,
    interactions: Interactions,
    preset: str = "default",
    **hyperparameters: Any,
) -> ImplicitFactorizationModel:
    """A model on ``interactions``' vocabulary that starts from ``previous``'s parameters.

    Args:
        previous: a fitted (or loaded) model.
        interactions: the data the new model will train on; its vocabularies become the new
            model's.
        preset: the preset of every hyperparameter not given (as in
            :class:`ImplicitFactorizationModel`).
        **hyperparameters: the new model's hyperparameters (the previous model's are not used).

    Returns:
        An initialised, untrained model: rows of ids that ``previous`` knows hold its
        embeddings and biases; other rows are initialised as ``fit`` would.

    Raises:
        HyperparameterError: the new ``embedding_dim`` differs from ``previous``'s.
        ValueError: bad hyperparameters or empty ``interactions``.
        NotFittedError: ``previous`` is not fitted.
    """
    model = ImplicitFactorizationModel(preset, **hyperparameters)
    check_dim(previous, model.hyperparameters["embedding_dim"])
    model._initialise(interactions)
    src, dst = previous._require(), model._require()
    assert previous.user_map is not None and previous.item_map is not None
    for (to_emb, to_bias, from_emb, from_bias), old_map, new_map in (
        (
            (dst.user_embeddings, dst.user_biases, src.user_embeddings, src.user_biases),
            previous.user_map,
            interactions.user_map,
        ),
        (
            (dst.item_embeddings, dst.item_biases, src.item_embeddings, src.item_biases),
            previous.item_map,
            interactions.item_map,
        ),
    ):
        where = match_ids(old_map, new_map)
        rows = np.flatnonzero(where >= 0)
        if len(rows) == 0:
            continue
        to_idx = torch.from_numpy(rows).to(to_emb.device)
        from_idx = torch.from_numpy(where[rows]).to(from_emb.device)
        with torch.no_grad():
            to_emb[to_idx] = from_emb.detach()[from_idx].to(to_emb.device, to_emb.dtype)
            to_bias[to_idx] = from_bias.detach()[from_idx].to(to_bias.device, to_bias.dtype)
    model._remember_training_data(interactions)  # scorable before training (epoch 0)
    return model
