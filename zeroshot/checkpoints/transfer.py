"""Fetching checkpoints: resumable HTTP(S), local files and the Hugging Face Hub; verified, then placed atomically.

A download goes to ``FILE.part`` next to its final place in the cache. An interrupted HTTP transfer keeps the
``.part`` file and the server's validator (ETag or Last-Modified) in ``FILE.part.json``; the next attempt, in
the same call or a later one, asks for the rest with ``Range: bytes=N-`` and ``If-Range``, so a file changed on
the server in between is fetched whole again. Only a complete file whose SHA-256 matches (or, for an entry
without a known hash, is recorded on this first use) is renamed into place; anything else is deleted and
refused, so a partial or wrong file is never loaded.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

from tqdm import tqdm

from zeroshot import __version__
from zeroshot.atomic import write_atomic
from zeroshot.checkpoints.cache import (
    ResolvedCheckpoint,
    cached_path,
    check_complete,
    expected_sha256,
    forget_recorded_sha256,
    locked,
    record_sha256,
    resolve_checkpoint,
    sha256_of,
    write_stamp,
)
from zeroshot.checkpoints.listing import CheckpointEntry, HubLocation, find_entry
from zeroshot.errors import CheckpointError

__all__ = ["REPOSITORY_PATTERNS", "download"]

#: Files of a transformers-format Hub repository that a transformers entry fetches (the .pt files are skipped).
REPOSITORY_PATTERNS = ("*.json", "*.safetensors")
_CHUNK_BYTES = 1 << 20
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class _Interrupted(Exception):
    """A transfer that stopped early; the ``.part`` file is kept for the next attempt."""


def download(
    name_or_entry: str | CheckpointEntry,
    *,
    entries: dict[str, CheckpointEntry] | None = None,
    source: str | os.PathLike[str] | None = None,
    force: bool = False,
    retrust: bool = False,
    progress: bool = True,
    attempts: int = 3,
    timeout_s: float = 60.0,
) -> ResolvedCheckpoint:
    """Download a named checkpoint into the cache, verify it and return where it is.

    Parameters
    ----------
    name_or_entry : str or CheckpointEntry
        An entry of the checkpoint list, or its name.
    entries : dict, optional
        The checkpoint list to look the name up in; default the list in use.
    source : path-like, optional
        Take the file (folder, for a repository entry) from this local path instead of the entry's URL, e.g.
        on a machine without network; it is verified exactly like a download.
    force : bool
        Fetch again even if a copy is cached (the new copy must still match the expected hash).
    retrust : bool
        Forget the hash recorded by an earlier first download before fetching (implies ``force``); for an
        entry whose publisher replaced the file on purpose.
    progress : bool
        Show a progress bar (tqdm, on stderr).
    attempts : int
        HTTP attempts; each after the first resumes from the bytes already received.
    timeout_s : float
        Network timeout per connection and read, in seconds.

    Returns
    -------
    ResolvedCheckpoint
        The verified cached path and its SHA-256.

    Raises
    ------
    CheckpointError
        If the transfer fails or stays incomplete after ``attempts`` (the ``.part`` file is kept so that the
        next call resumes), if the file is truncated or its hash differs from the expected one (nothing is
        placed in the cache), or if ``HF_HUB_OFFLINE`` is set and a Hub file is not in the Hugging Face cache.
    """
    if attempts < 1:
        raise CheckpointError(f"attempts must be at least 1, got {attempts}")
    entry = name_or_entry if isinstance(name_or_entry, CheckpointEntry) else find_entry(name_or_entry, entries)
    final = cached_path(entry)
    final.parent.mkdir(parents=True, exist_ok=True)
    with locked(final):
        if retrust:
            forget_recorded_sha256(entry)
        if final.exists() and not (force or retrust):
            return resolve_checkpoint(entry)
        staging = final.with_name(final.name + ".part")
        if source is not None:
            _remove(staging)
            _copy_local(Path(source), staging, desc=entry.name, progress=progress)
        elif entry.hub is not None:
            _remove(staging)
            if entry.gated:
                require_hub_token(entry)
            _fetch_hub(entry.hub, staging, folder=entry.is_folder, progress=progress, force=force or retrust)
        elif urlparse(entry.url).scheme == "file":
            _remove(staging)
            _copy_local(Path(url2pathname(urlparse(entry.url).path)), staging, desc=entry.name, progress=progress)
        else:
            _fetch_http(entry.url, staging, desc=entry.name, progress=progress, attempts=attempts, timeout_s=timeout_s)
        sha256 = _accept(entry, staging, origin=str(source) if source is not None else entry.url)
        _place(staging, final)
        if expected_sha256(entry)[0] is None:
            record_sha256(entry, sha256, size_bytes=_size_bytes(final))
        write_stamp(final, sha256)
    return ResolvedCheckpoint(entry=entry, path=final, sha256=sha256)


def _accept(entry: CheckpointEntry, staging: Path, *, origin: str) -> str:
    """Check a finished transfer; delete it and raise unless complete and matching the expected hash."""
    try:
        check_complete(staging, filename=entry.filename)
    except CheckpointError as exc:
        _remove(staging)
        raise CheckpointError(f"download of {entry.name!r} from {origin} refused and deleted: {exc}") from None
    actual = sha256_of(staging)
    expected, hash_origin = expected_sha256(entry)
    if expected is not None and actual != expected:
        _remove(staging)
        raise CheckpointError(
            f"download of {entry.name!r} from {origin} refused: SHA-256 {actual}, expected {expected} (from "
            f"{hash_origin}); nothing was placed in the cache. If the publisher replaced the file on purpose, "
            f"check its published hash and update {entry.origin}"
            + (
                f", or trust the new file with `zeroshot checkpoints download --retrust {entry.name}`"
                if entry.sha256 is None
                else ""
            )
        )
    return actual


# --- HTTP(S) with resume ------------------------------------------------------------------------------------------


def _fetch_http(url: str, part: Path, *, desc: str, progress: bool, attempts: int, timeout_s: float) -> None:
    for _ in range(attempts):
        try:
            _http_attempt(url, part, desc=desc, progress=progress, timeout_s=timeout_s)
            _meta_path(part).unlink(missing_ok=True)
            return
        except _Interrupted as exc:
            reason = str(exc)
    raise CheckpointError(
        f"download of {url} stopped early {attempts} time(s) ({reason}); the partial file {part} is kept: "
        "run the same command again to resume"
    )


def _http_attempt(url: str, part: Path, *, desc: str, progress: bool, timeout_s: float) -> None:
    offset, validator = _resume_point(url, part)
    headers = {"User-Agent": f"zeroshot/{__version__}"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        if validator:
            headers["If-Range"] = validator
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout_s)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # the .part is already as long as the file, or the file shrank: restart
            _remove(part)
            raise _Interrupted("server refused the resume range; restarting") from None
        raise CheckpointError(f"download of {url} failed: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise CheckpointError(f"cannot reach {url}: {getattr(exc, 'reason', exc)}") from None
    with response:
        try:
            total = _expected_total(response, offset)
        except _Interrupted:
            _remove(part)  # the server's range does not continue our bytes: start over on the next attempt
            raise
        if response.status != 206:  # the server sent the whole file (no range support, or it changed)
            offset = 0
        validator = response.headers.get("ETag") or response.headers.get("Last-Modified")
        write_atomic(_meta_path(part), json.dumps({"url": url, "validator": validator}).encode())
        with (
            open(part, "ab" if offset else "wb") as stream,
            tqdm(
                total=total,
                initial=offset,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=desc,
                disable=not progress,
            ) as bar,
        ):
            try:
                while chunk := response.read(_CHUNK_BYTES):
                    stream.write(chunk)
                    bar.update(len(chunk))
            except (http.client.HTTPException, ConnectionError, TimeoutError) as exc:
                raise _Interrupted(f"{type(exc).__name__} after {stream.tell()} bytes") from None
    size = part.stat().st_size
    if total is not None and size < total:
        raise _Interrupted(f"connection closed at {size} of {total} bytes")


def _resume_point(url: str, part: Path) -> tuple[int, str | None]:
    """Bytes already received for ``url`` and the validator they were received under; (0, None) to start over."""
    try:
        meta = json.loads(_meta_path(part).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        meta = None
    if meta is None or meta.get("url") != url or not part.is_file():
        _remove(part)
        return 0, None
    return part.stat().st_size, meta.get("validator")


def _expected_total(response: http.client.HTTPResponse, offset: int) -> int | None:
    """Full size of the file from Content-Range (206) or Content-Length (200); None when unknown."""
    if response.status == 206:
        match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
        if match is None or int(match[1]) != offset:
            raise _Interrupted(
                f"server answered the resume request with range {response.headers.get('Content-Range')!r}"
            )
        return None if match[3] == "*" else int(match[3])
    length = response.headers.get("Content-Length")
    return int(length) if length is not None and length.isdigit() else None


def _meta_path(part: Path) -> Path:
    return part.with_name(part.name + ".json")


# --- local files and the Hugging Face Hub -------------------------------------------------------------------------


def _copy_local(source: Path, staging: Path, *, desc: str, progress: bool) -> None:
    """Copy a local file (or folder) to ``staging``; local copies are fast, so they always start over."""
    if source.is_dir():
        shutil.copytree(source, staging)
        return
    if not source.is_file():
        raise CheckpointError(f"checkpoint source {source} does not exist")
    total = source.stat().st_size
    with (
        open(source, "rb") as src,
        open(staging, "wb") as dst,
        tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, disable=not progress) as bar,
    ):
        while chunk := src.read(_CHUNK_BYTES):
            dst.write(chunk)
            bar.update(len(chunk))


def hub_offline() -> bool:
    """Whether Hugging Face Hub access is switched off (``HF_HUB_OFFLINE``), read now rather than at import."""
    value = os.environ.get("HF_HUB_OFFLINE", "").strip().upper()
    return value in {"1", "ON", "YES", "TRUE"}


#: Environment variables huggingface_hub reads a token from, in its order.
TOKEN_VARIABLES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")


def require_hub_token(entry: CheckpointEntry) -> None:
    """Refuse to download a gated entry without a Hub token, naming the page where its licence is accepted.

    A token comes from ``HF_TOKEN`` / ``HUGGING_FACE_HUB_TOKEN`` or from ``hf auth login`` (huggingface_hub's
    stored token). Without one the Hub answers a gated repository with a bare 401; this says what to do instead.

    Raises
    ------
    CheckpointError
        When no token is found (and the Hub is not offline: a cached copy then needs none).
    """
    if hub_offline() or any(os.environ.get(name) for name in TOKEN_VARIABLES):
        return
    import huggingface_hub

    if huggingface_hub.get_token():
        return
    raise CheckpointError(
        f"{entry.name} ({entry.hub}) is gated: its weights are under the {entry.licence} licence, which you accept "
        f"on {entry.licence_page} (logged in); then set HF_TOKEN to a Hugging Face access token (or run "
        f"`hf auth login`) and download again. Without access, pass a local copy with `zeroshot checkpoints "
        f"download {entry.name} --from PATH`"
    )


def _fetch_hub(hub: HubLocation, staging: Path, *, folder: bool, progress: bool, force: bool) -> None:
    """Fetch through huggingface_hub (its cache, tokens, resume and offline mode), then copy into ``staging``.

    A file entry fetches one file. A folder entry fetches the repository's ``*.json`` and ``*.safetensors``
    (a transformers repository) or, when the URL names a folder in the repository (an nnInteractive
    trained-model folder), every file under that folder; ``staging`` then holds the folder's content.

    huggingface_hub does not reliably check SHA-256 itself (huggingface_hub issue #3643), so the caller does.
    Copies, not hard links: a file altered in one cache must not alter the other, so that ``force`` (which also
    bypasses the Hugging Face cache) can repair either.
    """
    import huggingface_hub

    offline = hub_offline()
    try:
        with _hub_progress(progress):
            if not folder:
                local = huggingface_hub.hf_hub_download(
                    hub.repo_id, hub.filename, revision=hub.revision, local_files_only=offline, force_download=force
                )
                _copy_resolved(Path(local), staging)
            else:
                # In huggingface_hub's patterns `*` also matches `/`: "FOLDER/*" is everything under FOLDER.
                patterns = [f"{hub.filename}/*"] if hub.filename else list(REPOSITORY_PATTERNS)
                local = huggingface_hub.snapshot_download(
                    hub.repo_id,
                    revision=hub.revision,
                    allow_patterns=patterns,
                    local_files_only=offline,
                    force_download=force,
                )
                root = Path(local) / hub.filename if hub.filename else Path(local)
                files = sorted(p for p in root.rglob("*") if p.is_file())
                if not files:
                    raise FileNotFoundError(f"no files under {hub.filename or '/'} in {hub.repo_id}")
                for file in files:
                    _copy_resolved(file, staging / file.relative_to(root))
    except Exception as exc:  # huggingface_hub raises many types (HTTP, offline, not found, gated); name them all
        _remove(staging)
        if offline:
            raise CheckpointError(
                f"HF_HUB_OFFLINE is set and {hub} is not in the Hugging Face cache; unset HF_HUB_OFFLINE to "
                "download it, or pass a local copy with `zeroshot checkpoints download NAME --from PATH`"
            ) from exc
        if isinstance(exc, huggingface_hub.errors.GatedRepoError):
            raise CheckpointError(
                f"{hub} is gated and this Hub token has no access yet: accept its licence on "
                f"{hub.page} (logged in as the token's owner), then download again"
            ) from exc
        raise CheckpointError(f"cannot download {hub}: {type(exc).__name__}: {exc}") from exc


@contextlib.contextmanager
def _hub_progress(enabled: bool) -> Iterator[None]:
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    was_disabled = are_progress_bars_disabled()
    if not enabled:
        disable_progress_bars()
    try:
        yield
    finally:
        if not enabled and not was_disabled:
            enable_progress_bars()


def _copy_resolved(source: Path, target: Path) -> None:
    """Copy the file ``source`` points to (the Hub cache links snapshots to blobs) to ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source.resolve(), target)


# --- placement ----------------------------------------------------------------------------------------------------


def _place(staging: Path, final: Path) -> None:
    """Rename the verified ``staging`` onto ``final`` (atomic for a file; a folder replaces the old one whole)."""
    if staging.is_dir() and final.exists():
        old = final.with_name(final.name + ".old")
        _remove(old)
        os.replace(final, old)
        os.replace(staging, final)
        _remove(old)
    else:
        os.replace(staging, final)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
    if path.suffix == ".part":
        _meta_path(path).unlink(missing_ok=True)


def _size_bytes(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size
