"""The comparison tables: per-method summaries, the cross-sequence table and paired tests, as numeric DataFrames.

Rules every table follows:

- Raw per-row metrics are penalised first by :func:`zeroshot.metrics.apply_penalties` (a missed organ scores Dice 0
  and distances D_max; a failed case is the worst case; both-empty cases are excluded and counted), so no table
  drops a miss.
- The case is the unit: repeated seeds (or prompt draws) of one case are averaged within the case before any
  statistic, so the bootstrap resamples cases (a cluster bootstrap) and a paired test pairs cases.
- Confidence intervals are seeded bootstrap intervals over cases (:mod:`zeroshot.stats`); the method, level,
  number of resamples and seed are columns of every table that reports one.
"""

from __future__ import annotations

import itertools
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from zeroshot import stats
from zeroshot.compare.runs import RunError, method_keys
from zeroshot.datasets import SEQUENCES
from zeroshot.errors import ZeroshotWarning

__all__ = [
    "KIND_SUPERVISED",
    "KIND_ZERO_SHOT",
    "BootstrapOptions",
    "CaseTable",
    "case_table",
    "case_values",
    "cross_sequence_table",
    "higher_is_better",
    "metric_columns",
    "paired_table",
    "prepare_rows",
    "sequence_order",
    "summary_table",
]

KIND_ZERO_SHOT = "zero-shot"
KIND_SUPERVISED = "supervised"
#: Train-sequence value of methods that were not trained on any sequence of the data.
NO_TRAINING = "none"
_NSD = re.compile(r"^nsd_(\d+(?:\.\d+)?)mm$")
_ALWAYS = ("dice",)
_DISTANCES = ("hd95_mm", "assd_mm")


@dataclass(frozen=True)
class BootstrapOptions:
    """How every confidence interval in a comparison is computed.

    Attributes
    ----------
    n_resamples : int
    confidence : float
    method : {"percentile", "bca"}
    seed : int
        The same seed is used for every group, so a group's interval does not depend on which other groups
        exist or their order.
    """

    n_resamples: int = stats.DEFAULT_RESAMPLES
    confidence: float = 0.95
    method: str = "percentile"
    seed: int = 0

    def __post_init__(self) -> None:
        # Fail at construction, naming the option, rather than deep inside the first bootstrap.
        stats.bootstrap_ci([0.0], confidence=self.confidence, n_resamples=self.n_resamples, method=self.method)

    def columns(self) -> dict[str, object]:
        """The settings columns every table with an interval carries."""
        return {
            "ci_method": self.method,
            "confidence": self.confidence,
            "n_resamples": self.n_resamples,
            "bootstrap_seed": self.seed,
        }


def summary_columns(summary: stats.Summary) -> dict[str, float]:
    """A summary's columns from the mean on: ``mean, sd, median, q1, q3, ci_low, ci_high``."""
    return {
        "mean": summary.mean,
        "sd": summary.sd,
        "median": summary.median,
        "q1": summary.q1,
        "q3": summary.q3,
        "ci_low": summary.ci.low,
        "ci_high": summary.ci.high,
    }


def metric_columns(frame: pd.DataFrame) -> list[str]:
    """Metrics the tables report, in display order: ``dice``, each ``nsd_<t>mm`` by tolerance, HD95, ASSD."""
    nsd = sorted((c for c in frame.columns if _NSD.match(c)), key=lambda c: float(_NSD.match(c).group(1)))
    return [c for c in (*_ALWAYS, *nsd, *_DISTANCES) if c in frame.columns]


def higher_is_better(metric: str) -> bool:
    """Whether larger values of ``metric`` are better (overlap scores) or worse (distances, errors)."""
    return not (metric.endswith("_mm") and not _NSD.match(metric)) and metric != "rel_vol_err"


def _apply_penalties(results: pd.DataFrame, *, both_empty_as_perfect: bool) -> pd.DataFrame:
    from zeroshot.metrics import apply_penalties

    # The table carries each row's ``outcome`` (scored, missed, false_positive, both_empty, failed); the counts
    # are recomputed per group from it.
    fallback, results = _d_max_fallback(results)
    return apply_penalties(results, both_empty_as_perfect=both_empty_as_perfect, d_max_mm=fallback).table


