"""Compare zero-shot runs with supervised baselines: summaries with CIs, cross-sequence table, paired tests.

``compare_runs`` is what ``zeroshot compare`` calls. It reads the runs (:mod:`~zeroshot.compare.runs`), scores
supervised predictions on the same cases (:mod:`~zeroshot.compare.baselines`), builds the tables
(:mod:`~zeroshot.compare.tables`) and writes each as CSV, Markdown and LaTeX (:mod:`~zeroshot.compare.render`).
Interactive runs (a ``round`` column) add Dice after k corrective clicks and the clicks needed to reach a Dice
(:mod:`~zeroshot.compare.clicks`); the other tables then use the initial prompts (round 0) only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from zeroshot.compare import render
from zeroshot.compare.auc import AUC_MEASURES, auc_table, case_aucs
from zeroshot.compare.baselines import (
    BaselinePredictions,
    parse_baseline_predictions,
    read_published,
    score_baseline_predictions,
)
from zeroshot.compare.clicks import (
    AFTER_CLICKS,
    NOC_THRESHOLDS,
    check_after_clicks,
    check_noc_thresholds,
    click_curves,
    clicks_table,
    initial_rows,
    is_interactive,
    noc_table,
)
from zeroshot.compare.runs import RunError, RunTables, load_runs
from zeroshot.compare.tables import (
    BootstrapOptions,
    case_values,
    cross_sequence_table,
    metric_columns,
    paired_table,
    prepare_rows,
    summary_table,
)
from zeroshot.errors import ConfigError

__all__ = [
    "AFTER_CLICKS",
    "AUC_MEASURES",
    "BASELINE_RESULTS",
    "COMPARISON_JSON",
    "NOC_THRESHOLDS",
    "BaselinePredictions",
    "BootstrapOptions",
    "ComparisonOutput",
    "RunError",
    "RunTables",
    "auc_table",
    "case_aucs",
    "case_values",
    "click_curves",
    "clicks_table",
    "compare_runs",
    "comparison_rows",
    "cross_sequence_table",
    "initial_rows",
    "is_interactive",
    "load_runs",
    "metric_columns",
    "noc_table",
    "paired_table",
    "parse_baseline_predictions",
    "prepare_rows",
    "read_published",
    "score_baseline_predictions",
    "summary_table",
]

#: File (in a comparison's output folder) holding the scored supervised rows; ``zeroshot figures`` reads it.
BASELINE_RESULTS = "baseline_results.parquet"
#: File (in a comparison's output folder) recording its settings; it marks the folder as a comparison.
COMPARISON_JSON = "comparison.json"


@dataclass(frozen=True)
class ComparisonOutput:
    """What :func:`compare_runs` wrote.

    Attributes
    ----------
    out : Path
    files : tuple of Path
        Every file written.
    summary, cross_sequence, paired : DataFrame
        The numeric tables (also in the CSV files); initial prompts only (round 0) for interactive runs.
    clicks, noc : DataFrame or None
        Value after k clicks and clicks to reach a Dice, for interactive runs (else ``None``).
    auc : DataFrame or None
        The CVPR 2025 challenge's curve values (DSC_AUC, NSD_AUC, final DSC and NSD) for interactive runs.
    """

    out: Path
    files: tuple[Path, ...]
    summary: pd.DataFrame
    cross_sequence: pd.DataFrame
    paired: pd.DataFrame
    clicks: pd.DataFrame | None = None
    noc: pd.DataFrame | None = None
    auc: pd.DataFrame | None = None


def comparison_rows(
    runs: RunTables,
    baseline_rows: pd.DataFrame | None = None,
    *,
    both_empty_as_perfect: bool = False,
) -> pd.DataFrame:
    """Penalised zero-shot rows and scored supervised rows in one table (the input of every table and figure)."""
    frames = [runs.results]
    if baseline_rows is not None and not baseline_rows.empty:
        frames.append(baseline_rows)
    combined = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    return prepare_rows(combined, both_empty_as_perfect=both_empty_as_perfect)


def _tolerances(results: pd.DataFrame) -> tuple[float, ...]:
    found = [float(c[len("nsd_") : -len("mm")]) for c in metric_columns(results) if c.startswith("nsd_")]
    return tuple(found) or (2.0,)


def compare_runs(
    run_dirs: Sequence[str | Path],
    out: str | Path,
    *,
    baseline_predictions: Sequence[str | BaselinePredictions] = (),
    published: str | Path | None = None,
    by_center: bool = False,
    options: BootstrapOptions | None = None,
    both_empty_as_perfect: bool = False,
    after_clicks: Sequence[int] = AFTER_CLICKS,
    noc_thresholds: Sequence[float] = NOC_THRESHOLDS,
    time_cap_s: float | None = None,
) -> ComparisonOutput:
    """Write every comparison table for one or more runs into ``out``.

    Parameters
    ----------
    run_dirs : sequence of path
        Run directories (``zeroshot eval --out``).
    out : path
        Output folder (created).
    baseline_predictions : sequence of str or BaselinePredictions
        ``MODEL-TRAIN[@TEST]=DIR`` specifications of supervised predictions to score on the runs' cases.
    published : path, optional
        A CSV of cited numbers (``benchmarks/baselines/published.csv``), shown beside, never tested against.
    by_center : bool
        Also write the summary per sequence x center.
    options : BootstrapOptions, optional
        Bootstrap settings for every CI (default: 10,000 percentile resamples, 95 %, seed 0).
    both_empty_as_perfect : bool
        Score cases with both masks empty as Dice 1 / distance 0 instead of excluding them.
    after_clicks : sequence of int
        Interactive runs: the click counts k of the Dice-after-k-clicks table (clipped to each budget).
    noc_thresholds : sequence of float
        Interactive runs: the Dice values of the NoC table (0.85 for NoC@85).
    time_cap_s : float or None
        Interactive runs: the CVPR 2025 challenge's per-case time cap (90 s per structure there): a curve whose
        ``seconds_prepare`` plus every round's ``seconds_segment`` exceed it scores 0 in the ``auc`` table.

    Returns
    -------
    ComparisonOutput

    Files written (each table as ``.csv``, ``.md`` and ``.tex``): ``summary``, ``summary_by_center`` (with
    ``by_center``), ``cross_sequence``, ``paired``, ``published`` (with ``published``), and for interactive runs
    ``clicks``, ``noc`` and ``auc``; ``per_case.csv`` (the penalised per-case values every statistic used) and for
    interactive runs ``per_case_clicks.csv`` (every case's Dice after each click count) and ``per_case_auc.csv``;
    ``baseline_results.parquet``/``.csv`` (the scored supervised rows, with ``baseline_predictions``);
    ``comparison.json`` (the settings).
    """
    options = options or BootstrapOptions()
    if time_cap_s is not None and not (isinstance(time_cap_s, (int, float)) and time_cap_s > 0):
        raise ConfigError(f"time_cap_s (--time-cap-s): expected seconds > 0, found {time_cap_s!r}")
    after_clicks = check_after_clicks(after_clicks)
    noc_thresholds = check_noc_thresholds(noc_thresholds)
    out = Path(out)
    specs = [s if isinstance(s, BaselinePredictions) else parse_baseline_predictions(s) for s in baseline_predictions]
    published_table = read_published(published) if published is not None else None
    runs = load_runs(run_dirs, read_slices=False)
    baseline_rows = score_baseline_predictions(runs, specs, tolerances_mm=_tolerances(runs.results))
    all_rows = comparison_rows(runs, baseline_rows, both_empty_as_perfect=both_empty_as_perfect)
    interactive = is_interactive(all_rows)
    rows = initial_rows(all_rows)
    initial_note = " Interactive runs: initial prompts only (round 0); see clicks and noc." if interactive else ""

    out.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    if not baseline_rows.empty:
        baseline_rows.to_parquet(out / BASELINE_RESULTS, index=False)
        baseline_rows.to_csv(out / "baseline_results.csv", index=False)
        files += [out / BASELINE_RESULTS, out / "baseline_results.csv"]

    level = f"{options.confidence * 100:g} %"
    summary = summary_table(rows, options=options)
    files += render.write_table(
        summary,
        render.summary_display(summary),
        out,
        "summary",
        caption=(
            f"Per sequence and method: mean ± SD, median [IQR] and {level} bootstrap CI of the mean over cases "
            f"({options.method}, {options.n_resamples} resamples, seed {options.seed}); missed organs and failed "
            f"cases scored as the worst case.{initial_note}"
        ),
    )
    if by_center:
        per_center = summary_table(rows, by=("sequence", "center"), options=options)
        files += render.write_table(
            per_center,
            render.summary_display(per_center),
            out,
            "summary_by_center",
            caption=f"Per sequence and center.{initial_note}",
        )
    cross = cross_sequence_table(summary)
    files += render.write_table(
        cross,
        render.cross_sequence_display(cross),
        out,
        "cross_sequence",
        caption=f"Dice by training sequence (rows) and test sequence (columns): mean [{level} CI].{initial_note}",
    )
    paired = paired_table(rows, options=options)
    files += render.write_table(
        paired,
        render.paired_display(paired),
        out,
        "paired",
        caption=(
            "Paired comparisons on common cases: mean difference A − B with bootstrap CI, Wilcoxon signed-rank p, "
            f"Holm-adjusted across the comparisons of each metric.{initial_note}"
        ),
    )
    clicks = noc = auc = None
    if interactive:
        curves = click_curves(all_rows)
        clicks = clicks_table(curves, after_clicks=after_clicks, options=options)
        files += render.write_table(
            clicks,
            render.clicks_display(clicks),
            out,
            "clicks",
            caption=(
                f"Dice after k simulated corrective clicks: mean [{level} bootstrap CI] over cases (seeds averaged "
                "within a case; the value after k clicks is that of the last round with at most k clicks; k clipped "
                "to the budget)."
            ),
        )
        noc = noc_table(curves, thresholds=noc_thresholds, options=options)
        files += render.write_table(
            noc,
            render.noc_display(noc),
            out,
            "noc",
            caption=(
                f"Number of clicks to reach a Dice (NoC): mean [{level} bootstrap CI] over cases; a case that never "
                "reaches it scores the budget and is counted as not reached."
            ),
        )
        curves.to_csv(out / "per_case_clicks.csv", index=False, float_format="%.10g")
        files.append(out / "per_case_clicks.csv")
        if "nsd_2mm" in all_rows.columns:
            cases = case_aucs(all_rows, time_cap_s=time_cap_s)
            auc = auc_table(cases, options=options)
            cap = f"; a case over {time_cap_s:g} s scores 0" if time_cap_s is not None else ""
            files += render.write_table(
                auc,
                render.auc_display(auc),
                out,
                "auc",
                caption=(
                    "CVPR 2025 interactive challenge curve values per case, mean [bootstrap CI] over cases: DSC_AUC "
                    "and NSD_AUC are trapezoid areas (unit spacing) over click rounds 1..R, not the initial prompt; "
                    "NSD at 2 mm counts only where DSC > 0.2; / (R−1) normalises to [0, 1]; final = after round "
                    f"R{cap}."
                ),
            )
            cases.to_csv(out / "per_case_auc.csv", index=False, float_format="%.10g")
            files.append(out / "per_case_auc.csv")
    if published_table is not None:
        files += render.write_table(
            published_table,
            render.published_display(published_table),
            out,
            "published",
            caption="Published numbers (other cases; context only, not tested against).",
        )
    per_case = pd.concat(
        [case_values(rows, metric).assign(metric=metric) for metric in metric_columns(rows)], ignore_index=True
    )
    per_case.to_csv(out / "per_case.csv", index=False, float_format="%.10g")
    files.append(out / "per_case.csv")
    settings = {
        "runs": [str(r) for r in runs.roots],
        "baseline_predictions": [{**asdict(s), "folder": str(s.folder)} for s in specs],
        "published": str(Path(published).resolve()) if published is not None else None,
        "bootstrap": asdict(options),
        "both_empty_as_perfect": both_empty_as_perfect,
        "unit": "case (seeds averaged within a case before any statistic)",
        "holm_family": "all paired comparisons of one metric",
    }
    if interactive:
        settings["interactive"] = {
            "after_clicks": list(after_clicks),
            "noc_thresholds": list(noc_thresholds),
            "time_cap_s": time_cap_s,
            "initial_prompt_tables": "summary, cross_sequence, paired and per_case use round 0 only",
        }
    (out / COMPARISON_JSON).write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
    files.append(out / COMPARISON_JSON)
    return ComparisonOutput(out, tuple(files), summary, cross, paired, clicks, noc, auc)
