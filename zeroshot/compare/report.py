"""``compare_runs``: every comparison table of one or more runs, written as CSV, Markdown and LaTeX.

It reads the runs (:mod:`~zeroshot.compare.runs`), scores supervised predictions on the same cases
(:mod:`~zeroshot.compare.baselines`), builds the tables (:mod:`~zeroshot.compare.tables`,
:mod:`~zeroshot.compare.clicks`, :mod:`~zeroshot.compare.auc`) and writes them, in the order of one list, through
:func:`zeroshot.atomic.write_atomic` (:mod:`~zeroshot.compare.render` formats them).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from zeroshot.atomic import write_atomic
from zeroshot.compare import render
from zeroshot.compare.auc import auc_table, case_aucs
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
from zeroshot.compare.runs import RunTables, load_runs
from zeroshot.compare.tables import (
    BootstrapOptions,
    case_table,
    cross_sequence_table,
    metric_columns,
    paired_table,
    prepare_rows,
    summary_table,
)
from zeroshot.csv_text import to_csv
from zeroshot.errors import ConfigError

__all__ = ["BASELINE_RESULTS", "COMPARISON_JSON", "ComparisonOutput", "compare_runs", "comparison_rows"]

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
    captions = _Captions(options, interactive, time_cap_s)

    per_case_values = case_table(rows)  # every metric's per-case values, shared by summary, paired and per_case
    summary = summary_table(rows, options=options, cases=per_case_values)
    cross = cross_sequence_table(summary)
    paired = paired_table(rows, options=options, cases=per_case_values)
    outputs: list[_Table | _Frame] = []
    if not baseline_rows.empty:
        outputs += [
            _Frame(BASELINE_RESULTS, baseline_rows),
            _Frame("baseline_results.csv", baseline_rows, float_format=None),
        ]
    outputs.append(_Table("summary", summary, render.summary_display, captions.summary))
    if by_center:
        per_center = summary_table(rows, by=("sequence", "center"), options=options)
        outputs.append(_Table("summary_by_center", per_center, render.summary_display, captions.by_center))
    outputs += [
        _Table("cross_sequence", cross, render.cross_sequence_display, captions.cross_sequence),
        _Table("paired", paired, render.paired_display, captions.paired),
    ]
    clicks = noc = auc = None
    if interactive:
        curves = click_curves(all_rows)
        clicks = clicks_table(curves, after_clicks=after_clicks, options=options)
        noc = noc_table(curves, thresholds=noc_thresholds, options=options)
        outputs += [
            _Table("clicks", clicks, render.clicks_display, captions.clicks),
            _Table("noc", noc, render.noc_display, captions.noc),
            _Frame("per_case_clicks.csv", curves),
        ]
        if "nsd_2mm" in all_rows.columns:
            cases = case_aucs(all_rows, time_cap_s=time_cap_s)
            auc = auc_table(cases, options=options)
            outputs += [_Table("auc", auc, render.auc_display, captions.auc), _Frame("per_case_auc.csv", cases)]
    if published_table is not None:
        outputs.append(_Table("published", published_table, render.published_display, captions.published))
    per_case = pd.concat(
        [per_case_values.values(metric).assign(metric=metric) for metric in per_case_values.metrics],
        ignore_index=True,
    )
    outputs.append(_Frame("per_case.csv", per_case))

    files = [path for output in outputs for path in output.write(out)]
    settings = _settings(runs, specs, published, options, both_empty_as_perfect)
    if interactive:
        settings["interactive"] = {
            "after_clicks": list(after_clicks),
            "noc_thresholds": list(noc_thresholds),
            "time_cap_s": time_cap_s,
            "initial_prompt_tables": "summary, cross_sequence, paired and per_case use round 0 only",
        }
    files.append(write_atomic(out / COMPARISON_JSON, json.dumps(settings, indent=2) + "\n"))
    return ComparisonOutput(out, tuple(files), summary, cross, paired, clicks, noc, auc)


@dataclass(frozen=True)
class _Table:
    """A table written as ``stem.csv`` (numbers), ``stem.md`` and ``stem.tex`` (its display form)."""

    stem: str
    numeric: pd.DataFrame
    display: Callable[[pd.DataFrame], pd.DataFrame]
    caption: str

    def write(self, out: Path) -> Sequence[Path]:
        return render.write_table(self.numeric, self.display(self.numeric), out, self.stem, caption=self.caption)


@dataclass(frozen=True)
class _Frame:
    """A table written as it is: Parquet or CSV by the file name's suffix (CSV floats as ``float_format``)."""

    name: str
    frame: pd.DataFrame
    float_format: str | None = render.FLOAT_FORMAT

    def write(self, out: Path) -> Sequence[Path]:
        if self.name.endswith(".parquet"):
            buffer = io.BytesIO()
            self.frame.to_parquet(buffer, index=False)
            return (write_atomic(out / self.name, buffer.getvalue()),)
        # float_format None: floats as Python writes them (full precision)
        return (write_atomic(out / self.name, to_csv(self.frame, float_format=self.float_format)),)