def _d_max_fallback(results: pd.DataFrame) -> tuple[float | None, pd.DataFrame]:
    """The D_max of rows that record none, and the rows (without distance columns if no row has a D_max).

    Rows carry the D_max of their case's files (a failed case's from whichever header could be read). A row
    whose files had no readable header takes the largest D_max of the table, the worst penalty it knows. When no
    row records a D_max but some row needs one, distances cannot be penalised: their columns are left out of the
    tables (with a warning) rather than the comparison refused.
    """
    d_max = pd.to_numeric(results.get("d_max_mm", pd.Series(dtype=float)), errors="coerce")
    finite = d_max[np.isfinite(d_max) & (d_max > 0)]
    if not finite.empty:
        return float(finite.max()), results
    failed = results["failed"].astype(bool) if "failed" in results.columns else pd.Series(False, index=results.index)
    missed = results.get("empty_pred", pd.Series(False, index=results.index)).fillna(False).astype(bool)
    false_positive = results.get("empty_gt", pd.Series(False, index=results.index)).fillna(False).astype(bool)
    if not (failed | missed | false_positive).any():
        return None, results
    from zeroshot.metrics import DISTANCE_COLUMNS

    dropped = [c for c in DISTANCE_COLUMNS if c in results.columns]
    if dropped:
        warnings.warn(
            f"no row records d_max_mm (every image header was unreadable), so the distance metrics of missed and "
            f"failed cases cannot be penalised: {', '.join(dropped)} are left out of the tables",
            ZeroshotWarning,
            stacklevel=4,
        )
    return None, results.drop(columns=dropped)


def prepare_rows(results: pd.DataFrame, *, both_empty_as_perfect: bool = False) -> pd.DataFrame:
    """Penalised copy of a results table with the columns the tables group by.

    Adds ``kind`` (``zero-shot`` unless present) and ``train_sequence`` (``none`` for zero-shot rows) and keeps
    raw values out: after this, a NaN metric means "excluded by policy" (both masks empty), nothing else. A failed
    row without ``d_max_mm`` (no header of its case could be read) is penalised with the largest D_max of the
    table; if no row has one, the distance columns are left out (see :func:`_d_max_fallback`).

    Raises
    ------
    RunError
        When a metric is still infinite after the penalties (a row without ``d_max_mm``).
    """
    rows = _apply_penalties(results, both_empty_as_perfect=both_empty_as_perfect).copy()
    if "kind" not in rows.columns:
        rows["kind"] = KIND_ZERO_SHOT
    if "train_sequence" not in rows.columns:
        rows["train_sequence"] = NO_TRAINING
    rows["kind"] = rows["kind"].fillna(KIND_ZERO_SHOT).astype(str)
    rows["train_sequence"] = rows["train_sequence"].fillna(NO_TRAINING).astype(str)
    for metric in metric_columns(rows):
        values = pd.to_numeric(rows[metric], errors="coerce")
        if np.isinf(values).any():
            raise RunError(
                f"column {metric}: infinite values remain after the edge-case penalties; the rows need d_max_mm"
            )
        rows[metric] = values
    return rows


def sequence_order(sequences: pd.Series) -> pd.Series:
    """Sort key putting sequences in the order tables show them (T1, T2, OOP, then others by name)."""
    others = sorted({str(s) for s in sequences if s not in SEQUENCES})
    return sequences.map(lambda s: SEQUENCES.index(s) if s in SEQUENCES else len(SEQUENCES) + others.index(str(s)))


