"""The checkpoint cache: where verified weights live, the trust-on-first-use lock, and loading.

Layout under ``$ZEROSHOT_HOME`` (default ``~/.cache/zeroshot``)::

    checkpoints/NAME/FILE            the verified file (a folder of files for a Hub repository entry)
    checkpoints/NAME/FILE.verified   fingerprint (size, mtime) of the last full verification, for quick listings
    checkpoints/NAME/FILE.part       an unfinished download (resumed by the next download)
    checkpoints.lock                 SHA-256 recorded on first download of entries without a published hash

The expected SHA-256 of an entry is the one in the checkpoint list when given there, else the one recorded in
``checkpoints.lock`` by its first complete download. Loading always re-hashes the file: a file whose hash is
wrong, or that has no hash to check against, is never loaded.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from zeroshot.atomic import write_atomic
from zeroshot.checkpoints.listing import CheckpointEntry, find_entry
from zeroshot.errors import CheckpointError

__all__ = [
    "ENV_HOME",
    "CheckpointStatus",
    "ResolvedCheckpoint",
    "cache_home",
    "cached_path",
    "checkpoint_status",
    "expected_sha256",
    "forget_recorded_sha256",
    "load_checkpoint",
    "lock_path",
    "record_sha256",
    "recorded_sha256",
    "resolve_checkpoint",
    "sha256_of",
]

ENV_HOME = "ZEROSHOT_HOME"
_CHUNK_BYTES = 1 << 20
_LOCK_FORMAT = 1
#: Suffixes of files that PyTorch writes as zip archives (``torch.save`` since 1.6); a truncated archive lacks
#: its central directory, so the zip check catches truncation even when no hash is known yet.
_TORCH_SUFFIXES = (".pt", ".pth")

#: Where an expected hash came from.
PINNED = "checkpoints.txt"
RECORDED = "first download (checkpoints.lock)"


def cache_home() -> Path:
    """The cache root: ``$ZEROSHOT_HOME``, else ``~/.cache/zeroshot``."""
    home = os.environ.get(ENV_HOME)
    return Path(home).expanduser() if home else Path.home() / ".cache" / "zeroshot"


def cached_path(entry: CheckpointEntry) -> Path:
    """Where ``entry``'s verified weights live in the cache (whether or not they are there)."""
    return cache_home() / "checkpoints" / entry.name / entry.filename


def lock_path() -> Path:
    """The trust-on-first-use record of SHA-256 hashes."""
    return cache_home() / "checkpoints.lock"


def sha256_of(path: Path) -> str:
    """SHA-256 of a file, or of a folder's manifest (one ``SHA256  relative/path`` line per file, sorted by path)."""
    if path.is_dir():
        lines = [
            f"{_sha256_file(file)}  {file.relative_to(path).as_posix()}\n"
            for file in sorted(p for p in path.rglob("*") if p.is_file())
        ]
        return hashlib.sha256("".join(lines).encode()).hexdigest()
    return _sha256_file(path)


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


# --- trust on first use -------------------------------------------------------------------------------------------


def recorded_sha256(entry: CheckpointEntry) -> str | None:
    """The hash recorded for ``entry`` by its first download, if recorded for the entry's current URL."""
    record = _read_lock().get(entry.name)
    if record is None or record.get("url") != entry.url:
        return None
    return record["sha256"]