@dataclass(frozen=True)
class _Captions:
    """The caption of each table, from the bootstrap settings and the kind of run."""

    options: BootstrapOptions
    interactive: bool
    time_cap_s: float | None

    @property
    def _level(self) -> str:
        return f"{self.options.confidence * 100:g} %"

    @property
    def _initial(self) -> str:
        return " Interactive runs: initial prompts only (round 0); see clicks and noc." if self.interactive else ""

    @property
    def summary(self) -> str:
        o = self.options
        return (
            f"Per sequence and method: mean ± SD, median [IQR] and {self._level} bootstrap CI of the mean over cases "
            f"({o.method}, {o.n_resamples} resamples, seed {o.seed}); missed organs and failed "
            f"cases scored as the worst case.{self._initial}"
        )

    @property
    def by_center(self) -> str:
        return f"Per sequence and center.{self._initial}"

    @property
    def cross_sequence(self) -> str:
        return f"Dice by training sequence (rows) and test sequence (columns): mean [{self._level} CI].{self._initial}"

    @property
    def paired(self) -> str:
        return (
            "Paired comparisons on common cases: mean difference A − B with bootstrap CI, Wilcoxon signed-rank p, "
            f"Holm-adjusted across the comparisons of each metric.{self._initial}"
        )

    @property
    def clicks(self) -> str:
        return (
            f"Dice after k simulated corrective clicks: mean [{self._level} bootstrap CI] over cases (seeds averaged "
            "within a case; the value after k clicks is that of the last round with at most k clicks; k clipped "
            "to the budget)."
        )

    @property
    def noc(self) -> str:
        return (
            f"Number of clicks to reach a Dice (NoC): mean [{self._level} bootstrap CI] over cases; a case that never "
            "reaches it scores the budget and is counted as not reached."
        )

    @property
    def auc(self) -> str:
        cap = f"; a case over {self.time_cap_s:g} s scores 0" if self.time_cap_s is not None else ""
        return (
            "CVPR 2025 interactive challenge curve values per case, mean [bootstrap CI] over cases: DSC_AUC "
            "and NSD_AUC are trapezoid areas (unit spacing) over click rounds 1..R, not the initial prompt; "
            "NSD at 2 mm counts only where DSC > 0.2; / (R−1) normalises to [0, 1]; final = after round "
            f"R{cap}."
        )

    @property
    def published(self) -> str:
        return "Published numbers (other cases; context only, not tested against)."


def _settings(
    runs: RunTables,
    specs: Sequence[BaselinePredictions],
    published: str | Path | None,
    options: BootstrapOptions,
    both_empty_as_perfect: bool,
) -> dict[str, object]:
    """What ``comparison.json`` records (it also marks the folder as a comparison)."""
    return {
        "runs": [str(r) for r in runs.roots],
        "baseline_predictions": [{**asdict(s), "folder": str(s.folder)} for s in specs],
        "published": str(Path(published).resolve()) if published is not None else None,
        "bootstrap": asdict(options),
        "both_empty_as_perfect": both_empty_as_perfect,
        "unit": "case (seeds averaged within a case before any statistic)",
        "holm_family": "all paired comparisons of one metric",
    }
