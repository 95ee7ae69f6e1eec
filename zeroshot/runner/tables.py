"""The consolidated tables of a run, rebuilt from its store.

``results.csv`` / ``results.parquet`` hold one row per case x model x strategy x seed (sorted by sequence, case,
model, strategy, seed), and per click round in an interactive run (columns ``round``, ``n_clicks``, ``clicks``);
``failures.csv`` the failed rows with their reasons; ``slices.parquet`` one row per slice of every scored row (with
its ``round`` in an interactive run). Raw metric values are kept (``inf`` for a missed organ, NaN for both masks
empty or a failed row); penalties belong to aggregates (:func:`zeroshot.metrics.apply_penalties`). The columns are
named in :mod:`zeroshot.store.schema`; the frames are built by :func:`zeroshot.store.build_tables`.
"""

from __future__ import annotations

import concurrent.futures as cf
from pathlib import Path

import pandas as pd

from zeroshot.csv_text import to_csv
from zeroshot.runner.rundir import RunDir, write_atomic
from zeroshot.store import RunTables, build_tables

__all__ = ["RunTables", "write_tables"]


def write_tables(rundir: RunDir, tables: RunTables | None = None) -> RunTables:
    """Write ``results.csv``, ``results.parquet``, ``failures.csv`` and ``slices.parquet`` (each atomically).

    Parameters
    ----------
    rundir : RunDir
    tables : RunTables or None
        The tables to write; ``None`` builds them from the run's store.
    """
    if tables is None:
        tables = build_tables(rundir.store)
    root = rundir.root
    # Parquet encoding releases the GIL: the Parquet files are written in a thread while pandas formats the CSV.
    with cf.ThreadPoolExecutor(1, thread_name_prefix="zeroshot-tables") as pool:
        parquet = pool.submit(_write_parquet_files, tables, root)
        write_atomic(root / "results.csv", to_csv(tables.results))  # pandas' bytes, in half its time
        write_atomic(root / "failures.csv", to_csv(tables.failures))
        parquet.result()
    return tables


def _write_parquet_files(tables: RunTables, root: Path) -> None:
    _write_parquet(tables.results, root / "results.parquet")
    _write_parquet(tables.slices, root / "slices.parquet")


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    frame.to_parquet(tmp, index=False)
    tmp.replace(path)
