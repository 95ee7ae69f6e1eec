"""Log segments: the append-only JSON Lines file each writer (a process, a Ray actor) adds its records to.

One record per line: a finished row (its result row, per-slice table and segmentation info) or one prompt set.
A record is written with one ``write`` call and ends with a newline, so the operating system holds it as soon as
the call returns (a ``kill -9`` of the writer loses nothing written); the file is ``fsync``'d when a record of
another case arrives and when the writer closes, so a crash of the *machine* loses at most the case in progress.
A reader takes only newline-terminated lines: a record torn by a kill in the middle of its write is the last
bytes of its segment, has no newline, and is dropped (its row is missing, so a resumed run makes it again).

The per-slice table travels as one base64 blob of float64 values, ``(len(SLICE_COLUMNS), n)`` in C order (its
columns are whole numbers below 2**53 and measurements, so float64 holds both exactly): encoding it costs a few
microseconds where JSON's float formatting of 480 numbers costs a hundred.
"""

from __future__ import annotations

import base64
import json
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zeroshot.atomic import current_umask
from zeroshot.errors import ConfigError
from zeroshot.store.records import PromptKey, RowRecord, json_default
from zeroshot.store.schema import SLICE_COLUMNS

__all__ = ["LogWriter", "SegmentContents", "decode_slices", "encode_slices", "read_segment"]

SEGMENT_SUFFIX = ".jsonl"
ROW_KIND = "row"
PROMPTS_KIND = "prompts"


def encode_slices(slices: Mapping[str, Any]) -> str:
    """The per-slice table as base64 float64 ``(columns, n)``; "" for an empty table."""
    if not slices:
        return ""
    block = np.asarray([slices[name] for name in SLICE_COLUMNS], dtype=np.float64)
    return base64.b64encode(block.tobytes()).decode("ascii")


def decode_slices(blob: str) -> np.ndarray:
    """The ``(len(SLICE_COLUMNS), n)`` float64 block of :func:`encode_slices` (``n = 0`` for "")."""
    values = np.frombuffer(base64.b64decode(blob), dtype=np.float64) if blob else np.empty(0)
    return values.reshape(len(SLICE_COLUMNS), -1)


class LogWriter:
    """Append records to a new segment file (created on the first record; never reopened once closed).

    Thread safe: the local executor writes prompts from its reading thread and rows from its main thread.

    Parameters
    ----------
    path : path
        The segment to create (its folder is created); an existing file is an error (each writer has its own).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.records = 0
        self.rows = 0
        self._fd: int | None = None
        self._lock = threading.Lock()
        self._case: tuple[str, str] | None = None
        self._unsynced = False

    def append_row(self, record: RowRecord) -> None:
        """Append one row record."""
        document = {
            "kind": ROW_KIND,
            "key": list(record.key.astuple()),
            "row": dict(record.row),
            "info": json.dumps(dict(record.info), default=json_default),
            "slices": encode_slices(record.slices),
        }
        self._append(document, (record.key.sequence, record.key.case_id))
        self.rows += 1

    def append_prompts(self, key: PromptKey, text: str) -> None:
        """Append one prompt set (the JSON of :func:`zeroshot.prompts.serialise.prompts_to_json`)."""
        document = {"kind": PROMPTS_KIND, "key": list(key.astuple()), "prompts": text}
        self._append(document, (key.sequence, key.case_id))

    def sync(self) -> None:
        """``fsync`` what was written (called when a case is finished)."""
        with self._lock:
            self._sync_locked()

    def close(self) -> None:
        """``fsync`` and close the segment."""
        with self._lock:
            if self._fd is None:
                return
            self._sync_locked()
            os.close(self._fd)
            self._fd = None

    def _append(self, document: dict[str, Any], case: tuple[str, str]) -> None:
        line = (json.dumps(document, default=json_default, allow_nan=True) + "\n").encode()
        with self._lock:
            if self._fd is None:
                self._open()
            elif case != self._case:
                self._sync_locked()  # the previous case is finished: make it durable before starting another
            self._case = case
            view = memoryview(line)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            self.records += 1
            self._unsynced = True

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND
        self._fd = os.open(self.path, flags, 0o666 & ~current_umask())
        sync_folder(self.path.parent)  # the segment's name is durable before any record relies on it

    def _sync_locked(self) -> None:
        if self._fd is not None and self._unsynced:
            os.fdatasync(self._fd)  # the data and the size; timestamps need not be durable
            self._unsynced = False


@dataclass(frozen=True, eq=False)
class SegmentContents:
    """The complete records of one segment, column by column (what compaction and readers need).

    Attributes
    ----------
    keys : list of tuple
        Row keys (:data:`~zeroshot.store.records.KeyTuple`), in write order.
    rows, infos, slices : list
        Per row: the row mapping, the info as JSON text, the per-slice blob (:func:`encode_slices`).
    prompt_keys, prompts : list
        Per prompt set: its key tuple and its JSON text.
    torn : bool
        Whether the segment ended in a torn record (dropped).
    """

    keys: list[tuple]
    rows: list[dict[str, Any]]
    infos: list[str]
    slices: list[str]
    prompt_keys: list[tuple]
    prompts: list[str]
    torn: bool


def read_segment(path: str | Path) -> SegmentContents:
    """Read the complete records of a segment; a last line without its newline (a torn write) is dropped.

    Raises
    ------
    ConfigError
        A complete line that is not a record (the file was changed by something other than zeroshot).
    """
    path = Path(path)
    data = path.read_bytes()
    lines = data.split(b"\n")
    torn = lines[-1] != b""
    contents = SegmentContents([], [], [], [], [], [], torn)
    for number, line in enumerate(lines[:-1], start=1):
        try:
            document = json.loads(line)
            kind = document["kind"]
            if kind == ROW_KIND:
                contents.keys.append(tuple(document["key"]))
                contents.rows.append(document["row"])
                contents.infos.append(document["info"])
                contents.slices.append(document["slices"])
            elif kind == PROMPTS_KIND:
                contents.prompt_keys.append(tuple(document["key"]))
                contents.prompts.append(document["prompts"])
            else:
                raise KeyError(kind)
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"{path}, line {number}: not a zeroshot log record ({type(exc).__name__}: {exc}); the file was "
                "changed by something other than zeroshot. Move it out of the run to drop its rows, which a resumed "
                "run then makes again"
            ) from exc
    return contents


def sync_folder(folder: str | Path) -> None:
    """``fsync`` a folder so that files created, renamed or removed in it stay so after a crash of the machine."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on folders; the rename itself is still atomic
        pass
    finally:
        os.close(fd)
