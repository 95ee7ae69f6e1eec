"""Interactive results: Dice after k corrective clicks and the number of clicks needed to reach a Dice (NoC).

An interactive run (``zeroshot eval --clicks``) writes one row per case x model x strategy x seed x ``round``:
round 0 holds the initial prompts alone, round r the state after r rounds of simulated corrective clicks
(:mod:`zeroshot.interactive`), and ``n_clicks`` the number of clicks made so far. A round adds one click, two with
``per_round="both"``, or none once nothing is left to correct (the curve then stays flat).

Definitions, for the rows penalised by :func:`~zeroshot.compare.tables.prepare_rows` (a failed round scores as
the worst case, Dice 0):

- **Protocol**: curves made by another click protocol than ``zeroshot`` (the ``click_protocol`` column,
  ``zeroshot eval --click-protocol``) are shown as their own method: the strategy reads ``box-mid · cvpr25``.
- **Clicks so far** are read from ``n_clicks`` when the column exists (a row whose count is missing, such as a
  round that failed, is given the count of the round before it), else from ``round`` (one click per round).
- **Value after k clicks** of one curve (case x seed) is the value of the row with the largest ``n_clicks <= k``
  (the latest such round): the user never spends half a round, so with two clicks per round the value after an
  odd k can be that of the round before.
- **Case value** is the mean over the case's seeds at each k (as in every other table: the case is the unit).
- **Budget** of a group (sequence x model x strategy) is the largest ``n_clicks`` in it; requested k are clipped
  to it (``after_clicks=(0, 1, 3, 5, 8)`` with a budget of 4 reports 0, 1, 3 and 4).
- A curve is **complete** when it has rows up to the group's last round, or when its last row failed (a failure
  is the worst case from then on). A curve that stops earlier (a run still under way) is known only up to the
  clicks of its last row; beyond them its case is counted in ``n_incomplete`` and left out of the statistics.
- **NoC@t** of a case is the smallest k (0 when the initial prompts already reach it) whose case value is
  ``>= t``; a case that never reaches t within the budget scores the budget and is counted in
  ``n_never_reached`` (its NoC is censored, so the mean is a lower bound of the clicks such cases would need).
  Cases whose every value is excluded (both masks empty) are left out and counted in ``n_excluded``.

The tables summarising initial-prompt results (summary, cross-sequence, paired) use :func:`initial_rows`: round 0
of interactive runs beside every row of non-interactive runs and supervised baselines.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from zeroshot import stats
from zeroshot.compare.runs import IDENTITY, RunError
from zeroshot.compare.tables import (
    KIND_SUPERVISED,
    BootstrapOptions,
    higher_is_better,
    sequence_order,
    summary_columns,
)
from zeroshot.errors import ConfigError, plain

__all__ = [
    "AFTER_CLICKS",
    "INTERACTIVE_COLUMNS",
    "NOC_THRESHOLDS",
    "case_noc",
    "check_after_clicks",
    "check_noc_thresholds",
    "click_curves",
    "clicks_table",
    "initial_rows",
    "is_interactive",
    "noc_table",
]

#: Click counts the ``clicks`` table reports by default (clipped to each group's budget).
AFTER_CLICKS = (0, 1, 3, 5, 8)
#: Dice thresholds of the NoC table by default.
NOC_THRESHOLDS = (0.85, 0.90)
#: Columns only interactive runs have.
INTERACTIVE_COLUMNS = ("round", "n_clicks", "clicks", "click_protocol")
#: A group of the click tables: one curve per case of it.
GROUP = ("sequence", "model", "strategy")
_CASE = (*GROUP, "case_id", "center")
_CURVE = (*_CASE, "seed")


def is_interactive(rows: pd.DataFrame) -> bool:
    """Whether ``rows`` hold interactive results (a ``round`` column with at least one value)."""
    return "round" in rows.columns and bool(rows["round"].notna().any())


def initial_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows of the initial prompts: round 0 of interactive runs and every row without a round.

    Rows without a round are supervised baselines and non-interactive runs. The interactive columns
    (:data:`INTERACTIVE_COLUMNS`) are dropped, so the tables built from the result are exactly those of the same
    run without corrective clicks. A table without a ``round`` column is returned unchanged.

    Raises
    ------
    RunError
        When a row of a non-interactive run duplicates round 0 of an interactive run (same case, sequence, model,
        strategy and seed): the two would be averaged silently.
    """
    if "round" not in rows.columns:
        return rows
    rounds = pd.to_numeric(rows["round"], errors="coerce")
    kept = rows.loc[rows["round"].isna() | (rounds == 0)]
    if "click_protocol" in kept.columns:  # round 0 does not depend on the protocol: runs of two protocols share it
        same = [c for c in (*IDENTITY, "round") if c in kept.columns]
        kept = kept.loc[kept["round"].isna() | ~kept.duplicated(same, keep="first")]
    kept = kept.drop(columns=[c for c in INTERACTIVE_COLUMNS if c in kept.columns])
    identity = [c for c in IDENTITY if c in kept.columns]
    duplicated = kept.duplicated(identity, keep=False)
    if duplicated.any():
        first = kept.loc[duplicated].iloc[0]
        raise RunError(
            f"case {first['sequence']}/{first['case_id']}, model {first['model']}, strategy {first['strategy']}, "
            f"seed {first['seed']} is both round 0 of an interactive run and a row of a non-interactive run; pass "
            "one of the two runs"
        )
    return kept


