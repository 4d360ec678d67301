"""A small reader for the Dockerfiles and .dockerignore in docker/ (tests only).

Enough of Docker's rules for the files this project writes: instructions with continuation
lines, build stages, COPY in shell or JSON form, ENV key=value, exec-form ENTRYPOINT/CMD, and
.dockerignore matching as moby's patternmatcher does it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DOCKER = REPO / "docker"


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction, continuation lines joined, in its build stage."""

    cmd: str
    args: str
    stage: str


def parse_dockerfile(path: Path) -> list[Instruction]:
    """Instructions of ``path``; stages are named by ``AS`` (else their index)."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # Docker drops comment lines inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, f"{path.name}: the last instruction ends with a line continuation"
    out, stage, n_from = [], "global", 0
    for text in logical:
        cmd, _, args = text.partition(" ")
        cmd = cmd.upper()
        if cmd == "FROM":
            words = args.split()
            stage = words[2] if len(words) > 2 and words[1].upper() == "AS" else str(n_from)
            n_from += 1
        out.append(Instruction(cmd, args.strip(), stage))
    return out


def copy_parts(args: str) -> tuple[dict[str, str], list[str], str]:
    """(flags, sources, destination) of a COPY/ADD argument string (shell or JSON form)."""
    words = shlex.split(args)
    flags = {}
    while words and words[0].startswith("--"):
        key, _, value = words.pop(0)[2:].partition("=")
        flags[key] = value
    if words and words[0].startswith("["):
        words = json.loads(" ".join(words))
    return flags, words[:-1], words[-1]


def exec_form(ins: Instruction) -> list[str]:
    """The JSON (exec) form of ENTRYPOINT/CMD; shell form is not used in these files."""
    value = json.loads(ins.args)
    assert isinstance(value, list), f"{ins.cmd} {ins.args} is not in exec form"
    return value


def env_of(instructions: list[Instruction], stage: str) -> dict[str, str]:
    """``ENV key=value`` settings of one stage (only the key=value form is used here)."""
    env: dict[str, str] = {}
    for ins in instructions:
        if ins.cmd == "ENV" and ins.stage == stage:
            for word in shlex.split(ins.args):
                key, sep, value = word.partition("=")
                assert sep, f"ENV {ins.args}: use the key=value form"
                env[key] = value
    return env


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
            continue
        if pattern.startswith("**", i):
            out, i = out + ".*", i + 2
            continue
        out += {"*": "[^/]*", "?": "[^/]"}.get(c, re.escape(c))
        i += 1
    return re.compile(out + r"\Z")


def dockerignored(rel: str, patterns: list[str]) -> bool:
    """Whether Docker leaves ``rel`` out of the build context (moby patternmatcher rules: the
    last pattern matching the path or one of its parent folders decides)."""
    parts = rel.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        body = os.path.normpath(pattern[1:] if negated else pattern).lstrip("/")
        regex = _pattern_regex(body)
        if any(regex.match(c) for c in candidates):
            excluded = not negated
    return excluded


def dockerignore_patterns() -> list[str]:
    lines = (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
    return [s for s in (line.strip() for line in lines) if s and not s.startswith("#")]


def context_files(source: str) -> dict[Path, str]:
    """Files of the build context a COPY source takes: {path inside the copy: repo path}."""
    patterns = dockerignore_patterns()
    found: dict[Path, str] = {}
    for match in sorted(REPO.glob(source.rstrip("/"))):
        if match.is_dir():  # a folder's contents are copied, not the folder itself
            pairs = [(f, f.relative_to(match)) for f in sorted(match.rglob("*")) if f.is_file()]
        else:
            pairs = [(match, Path(match.name))]
        for f, inside in pairs:
            rel = f.relative_to(REPO).as_posix()
            if not dockerignored(rel, patterns):
                found[inside if match.is_dir() else Path()] = rel
    return found


def materialize(instructions: list[Instruction], stage: str, root: Path) -> list[Path]:
    """Lay out under ``root`` what the stage's context COPY lines put in the image; returns the
    image paths written."""
    workdir, written = "/", []
    for ins in instructions:
        if ins.stage != stage:
            continue
        if ins.cmd == "WORKDIR":
            workdir = os.path.join(workdir, ins.args)
        if ins.cmd != "COPY":
            continue
        flags, sources, dest = copy_parts(ins.args)
        if "from" in flags:
            continue
        target = Path(os.path.join(workdir, dest))
        for source in sources:
            for inside, rel in context_files(source).items():
                if inside == Path():  # a single file: into a folder dest/, else to dest
                    to = target / Path(rel).name if dest.endswith("/") else target
                else:
                    to = target / inside
                on_disk = root / to.relative_to("/")
                on_disk.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / rel, on_disk)
                written.append(to)
    return written


def final_stage(instructions: list[Instruction]) -> str:
    """Name of the last build stage (the image)."""
    return [ins.stage for ins in instructions if ins.cmd == "FROM"][-1]


def command_of(instructions: list[Instruction]) -> list[str]:
    """What ``docker run <image>`` executes: ENTRYPOINT + CMD of the final stage."""
    final = final_stage(instructions)
    entrypoint = [exec_form(i) for i in instructions if i.cmd == "ENTRYPOINT" and i.stage == final]
    cmd = [exec_form(i) for i in instructions if i.cmd == "CMD" and i.stage == final]
    return (entrypoint[-1] if entrypoint else []) + (cmd[-1] if cmd else [])


def load_build_and_push() -> Any:
    """docker/build_and_push.py as a module (it is a script, not part of the package)."""
    if "build_and_push" not in sys.modules:
        path = DOCKER / "build_and_push.py"
        spec = importlib.util.spec_from_file_location("build_and_push", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules["build_and_push"] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
    return sys.modules["build_and_push"]
