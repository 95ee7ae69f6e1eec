"""Penalties: the values aggregates use in place of a case row's raw edge-case values, and the counts beside them."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from zeroshot.errors import MetricsError
from zeroshot.metrics._case import DISTANCE_COLUMNS

__all__ = ["OUTCOMES", "OutcomeCounts", "PenalisedResults", "apply_penalties"]

#: What happened to a case, as :func:`apply_penalties` classifies it (column ``outcome``).
OUTCOMES = ("scored", "missed", "false_positive", "both_empty", "failed")

_NSD_COLUMN = re.compile(r"^nsd_.+mm$")


@dataclass(frozen=True)
class OutcomeCounts:
    """How many cases of a results table fell in each row of the edge-case table."""

    n_scored: int
    n_missed: int
    n_false_positive: int
    n_both_empty: int
    n_failed: int
    n_included: int

    @property
    def n_total(self) -> int:
        """All cases."""
        return self.n_scored + self.n_missed + self.n_false_positive + self.n_both_empty + self.n_failed


@dataclass(frozen=True, eq=False)
class PenalisedResults:
    """A results table with penalties applied, and the counts a report must show beside its means.

    Attributes
    ----------
    table : pandas.DataFrame
        A copy of the input with penalised metric values and three more columns: ``outcome`` (one of
        :data:`OUTCOMES`), ``included`` (whether the case enters aggregates; false only for both-empty cases
        under the default policy) and ``penalised`` (whether a raw value was replaced). Group it and count
        ``outcome`` for per-group counts; aggregate only ``table[table.included]``.
    counts : OutcomeCounts
        Counts over the whole table.
    """

    table: pd.DataFrame
    counts: OutcomeCounts


def apply_penalties(
    results: pd.DataFrame, *, both_empty_as_perfect: bool = False, d_max_mm: float | None = None
) -> PenalisedResults:
    """Replace raw edge-case values by the values aggregates use, so no caller re-implements the policy.

    ============================  ======================================================  ===============
    outcome                       dice, iou, nsd_* / distances / rel_vol_err              included
    ============================  ======================================================  ===============
    ``scored`` (both non-empty)   unchanged                                               yes
    ``missed`` (``empty_pred``)   0 / D_max / -1                                          yes
    ``false_positive``            0 / D_max / NaN (undefined without a GT volume)         yes
    ``both_empty``                NaN, or with ``both_empty_as_perfect`` 1 / 0 / 0        no, or yes
    ``failed``                    0 / D_max / -1 (as an empty prediction)                 yes
    ============================  ======================================================  ===============

    Volumes are left as they are.

    Parameters
    ----------
    results : pandas.DataFrame
        One row per case with the columns of :meth:`CaseMetrics.as_row` (any ``nsd_<t>mm`` columns); an optional
        boolean ``failed`` column marks cases that could not be scored, whose metrics and flags may be NaN.
        Other columns (identity, oracle flags) are kept.
    both_empty_as_perfect : bool
        Count a case with both masks empty as perfect (dice, nsd 1; distances 0) instead of excluding it.
    d_max_mm : float or None
        D_max for rows whose ``d_max_mm`` is missing (a failed case whose ground truth could not be read).

    Returns
    -------
    PenalisedResults

    Raises
    ------
    MetricsError
        A table without the flag columns, rows that are neither failed nor flagged, or a row needing D_max that has
        none (pass ``d_max_mm``).
    """
    table = results.copy()
    missing = [c for c in ("empty_gt", "empty_pred", "dice") if c not in table.columns]
    if missing:
        raise MetricsError(f"results: missing column(s) {missing}; expected rows from zeroshot.metrics.score_case")
    failed = _flag(table, "failed") if "failed" in table.columns else pd.Series(False, index=table.index)
    unflagged = ~failed & (table["empty_gt"].isna() | table["empty_pred"].isna())
    if unflagged.any():
        raise MetricsError(
            f"results: {int(unflagged.sum())} row(s) are not failed but lack empty_gt/empty_pred flags "
            f"(rows {list(table.index[unflagged][:5])})"
        )
    empty_gt, empty_pred = _flag(table, "empty_gt") & ~failed, _flag(table, "empty_pred") & ~failed
    outcome = pd.Series("scored", index=table.index, dtype=object)
    outcome[empty_pred & ~empty_gt] = "missed"
    outcome[empty_gt & ~empty_pred] = "false_positive"
    outcome[empty_gt & empty_pred] = "both_empty"
    outcome[failed] = "failed"

    overlap = [
        "dice",
        *(c for c in ("iou",) if c in table.columns),
        *(c for c in table.columns if _NSD_COLUMN.match(c)),
    ]
    distances = [c for c in DISTANCE_COLUMNS if c in table.columns]
    has_rel = "rel_vol_err" in table.columns
    worst = outcome.isin(("missed", "false_positive", "failed"))
    if worst.any() and distances:
        d_max = table["d_max_mm"] if "d_max_mm" in table.columns else pd.Series(np.nan, index=table.index)
        d_max = pd.to_numeric(d_max, errors="coerce").astype(float)
        if d_max_mm is not None:
            d_max = d_max.fillna(float(d_max_mm))
        lacking = worst & ~(np.isfinite(d_max) & (d_max > 0))
        if lacking.any():
            raise MetricsError(
                f"results: {int(lacking.sum())} missed/failed row(s) have no d_max_mm to penalise distances with "
                f"(rows {list(table.index[lacking][:5])}); pass d_max_mm"
            )
        table.loc[worst, "d_max_mm"] = d_max[worst]
        for column in distances:
            table[column] = table[column].astype(float)
            table.loc[worst, column] = d_max[worst]
    for column in overlap:
        table[column] = table[column].astype(float)
        table.loc[worst, column] = 0.0
    if has_rel:
        table["rel_vol_err"] = table["rel_vol_err"].astype(float)
        table.loc[outcome.isin(("missed", "failed")), "rel_vol_err"] = -1.0
        table.loc[outcome == "false_positive", "rel_vol_err"] = np.nan

    both_empty = outcome == "both_empty"
    if both_empty_as_perfect:
        table.loc[both_empty, overlap] = 1.0
        table.loc[both_empty, distances] = 0.0
        if has_rel:
            table.loc[both_empty, "rel_vol_err"] = 0.0
    included = ~both_empty if not both_empty_as_perfect else pd.Series(True, index=table.index)
    table["outcome"] = outcome
    table["included"] = included.astype(bool)
    table["penalised"] = (worst | (both_empty & both_empty_as_perfect)).astype(bool)
    counts = OutcomeCounts(
        n_scored=int((outcome == "scored").sum()),
        n_missed=int((outcome == "missed").sum()),
        n_false_positive=int((outcome == "false_positive").sum()),
        n_both_empty=int(both_empty.sum()),
        n_failed=int(failed.sum()),
        n_included=int(table["included"].sum()),
    )
    return PenalisedResults(table=table, counts=counts)


def _flag(table: pd.DataFrame, column: str) -> pd.Series:
    """A boolean flag column as plain bools (NaN, as CSV gives it for unknown flags, is false)."""
    values = table[column]
    if values.dtype == object:
        values = values.map(lambda v: v in (True, 1, "True", "true", "1") if not pd.isna(v) else False)
    return values.fillna(False).astype(bool)
