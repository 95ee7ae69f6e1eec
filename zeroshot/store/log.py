"""Log segments: the append-only file of framed records each writer (a process, a Ray actor) adds its records to.

A record is a frame: a 12-byte header (the magic ``b"zsr1"``, the payload's length and its CRC-32, both unsigned
32-bit little endian) and the payload, a pickled tuple of plain Python values (str, int, float, bool, None, lists,
tuples, dicts, bytes)::

    ("row", key, columns, values, info, slices)   one finished row: its KeyTuple; its column names, or None for the
                                                   columns of the row before it; its values in that order; the
                                                   segmentation info as JSON text; the per-slice block as bytes
    ("prompts", key, text)                         one prompt set: (sequence, case_id, strategy, seed), its JSON

Why not JSON Lines: formatting a row's 34 names and values as JSON (8-15 microseconds) and its per-slice block as
base64 (4-5.5) cost more than the rest of a row's write; pickling the same values costs about 1.5 and the checksum
as much (measured per row on a 2-core VM). The pickles are read by an unpickler that refuses every global, so a
record can hold plain values only (a file changed by someone else cannot run code); protocol 5 reads the same on
every Python since 3.8.

A record is written with one ``write`` call, so the operating system holds it as soon as the call returns (a
``kill -9`` of the writer loses nothing written); a flusher thread ``fdatasync``'s the file when a record of another
case arrives (the previous case is finished), and the writer does when it closes, so a crash of the *machine* loses
at most the case in progress and the one whose flush was under way.
A reader takes only whole records whose checksum holds: a record torn by a kill in the middle of its write is the
last bytes of its segment and is dropped (its row is missing, so a resumed run makes it again), as are a last record
whose checksum fails and a tail of zeros (what a crash of the machine can leave past the last flush). A bad record
*before* the last one is an error naming the file and the record.

The per-slice table travels as one block of float64 values, ``(len(SLICE_COLUMNS), n)`` in C order: its columns
are whole numbers below 2**53 and measurements, so float64 holds both exactly.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import os
import pickle
import struct
import threading
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zeroshot.atomic import current_umask
from zeroshot.errors import ConfigError
from zeroshot.store.records import PromptKey, RowRecord, json_default
from zeroshot.store.schema import SLICE_COLUMNS

__all__ = [
    "LogWriter",
    "SegmentContents",
    "read_segment",
    "segment_files",
    "segment_path",
    "segment_stem",
    "slice_block",
]

SEGMENT_SUFFIX = ".log"
#: Segments of the store's first release, JSON Lines: read (and compacted) where a run has them, never written.
JSON_LINES_SUFFIX = ".jsonl"
ROW_KIND = "row"
PROMPTS_KIND = "prompts"
MAGIC = b"zsr1"
#: A record's header: magic, payload length, payload CRC-32.
HEADER = struct.Struct("<4sII")
#: Pickle protocol 5: Python 3.8 and later read it.
PROTOCOL = 5
#: Types a value reads back as itself (anything else is stored as its JSON round trip, as the rows files did).
_PLAIN_TYPES = frozenset((str, int, float, bool, type(None)))


def _json_encoder() -> Callable[[Any], str]:
    """JSON text of a value: NaN and infinity as the tokens Python reads back, other objects by ``json_default``.

    ``json.dumps`` builds a new encoder on every call, which costs as much as encoding a row's small info, so the C
    encoder is made once (the pure-Python one where the C accelerator is missing).
    """
    make = json.encoder.c_make_encoder
    if make is None:  # pragma: no cover - CPython always has the C accelerator
        return json.JSONEncoder(default=json_default, allow_nan=True).encode
    encode = make(None, json_default, json.encoder.encode_basestring_ascii, None, ": ", ", ", False, False, True)
    return lambda value: "".join(encode(value, 0))


_encode = _json_encoder()


def segment_path(log: Path, stem: str) -> Path:
    """The segment of ``stem`` in the folder ``log`` (its JSON Lines file, where the store's first release wrote it)."""
    path = log / f"{stem}{SEGMENT_SUFFIX}"
    if not path.exists():
        older = log / f"{stem}{JSON_LINES_SUFFIX}"
        if older.exists():
            return older
    return path


def segment_stem(path: Path) -> str:
    """The stem of a segment file (``<stem>.log`` or ``<stem>.jsonl``)."""
    for suffix in (SEGMENT_SUFFIX, JSON_LINES_SUFFIX):
        if path.name.endswith(suffix):
            return path.name[: -len(suffix)]
    raise ValueError(f"{path} is not a log segment")


def segment_files(log: Path) -> list[Path]:
    """The segments in the folder ``log``, in name order (hidden temporary files excluded)."""
    found = [p for suffix in (SEGMENT_SUFFIX, JSON_LINES_SUFFIX) for p in log.glob(f"*{suffix}")]
    return sorted(p for p in found if not p.name.startswith("."))


def slice_block(slices: Mapping[str, Any]) -> np.ndarray:
    """The per-slice table as one float64 ``(len(SLICE_COLUMNS), n)`` block (``n = 0`` for an empty table)."""
    if not slices:
        return np.empty((len(SLICE_COLUMNS), 0))
    return np.array([slices[name] for name in SLICE_COLUMNS], dtype=np.float64)


def _plain(values: Sequence[Any]) -> Any:
    """``values`` if each is a plain scalar, else their JSON round trip (numpy scalars, tuples, objects)."""
    if _PLAIN_TYPES.issuperset(map(type, values)):
        return values
    return json.loads(_encode(list(values)))


@dataclass(frozen=True, eq=False)
class SegmentContents:
    """The complete records of one segment, column by column (what compaction and readers need).

    Attributes
    ----------
    keys : list of tuple
        Row keys (:data:`~zeroshot.store.records.KeyTuple`), in write order.
    columns, values : list
        Per row: its column names (a tuple shared by consecutive rows that have the same) and its values in that
        order, as JSON reads them back.
    infos : list of str
        Per row: the segmentation info as JSON text.
    slices : list of ndarray
        Per row: the per-slice block (:func:`slice_block`).
    prompt_keys, prompts : list
        Per prompt set: its key tuple and its JSON text.
    torn : bool
        Whether the segment ended in a torn record (dropped).
    """

    keys: list[tuple]
    columns: list[tuple[str, ...]]
    values: list[list[Any]]
    infos: list[str]
    slices: list[np.ndarray]
    prompt_keys: list[tuple]
    prompts: list[str]
    torn: bool

    @classmethod
    def empty(cls, *, torn: bool = False) -> SegmentContents:
        """Contents without records."""
        return cls([], [], [], [], [], [], [], torn)

    def row(self, index: int) -> dict[str, Any]:
        """The result row of record ``index`` as a mapping (column -> value)."""
        return dict(zip(self.columns[index], self.values[index], strict=True))


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
        What was written, as :func:`read_segment` reads it back: its writer compacts the segment from memory
        instead of reading the file again.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None
        self._lock = threading.Lock()  # appends
        self._fd_lock = threading.Lock()  # fsync against close
        self._case: tuple[str, str] | None = None
        self._case_done = threading.Event()
        self._closing = False
        self._flusher: threading.Thread | None = None
        self._columns: tuple[str, ...] | None = None
        self.contents = SegmentContents.empty()

    @property
    def rows(self) -> int:
        """Rows written so far (what the store counts to roll the segment into parts)."""
        return len(self.contents.keys)

    @property
    def records(self) -> int:
        """Records written so far, rows and prompt sets."""
        return len(self.contents.keys) + len(self.contents.prompt_keys)

    def append_row(self, record: RowRecord) -> None:
        """Append one row record."""
        row = record.row
        columns = tuple(row)
        values = _plain(list(row.values()))
        key = tuple(_plain(record.key.astuple()))
        block = slice_block(record.slices)
        info = _encode(dict(record.info))
        with self._lock:
            shared = columns == self._columns
            if shared:
                columns = self._columns  # one tuple for consecutive rows of the same columns
            self._columns = columns
            payload = (ROW_KIND, key, None if shared else columns, values, info, block.tobytes())
            self._append(payload, (key[0], key[1]))
            contents = self.contents
            contents.keys.append(key)
            contents.columns.append(columns)
            contents.values.append(values)
            contents.infos.append(info)
            contents.slices.append(block)

    def append_prompts(self, key: PromptKey, text: str) -> None:
        """Append one prompt set (the JSON of :func:`zeroshot.prompts.serialise.prompts_to_json`)."""
        values = tuple(_plain(key.astuple()))
        with self._lock:
            self._append((PROMPTS_KIND, values, str(text)), (values[0], values[1]))
            self.contents.prompt_keys.append(values)
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

    def _append(self, record: tuple, case: tuple[str, str]) -> None:
        """Write one record in one ``write`` call (the caller holds the lock)."""
        payload = pickle.dumps(record, protocol=PROTOCOL)
        frame = HEADER.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload
        if self._fd is None:
            self._open()
        elif case != self._case:
            self._case_done.set()  # the previous case is finished: the flusher makes it durable
        self._case = case
        view = memoryview(frame)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]

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


