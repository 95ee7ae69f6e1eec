"""Log segments: the append-only JSON Lines file each writer (a process, a Ray actor) adds its records to.

One record per line: a finished row (its result row, per-slice table and segmentation info) or one prompt set.
A record is written with one ``write`` call and ends with a newline, so the operating system holds it as soon as
the call returns (a ``kill -9`` of the writer loses nothing written); a flusher thread ``fdatasync``'s the file when
a record of another case arrives (the previous case is finished), and the writer does when it closes, so a crash of
the *machine* loses at most the case in progress and the one whose flush was under way.
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


def slice_block(slices: Mapping[str, Any]) -> np.ndarray:
    """The per-slice table as one float64 ``(len(SLICE_COLUMNS), n)`` block (``n = 0`` for an empty table)."""
    if not slices:
        return np.empty((len(SLICE_COLUMNS), 0))
    return np.asarray([slices[name] for name in SLICE_COLUMNS], dtype=np.float64)


def encode_slices(slices: Mapping[str, Any] | np.ndarray) -> str:
    """The per-slice table (or its :func:`slice_block`) as base64 float64 ``(columns, n)``; "" for an empty table."""
    block = slices if isinstance(slices, np.ndarray) else slice_block(slices)
    return base64.b64encode(block.tobytes()).decode("ascii") if block.size else ""


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

    Attributes
    ----------
    contents : SegmentContents
        What was written, as :func:`read_segment` would read it back (rows as JSON gives them, per-slice blocks
        decoded): its writer compacts the segment from memory instead of parsing the file again.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.records = 0
        self.rows = 0
        self._fd: int | None = None
        self._lock = threading.Lock()  # appends
        self._fd_lock = threading.Lock()  # fsync against close
        self._case: tuple[str, str] | None = None
        self._case_done = threading.Event()
        self._closing = False
        self._flusher: threading.Thread | None = None
        self.contents = SegmentContents([], [], [], [], [], [], torn=False)

    def append_row(self, record: RowRecord) -> None:
        """Append one row record."""
        block = slice_block(record.slices)
        row = {name: _as_read_back(value) for name, value in record.row.items()}
        info = json.dumps(dict(record.info), default=json_default)
        key = record.key.astuple()
        # The line is assembled around the base64 blob, which needs no escaping: json.dumps would copy and scan it.
        line = (
            f'{{"kind": "{ROW_KIND}", "key": {_dumps(list(key))}, "row": {_dumps(row)}, "info": {_dumps(info)}, '
            f'"slices": "{encode_slices(block)}"}}\n'
        )
        self._append_line(line.encode(), (record.key.sequence, record.key.case_id))
        with self._lock:
            self.rows += 1
            self.contents.keys.append(key)
            self.contents.rows.append(row)
            self.contents.infos.append(info)
            self.contents.slices.append(block)

    def append_prompts(self, key: PromptKey, text: str) -> None:
        """Append one prompt set (the JSON of :func:`zeroshot.prompts.serialise.prompts_to_json`)."""
        document = {"kind": PROMPTS_KIND, "key": list(key.astuple()), "prompts": text}
        self._append_line((_dumps(document) + "\n").encode(), (key.sequence, key.case_id))
        with self._lock:
            self.contents.prompt_keys.append(key.astuple())
            self.contents.prompts.append(text)

    def sync(self) -> None:
        """``fsync`` what was written, now (a Ray actor calls it after each case)."""
        with self._fd_lock:
            if self._fd is not None:
                os.fdatasync(self._fd)

    def close(self) -> None:
        """Stop the flusher, ``fsync`` and close the segment."""
        with self._lock:
            if self._fd is None:
                return
            self._closing = True
            self._case_done.set()
            if self._flusher is not None:
                self._flusher.join()
            with self._fd_lock:
                os.fdatasync(self._fd)
                os.close(self._fd)
                self._fd = None

    def _append_line(self, line: bytes, case: tuple[str, str]) -> None:
        with self._lock:
            if self._fd is None:
                self._open()
            elif case != self._case:
                self._case_done.set()  # the previous case is finished: the flusher makes it durable
            self._case = case
            view = memoryview(line)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            self.records += 1

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND
        self._fd = os.open(self.path, flags, 0o666 & ~current_umask())
        sync_folder(self.path.parent)  # the segment's name is durable before any record relies on it
        self._flusher = threading.Thread(target=self._flush, name="zeroshot-log-flusher", daemon=True)
        self._flusher.start()

    def _flush(self) -> None:
        """``fdatasync`` the segment after each finished case, off the writer's path (the syscall waits on disk)."""
        while not self._closing:
            self._case_done.wait()
            self._case_done.clear()
            if self._closing:
                return
            with self._fd_lock:
                if self._fd is not None:
                    os.fdatasync(self._fd)  # the data and the size; timestamps need not be durable


def _dumps(value: Any) -> str:
    # NaN and infinity as the NaN/Infinity tokens Python reads back (not strict JSON: rows hold them).
    return json.dumps(value, default=json_default, allow_nan=True)


def _as_read_back(value: Any) -> Any:
    """``value`` as a JSON round trip gives it back (numpy scalars, tuples, objects: through JSON)."""
    if value is None or type(value) in (str, int, float, bool):
        return value
    return json.loads(json.dumps(value, default=json_default))


@dataclass(frozen=True, eq=False)
class SegmentContents:
    """The complete records of one segment, column by column (what compaction and readers need).

    Attributes
    ----------
    keys : list of tuple
        Row keys (:data:`~zeroshot.store.records.KeyTuple`), in write order.
    rows, infos, slices : list
        Per row: the row mapping, the info as JSON text, the per-slice blob (:func:`encode_slices`) or block
        (:func:`slice_block`).
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
