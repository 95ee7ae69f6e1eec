"""Interactive curves: Dice against the number of simulated corrective clicks, per sequence, model and strategy."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from zeroshot.compare.clicks import NOC_THRESHOLDS
from zeroshot.figures.data import FigureSkipped, mean_ci, sequences_of
from zeroshot.figures.style import DOUBLE_COLUMN_IN, legend_below, model_colors, new_figure, styled

__all__ = ["LINE_STYLES", "click_curve_summary", "plot_dice_vs_clicks"]

#: Line style per strategy (sorted names get them in order; cycles after four).
LINE_STYLES = ("-", "--", ":", "-.")


def click_curve_summary(curves: pd.DataFrame, *, n_resamples: int, seed: int) -> pd.DataFrame:
    """Mean value after each click count with a bootstrap CI over cases, per sequence, model and strategy.

    Parameters
    ----------
    curves : DataFrame
        Output of :func:`zeroshot.compare.clicks.click_curves`.

    Returns
    -------
    DataFrame
        ``sequence, model, strategy, clicks, mean, ci_low, ci_high, n_cases``; click counts where no case has a
        value (every case excluded or its curve incomplete) are left out.
    """
    records = []
    for (sequence, model, strategy, clicks), group in curves.groupby(
        ["sequence", "model", "strategy", "clicks"], sort=True
    ):
        values = group["value"].to_numpy(dtype=float)
        n_cases = int(np.isfinite(values).sum())
        if n_cases == 0:
            continue
        mean, low, high = mean_ci(values, n_resamples=n_resamples, seed=seed)
        records.append(
            {
                "sequence": sequence,
                "model": model,
                "strategy": strategy,
                "clicks": int(clicks),
                "mean": mean,
                "ci_low": low,
                "ci_high": high,
                "n_cases": n_cases,
            }
        )
    columns = ["sequence", "model", "strategy", "clicks", "mean", "ci_low", "ci_high", "n_cases"]
    return pd.DataFrame.from_records(records, columns=columns)


@styled
def plot_dice_vs_clicks(
    curves: pd.DataFrame | None,
    *,
    thresholds: Sequence[float] = NOC_THRESHOLDS,
    n_resamples: int,
    seed: int,
) -> Figure:
    """Mean Dice after k clicks with 95 % CI bands: one panel per sequence, colour = model, line style = strategy.

    Curves of a click protocol other than ``zeroshot`` are their own strategy, ``box-mid · cvpr25``; a single
    strategy is named in the title.

    ``curves`` is the output of :func:`zeroshot.compare.clicks.click_curves` (``None`` for runs without
    corrective clicks: the figure is skipped). Thin grey lines mark the NoC ``thresholds``.
    """
    if curves is None:
        raise FigureSkipped("the runs have no round column (no corrective clicks: zeroshot eval --clicks)")
    summary = click_curve_summary(curves, n_resamples=n_resamples, seed=seed)
    if summary.empty:
        raise FigureSkipped("no case has a value after any number of clicks")
    metric = str(curves["metric"].iloc[0])
    sequences = sequences_of(summary)
    models = sorted(summary["model"].unique())
    strategies = sorted(summary["strategy"].unique())
    colors = model_colors(models)
    styles = {name: LINE_STYLES[i % len(LINE_STYLES)] for i, name in enumerate(strategies)}
    figure, axes = new_figure(DOUBLE_COLUMN_IN, 2.0, 1, len(sequences), sharey=True)
    for c, sequence in enumerate(sequences):
        ax = axes[0][c]
        for threshold in thresholds:
            ax.axhline(threshold, color="0.6", linewidth=0.5, linestyle=":", zorder=0)
        for model in models:
            for strategy in strategies:
                line = summary.loc[
                    (summary["sequence"] == sequence) & (summary["model"] == model) & (summary["strategy"] == strategy)
                ]
                if line.empty:
                    continue
                label = f"{model} / {strategy}" if len(strategies) > 1 else model
                ax.plot(line["clicks"], line["mean"], styles[strategy], marker="o", color=colors[model], label=label)
                ax.fill_between(
                    line["clicks"], line["ci_low"], line["ci_high"], color=colors[model], alpha=0.15, linewidth=0
                )
        ax.set_title(sequence)
        ax.set_xlabel("corrective clicks")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlim(left=0)
        ax.set_ylim(-0.03, 1.03)
        ax.grid(axis="y")
    name = "Dice" if metric == "dice" else metric
    axes[0][0].set_ylabel(f"{name} (mean, 95 % CI)")
    legend_below(figure, axes[0][-1])
    marks = f" (dotted: {name} {', '.join(f'{t:g}' for t in thresholds)})" if thresholds else ""
    # One strategy is not in the legend: name it (and its click protocol, "strategy · protocol") in the title.
    only = f" — {strategies[0]}" if len(strategies) == 1 else ""
    figure.suptitle(f"{name} after simulated corrective clicks{only}{marks}")
    return figure
