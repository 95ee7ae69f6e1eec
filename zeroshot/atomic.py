"""Atomic file writes: every file the toolkit writes appears whole or not at all.

Runs are killed (``kill -9``, out-of-memory, a job's time limit) and resumed; a reader must never see half a row,
half a table or half a checkpoint lock. One function does it for every module.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["write_atomic"]


def write_atomic(path: str | Path, data: str | bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and an atomic rename.

    The temporary file is hidden (leading dot) and unique (``mkstemp``), so concurrent writers of different files
    never collide, and it is flushed to disk (``fsync``) before the rename, so the file survives a crash of the
    machine, not only of the process. Text is written as UTF-8. Parent folders are created.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> write_atomic(folder / "a" / "row.json", '{"dice": 0.8}').read_text()
    '{"dice": 0.8}'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