def check_after_clicks(after_clicks: Sequence[int]) -> tuple[int, ...]:
    """``after_clicks`` as a sorted tuple of distinct whole numbers >= 0.

    Raises
    ------
    ConfigError
        For an empty sequence, or a value that is negative or not a whole number.
    """
    values = tuple(after_clicks)
    if not values:
        raise ConfigError("after_clicks (--after-clicks): expected at least one click count, found none")
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ConfigError(f"after_clicks (--after-clicks): expected whole numbers >= 0, found {plain(value)}")
    return tuple(sorted({int(v) for v in values}))


def check_noc_thresholds(thresholds: Sequence[float]) -> tuple[float, ...]:
    """``thresholds`` as a sorted tuple of distinct values in (0, 1].

    Raises
    ------
    ConfigError
        For an empty sequence or a value outside (0, 1] (a percentage such as 85 instead of 0.85 included).
    """
    values = tuple(thresholds)
    if not values:
        raise ConfigError("noc_thresholds (--noc): expected at least one Dice threshold, found none")
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < float(value) <= 1.0:
            raise ConfigError(
                f"noc_thresholds (--noc): expected Dice values in (0, 1] such as 0.85, found {plain(value)}"
            )
    return tuple(sorted({float(v) for v in values}))


def _describe(row: pd.Series) -> str:
    return (
        f"case {row['sequence']}/{row['case_id']}, model {row['model']}, strategy {row['strategy']}, seed {row['seed']}"
    )


def _nonnegative_integers(values: pd.Series, column: str, table: pd.DataFrame) -> pd.Series:
    """A column of whole numbers >= 0 as int64, or a RunError naming the first bad row."""
    bad = values.isna() | (values < 0) | (values % 1 != 0)
    if bad.any():
        first = bad.idxmax()
        raise RunError(
            f"column {column}: expected whole numbers >= 0, found {table.at[first, column]} "
            f"({_describe(table.loc[first])})"
        )
    return values.astype(np.int64)


