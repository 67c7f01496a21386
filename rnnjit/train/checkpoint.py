"""Checkpoints: one ``.npz`` file holding everything a run needs to resume.

Arrays are stored under prefixed keys (``param/…``, ``optim/…``, ``state/…``) and everything else
(step, RNG states, config, data position) as one JSON string under ``meta``. Reading uses
``allow_pickle=False``: loading a checkpoint never executes code from the file.

Writes are atomic: the file is written beside its destination under a temporary name, flushed
to disk, then renamed over it, so a crash or Ctrl-C mid-write leaves the previous checkpoint
intact.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile

import numpy as np


class CheckpointError(ValueError):
    pass


def save_checkpoint(path: str, arrays: dict[str, np.ndarray], meta: dict) -> str:
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    payload = {k: np.asarray(v) for k, v in arrays.items()}
    payload["meta"] = np.array(json.dumps(meta))
    fd, tmp = tempfile.mkstemp(prefix=".checkpoint-", suffix=".npz.tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def load_checkpoint(path: str) -> tuple[dict[str, np.ndarray], dict]:
    """-> (arrays, meta). Raises CheckpointError with a one-line message if it cannot be read."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads(str(arrays.pop("meta")))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as e:
        raise CheckpointError(f"checkpoint {path} is corrupt or unreadable ({type(e).__name__}): "
                              "restore it from a copy or start a new run") from None
    return arrays, meta
