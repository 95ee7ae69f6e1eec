"""Parts: the Parquet files a closed log segment is compacted into, and reading a segment or its parts alike.

A segment ``log/<stem>.log`` becomes three parts, written in this order, each to a hidden temporary name,
``fsync``'d and renamed (atomic)::

    parts/<stem>.slices.parquet    the per-slice tables of its rows, concatenated (SLICE_COLUMNS, typed)
    parts/<stem>.prompts.parquet   its prompt sets (sequence, case_id, strategy, seed, prompts JSON)
    parts/<stem>.rows.parquet      its rows as the results table holds them, plus two store columns: each row's
                                   segmentation info (JSON) and its number of slices

The rows part is written last and *commits* the compaction: a stem whose rows part exists is read from its parts
(its segment, if still present, is a leftover and is deleted); otherwise from its segment (and any slices or
prompts part of that stem is a leftover of a compaction killed midway, overwritten by the next one). So a kill at
any instant of compaction neither loses a record nor shows one twice.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from zeroshot.atomic import write_atomic
from zeroshot.store.log import SegmentContents, read_segment, segment_path, sync_folder
from zeroshot.store.schema import IDENTITY_COLUMNS, ROUND, SLICE_COLUMNS, SLICE_DTYPES

__all__ = ["INFO_COLUMN", "NSLICES_COLUMN", "Chunk", "compact_segment", "part_paths", "read_chunk"]

#: Store columns of a rows part (never columns of a results table, which has no ``__`` names).
INFO_COLUMN = "__store_info"
NSLICES_COLUMN = "__store_slices"
STORE_COLUMNS = (INFO_COLUMN, NSLICES_COLUMN)
#: Parts are compressed with zstd: per-slice tables shrink about 3x more than with snappy, read as fast.
COMPRESSION = "zstd"
PROMPT_KEY_COLUMNS = ("sequence", "case_id", "strategy", "seed")


@dataclass(frozen=True)
class PartPaths:
    """The three parts of one stem."""

    rows: Path
    slices: Path
    prompts: Path


def part_paths(parts: Path, stem: str) -> PartPaths:
    """Where the parts of segment ``stem`` lie in the folder ``parts``."""
    return PartPaths(
        parts / f"{stem}.rows.parquet", parts / f"{stem}.slices.parquet", parts / f"{stem}.prompts.parquet"
    )


@dataclass(frozen=True, eq=False)
class Chunk:
    """The records of one stem (a segment or its parts), typed for tables.

    Attributes
    ----------
    rows : DataFrame
        The result rows in write order (the frame ``pd.DataFrame(rows)`` gives), with the store columns.
    slices : dict of str to ndarray
        The per-slice tables of ``rows``, concatenated in row order, typed by ``SLICE_DTYPES``.
    prompts : DataFrame
        The prompt sets (``PROMPT_KEY_COLUMNS`` and ``prompts``).
    """

    rows: pd.DataFrame
    slices: dict[str, np.ndarray]
    prompts: pd.DataFrame


def chunk_of_segment(contents: SegmentContents) -> Chunk:
    """A segment's records as a :class:`Chunk` (a key written twice keeps its last record and slices)."""
    keep = _last_of_each(contents.keys)
    frame = _rows_frame(contents, keep)
    blocks = [contents.slices[i] for i in keep]
    frame[INFO_COLUMN] = pd.Series([contents.infos[i] for i in keep], dtype=object)
    frame[NSLICES_COLUMN] = np.asarray([block.shape[1] for block in blocks], dtype=np.int64)
    stacked = np.concatenate(blocks, axis=1) if blocks else np.empty((len(SLICE_COLUMNS), 0))
    slices = {name: stacked[i].astype(SLICE_DTYPES[name]) for i, name in enumerate(SLICE_COLUMNS)}
    keep_prompts = _last_of_each(contents.prompt_keys)
    prompts = pd.DataFrame(
        [contents.prompt_keys[i] for i in keep_prompts] or None, columns=list(PROMPT_KEY_COLUMNS)
    ).astype({"seed": "int64"})
    prompts["prompts"] = pd.Series([contents.prompts[i] for i in keep_prompts], dtype=object)
    return Chunk(frame, slices, prompts)


def _rows_frame(contents: SegmentContents, keep: list[int]) -> pd.DataFrame:
    """The rows ``keep`` as ``pd.DataFrame`` of their mappings makes them (columns in first-seen order).

    Rows of one column set (every row of a run of one configuration) are handed over as lists of values, which
    pandas types exactly as it types the mappings (the same per-column inference), at half the cost.
    """
    if not keep:
        return pd.DataFrame()
    columns = contents.columns[keep[0]]
    if all(contents.columns[i] is columns or contents.columns[i] == columns for i in keep):
        return pd.DataFrame([contents.values[i] for i in keep], columns=list(columns))
    return pd.DataFrame([contents.row(i) for i in keep])


def read_chunk(parts: Path, log: Path, stem: str, *, columns: list[str] | None = None) -> Chunk:
    """The records of ``stem``: from its parts if its compaction committed, else from its segment.

    ``columns`` reads only those result columns of a rows part (and no slices or prompts); a segment is read
    whole.
    """
    paths = part_paths(parts, stem)
    if not paths.rows.is_file():
        try:
            return chunk_of_segment(read_segment(segment_path(log, stem)))
        except FileNotFoundError:  # compacted since we looked (a reader without the run's lock): read its parts
            if not paths.rows.is_file():
                raise
    if columns is not None:
        present = set(pq.read_schema(paths.rows).names)
        frame = pd.read_parquet(paths.rows, columns=[c for c in columns if c in present])
        return Chunk(frame, {}, pd.DataFrame())
    table = pq.read_table(paths.slices)
    slices = {name: table.column(name).to_numpy() for name in SLICE_COLUMNS}
    return Chunk(pd.read_parquet(paths.rows), slices, pd.read_parquet(paths.prompts))


def compact_segment(parts: Path, log: Path, stem: str, contents: SegmentContents | None = None) -> bool:
    """Roll segment ``stem`` into its parts and delete it; return whether anything was done.

    Call only for a segment no process writes any more (its writer closed or gone). Idempotent: if the rows
    part exists, the segment is a leftover of a compaction killed after its commit and is only deleted.
    ``contents``: the segment's records as its writer kept them (else the file is read).
    """
    segment = segment_path(log, stem)
    if not segment.is_file():
        return False
    paths = part_paths(parts, stem)
    if not paths.rows.is_file():
        chunk = chunk_of_segment(contents if contents is not None else read_segment(segment))
        slices = pa.table({name: pa.array(chunk.slices[name]) for name in SLICE_COLUMNS})
        write_atomic(paths.slices, _parquet_bytes(slices))
        write_atomic(paths.prompts, _parquet_bytes(pa.Table.from_pandas(chunk.prompts, preserve_index=False)))
        write_atomic(paths.rows, _parquet_bytes(pa.Table.from_pandas(chunk.rows, preserve_index=False)))
        sync_folder(parts)
    segment.unlink()
    sync_folder(log)
    return True


def identity_columns(rows: pd.DataFrame) -> list[str]:
    """The identity columns of a rows frame (with ``round`` where present)."""
    return [*IDENTITY_COLUMNS, *([ROUND] if ROUND in rows.columns else [])]


def _parquet_bytes(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression=COMPRESSION)
    return buffer.getvalue()


def _last_of_each(keys: list[tuple]) -> list[int]:
    """Positions of the last occurrence of each key, in write order."""
    last = {key: i for i, key in enumerate(keys)}
    if len(last) == len(keys):
        return list(range(len(keys)))
    return sorted(last.values())
