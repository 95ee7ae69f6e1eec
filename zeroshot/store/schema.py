"""The columns of a run's result tables: one home for the names that runner, compare and figures read.

``results.csv`` / ``results.parquet`` hold one row per case x model x strategy x seed (x click round); the
columns come in this order: :data:`IDENTITY_COLUMNS` with ``center`` and ``split`` after ``sequence``
(:data:`ROW_LEAD_COLUMNS`), the click columns of an interactive run (:data:`CLICK_COLUMNS`), the metric columns
(``zeroshot.metrics``), ``failed`` and ``error``, the oracle flags (:data:`ORACLE_COLUMNS`, more where prompts
report other oracle keys), the prompt columns, ``offloaded``, ``prediction`` and the timings
(:data:`TIMING_COLUMNS`). ``failures.csv`` holds :data:`FAILURE_COLUMNS` of the failed rows; ``slices.parquet``
holds :data:`IDENTITY_COLUMNS`, ``round`` (interactive runs) and :data:`SLICE_COLUMNS` with the dtypes of
:data:`SLICE_DTYPES`.

:func:`type_results` gives a results frame the dtypes every reader relies on (whole-number identity columns as
``int64``, flags as ``bool``, ``error`` as text); it is applied wherever a results frame is built.
"""

from __future__ import annotations

import pandas as pd

__all__ = [
    "CLICK_COLUMNS",
    "FAILURE_COLUMNS",
    "FLAG_COLUMNS",
    "IDENTITY_COLUMNS",
    "ORACLE_COLUMNS",
    "ROUND",
    "ROW_LEAD_COLUMNS",
    "SLICE_COLUMNS",
    "SLICE_DTYPES",
    "TIMING_COLUMNS",
    "row_identity_columns",
    "type_results",
]

#: Columns that identify a result row (with ``round`` in an interactive run), in table order.
IDENTITY_COLUMNS = ("case_id", "sequence", "model", "strategy", "seed")
#: The column that adds the click round to the identity of a row of an interactive run.
ROUND = "round"
#: The first columns of every result row.
ROW_LEAD_COLUMNS = ("case_id", "sequence", "center", "split", "model", "strategy", "seed")
#: Columns an interactive run's rows carry after the lead columns.
CLICK_COLUMNS = (ROUND, "n_clicks", "clicks", "click_protocol")
#: Oracle flags every row carries (more appear when prompts report other oracle keys, all ``oracle_*``).
ORACLE_COLUMNS = ("oracle_gt_prompt", "oracle_gt_z_range", "oracle_gt_roi_crop")
#: Boolean columns of a results table (besides the oracle flags).
FLAG_COLUMNS = ("failed", "empty_gt", "empty_pred", "offloaded")
#: Columns that measure time; they differ between otherwise identical runs.
TIMING_COLUMNS = ("seconds_read", "seconds_prepare", "seconds_segment")
#: Columns of ``failures.csv`` (with ``round`` after ``seed`` in an interactive run).
FAILURE_COLUMNS = ("case_id", "sequence", "center", "split", "model", "strategy", "seed", "error")
#: Columns of the per-slice table besides the row identity, in order.
SLICE_COLUMNS = (
    "z",
    "dist_slices",
    "dist_mm",
    "gt_area_px",
    "pred_area_px",
    "gt_area_mm2",
    "pred_area_mm2",
    "slice_dice",
)
#: The dtype of each per-slice column (whole numbers and measurements).
SLICE_DTYPES = {
    "z": "int64",
    "dist_slices": "int64",
    "dist_mm": "float64",
    "gt_area_px": "int64",
    "pred_area_px": "int64",
    "gt_area_mm2": "float64",
    "pred_area_mm2": "float64",
    "slice_dice": "float64",
}
_WHOLE_NUMBER_COLUMNS = ("seed", ROUND, "n_clicks")


def row_identity_columns(frame: pd.DataFrame) -> list[str]:
    """The columns that identify one row of ``frame``: :data:`IDENTITY_COLUMNS`, plus ``round`` where present."""
    return [*IDENTITY_COLUMNS, *([ROUND] if ROUND in frame.columns else [])]


def type_results(results: pd.DataFrame) -> pd.DataFrame:
    """Give a results frame (as built from row records) the dtypes of the result tables, in place; return it.

    Whole-number columns (``seed``, ``round``, ``n_clicks``) become ``int64``, flags ``bool``, oracle flags absent
    from a row false, and ``error`` text ("" where absent). An empty frame is returned as it is.
    """
    if results.empty:
        return results
    for column in _WHOLE_NUMBER_COLUMNS:
        if column in results:
            results[column] = results[column].astype("int64")
    for flag in FLAG_COLUMNS:
        if flag in results:
            results[flag] = results[flag].astype(bool)
    for column in results.columns:
        if column.startswith("oracle_"):
            results[column] = results[column].fillna(False).astype(bool)
    results["error"] = results["error"].fillna("").astype(str)
    return results
