"""Compare zero-shot runs with supervised baselines: summaries with CIs, cross-sequence table, paired tests.

:func:`~zeroshot.compare.report.compare_runs` is what ``zeroshot compare`` calls. It reads the runs
(:mod:`~zeroshot.compare.runs`), scores supervised predictions on the same cases (:mod:`~zeroshot.compare.baselines`),
builds the tables (:mod:`~zeroshot.compare.tables`) and writes each as CSV, Markdown and LaTeX
(:mod:`~zeroshot.compare.render`). This module is the package's face: it re-exports what users import.
Interactive runs (a ``round`` column) add Dice after k corrective clicks and the clicks needed to reach a Dice
(:mod:`~zeroshot.compare.clicks`); the other tables then use the initial prompts (round 0) only.
"""

from __future__ import annotations

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
    click_curves,
    clicks_table,
    initial_rows,
    is_interactive,
    noc_table,
)
from zeroshot.compare.report import (
    BASELINE_RESULTS,
    COMPARISON_JSON,
    ComparisonOutput,
    compare_runs,
    comparison_rows,
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
