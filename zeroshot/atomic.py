"""Atomic file writes: every file the toolkit writes appears whole or not at all.

Runs are killed (``kill -9``, out-of-memory, a job's time limit) and resumed; a reader must never see half a row,
half a table or half a checkpoint lock. One function does it for every module.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["current_umask", "write_atomic"]


def write_atomic(path: str | Path, data: str | bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and an atomic rename.

    The temporary file is hidden (leading dot) and unique (``mkstemp``), so concurrent writers of different files
    never collide, and it is flushed to disk (``fsync``) before the rename, so the file survives a crash of the
    machine, not only of the process. The file gets the permissions any new file gets (``0o666`` less the
    process's umask: 0644 under umask 022), not ``mkstemp``'s private 0600, so collaborators on a shared file
    system can read a run. Text is written as UTF-8. Parent folders are created.

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
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def current_umask() -> int:
    """The process's file-mode creation mask, read without changing it.

    Linux reports it in ``/proc/self/status``; elsewhere it is read by setting and restoring it (``os.umask`` has
    no read-only form), which is not atomic across threads but leaves the mask as it was.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
