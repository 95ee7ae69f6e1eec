"""The run store: every row and prompt set of a run, in a few files whatever the number of rows.

Layout, below the run directory (see ``docs/run-store.md`` for what a kill at each instant does)::

    store/log/<stem>.jsonl             one append-only segment per writer (process or Ray actor) and session
    store/parts/<stem>.{slices,prompts,rows}.parquet   a closed segment, compacted (:mod:`zeroshot.store.parts`)
    store/prompt-masks/...             mask prompts of runs written before they were inline in their prompt set
                                       (PNG files; read, never written)

A writer appends each record to its own segment (:mod:`zeroshot.store.log`); it rolls the segment into parts
when it holds :attr:`RunStore.rotate_rows` rows and when the writer closes, so a run holds a few segments at any
time and about three files per ``rotate_rows`` rows. The process that holds the run's lock compacts every
segment left by killed writers before it plans (:meth:`RunStore.compact_all`).

Stems sort in the order the records were written: ``<session>-<UTC time>-<host>-<pid>-<n>``, where the session is
the invocation number ``zeroshot eval`` records in ``run.json``. Where one row was written twice (``--retry-failed``
makes a failed row again) the record of the later stem wins, and within a stem the later record.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import socket
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from zeroshot.store.log import SEGMENT_SUFFIX, LogWriter, read_segment
from zeroshot.store.parts import (
    INFO_COLUMN,
    NSLICES_COLUMN,
    PROMPT_KEY_COLUMNS,
    Chunk,
    chunk_of_segment,
    compact_segment,
    part_paths,
    read_chunk,
)
from zeroshot.store.records import KeyTuple, PromptKey, RowKey, RowRecord
from zeroshot.store.schema import ROUND, SLICE_COLUMNS

__all__ = ["KeySet", "RunStore"]

STORE = "store"
LOG = "log"
PARTS = "parts"
PROMPT_MASKS = "prompt-masks"
ROWS_PART_SUFFIX = ".rows.parquet"
#: Rows a writer appends to one segment before rolling it into parts (it keeps them in memory to compact them
#: without reading the file again: about 70 MB at 60 slices a row).
ROTATE_ROWS = 10_000
#: Key columns in :data:`~zeroshot.store.records.KeyTuple` order.
KEY_COLUMNS = ("sequence", "case_id", "model", "strategy", "seed", ROUND)


class KeySet:
    """The row keys present in a store: cheap to build for a million rows (plain tuples inside).

    Supports ``key in keys`` (a :class:`RowKey` or its :data:`~zeroshot.store.records.KeyTuple`: planning a million
    rows asks with tuples and makes keys only for the rows missing), ``len(keys)`` and iteration (:class:`RowKey`
    objects, made as iterated).
    """

    def __init__(self, tuples: Iterable[KeyTuple] = ()) -> None:
        self._tuples = frozenset(tuples)

    def __contains__(self, key: object) -> bool:
        return (key.astuple() if isinstance(key, RowKey) else key) in self._tuples

    def __len__(self) -> int:
        return len(self._tuples)

    @property
    def tuples(self) -> frozenset[KeyTuple]:
        """The keys as :data:`~zeroshot.store.records.KeyTuple` (what planning a million rows asks)."""
        return self._tuples

    def __iter__(self) -> Iterator[RowKey]:
        return (RowKey.from_tuple(values) for values in self._tuples)

    def first_shared(self, other: KeySet) -> RowKey | None:
        """The first key (in table order) present in both sets, or ``None``."""
        shared = self._tuples & other._tuples
        return min(map(RowKey.from_tuple, shared)) if shared else None

    def without(self, keys: Iterable[RowKey]) -> KeySet:
        """These keys less ``keys``."""
        return KeySet(self._tuples - {key.astuple() for key in keys})


class RunStore:
    """The records of one run directory (see the module docstring).

    Parameters
    ----------
    root : path
        The run directory.
    session : int
        The invocation writing through this store (orders its segments after earlier invocations').
    rotate_rows : int
        Rows per segment before it is rolled into parts.

    Notes
    -----
    Each process writes its own segment: a store pickled into another process (a Ray actor) opens a new one there.
    Only the process holding the run's lock may call :meth:`compact_all`.
    """

    def __init__(self, root: str | Path, *, session: int = 0, rotate_rows: int = ROTATE_ROWS) -> None:
        self.root = Path(root)
        self.session = session
        self.rotate_rows = rotate_rows
        self._writer: LogWriter | None = None
        self._writer_pid = -1
        self._serial = 0
        self._lock = threading.Lock()
        self._prompts: dict[tuple, str] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"root": self.root, "session": self.session, "rotate_rows": self.rotate_rows}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["root"], session=state["session"], rotate_rows=state["rotate_rows"])

    @property
    def folder(self) -> Path:
        """``store/``."""
        return self.root / STORE

    @property
    def log_folder(self) -> Path:
        """``store/log/``: the segments."""
        return self.folder / LOG

    @property
    def parts_folder(self) -> Path:
        """``store/parts/``: compacted segments."""
        return self.folder / PARTS

    def prompt_mask_dir(self, key: PromptKey) -> Path:
        """Where a run written before mask prompts were inline kept those of ``key`` (PNG files its JSON names)."""
        from zeroshot.store.paths import path_component

        return self.folder.joinpath(
            PROMPT_MASKS,
            path_component(key.sequence),
            path_component(key.case_id),
            path_component(key.strategy),
            f"seed{key.seed}.masks",
        )

    # ------------------------------------------------------------------------------------------------ writing
    def append_row(self, record: RowRecord) -> None:
        """Append a finished row to this process's segment (rolled into parts every ``rotate_rows`` rows)."""
        with self._lock:
            writer = self._current_writer()
            writer.append_row(record)
            if writer.rows >= self.rotate_rows:
                self._close_writer(compact=True)

    def append_prompts(self, key: PromptKey, text: str) -> None:
        """Append a prompt set (and remember it, for :meth:`prompts` in this process)."""
        with self._lock:
            self._current_writer().append_prompts(key, text)
            if self._prompts is not None:
                self._prompts[key.astuple()] = text

    def sync(self) -> None:
        """``fsync`` this process's segment (a case is finished)."""
        with self._lock:
            if self._writer is not None and self._writer_pid == os.getpid():
                self._writer.sync()

    def close(self, *, compact: bool = True) -> None:
        """Close this process's segment and (by default) roll it into parts."""
        with self._lock:
            self._close_writer(compact=compact)

    def _current_writer(self) -> LogWriter:
        if self._writer is None or self._writer_pid != os.getpid():
            self._writer_pid = os.getpid()
            self._serial += 1
            self._writer = LogWriter(self.log_folder / f"{self._new_stem()}{SEGMENT_SUFFIX}")
        return self._writer

    def _close_writer(self, *, compact: bool) -> None:
        writer, self._writer = self._writer, None
        if writer is None or self._writer_pid != os.getpid():
            return
        writer.close()
        if compact and writer.records:
            stem = writer.path.name[: -len(SEGMENT_SUFFIX)]
            compact_segment(self.parts_folder, self.log_folder, stem, writer.contents)

    def _new_stem(self) -> str:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%f")
        host = re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname())[:40] or "host"
        return f"{self.session:04d}-{stamp}-{host}-{os.getpid()}-{self._serial}"

    # ---------------------------------------------------------------------------------------------- compaction
    def stems(self) -> list[str]:
        """Every stem with records (a segment, or committed parts), in write order."""
        stems = set()
        if self.log_folder.is_dir():
            stems |= {p.name[: -len(SEGMENT_SUFFIX)] for p in self.log_folder.glob(f"*{SEGMENT_SUFFIX}")}
        if self.parts_folder.is_dir():
            stems |= {p.name[: -len(ROWS_PART_SUFFIX)] for p in self.parts_folder.glob(f"*{ROWS_PART_SUFFIX}")}
        return sorted(s for s in stems if not s.startswith("."))

    def segments(self) -> list[Path]:
        """The segments present (not yet compacted)."""
        if not self.log_folder.is_dir():
            return []
        return sorted(p for p in self.log_folder.glob(f"*{SEGMENT_SUFFIX}") if not p.name.startswith("."))

    def compact_all(self) -> int:
        """Roll every segment into parts and delete leftovers of killed compactions; return segments compacted.

        Call only while holding the run's lock, when no other process writes to the run.
        """
        done = 0
        for segment in self.segments():
            done += compact_segment(self.parts_folder, self.log_folder, segment.name[: -len(SEGMENT_SUFFIX)])
        if self.parts_folder.is_dir():
            committed = {p.name[: -len(ROWS_PART_SUFFIX)] for p in self.parts_folder.glob(f"*{ROWS_PART_SUFFIX}")}
            for path in self.parts_folder.iterdir():
                stem = path.name.split(".")[0]
                if path.name.startswith(".") or stem not in committed:
                    path.unlink()  # a temporary, or a part of a compaction killed before its commit
        return done

    # --------------------------------------------------------------------------------------------------- reading
    def chunks(self, *, columns: list[str] | None = None) -> Iterator[tuple[str, Chunk]]:
        """The records of every stem, in write order (``columns``: only those result columns of each part)."""
        for stem in self.stems():
            yield stem, read_chunk(self.parts_folder, self.log_folder, stem, columns=columns)

    def key_frame(self, *extra: str) -> pd.DataFrame:
        """The key of every row present: columns :data:`KEY_COLUMNS` and ``extra``.

        With ``extra``, one row per key (later records winning); without, a key written twice may appear twice.
        Reads only those columns of the parts (Parquet column projection): the cost of resume planning.
        """
        wanted = [*KEY_COLUMNS, *extra]
        frames = []
        for _, chunk in self.chunks(columns=wanted):
            frames.append(chunk.rows[[c for c in wanted if c in chunk.rows.columns]])
        frames = [f for f in frames if len(f)]
        if not frames:
            return pd.DataFrame(columns=wanted)
        keys = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0].reset_index(drop=True)
        if ROUND not in keys.columns:
            keys[ROUND] = None
        if extra:  # a row written twice: its later record's values (the keys alone need no deduplication)
            present = [c for c in KEY_COLUMNS if c in keys.columns]
            if keys.duplicated(present, keep="last").any():
                keys = keys.drop_duplicates(present, keep="last").reset_index(drop=True)
        return keys

    def done_keys(self) -> KeySet:
        """The keys of every row present."""
        keys = self.key_frame()
        if keys.empty:
            return KeySet()
        rounds = keys[ROUND]
        round_values = [None] * len(keys) if rounds.isna().all() else [_int_or_none(r) for r in rounds.tolist()]
        columns = [keys[c].tolist() for c in KEY_COLUMNS[:4]]
        return KeySet(zip(*columns, map(int, keys["seed"].tolist()), round_values, strict=True))

    def rows(self, keys: Iterable[RowKey]) -> dict[RowKey, dict[str, Any]]:
        """The result rows of ``keys`` (those present; columns as in :meth:`records`)."""
        wanted = {key.astuple(): key for key in keys}
        found: dict[RowKey, dict[str, Any]] = {}
        if not wanted:
            return found
        for _, chunk in self.chunks():
            frame = chunk.rows.drop(columns=[INFO_COLUMN, NSLICES_COLUMN])
            for record in frame.to_dict("records"):
                key = RowKey.of_row(record).astuple()
                if key in wanted:
                    found[wanted[key]] = record
        return found

    def records(self) -> Iterator[RowRecord]:
        """Every row record present (later records of one key win), in write order.

        A row holds every column of the part it was read from: a column its record lacked reads as NaN or None.
        """
        latest: dict[KeyTuple, RowRecord] = {}
        for _, chunk in self.chunks():
            rows = chunk.rows
            counts = rows[NSLICES_COLUMN].to_numpy() if len(rows) else np.empty(0, dtype=np.int64)
            starts = np.concatenate([[0], np.cumsum(counts)])
            infos = rows[INFO_COLUMN].tolist() if len(rows) else []
            frame = rows.drop(columns=[INFO_COLUMN, NSLICES_COLUMN])
            for i, row in enumerate(frame.to_dict("records")):
                lo, hi = int(starts[i]), int(starts[i + 1])
                slices = {n: chunk.slices[n][lo:hi].tolist() for n in SLICE_COLUMNS} if hi > lo else {}
                key = RowKey.of_row(row)
                latest.pop(key.astuple(), None)
                latest[key.astuple()] = RowRecord(key, row, slices, json.loads(infos[i]))
        yield from latest.values()

    def prompts(self, key: PromptKey) -> str | None:
        """The stored prompt set of ``key`` (its JSON), or ``None``; the first call reads every prompt set once."""
        with self._lock:
            if self._prompts is None:
                self._prompts = self._read_prompts()
            return self._prompts.get(key.astuple())

    def prompt_sets(self) -> dict[PromptKey, str]:
        """Every stored prompt set (its JSON) by key."""
        with self._lock:
            if self._prompts is None:
                self._prompts = self._read_prompts()
            return {PromptKey(*key): text for key, text in self._prompts.items()}

    def _read_prompts(self) -> dict[tuple, str]:
        found: dict[tuple, str] = {}
        for stem in self.stems():
            paths = part_paths(self.parts_folder, stem)
            if paths.rows.is_file():
                prompts = pd.read_parquet(paths.prompts)
            else:
                prompts = chunk_of_segment(read_segment(self.log_folder / f"{stem}{SEGMENT_SUFFIX}")).prompts
            keys = zip(*(prompts[c].tolist() for c in PROMPT_KEY_COLUMNS), strict=True)
            found.update(zip(keys, prompts["prompts"].tolist(), strict=True))
        return found

    def file_count(self) -> int:
        """Files below ``store/`` (segments, parts and mask prompts)."""
        return sum(1 for p in self.folder.rglob("*") if p.is_file()) if self.folder.is_dir() else 0


def _int_or_none(value: Any) -> int | None:
    if value is None or (isinstance(value, float) and value != value):
        return None
    return int(value)