def record_sha256(entry: CheckpointEntry, sha256: str, *, size_bytes: int) -> None:
    """Record ``sha256`` as the trusted hash of ``entry`` (first complete download)."""
    with locked(lock_path()):
        records = _read_lock()
        records[entry.name] = {
            "url": entry.url,
            "sha256": sha256,
            "size_bytes": size_bytes,
            "recorded_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        _write_lock(records)


def forget_recorded_sha256(entry: CheckpointEntry) -> bool:
    """Drop the recorded hash of ``entry`` so that its next download is trusted anew; True if one was dropped."""
    with locked(lock_path()):
        records = _read_lock()
        dropped = records.pop(entry.name, None) is not None
        if dropped:
            _write_lock(records)
    return dropped


def expected_sha256(entry: CheckpointEntry) -> tuple[str | None, str | None]:
    """The hash ``entry`` must have and where it came from: (hash, origin), or (None, None) before first use."""
    if entry.sha256 is not None:
        return entry.sha256, PINNED
    recorded = recorded_sha256(entry)
    return (recorded, RECORDED) if recorded is not None else (None, None)


def _read_lock() -> dict[str, dict[str, Any]]:
    path = lock_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is not a valid lock file ({exc}); fix or delete it") from None
    if not isinstance(data, dict) or data.get("format") != _LOCK_FORMAT or not isinstance(data.get("entries"), dict):
        raise CheckpointError(f"{path} is not a zeroshot checkpoint lock (format {_LOCK_FORMAT}); fix or delete it")
    return data["entries"]


def _write_lock(records: Mapping[str, Any]) -> None:
    text = json.dumps({"format": _LOCK_FORMAT, "entries": dict(sorted(records.items()))}, indent=2) + "\n"
    write_atomic(lock_path(), text.encode())


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``PATH.lck`` (POSIX) so concurrent downloads do not interleave."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory locks; single-process use is still safe
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lck"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --- status, resolution, loading ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckpointStatus:
    """What the cache holds for one entry.

    Attributes
    ----------
    entry : CheckpointEntry
    path : Path
        Where the weights live in the cache.
    present : bool
        Whether the file (folder) is there.
    expected_sha256, hash_origin : str or None
        The hash it must have and where that came from (see :func:`expected_sha256`).
    actual_sha256 : str or None
        The hash computed now, or at the last verification when the file is unchanged since; None if absent.
    """

    entry: CheckpointEntry
    path: Path
    present: bool
    expected_sha256: str | None
    hash_origin: str | None
    actual_sha256: str | None

    @property
    def verified(self) -> bool:
        """Present, and its hash equals the expected one."""
        return self.present and self.expected_sha256 is not None and self.actual_sha256 == self.expected_sha256

    @property
    def state(self) -> str:
        """The state in one word.

        ``verified``, ``missing``, ``MISMATCH``, ``unchecked`` (changed since last verified, or never verified)
        or ``unrecorded`` (present but with no hash to check against).
        """
        if not self.present:
            return "missing"
        if self.expected_sha256 is None:
            return "unrecorded"
        if self.actual_sha256 is None:
            return "unchecked"
        return "verified" if self.verified else "MISMATCH"


def checkpoint_status(entry: CheckpointEntry, *, rehash: bool = True) -> CheckpointStatus:
    """The cache state of ``entry``.

    Parameters
    ----------
    entry : CheckpointEntry
    rehash : bool
        Hash the file now (slow for large files). When False, the hash of the last full verification is used if
        the file's size and modification time are unchanged since, else ``actual_sha256`` is None.
    """
    path = cached_path(entry)
    expected, origin = expected_sha256(entry)
    if not path.exists():
        return CheckpointStatus(entry, path, False, expected, origin, None)
    actual = sha256_of(path) if rehash else _stamped_sha256(path)
    if rehash:
        write_stamp(path, actual)
    return CheckpointStatus(entry, path, True, expected, origin, actual)


def write_stamp(path: Path, sha256: str) -> None:
    """Remember that ``path`` hashed to ``sha256`` at its current size and modification time."""
    stamp = {"sha256": sha256, "fingerprint": _fingerprint(path)}
    write_atomic(_stamp_path(path), json.dumps(stamp).encode())


def _stamped_sha256(path: Path) -> str | None:
    try:
        stamp = json.loads(_stamp_path(path).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return stamp.get("sha256") if stamp.get("fingerprint") == _fingerprint(path) else None


def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def _fingerprint(path: Path) -> list[list[Any]]:
    if not path.is_dir():
        return [["", path.stat().st_size, path.stat().st_mtime_ns]]
    files = sorted(p for p in path.rglob("*") if p.is_file())
    return [[f.relative_to(path).as_posix(), f.stat().st_size, f.stat().st_mtime_ns] for f in files]


@dataclass(frozen=True)
class ResolvedCheckpoint:
    """A cached checkpoint whose hash was checked just now.

    Attributes
    ----------
    entry : CheckpointEntry
    path : Path
        The verified file (folder, for a repository entry).
    sha256 : str
        Its SHA-256 (of the manifest, for a folder), to record with every run.
    """

    entry: CheckpointEntry
    path: Path
    sha256: str


def resolve_checkpoint(
    name_or_entry: str | CheckpointEntry, entries: dict[str, CheckpointEntry] | None = None
) -> ResolvedCheckpoint:
    """The verified cached weights of a named entry, hashed now.

    Raises
    ------
    CheckpointError
        If the entry is unknown, not downloaded (the message gives the ``zeroshot checkpoints download`` command),
        has no hash to check against, or its hash differs from the expected one.
    """
    entry = name_or_entry if isinstance(name_or_entry, CheckpointEntry) else find_entry(name_or_entry, entries)
    status = checkpoint_status(entry, rehash=True)
    if not status.present:
        raise CheckpointError(
            f"checkpoint {entry.name!r} is not in the cache ({status.path}); download it with:\n"
            f"  zeroshot checkpoints download {entry.name}"
        )
    if status.expected_sha256 is None:
        raise CheckpointError(
            f"checkpoint {entry.name!r} at {status.path} has no SHA-256 to check against (none in the checkpoint "
            f"list, none recorded in {lock_path()}); download it again to record one:\n"
            f"  zeroshot checkpoints download --force {entry.name}"
        )
    if not status.verified:
        raise CheckpointError(
            f"checkpoint {entry.name!r} at {status.path} has SHA-256 {status.actual_sha256}, expected "
            f"{status.expected_sha256} (from {status.hash_origin}); refusing to load it. Download it again with:\n"
            f"  zeroshot checkpoints download --force {entry.name}"
        )
    return ResolvedCheckpoint(entry=entry, path=status.path, sha256=status.actual_sha256)


def check_complete(path: Path, *, filename: str | None = None) -> None:
    """Refuse a PyTorch checkpoint file that is not a complete zip archive (e.g. a truncated download).

    ``filename`` is the name the file will have (its suffix says whether it is a PyTorch file), when ``path``
    is still a ``.part`` file.
    """
    suffix = Path(filename).suffix if filename is not None else path.suffix
    if path.is_file() and suffix in _TORCH_SUFFIXES and not zipfile.is_zipfile(path):
        raise CheckpointError(
            f"{path} ({path.stat().st_size} bytes) is not a complete PyTorch checkpoint (no zip central directory: "
            "truncated or not a torch.save file)"
        )


def load_checkpoint(path: str | os.PathLike[str], *, sha256: str | None = None) -> Mapping[str, Any]:
    """Load a PyTorch checkpoint safely: hash check, completeness check, ``torch.load(weights_only=True)``.

    Parameters
    ----------
    path : path-like
        A ``torch.save`` file, e.g. ``{"model": state_dict}`` as sam2 writes them.
    sha256 : str, optional
        Expected SHA-256; the file is refused unless it matches.

    Returns
    -------
    mapping
        The loaded object, on the CPU.

    Raises
    ------
    CheckpointError
        On a hash mismatch, a truncated file, or content that is not tensors and plain containers (which
        ``weights_only=True`` refuses to unpickle).
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path} does not exist")
    if sha256 is not None:
        actual = sha256_of(path)
        if actual != sha256.lower():
            raise CheckpointError(f"{path} has SHA-256 {actual}, expected {sha256.lower()}; refusing to load it")
    check_complete(path)
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path} holds objects other than tensors and plain containers; refusing to unpickle it "
            f"(torch.load weights_only=True): {exc}"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint: {exc}") from None
    if not isinstance(loaded, Mapping):
        raise CheckpointError(f"{path} holds a {type(loaded).__name__}, expected a mapping such as {{'model': ...}}")
    return loaded
