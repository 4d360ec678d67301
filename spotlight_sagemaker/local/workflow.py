"""Helpers of the local workflow: open a ``model.tar.gz``, evaluate it, read transform output.

Used by the ``spotlight-sagemaker`` console script and the MovieLens example. Nothing here
talks to AWS; ``s3://`` artifacts are downloaded by the caller first.
"""

from __future__ import annotations

import csv
import os
import tarfile
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ..core import (
    ImplicitFactorizationModel,
    Interactions,
    NotFittedError,
    PopularityModel,
    evaluate,
)
from ..core.artifact import is_artifact
from .paths import extract_tar


class RecommendationRow(NamedTuple):
    """One CSV row of a transform output (``user_id,item_id,score``); ``score`` is None on the
    rows that report a candidate (``items``) the model does not know."""

    user_id: str
    item_id: str
    score: float | None


def load_artifact(path: str | os.PathLike, device: str = "cpu") -> ImplicitFactorizationModel:
    """Load a model from a ``model.tar.gz`` (or ``file://`` URI) or an artifact folder.

    Raises:
        FileNotFoundError: nothing at ``path``.
        ArtifactError: not a readable spotlight-sagemaker artifact.
    """
    p = Path(str(path).removeprefix("file://")).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"model artifact {str(p)!r} does not exist")
    if p.is_dir():
        return ImplicitFactorizationModel.load(p, device=device)
    with tempfile.TemporaryDirectory(prefix="spotlight-artifact-") as tmp:
        try:
            extract_tar(p, Path(tmp))
        except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
            from ..core import ArtifactError

            raise ArtifactError(f"{p}: not a readable model.tar.gz ({exc})") from None
        folder = Path(tmp)
        if not is_artifact(folder):
            candidates = [d for d in folder.rglob("*") if d.is_dir() and is_artifact(d)]
            folder = candidates[0] if candidates else folder
        return ImplicitFactorizationModel.load(folder, device=device)


class _AlignedScorer:
    """Scores a model trained on a sub-vocabulary in the full data's index space.

    Items the model never saw score ``-inf`` (never recommended); users it never saw get
    ``-inf`` everywhere (no recommendation, every test item a miss).
    """

    def __init__(self, model: ImplicitFactorizationModel, data: Interactions) -> None:
        self.model = model
        if model.user_map is None or model.item_map is None:
            raise NotFittedError("the model is not fitted: call fit() or load() first")
        self.users = model.user_map.lookup(data.user_map.ids)
        self.items = model.item_map.lookup(data.item_map.ids)

    def score_users(self, user_idx: np.ndarray) -> np.ndarray:
        mapped = self.users[np.asarray(user_idx)]
        out = np.full((len(mapped), len(self.items)), -np.inf, dtype=np.float64)
        known = mapped >= 0
        if known.any():
            scores = np.asarray(self.model.score_users(mapped[known]), dtype=np.float64)
            cols = self.items >= 0
            block = np.full((int(known.sum()), len(self.items)), -np.inf)
            block[:, cols] = scores[:, self.items[cols]]
            out[known] = block
        return out


def evaluate_against_popularity(
    model: ImplicitFactorizationModel, train: Interactions, test: Interactions, k: int = 10
) -> dict[str, dict[str, float]]:
    """The project's protocol metrics of ``model`` and of popularity on ``test``.

    ``train`` and ``test`` share one vocabulary (as :func:`random_train_test_split` makes them);
    the model may have been trained on ``train`` alone, so its vocabulary is aligned to theirs.

    Returns:
        ``{"model": metrics, "popularity": metrics}`` (precision@k, recall@k, ndcg@k, mrr,
        coverage@k, users).
    """
    return {
        "model": evaluate(_AlignedScorer(model, train), test, train, k=k),
        "popularity": evaluate(PopularityModel(train), test, train, k=k),
    }


def read_transform_output(path: str | os.PathLike) -> list[RecommendationRow]:
    """The rows of a ``.out`` file of CSV responses (``user_id,item_id,score``).

    Raises:
        ValueError: a row that is not three fields with a numeric (or, for an unknown candidate,
            empty) score.
    """
    rows = []
    with open(path, newline="", encoding="utf-8") as fh:
        for n, fields in enumerate(csv.reader(fh), 1):
            if not fields:
                continue
            if len(fields) != 3:
                raise ValueError(f"{path}, line {n}: expected user_id,item_id,score, got {fields}")
            try:
                score = float(fields[2]) if fields[2] else None
            except ValueError:
                raise ValueError(f"{path}, line {n}: score {fields[2]!r} is not a number") from None
            rows.append(RecommendationRow(fields[0], fields[1], score))
    return rows


def format_table(header: list[str], rows: list[list[Any]]) -> str:
    """A plain-text table (left-aligned text, right-aligned numbers)."""
    cells = [[str(h) for h in header]] + [
        [f"{v:.4f}" if isinstance(v, float) else str(v) for v in r] for r in rows
    ]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    numeric = [all(isinstance(r[i], (int, float)) for r in rows) for i in range(len(header))]
    lines = []
    for r in cells:
        lines.append(
            "  ".join(
                v.rjust(w) if num else v.ljust(w)
                for v, w, num in zip(r, widths, numeric, strict=True)
            ).rstrip()
        )
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
