"""The short summary ``zeroshot eval`` and ``zeroshot demo`` print: mean Dice per sequence x model x strategy.

A failed row counts as Dice 0 (the worst case, as :func:`zeroshot.metrics.apply_penalties` has it) and a case
with both masks empty is left out, so a failure can never raise a mean. Mean and SD are over *cases*, each case's
seeds averaged first (:func:`zeroshot.compare.case_values`, :func:`zeroshot.stats.mean_sd`): the numbers
``zeroshot compare`` reports for the same run. In an interactive run the table describes
round 0 (the strategy's prompts alone) and adds the mean Dice of each curve's last row (after every round asked
for, or the failed round a curve stopped at). Confidence intervals, paired tests and click tables (Dice after k
clicks, NoC) belong to ``zeroshot compare``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from zeroshot import stats
from zeroshot.compare.tables import case_values, sequence_order

if TYPE_CHECKING:
    from zeroshot.runner.evaluate import RunSummary

__all__ = ["format_summary", "summary_table"]

GROUP = ("sequence", "model", "strategy")


def summary_table(results: pd.DataFrame) -> pd.DataFrame:
    """Per sequence x model x strategy: rows, failed rows, mean and SD of Dice over cases (failed = 0).

    ``dice_mean`` and ``dice_sd`` describe one value per case, the mean over its seeds, as every table of
    ``zeroshot compare`` does (``rows`` still counts the rows).

    Sequences are listed in CrossPan order (T1, T2, OOP, then any others). With a ``round`` column (an
    interactive run) ``rows``, ``dice_mean`` and ``dice_sd`` describe round 0, and ``failed``, ``last_round`` and
    ``dice_last_mean`` the last row of each curve (case x seed): the curves that stopped at a failed round, the
    largest round written, and the mean Dice of the last rows (failed = 0).
    """
    interactive = "round" in results.columns
    columns = [*GROUP, "rows", "failed", "dice_mean", "dice_sd"]
    if interactive:
        columns += ["last_round", "dice_last_mean"]
    if results.empty:
        return pd.DataFrame(columns=columns)
    table = results.copy()
    failed = table["failed"].astype(bool)
    table["dice_penalised"] = table["dice"].astype(float).where(~failed, 0.0)
    out = _dice_table(table[table["round"] == 0] if interactive else table)
    if interactive:
        curve = [*GROUP, "case_id", "seed"]
        last = table.sort_values("round").groupby(curve, sort=False).tail(1)
        ends = last.groupby(list(GROUP), sort=False).agg(
            failed=("failed", "sum"), last_round=("round", "max"), dice_last_mean=("dice_penalised", "mean")
        )
        out = out.drop(columns="failed").merge(ends.reset_index(), on=list(GROUP), how="left")
    out["_rank"] = sequence_order(out["sequence"])
    out = out.sort_values(["_rank", "model", "strategy"]).drop(columns="_rank").reset_index(drop=True)
    out["failed"] = out["failed"].astype(int)
    return out[columns]


def _dice_table(table: pd.DataFrame) -> pd.DataFrame:
    grouped = table.groupby(list(GROUP), sort=False)
    counts = grouped.agg(rows=("dice_penalised", "size"), failed=("failed", "sum")).reset_index()
    rows = table.assign(dice=table["dice_penalised"], kind="zero-shot", train_sequence="none")
    if "center" not in rows.columns:
        rows["center"] = "unknown"
    per_case = case_values(rows.drop(columns=["round"], errors="ignore"), "dice")
    moments = [
        (*key, *stats.mean_sd(group["value"].to_numpy())) for key, group in per_case.groupby(list(GROUP), sort=False)
    ]
    means = pd.DataFrame(moments, columns=[*GROUP, "dice_mean", "dice_sd"])
    return counts.merge(means, on=list(GROUP), how="left")


def format_summary(summary: RunSummary) -> str:
    """A few lines for the terminal: what was done and the mean Dice table of the run."""
    results = summary.results
    head = (
        f"{summary.out}: {summary.rows_computed} row(s) computed now, {summary.rows_selected} selected, "
        f"{summary.rows_failed} failed; {len(results)} in the run"
    )
    table = summary_table(results)
    if table.empty:
        return head
    interactive = "last_round" in table.columns
    rows = "curves" if interactive else "rows"
    dice = "dice (failed = 0) at round 0 -> last round" if interactive else "dice (failed = 0)"
    lines = [head, "", f"{'sequence':<9}{'model':<28}{'strategy':<28}{rows:>6}{'failed':>7}  {dice}"]
    for row in table.itertuples(index=False):
        sd = "" if np.isnan(row.dice_sd) else f" ± {row.dice_sd:.3f}"
        after = f" -> {row.dice_last_mean:.3f} (round {int(row.last_round)})" if interactive else ""
        lines.append(
            f"{row.sequence:<9}{row.model[:27]:<28}{row.strategy[:27]:<28}{row.rows:>6}{row.failed:>7}  "
            f"{row.dice_mean:.3f}{sd}{after}"
        )
    return "\n".join(lines)
