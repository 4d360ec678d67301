"""Shared fixtures: the MovieLens copies in ../shared/data and a small trained artifact."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")

REPO = Path(__file__).resolve().parent.parent


def _data_dir() -> Path:
    return Path(os.environ.get("SPOTLIGHT_DATA_DIR", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    d = _data_dir()
    if not (d / "ml-100k-gt2.csv").is_file():
        pytest.fail(f"MovieLens copies not found in {d} (set SPOTLIGHT_DATA_DIR)")
    return d


@pytest.fixture(scope="session")
def ml100k_csv(data_dir: Path) -> Path:
    """The seed's training file: header user_id,item_id, 82,520 rows (ratings > 2)."""
    return data_dir / "ml-100k-gt2.csv"


@pytest.fixture(scope="session")
def ml100k_dir(data_dir: Path) -> Path:
    """The original MovieLens 100k folder (u.data, u.item, ...)."""
    return data_dir / "ml-100k"


@pytest.fixture(scope="session")
def trained_model_dir(tmp_path_factory: pytest.TempPathFactory, ml100k_csv: Path) -> Path:
    """A real artifact trained by the core on the seed's data (few epochs, seeded)."""
    from spotlight_sagemaker.core import ImplicitFactorizationModel, Interactions

    out = tmp_path_factory.mktemp("model")
    model = ImplicitFactorizationModel(n_iter=3, embedding_dim=16, random_state=0, device="cpu")
    model.fit(Interactions.from_csv(ml100k_csv))
    model.save(out)
    return out