def _sorted(table: pd.DataFrame, columns: Sequence[str], metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """Sort rows by sequence (T1, T2, OOP), kind (supervised first), then ``columns``, then metric order."""
    if table.empty:
        return table
    keys = pd.DataFrame(index=table.index)
    if "sequence" in table.columns:
        keys["_sequence"] = sequence_order(table["sequence"])
    if "kind" in table.columns:
        keys["_kind"] = table["kind"].map({KIND_SUPERVISED: 0}).fillna(1)
    for column in columns:
        if column in table.columns:
            keys[f"_{column}"] = table[column].astype(str)
    if metrics is not None and "metric" in table.columns:
        keys["_metric"] = table["metric"].map({m: i for i, m in enumerate(metrics)})
    order = keys.sort_values(list(keys.columns), kind="stable").index
    return table.loc[order].reset_index(drop=True)


def _group_columns(rows: pd.DataFrame, by: Sequence[str]) -> list[str]:
    return [*by, "kind", "train_sequence", *method_keys(rows)]


@dataclass(frozen=True)
class CaseTable:
    """Every metric's per-case values of one grouping, from one pass over the rows.

    The summary, the paired tests and ``per_case.csv`` read the same per-case values: the seeds of each case are
    averaged once for every metric (one ``groupby``), not once per metric and table (twelve passes over a
    100,000-row run with four metrics).

    Attributes
    ----------
    frame : DataFrame
        One row per case and method (in order of first appearance in the rows): the key columns, one column per
        metric holding the mean over the case's seeds of its penalised values (NaN when every row of the case
        is excluded), and ``n_seeds``.
    keys : tuple of str
        The key columns: ``by``, ``kind``, ``train_sequence``, model, strategy[, round], ``case_id``, ``center``.
    by : tuple of str
        The grouping beside the method, e.g. ``("sequence",)``.
    metrics : tuple of str
    """

    frame: pd.DataFrame
    keys: tuple[str, ...]
    by: tuple[str, ...]
    metrics: tuple[str, ...]

    def values(self, metric: str) -> pd.DataFrame:
        """The long form of one metric: the key columns, ``value`` and ``n_seeds`` (see :func:`case_values`)."""
        if metric not in self.metrics:
            raise RunError(f"metric {metric!r} is not in this case table (have: {', '.join(self.metrics)})")
        return self.frame[[*self.keys, metric, "n_seeds"]].rename(columns={metric: "value"})


def case_table(
    rows: pd.DataFrame, *, metrics: Sequence[str] | None = None, by: Sequence[str] = ("sequence",)
) -> CaseTable:
    """Per case and method, the mean over the case's seeds of each penalised metric, in one pass over the rows.

    Parameters
    ----------
    rows : DataFrame
        Output of :func:`prepare_rows`.
    metrics : sequence of str, optional
        Default: :func:`metric_columns`.
    by : sequence of str
        Grouping beside the method: ``("sequence",)`` or ``("sequence", "center")``.

    Raises
    ------
    RunError
        When a metric is not a column of the rows.
    """
    metrics = tuple(metrics) if metrics is not None else tuple(metric_columns(rows))
    for metric in metrics:
        if metric not in rows.columns:
            raise RunError(
                f"metric {metric!r} is not a column of the results (have: {', '.join(metric_columns(rows))})"
            )
    keys = [*_group_columns(rows, by), "case_id"]
    if "center" not in keys:
        keys.append("center")
    grouped = rows.groupby(keys, sort=False, dropna=False)
    # Each column's group mean is computed on its own, so this equals one groupby per metric to the last bit.
    frame = grouped[list(metrics)].mean()
    frame["n_seeds"] = grouped.size()
    return CaseTable(frame.reset_index(), tuple(keys), tuple(by), metrics)


def case_values(rows: pd.DataFrame, metric: str, *, by: Sequence[str] = ("sequence",)) -> pd.DataFrame:
    """One value per case and method: the mean over the case's seeds of the penalised ``metric``.

    Returns a DataFrame with the group columns (``by``, ``kind``, ``train_sequence``, model, strategy[, round]),
    ``case_id``, ``center``, ``value`` and ``n_seeds``. A case whose every row is excluded (both masks empty)
    has ``value`` NaN. Several metrics of the same rows: :func:`case_table` computes them in one pass.
    """
    return case_table(rows, metrics=[metric], by=by).values(metric)


def _shared_cases(rows: pd.DataFrame, cases: CaseTable | None, metrics: Sequence[str], by: Sequence[str]) -> CaseTable:
    """``cases`` if it holds ``metrics`` grouped by ``by``, else the rows' own :func:`case_table`."""
    if cases is None:
        return case_table(rows, metrics=metrics, by=by)
    missing = [m for m in metrics if m not in cases.metrics]
    if cases.by != tuple(by) or missing:
        raise ValueError(
            f"cases: expected per-case values by {tuple(by)} of {', '.join(metrics)}, found by {cases.by} of "
            f"{', '.join(cases.metrics)}"
        )
    return cases


def _groups(frame: pd.DataFrame, columns: Sequence[str]) -> list[tuple[tuple, np.ndarray]]:
    """Each group of ``frame`` by ``columns``: its key and its row positions, in frame order.

    The groups come in the order ``frame.groupby(columns, sort=True, dropna=False)`` iterates them (``ngroup``
    numbers them so). Positions rather than sub-frames: every metric and table reads a group's values from
    one array, without copying the group's (text) key columns once per group.
    """
    if frame.empty:
        return []
    grouped = frame.groupby(list(columns), sort=True, dropna=False)
    codes = grouped.ngroup().to_numpy()
    order = np.argsort(codes, kind="stable")
    members = np.split(order, np.flatnonzero(np.diff(codes[order])) + 1)
    keys = [key if isinstance(key, tuple) else (key,) for key in grouped.size().index]
    return list(zip(keys, members, strict=True))


def _outcome_counts(rows: pd.DataFrame, group_columns: list[str]) -> dict[tuple, dict[str, int]]:
    """Per group: its number of rows and of rows by outcome (they do not depend on the metric)."""
    outcomes = ("failed", "missed", "false_positive", "both_empty")
    codes, uniques = pd.factorize(rows["outcome"])  # compare small codes, not 100,000s of texts, per outcome
    code = {value: index for index, value in enumerate(uniques)}
    flags = {outcome: codes == code.get(outcome, -2) for outcome in outcomes}
    return {
        key: {"n_rows": len(members), **{f"n_{o}": int(np.count_nonzero(flags[o][members])) for o in outcomes}}
        for key, members in _groups(rows, group_columns)
    }


def summary_table(
    rows: pd.DataFrame,
    *,
    metrics: Sequence[str] | None = None,
    by: Sequence[str] = ("sequence",),
    options: BootstrapOptions | None = None,
    cases: CaseTable | None = None,
) -> pd.DataFrame:
    """Per group and method: counts, mean ± SD, median [IQR] and a bootstrap CI of the mean, for each metric.

    Parameters
    ----------
    rows : DataFrame
        Output of :func:`prepare_rows`.
    metrics : sequence of str, optional
        Default: :func:`metric_columns`.
    by : sequence of str
        Grouping beside the method: ``("sequence",)`` or ``("sequence", "center")``.
    options : BootstrapOptions, optional
    cases : CaseTable, optional
        The rows' per-case values (:func:`case_table` with the same ``by`` and every metric), when the caller
        shares them with other tables; computed here otherwise.

    Returns
    -------
    DataFrame
        One row per group x method x metric with ``n_cases`` (cases with a value), ``n_excluded`` (cases the
        both-empty policy excludes), ``n_rows`` and row counts by outcome: ``n_failed``, ``n_missed`` (empty
        prediction, organ present), ``n_false_positive`` (prediction without organ), ``n_both_empty``; then
        ``mean, sd, median, q1, q3, ci_low, ci_high`` and the CI settings.
    """
    options = options or BootstrapOptions()
    metrics = list(metrics) if metrics is not None else metric_columns(rows)
    cases = _shared_cases(rows, cases, metrics, by)
    group_columns = _group_columns(rows, by)
    outcome_counts = _outcome_counts(rows, group_columns)
    members = _groups(cases.frame, group_columns)
    # Metric by metric, groups in order: the order the intervals are drawn in (and batched by) stays fixed.
    groups = [(metric, key) for metric in metrics for key, _ in members]
    samples = [cases.frame[metric].to_numpy()[positions] for metric in metrics for _, positions in members]
    summaries = stats.summarize_many(
        samples,
        confidence=options.confidence,
        n_resamples=options.n_resamples,
        method=options.method,
        seed=options.seed,
    )
    records = []
    for (metric, key), summary in zip(groups, summaries, strict=True):
        records.append(
            {
                **dict(zip(group_columns, key, strict=True)),
                "metric": metric,
                "n_cases": summary.n,
                "n_excluded": summary.n_missing,
                **outcome_counts[key],
                **summary_columns(summary),
                **options.columns(),
            }
        )
    return _sorted(
        pd.DataFrame.from_records(records), ["center", "train_sequence", "model", "strategy", "round"], metrics
    )


def cross_sequence_table(summary: pd.DataFrame, *, metric: str = "dice") -> pd.DataFrame:
    """Train sequence x test sequence: every method's mean and CI of ``metric`` on each test sequence.

    Zero-shot methods have train sequence ``none``; supervised models the sequence they were trained on. Long
    format (one row per method x test sequence); :mod:`zeroshot.compare.render` pivots it for reading.
    """
    if "center" in summary.columns:
        raise RunError("cross_sequence_table: pass the per-sequence summary, not the per-center one")
    chosen = summary.loc[summary["metric"] == metric]
    columns = ["kind", "train_sequence", *[c for c in ("model", "strategy", "round") if c in chosen.columns]]
    table = chosen[[*columns, "sequence", "mean", "ci_low", "ci_high", "n_cases"]].rename(
        columns={"sequence": "test_sequence"}
    )
    table.insert(len(columns) + 1, "metric", metric)
    keys = pd.DataFrame(
        {
            "_kind": table["kind"].map({KIND_SUPERVISED: 0, KIND_ZERO_SHOT: 1}).fillna(2),
            **{f"_{c}": table[c].astype(str) for c in columns[1:]},
            "_test": sequence_order(table["test_sequence"]),
        },
        index=table.index,
    )
    return table.loc[keys.sort_values(list(keys.columns), kind="stable").index].reset_index(drop=True)


@dataclass(frozen=True)
class _Method:
    kind: str
    train_sequence: str
    model: str
    strategy: str
    round: object = None

    @property
    def label(self) -> str:
        if self.kind == KIND_SUPERVISED:
            return f"{self.model} (trained on {self.train_sequence})"
        suffix = f", round {self.round}" if self.round is not None else ""
        return f"{self.model} / {self.strategy}{suffix}"


def _pairs(methods: Sequence[_Method]) -> list[tuple[_Method, _Method, str]]:
    """Comparisons made on one sequence.

    Each zero-shot method against each supervised model, and zero-shot models against each other under the
    same strategy (and round).
    """
    zero_shot = [m for m in methods if m.kind != KIND_SUPERVISED]
    supervised = [m for m in methods if m.kind == KIND_SUPERVISED]
    pairs = [(z, s, "zero-shot vs supervised") for z in zero_shot for s in supervised]
    for a, b in itertools.combinations(sorted(zero_shot, key=lambda m: m.model), 2):
        if (a.strategy, a.round) == (b.strategy, b.round) and a.model != b.model:
            pairs.append((a, b, "model vs model"))
    return pairs


def _valued(values: np.ndarray, cases: pd.Index) -> pd.Series:
    """``values`` by case, the cases without a value (NaN: excluded by the both-empty policy) left out."""
    kept = ~np.isnan(values)
    return pd.Series(values, index=cases) if kept.all() else pd.Series(values[kept], index=cases[kept])


def _on(values: pd.Series, cases: pd.Index) -> np.ndarray:
    """``values`` of ``cases``, in their order (without a lookup when they are every case of ``values``)."""
    return values.to_numpy() if values.index.equals(cases) else values.loc[cases].to_numpy()


def paired_table(
    rows: pd.DataFrame,
    *,
    metrics: Sequence[str] | None = None,
    options: BootstrapOptions | None = None,
    alpha: float = 0.05,
    cases: CaseTable | None = None,
) -> pd.DataFrame:
    """Paired comparisons on common cases, per sequence and metric, with Holm correction per metric.

    For each sequence: every zero-shot method against every supervised model scored on that sequence, and every
    two zero-shot models under the same strategy. Differences are ``a - b`` over the cases both have a value for
    (seeds averaged within each case): a bootstrap CI of the mean difference, the median difference and a
    Wilcoxon signed-rank p-value. ``p_holm`` adjusts the p-values of all comparisons of one metric together
    (the family), and ``favours`` names the better method where the CI excludes zero. ``cases``: the rows'
    per-case values by sequence (:func:`case_table`) when the caller shares them, as in :func:`summary_table`.
    """
    options = options or BootstrapOptions()
    metrics = list(metrics) if metrics is not None else metric_columns(rows)
    cases = _shared_cases(rows, cases, metrics, ("sequence",))
    group_columns = _group_columns(rows, ("sequence",))
    # One pass groups the cases by sequence and method for every metric (sequence is the first group column).
    case_ids = cases.frame["case_id"].to_numpy(dtype=object)
    by_sequence: dict[object, dict[_Method, tuple[np.ndarray, pd.Index]]] = {}
    for key, positions in _groups(cases.frame, group_columns):
        if not pd.isna(key[0]):  # rows without a sequence are in no sequence's comparisons
            by_sequence.setdefault(key[0], {})[_Method(*key[1:])] = (positions, pd.Index(case_ids[positions]))
    comparisons, pairs = [], []
    for metric in metrics:
        values = cases.frame[metric].to_numpy()
        for sequence, methods in by_sequence.items():
            # A method without a value on this sequence has no case in common with any other: no comparison.
            series = {method: _valued(values[positions], index) for method, (positions, index) in methods.items()}
            for a, b, comparison in _pairs(list(series)):
                common = series[a].index.intersection(series[b].index)
                if not common.empty:
                    comparisons.append((metric, sequence, a, b, comparison))
                    pairs.append((_on(series[a], common), _on(series[b], common)))
    results = stats.paired_differences(
        pairs, confidence=options.confidence, n_resamples=options.n_resamples, method=options.method, seed=options.seed
    )
    families: dict[str, list[dict]] = {metric: [] for metric in metrics}
    for (metric, sequence, a, b, comparison), result in zip(comparisons, results, strict=True):
        ci = result.mean_difference
        favours = ""
        if ci.low > 0 or ci.high < 0:
            a_larger = ci.low > 0
            favours = a.label if a_larger == higher_is_better(metric) else b.label
        families[metric].append(
            {
                "sequence": sequence,
                "metric": metric,
                "comparison": comparison,
                "method_a": a.label,
                "method_b": b.label,
                "n_common": result.n,
                "mean_a": result.mean_a,
                "mean_b": result.mean_b,
                "mean_diff": ci.estimate,
                "ci_low": ci.low,
                "ci_high": ci.high,
                "median_diff": result.median_difference,
                "wilcoxon_stat": result.wilcoxon.statistic,
                "n_nonzero": result.wilcoxon.n_nonzero,
                "p_value": result.wilcoxon.p_value,
                "favours": favours,
                **options.columns(),
            }
        )
    records = []
    for family in families.values():  # Holm over all comparisons of one metric
        adjusted = stats.holm_adjust([r["p_value"] for r in family])
        for record, p_holm in zip(family, adjusted, strict=True):
            record["p_holm"] = p_holm
            record["significant"] = bool(p_holm <= alpha) if not np.isnan(p_holm) else False
        records.extend(family)
    columns = [
        "sequence", "metric", "comparison", "method_a", "method_b", "n_common", "mean_a", "mean_b", "mean_diff",
        "ci_low", "ci_high", "median_diff", "wilcoxon_stat", "n_nonzero", "p_value", "p_holm", "significant",
        "favours", "ci_method", "confidence", "n_resamples", "bootstrap_seed",
    ]  # fmt: skip
    table = pd.DataFrame.from_records(records, columns=columns)
    return _sorted(table, ["comparison", "method_a", "method_b"], metrics)
