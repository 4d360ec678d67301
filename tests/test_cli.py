"""The console script's exit statuses: 2 for every usage error, on every subcommand alike."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from _sdk_helpers import tar_model

from spotlight_sagemaker import cli

SCRIPT = Path(sys.executable).with_name("spotlight-sagemaker")


@pytest.fixture(scope="module")
def model_tar(tmp_path_factory, trained_model_dir) -> Path:
    path = tmp_path_factory.mktemp("cli-model") / "model.tar.gz"
    path.write_bytes(tar_model(trained_model_dir))
    return path


def _requests(tmp_path: Path) -> str:
    path = tmp_path / "requests.jsonl"
    path.write_text('{"user_id": "685", "top_n": 2}\n')
    return str(path)


@pytest.mark.parametrize("command", ["transform", "recommend", "evaluate"])
def test_a_missing_model_argument_is_a_usage_error(command, tmp_path, capsys):
    args = {
        "transform": ["transform", _requests(tmp_path), "--root", str(tmp_path / "root")],
        "recommend": ["recommend", "--user", "685"],
        "evaluate": ["evaluate", "--data", "x.csv"],
    }[command]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert (
        f"spotlight-sagemaker {command}: error: the following arguments are required: --model"
        in err
    )


@pytest.mark.parametrize("command", ["transform", "recommend", "evaluate"])
def test_a_model_path_that_does_not_exist_is_a_usage_error(command, tmp_path, capsys):
    """transform used to exit 1 here, recommend 2."""
    missing = str(tmp_path / "nope.tar.gz")
    root = ["--root", str(tmp_path / "root")]
    args, want = {
        "transform": (
            ["transform", "--model", missing, _requests(tmp_path), *root],
            "a model.tar.gz",
        ),
        "recommend": (["recommend", "--model", missing, "--user", "685"], "a model.tar.gz or an"),
        "evaluate": (["evaluate", "--model", missing, "--data", "x.csv"], "a model.tar.gz or an"),
    }[command]
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(
        f"spotlight-sagemaker {command}: error: --model {missing!r} does not exist"
    )
    assert f"give {want}" in err
    assert not (tmp_path / "root").exists()  # refused before any local-mode setup


def test_transform_needs_the_archive_not_the_folder(trained_model_dir, tmp_path, capsys):
    args = ["transform", "--model", str(trained_model_dir), _requests(tmp_path)]
    assert cli.main([*args, "--root", str(tmp_path / "root")]) == 2
    assert "is a folder: give a model.tar.gz" in capsys.readouterr().err


def test_transform_of_requests_that_do_not_exist_is_a_usage_error(model_tar, tmp_path, capsys):
    missing = str(tmp_path / "nope.jsonl")
    args = ["transform", "--model", str(model_tar), missing, "--root", str(tmp_path / "root")]
    assert cli.main(args) == 2
    assert f"local path {missing!r} does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["0", "-3", "ten"])
def test_counts_must_be_positive(model_tar, value, capsys):
    assert (
        cli.main(["recommend", "--model", str(model_tar), "--user", "685", "--top-n", value]) == 2
    )
    assert "argument --top-n: must be a positive integer" in capsys.readouterr().err


def test_help_and_version_exit_0(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("spotlight-sagemaker ")
    assert cli.main(["recommend", "--help"]) == 0


def test_the_console_script_exits_2_on_both_subcommands(tmp_path):
    missing = str(tmp_path / "nope.tar.gz")
    for args in (
        ["transform", "--model", missing, _requests(tmp_path), "--root", str(tmp_path / "r")],
        ["recommend", "--model", missing, "--user", "685"],
        ["transform", _requests(tmp_path)],
        ["recommend", "--user", "685"],
    ):
        run = subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, check=False)
        assert run.returncode == 2, (args, run.stderr)
        assert f"spotlight-sagemaker {args[0]}: error: " in run.stderr


def test_recommend_ranks_filters_and_folds_in_a_history(model_tar, trained_model_dir, capsys):
    from spotlight_sagemaker.core import ImplicitFactorizationModel

    core = ImplicitFactorizationModel.load(trained_model_dir, device="cpu")
    base = ["recommend", "--model", str(model_tar)]

    def rows(*args: str) -> list[list[str]]:
        assert cli.main([*base, *args]) == 0
        return [line.split(",") for line in capsys.readouterr().out.splitlines()]

    ranked = rows("--user", "685", "--items", "50,zz,172")
    assert [r[1] for r in ranked] == [
        *core.recommend("685", items=["50", "zz", "172"]).item_ids,
        "zz",
    ]
    assert ranked[-1] == ["685", "zz", ""]
    filtered = rows("--user", "685", "--top-n", "3", "--exclude-items", "313,286")
    assert [r[1] for r in filtered] == core.recommend(
        "685", 3, exclude_items=["313", "286"]
    ).item_ids
    visitor = rows("--history", "50,172,181", "--top-n", "4", "--user", "v1")
    assert [r[1] for r in visitor] == core.recommend_from_history(["50", "172", "181"], 4).item_ids
    assert {r[0] for r in visitor} == {"v1"}
    assert cli.main([*base]) == 2
    assert "give --user (repeatable) or --history" in capsys.readouterr().err
    assert cli.main([*base, "--history", "50,50"]) == 2
    assert "history holds '50' more than once" in capsys.readouterr().err
    assert cli.main([*base, "--user", "1", "--items", "50,,1"]) == 2
    assert "expected comma-separated ids" in capsys.readouterr().err