def _curve_rows(rows: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Interactive zero-shot rows, validated, with integer ``round`` and ``n_clicks``, sorted by curve and round."""
    if "round" not in rows.columns:
        raise RunError("the results have no round column: not an interactive run (zeroshot eval --clicks)")
    if metric not in rows.columns:
        raise RunError(f"metric {metric!r} is not a column of the results")
    chosen = rows.loc[rows["round"].notna()]
    if "kind" in chosen.columns:
        chosen = chosen.loc[chosen["kind"] != KIND_SUPERVISED]
    if chosen.empty:
        raise RunError("the results have a round column but no interactive row")
    if "click_protocol" in chosen.columns:
        protocol = chosen["click_protocol"].fillna("zeroshot").astype(str)
        other = protocol != "zeroshot"
        chosen = chosen.assign(
            strategy=chosen["strategy"].astype(str).where(~other, chosen["strategy"] + " · " + protocol)
        )
    extra = ("n_clicks", "failed", "seconds_prepare", "seconds_segment")
    columns = [*_CURVE, "round", metric, *(c for c in extra if c in chosen.columns and c != metric)]
    table = chosen[columns].copy()
    table["round"] = _nonnegative_integers(pd.to_numeric(table["round"], errors="coerce"), "round", table)
    table["_curve"] = table.groupby(list(_CURVE), sort=True, dropna=False).ngroup()
    table = table.sort_values(["_curve", "round"], kind="stable").reset_index(drop=True)

    position = table.groupby("_curve").cumcount()
    gap = table["round"] != position
    if gap.any():
        first = table.loc[gap.idxmax()]
        found = table.loc[table["_curve"] == first["_curve"], "round"].tolist()
        raise RunError(
            f"{_describe(first)}: rounds {found}; expected one row per round 0, 1, 2, ... (round 0: the initial "
            "prompts)"
        )
    if "n_clicks" in table.columns:
        counts = pd.to_numeric(table["n_clicks"], errors="coerce")
        counts = counts.where(table["round"] != 0, counts.fillna(0))
        counts = counts.groupby(table["_curve"]).ffill()
        table["n_clicks"] = _nonnegative_integers(counts, "n_clicks", table)
        opening = (table["round"] == 0) & (table["n_clicks"] != 0)
        if opening.any():
            raise RunError(f"{_describe(table.loc[opening.idxmax()])}: round 0 (initial prompts) has n_clicks != 0")
        decreasing = (table["_curve"] == table["_curve"].shift()) & (table["n_clicks"].diff() < 0)
        if decreasing.any():
            raise RunError(
                f"{_describe(table.loc[decreasing.idxmax()])}: n_clicks decreases from one round to the next"
            )
    else:
        table["n_clicks"] = table["round"]
    failed = table["failed"] if "failed" in table.columns else pd.Series(False, index=table.index)
    table["failed"] = failed.fillna(False).astype(bool)
    return table


def click_curves(rows: pd.DataFrame, *, metric: str = "dice") -> pd.DataFrame:
    """Per case, the value of ``metric`` after k clicks for every k from 0 to its group's budget.

    Parameters
    ----------
    rows : DataFrame
        Output of :func:`~zeroshot.compare.tables.prepare_rows` with the interactive columns (``round``, and
        ``n_clicks`` when recorded). Supervised rows and rows without a round are ignored.
    metric : str
        A metric column (default ``dice``).

    Returns
    -------
    DataFrame
        One row per sequence x model x strategy x case x k: ``sequence, model, strategy, case_id, center,
        clicks`` (k), ``value`` (mean over seeds; NaN when excluded or unknown), ``known`` (false where an
        incomplete curve of the case stops before k clicks), ``n_seeds``, ``budget_clicks`` and ``metric``.
        The definitions are in the module docstring.

    Raises
    ------
    RunError
        Without a ``round`` column or interactive rows, for a round or click count that is not a whole number
        >= 0, for a curve whose rounds are not 0, 1, 2, ... (round 0 missing, a gap, a repeat), for a round 0
        with clicks, and for a click count that decreases.
    """
    table = _curve_rows(rows, metric)
    groups = table.groupby(list(GROUP), sort=False, dropna=False)
    table["_budget"] = groups["n_clicks"].transform("max")
    table["_last_round"] = groups["round"].transform("max")
    ends = table.groupby("_curve", sort=True).tail(1)
    complete = (ends["round"] == ends["_last_round"]) | ends["failed"]
    known_to = np.where(complete, ends["_budget"], ends["n_clicks"])

    # Every (curve, k) on the grid k = 0 .. budget picks its row by one search over keys that sort rows by curve,
    # then by clicks: round 0 (0 clicks) keeps each search inside its own curve.
    sizes = ends["_budget"].to_numpy() + 1
    stride = int(table["_budget"].max()) + 1
    starts = np.repeat(np.cumsum(sizes) - sizes, sizes)
    clicks = np.arange(int(sizes.sum())) - starts
    curve = np.repeat(ends["_curve"].to_numpy(), sizes)
    row_keys = table["_curve"].to_numpy() * stride + table["n_clicks"].to_numpy()
    picked = np.searchsorted(row_keys, curve * stride + clicks, side="right") - 1
    grid = ends.loc[ends.index.repeat(sizes), [*_CURVE, "_budget"]].reset_index(drop=True)
    grid["clicks"] = clicks
    grid["value"] = table[metric].to_numpy(dtype=float)[picked]
    grid["known"] = clicks <= np.repeat(known_to, sizes)

    by_case = grid.groupby([*_CASE, "clicks"], sort=False, dropna=False)
    cases = by_case["value"].mean().to_frame()
    cases["known"] = by_case["known"].all()
    cases["n_seeds"] = by_case.size()
    cases["budget_clicks"] = by_case["_budget"].first()
    cases = cases.reset_index()
    cases.loc[~cases["known"], "value"] = np.nan
    cases["metric"] = metric
    return _sorted(cases, ["case_id", "clicks"])


def _sorted(table: pd.DataFrame, then: Sequence[str]) -> pd.DataFrame:
    """Rows in table order: sequence (T1, T2, OOP, ...), model, strategy, then ``then`` (numbers sort as numbers)."""
    if table.empty:
        return table
    keys = pd.DataFrame({"_sequence": sequence_order(table["sequence"])}, index=table.index)
    for column in ("model", "strategy", *then):
        values = table[column]
        keys[f"_{column}"] = values if pd.api.types.is_numeric_dtype(values) else values.astype(str)
    order = keys.sort_values(list(keys.columns), kind="stable").index
    return table.loc[order].reset_index(drop=True)


def _statistics(values: np.ndarray, options: BootstrapOptions) -> dict[str, float]:
    summary = stats.summarize(
        values, confidence=options.confidence, n_resamples=options.n_resamples, method=options.method, seed=options.seed
    )
    return {"n_cases": summary.n, **summary_columns(summary)}


def clicks_table(
    curves: pd.DataFrame,
    *,
    after_clicks: Sequence[int] = AFTER_CLICKS,
    options: BootstrapOptions | None = None,
) -> pd.DataFrame:
    """Per sequence x model x strategy and k: mean value after k clicks over cases, with a bootstrap CI.

    Parameters
    ----------
    curves : DataFrame
        Output of :func:`click_curves`.
    after_clicks : sequence of int
        The k to report, each clipped to the group's budget (duplicates after clipping reported once).
    options : BootstrapOptions, optional

    Returns
    -------
    DataFrame
        One row per group x k: ``sequence, model, strategy, metric, clicks, budget_clicks, n_cases,
        n_excluded`` (both masks empty), ``n_incomplete`` (curves that stop before k), ``mean, sd, median, q1, q3,
        ci_low, ci_high`` and the CI settings.
    """
    options = options or BootstrapOptions()
    wanted = check_after_clicks(after_clicks)
    records = []
    for key, group in curves.groupby(list(GROUP), sort=False, dropna=False):
        budget = int(group["budget_clicks"].iloc[0])
        for k in sorted({min(k, budget) for k in wanted}):
            at = group.loc[group["clicks"] == k]
            records.append(
                {
                    **dict(zip(GROUP, key, strict=True)),
                    "metric": at["metric"].iloc[0],
                    "clicks": k,
                    "budget_clicks": budget,
                    **_statistics(at["value"].to_numpy(), options),
                    "n_excluded": int((at["known"] & at["value"].isna()).sum()),
                    "n_incomplete": int((~at["known"]).sum()),
                    **options.columns(),
                }
            )
    columns = [
        *GROUP, "metric", "clicks", "budget_clicks", "n_cases", "n_excluded", "n_incomplete", "mean", "sd", "median",
        "q1", "q3", "ci_low", "ci_high", "ci_method", "confidence", "n_resamples", "bootstrap_seed",
    ]  # fmt: skip
    return _sorted(pd.DataFrame.from_records(records, columns=columns), ["clicks"])


def case_noc(curves: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """Per case of ``curves``: its NoC at ``threshold`` and why it has that value.

    Returns
    -------
    DataFrame
        The case columns (``sequence, model, strategy, case_id, center``), ``noc`` (clicks; NaN when excluded or
        incomplete), ``status`` (``reached``, ``never`` (scored the budget), ``excluded`` (every value excluded)
        or ``incomplete`` (not reached before an incomplete curve stops)) and ``budget_clicks``.
    """
    keys = [curves[c] for c in _CASE]
    known_value = curves["value"].where(curves["known"])
    reached = curves["clicks"].where(known_value >= threshold)
    by_case = pd.DataFrame(
        {
            "first": reached.groupby(keys, sort=False, dropna=False).min(),
            "complete": curves["known"].groupby(keys, sort=False, dropna=False).all(),
            "n_values": known_value.groupby(keys, sort=False, dropna=False).count(),
            "budget_clicks": curves["budget_clicks"].groupby(keys, sort=False, dropna=False).first(),
        }
    )
    status = np.select(
        [by_case["first"].notna(), by_case["n_values"] == 0, ~by_case["complete"]],
        ["reached", "excluded", "incomplete"],
        "never",
    )
    noc = by_case["first"].where(status != "never", by_case["budget_clicks"]).astype(float)
    return pd.DataFrame(
        {"noc": noc, "status": status, "budget_clicks": by_case["budget_clicks"]}, index=by_case.index
    ).reset_index()


def noc_table(
    curves: pd.DataFrame,
    *,
    thresholds: Sequence[float] = NOC_THRESHOLDS,
    options: BootstrapOptions | None = None,
) -> pd.DataFrame:
    """Per sequence x model x strategy and threshold: the number of clicks to reach it (NoC), mean with CI.

    Parameters
    ----------
    curves : DataFrame
        Output of :func:`click_curves` for an overlap metric (higher is better), e.g. Dice.
    thresholds : sequence of float
        Values in (0, 1]: NoC@85 is ``0.85``.
    options : BootstrapOptions, optional

    Returns
    -------
    DataFrame
        One row per group x threshold: ``sequence, model, strategy, metric, threshold, budget_clicks, n_cases``
        (cases with a NoC), ``n_never_reached`` and ``share_never_reached`` (of ``n_cases``; those cases score the
        budget), ``n_excluded``, ``n_incomplete``, ``mean, sd, median, q1, q3, ci_low, ci_high`` (clicks) and the
        CI settings.

    Raises
    ------
    RunError
        When ``curves`` hold a metric for which lower is better (a distance): no threshold is "reached" upwards.
    """
    options = options or BootstrapOptions()
    wanted = check_noc_thresholds(thresholds)
    metric = str(curves["metric"].iloc[0]) if not curves.empty else "dice"
    if not higher_is_better(metric):
        raise RunError(f"noc_table: NoC needs an overlap metric such as dice, found {metric!r}")
    records = []
    for threshold in wanted:
        per_case = case_noc(curves, threshold)
        for key, group in per_case.groupby(list(GROUP), sort=False, dropna=False):
            statistics = _statistics(group["noc"].to_numpy(), options)
            never = int((group["status"] == "never").sum())
            records.append(
                {
                    **dict(zip(GROUP, key, strict=True)),
                    "metric": metric,
                    "threshold": threshold,
                    "budget_clicks": int(group["budget_clicks"].iloc[0]),
                    **statistics,
                    "n_never_reached": never,
                    "share_never_reached": never / statistics["n_cases"] if statistics["n_cases"] else math.nan,
                    "n_excluded": int((group["status"] == "excluded").sum()),
                    "n_incomplete": int((group["status"] == "incomplete").sum()),
                    **options.columns(),
                }
            )
    columns = [
        *GROUP, "metric", "threshold", "budget_clicks", "n_cases", "n_never_reached", "share_never_reached",
        "n_excluded", "n_incomplete", "mean", "sd", "median", "q1", "q3", "ci_low", "ci_high", "ci_method",
        "confidence", "n_resamples", "bootstrap_seed",
    ]  # fmt: skip
    return _sorted(pd.DataFrame.from_records(records, columns=columns), ["threshold"])
