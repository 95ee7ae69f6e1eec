"""The consolidated tables of a run, rebuilt from its row files.

``results.csv`` / ``results.parquet`` hold one row per case x model x strategy x seed (sorted by sequence, case,
model, strategy, seed), and per click round in an interactive run (columns ``round``, ``n_clicks``, ``clicks``);
``failures.csv`` the failed rows with their reasons; ``slices.parquet`` one row per slice of every scored row (with
its ``round`` in an interactive run). Raw metric values are kept (``inf`` for a missed organ, NaN for both masks
empty or a failed row); penalties belong to aggregates (:func:`zeroshot.metrics.apply_penalties`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from zeroshot.runner.rundir import RunDir, read_json, write_atomic
from zeroshot.runner.scoring import SLICE_COLUMNS

__all__ = ["IDENTITY_COLUMNS", "RunTables", "read_row_tables", "write_tables"]

#: Columns that identify a result row.
IDENTITY_COLUMNS = ("case_id", "sequence", "model", "strategy", "seed")
#: The column that adds the click round to the identity of a row of an interactive run.
ROUND = "round"
FAILURE_COLUMNS = ("case_id", "sequence", "center", "split", "model", "strategy", "seed", "error")


@dataclass(frozen=True, eq=False)
class RunTables:
    """The tables of a run.

    Attributes
    ----------
    results : DataFrame
        One row per case x model x strategy x seed (x round, in an interactive run).
    slices : DataFrame
        One row per slice of every scored row.
    """

    results: pd.DataFrame
    slices: pd.DataFrame

    @property
    def failures(self) -> pd.DataFrame:
        """The failed rows with their reasons."""
        if self.results.empty:
            return pd.DataFrame(columns=list(FAILURE_COLUMNS))
        columns = list(FAILURE_COLUMNS)
        if ROUND in self.results:
            columns.insert(columns.index("seed") + 1, ROUND)
        return self.results.loc[self.results["failed"].astype(bool), columns].reset_index(drop=True)


def read_row_tables(row_files: Iterable[Path]) -> RunTables:
    """Build the tables from row files (as :meth:`RunDir.row_paths` lists them, in row order)."""
    rows = []
    slice_columns: dict[str, list] = {name: [] for name in (*IDENTITY_COLUMNS, ROUND, *SLICE_COLUMNS)}
    for path in row_files:
        record = read_json(path)
        row = record["row"]
        rows.append(row)
        slices = record.get("slices") or {}
        count = len(slices.get("z", ()))
        if not count:
            continue
        for name in (*IDENTITY_COLUMNS, ROUND):
            slice_columns[name].extend([row.get(name)] * count)
        for name in SLICE_COLUMNS:
            slice_columns[name].extend(slices[name])
    results = pd.DataFrame(rows)
    if not results.empty:
        for column in ("seed", ROUND, "n_clicks"):
            if column in results:
                results[column] = results[column].astype("int64")
        for flag in ("failed", "empty_gt", "empty_pred", "offloaded"):
            if flag in results:
                results[flag] = results[flag].astype(bool)
        for column in results.columns:
            if column.startswith("oracle_"):
                results[column] = results[column].fillna(False).astype(bool)
        results["error"] = results["error"].fillna("").astype(str)
    if all(value is None for value in slice_columns[ROUND]):
        del slice_columns[ROUND]  # a run without clicks
    slices_frame = pd.DataFrame(slice_columns)
    if not slices_frame.empty:
        for column in ("seed", ROUND):
            if column in slices_frame:
                slices_frame[column] = slices_frame[column].astype("int64")
    return RunTables(results=results, slices=slices_frame)


def write_tables(rundir: RunDir, tables: RunTables | None = None) -> RunTables:
    """Write ``results.csv``, ``results.parquet``, ``failures.csv`` and ``slices.parquet`` (each atomically).

    Parameters
    ----------
    rundir : RunDir
    tables : RunTables or None
        The tables to write; ``None`` rebuilds them from the run's row files.
    """
    if tables is None:
        tables = read_row_tables(rundir.row_paths())
    root = rundir.root
    write_atomic(root / "results.csv", tables.results.to_csv(index=False))
    write_atomic(root / "failures.csv", tables.failures.to_csv(index=False))
    _write_parquet(tables.results, root / "results.parquet")
    _write_parquet(tables.slices, root / "slices.parquet")
    return tables


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    frame.to_parquet(tmp, index=False)
    tmp.replace(path)
