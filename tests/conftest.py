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


_VALID_SAGEMAKER_CONFIGS: set[str] = set()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Fake AWS credentials and region, no profile, SDK telemetry opted out; returns the region.

    Use with ``moto.mock_aws()`` (nothing here reaches AWS by itself).
    """
    return _fake_aws(monkeypatch, tmp_path_factory)


@pytest.fixture(scope="module")
def aws_env_module(tmp_path_factory: pytest.TempPathFactory):
    """:func:`aws_env` for a module-scoped fixture."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield _fake_aws(monkeypatch, tmp_path_factory)


def _fake_aws(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> str:
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    region = "us-east-1"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", region)
    monkeypatch.setenv("AWS_REGION", region)
    config = tmp_path_factory.mktemp("sagemaker-config") / "config.yaml"
    config.write_text(
        "SchemaVersion: '1.0'\n"
        "SageMaker:\n  PythonSDK:\n    Modules:\n      TelemetryOptOut: true\n"
    )
    monkeypatch.setenv("SAGEMAKER_USER_CONFIG_OVERRIDE", str(config))
    monkeypatch.setenv("SAGEMAKER_ADMIN_CONFIG_OVERRIDE", str(config))
    # The SDK re-validates the whole config (jsonschema, ~0.3-1.5 s) on every session and
    # config lookup; validate each distinct config once instead.
    import json

    import sagemaker.config.config
    import sagemaker.session
    import sagemaker.utils

    validate = sagemaker.config.config.validate_sagemaker_config

    def validate_once(config: dict | None = None) -> None:
        key = json.dumps(config, sort_keys=True, default=str)
        if key not in _VALID_SAGEMAKER_CONFIGS:
            validate(config)
            _VALID_SAGEMAKER_CONFIGS.add(key)

    for module in (sagemaker.config.config, sagemaker.session, sagemaker.utils):
        monkeypatch.setattr(module, "validate_sagemaker_config", validate_once)
    return region
