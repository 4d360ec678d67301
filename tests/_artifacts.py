"""Write artifacts that ``save`` refuses to write (non-finite or inconsistent arrays), the way a
corrupted or hand-edited file would look: the arrays are rewritten and the checksum updated."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from spotlight_sagemaker.core.artifact import ARRAYS_FILE, CONFIG_FILE


def rewrite_arrays(source: Path, dest: Path, edit: Callable[[dict[str, np.ndarray]], None]) -> Path:
    """Copy the artifact ``source`` to ``dest`` with ``edit(arrays)`` applied to its npz."""
    dest.mkdir(parents=True, exist_ok=True)
    for f in source.iterdir():
        if f.is_file():
            shutil.copy2(f, dest / f.name)
    with np.load(dest / ARRAYS_FILE, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    edit(arrays)
    with open(dest / ARRAYS_FILE, "wb") as fh:
        np.savez(fh, **arrays)
    config = json.loads((dest / CONFIG_FILE).read_text())
    config["arrays_sha256"] = hashlib.sha256((dest / ARRAYS_FILE).read_bytes()).hexdigest()
    (dest / CONFIG_FILE).write_text(json.dumps(config))
    return dest