class _PlainUnpickler(pickle.Unpickler):
    """Unpickles plain values only: a record naming any class or function is refused, never imported."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"a log record holds plain values only, not {module}.{name}")


def read_segment(path: str | Path) -> SegmentContents:
    """Read the whole records of a segment; a torn last record (or a tail of zeros) is dropped.

    Raises
    ------
    ConfigError
        A record before the last one that is not a zeroshot record or fails its checksum (the file was changed
        by something other than zeroshot, or damaged).
    """
    path = Path(path)
    if path.suffix == JSON_LINES_SUFFIX:
        return _read_json_lines(path)
    data = memoryview(path.read_bytes())
    contents = SegmentContents.empty()
    columns: tuple[str, ...] | None = None
    position, number = 0, 0
    while position < len(data):
        number += 1
        end = position + HEADER.size
        magic, length, checksum = HEADER.unpack(data[position:end]) if end <= len(data) else (b"", 0, 0)
        payload = data[end : end + length]
        last = end + length >= len(data)
        problem = _frame_problem(magic, payload, length, checksum)
        if problem is not None:
            # Torn by a kill, or zeros never written (a crash of the machine): the records before it stand.
            if last or not bytes(data[position:]).strip(b"\0"):
                return dataclasses.replace(contents, torn=True)
            raise _damaged(path, number, position, problem)
        try:
            record = _PlainUnpickler(io.BytesIO(payload)).load()
            kind = record[0]
            if kind == ROW_KIND:
                _, key, names, values, info, block = record
                columns = tuple(names) if names is not None else columns
                if columns is None or len(values) != len(columns):
                    raise ValueError(f"{len(values)} values for the columns {list(columns or ())}")
                contents.keys.append(tuple(key))
                contents.columns.append(columns)
                contents.values.append(values)
                contents.infos.append(str(info))
                contents.slices.append(np.frombuffer(block, dtype=np.float64).reshape(len(SLICE_COLUMNS), -1))
            elif kind == PROMPTS_KIND:
                _, key, text = record
                contents.prompt_keys.append(tuple(key))
                contents.prompts.append(str(text))
            else:
                raise KeyError(kind)
        except (pickle.UnpicklingError, ValueError, KeyError, TypeError, IndexError, EOFError) as exc:
            raise _damaged(path, number, position, f"{type(exc).__name__}: {exc}") from exc
        position = end + length
    return contents


def _frame_problem(magic: bytes, payload: memoryview, length: int, checksum: int) -> str | None:
    """Why a frame is not a whole record, or ``None``."""
    if magic != MAGIC:
        return "no record header"
    if len(payload) < length:
        return "the record is cut short"
    if zlib.crc32(payload) != checksum:
        return "the checksum fails"
    return None


def _damaged(path: Path, number: int, position: int, problem: str) -> ConfigError:
    return ConfigError(
        f"{path}, record {number} (byte {position}): not a zeroshot log record ({problem}); the file was changed by "
        "something other than zeroshot or damaged. Move it out of the run to drop its rows, which a resumed run "
        "then makes again"
    )


def _read_json_lines(path: Path) -> SegmentContents:
    """A segment of the store's first release: one JSON document per line; a last line without newline is torn.

    Lines: ``{"kind": "row", "key": [...], "row": {...}, "info": "<JSON>", "slices": "<base64 of the block>"}`` and
    ``{"kind": "prompts", "key": [...], "prompts": "<JSON>"}``.
    """
    lines = path.read_bytes().split(b"\n")
    contents = SegmentContents.empty(torn=lines[-1] != b"")
    for number, line in enumerate(lines[:-1], start=1):
        try:
            document = json.loads(line)
            if document["kind"] == ROW_KIND:
                row = document["row"]
                blob = base64.b64decode(document["slices"])
                contents.keys.append(tuple(document["key"]))
                contents.columns.append(tuple(row))
                contents.values.append(list(row.values()))
                contents.infos.append(str(document["info"]))
                contents.slices.append(np.frombuffer(blob, dtype=np.float64).reshape(len(SLICE_COLUMNS), -1))
            elif document["kind"] == PROMPTS_KIND:
                contents.prompt_keys.append(tuple(document["key"]))
                contents.prompts.append(str(document["prompts"]))
            else:
                raise KeyError(document["kind"])
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
