"""The package layout's import rules: code that runs in a container never imports the SDK.

``container/training``, ``container/serving``, ``contract`` and ``core`` run inside the AWS
images (which have neither ``sagemaker`` nor ``boto3`` in the serving case), and neither side
imports the other side's toolkit; each folder is checked twice: no import statement names those
packages, and every module imports in a fresh interpreter where importing them fails.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "spotlight_sagemaker"
SDK = ("sagemaker", "boto3", "botocore")
TOOLKITS = ("sagemaker_inference", "sagemaker_training")
#: folder -> the top-level packages it must not import (the serving container's handler service
#: builds on the inference toolkit, which is installed there; core and contract need neither)
FORBIDDEN = {
    "container/training": SDK + ("sagemaker_inference",),
    "container/serving": SDK + ("sagemaker_training",),
    "contract": SDK + TOOLKITS,
    "core": SDK + TOOLKITS,
}
CONTAINER_SIDE = list(FORBIDDEN)


def _modules(folder: str) -> list[str]:
    root = PACKAGE.parent
    return [
        ".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
        for p in sorted((PACKAGE / folder).rglob("*.py"))
    ]


def _imported_names(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


@pytest.mark.parametrize("folder", CONTAINER_SIDE)
def test_no_import_statement_names_the_sdk(folder):
    offending = [
        f"{path.relative_to(PACKAGE)}: {name}"
        for path in sorted((PACKAGE / folder).rglob("*.py"))
        for name in _imported_names(path)
        if name.split(".")[0] in FORBIDDEN[folder]
    ]
    assert offending == []


@pytest.mark.parametrize("folder", CONTAINER_SIDE)
def test_every_module_imports_without_the_sdk(folder):
    modules = _modules(folder)
    assert modules, folder
    code = (
        "import sys\n"
        f"for name in {FORBIDDEN[folder]!r}:\n"
        "    sys.modules[name] = None  # importing it raises ImportError\n"
        "import importlib\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module(m)\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_the_rules_catch_an_sdk_import(tmp_path):
    """The static check is not vacuous: it finds both import forms."""
    probe = tmp_path / "probe.py"
    probe.write_text("import boto3\nfrom sagemaker.session import Session\nfrom . import x\n")
    assert _imported_names(probe) == ["boto3", "sagemaker.session"]


#: folder -> the parts of the package its modules may import (the package root only for
#: ``__version__``): the container side never reaches the client modules, the core and the
#: contract never reach a container.
ALLOWED_INTERNAL = {
    "container/training": ("core", "contract", "container.training"),
    "container/serving": ("core", "contract", "container.serving"),
    "contract": ("core", "contract"),
    "core": ("core",),
}


def _internal_imports(path: Path) -> list[str]:
    """Package-relative module names of the ``from .x import y`` statements in ``path``."""
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            base = parts[: len(parts) - node.level + 1]
            out.append(".".join([*base, *([node.module] if node.module else [])]))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(PACKAGE.name):
            out.append(node.module)
    return out


@pytest.mark.parametrize("folder", CONTAINER_SIDE)
def test_container_side_imports_stay_on_their_side(folder):
    allowed = [f"{PACKAGE.name}.{a}" for a in ALLOWED_INTERNAL[folder]]
    offending = [
        f"{path.relative_to(PACKAGE)}: {name}"
        for path in sorted((PACKAGE / folder).rglob("*.py"))
        for name in _internal_imports(path)
        if name != PACKAGE.name and not any(name == a or name.startswith(a + ".") for a in allowed)
    ]
    assert offending == []


def test_the_internal_rule_resolves_relative_imports(tmp_path):
    probe = PACKAGE / "container" / "serving" / "codec" / "decoding.py"
    names = _internal_imports(probe)
    assert f"{PACKAGE.name}.contract.content_types" in names
    assert f"{PACKAGE.name}.container.serving.codec.errors" in names
