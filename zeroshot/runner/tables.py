"""The consolidated tables of a run, rebuilt from its store.

``results.csv`` / ``results.parquet`` hold one row per case x model x strategy x seed (sorted by sequence, case,
model, strategy, seed), and per click round in an interactive run (columns ``round``, ``n_clicks``, ``clicks``);
``failures.csv`` the failed rows with their reasons; ``slices.parquet`` one row per slice of every scored row (with
its ``round`` in an interactive run). Raw metric values are kept (``inf`` for a missed organ, NaN for both masks
empty or a failed row); penalties belong to aggregates (:func:`zeroshot.metrics.apply_penalties`). The columns are
named in :mod:`zeroshot.store.schema`; the frames are built as :func:`zeroshot.store.build_tables` builds them.
"""

from __future__ import annotations

import concurrent.futures as cf
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from zeroshot.runner.rundir import RunDir, write_atomic
from zeroshot.store import RunTables
from zeroshot.store.tables import read_rows

__all__ = ["RunTables", "write_tables"]


def write_tables(rundir: RunDir, tables: RunTables | None = None) -> RunTables:
    """Write ``results.csv``, ``results.parquet``, ``failures.csv`` and ``slices.parquet`` (each atomically).

    Parameters
    ----------
    rundir : RunDir
    tables : RunTables or None
        The tables to write; ``None`` builds them from the run's store.
    """
    root = rundir.root
    if tables is None:
        rows = read_rows(rundir.store)
        results, slice_table = rows.results, rows.slice_table
    else:
        results, slice_table = tables.results, lambda: tables.slices
    # Gathering the per-slice table (numpy and Arrow) and encoding Parquet mostly release the GIL: that half runs
    # in a thread while pandas formats the CSV files in this one.
    with cf.ThreadPoolExecutor(1, thread_name_prefix="zeroshot-tables") as pool:
        parquet = pool.submit(_write_parquet_files, results, slice_table, root)
        write_atomic(root / "results.csv", results.to_csv(index=False))
        failures = RunTables(results=results, slices=None).failures  # the slices are being made in the thread
        write_atomic(root / "failures.csv", failures.to_csv(index=False))
        slices = parquet.result()
    return tables if tables is not None else RunTables(results=results, slices=slices)


def _write_parquet_files(results: pd.DataFrame, slice_table: Callable[[], pd.DataFrame], root: Path) -> pd.DataFrame:
    """Write ``results.parquet`` and ``slices.parquet`` (the per-slice table made here); return that table."""
    _write_parquet(results, root / "results.parquet")
    slices = slice_table()
    _write_parquet(slices, root / "slices.parquet")
    return slices


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    frame.to_parquet(tmp, index=False)
    tmp.replace(path)
