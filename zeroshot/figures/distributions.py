"""Per-case distributions per sequence and model, and the per-center breakdown."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from zeroshot.compare.tables import KIND_SUPERVISED, case_values
from zeroshot.figures.data import FigureSkipped, main_strategy, mean_ci, sequences_of
from zeroshot.figures.style import DOUBLE_COLUMN_IN, SUPERVISED_COLOR, legend_below, model_colors, new_figure, styled

__all__ = ["METRIC_LABELS", "plot_centers", "plot_distributions"]

METRIC_LABELS = {"dice": "Dice", "nsd_1mm": "NSD (1 mm)", "nsd_2mm": "NSD (2 mm)", "nsd_3mm": "NSD (3 mm)"}


def _label(method: tuple[str, str, str]) -> str:
    kind, model, train = method
    return f"{model}\n(trained {train})" if kind == KIND_SUPERVISED else model


@styled
def plot_distributions(
    rows: pd.DataFrame, *, metrics: Sequence[str] = ("dice", "nsd_2mm"), strategy: str | None = None
) -> Figure:
    """Box plots with every case as a point: one row of panels per metric, one panel per sequence.

    Zero-shot models are shown under one ``strategy`` (default :func:`main_strategy`); supervised models scored
    on the same cases are added in black. Penalised per-case values (seeds averaged within a case).
    """
    metrics = [m for m in metrics if m in rows.columns]
    if not metrics:
        raise FigureSkipped("no Dice or NSD column")
    strategy = strategy or main_strategy(rows)
    chosen = rows.loc[(rows["strategy"] == strategy) | (rows["kind"] == KIND_SUPERVISED)]
    sequences = sequences_of(chosen)
    colors = model_colors(chosen.loc[chosen["kind"] != KIND_SUPERVISED, "model"])
    figure, axes = new_figure(DOUBLE_COLUMN_IN, 1.9 * len(metrics), len(metrics), len(sequences), sharey="row")
    rng = np.random.default_rng(0)  # horizontal jitter of the points; fixed so files are reproducible
    for r, metric in enumerate(metrics):
        values = case_values(chosen, metric)
        for c, sequence in enumerate(sequences):
            ax = axes[r][c]
            here = values.loc[values["sequence"] == sequence]
            methods = sorted(
                {(k, m, t) for k, m, t in zip(here["kind"], here["model"], here["train_sequence"], strict=True)},
                key=lambda method: (method[0] == KIND_SUPERVISED, method[1]),
            )
            for x, method in enumerate(methods):
                data = here.loc[
                    (here["kind"] == method[0]) & (here["model"] == method[1]) & (here["train_sequence"] == method[2]),
                    "value",
                ].dropna()
                color = SUPERVISED_COLOR if method[0] == KIND_SUPERVISED else colors[method[1]]
                ax.boxplot(
                    data.to_numpy(),
                    positions=[x],
                    widths=0.55,
                    showfliers=False,
                    medianprops={"color": color, "linewidth": 1.2},
                    boxprops={"color": color},
                    whiskerprops={"color": color},
                    capprops={"color": color},
                )
                ax.scatter(
                    x + rng.uniform(-0.18, 0.18, data.size), data, s=4, color=color, alpha=0.6, linewidths=0, zorder=3
                )
            ax.set_xticks(range(len(methods)), [_label(m) for m in methods], rotation=30, ha="right")
            ax.set_ylim(-0.03, 1.03)
            ax.grid(axis="y")
            if r == 0:
                ax.set_title(sequence)
            if c == 0:
                ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    figure.suptitle(f"Per-case {' and '.join(METRIC_LABELS.get(m, m) for m in metrics)}, strategy {strategy}")
    return figure


@styled
def plot_centers(
    rows: pd.DataFrame, *, metric: str = "dice", strategy: str | None = None, n_resamples: int, seed: int
) -> Figure:
    """Mean ``metric`` with bootstrap CI per center, one panel per sequence, one marker colour per model."""
    if "center" not in rows.columns or rows["center"].nunique() < 2:
        raise FigureSkipped("fewer than two centers")
    strategy = strategy or main_strategy(rows)
    chosen = rows.loc[(rows["strategy"] == strategy) & (rows["kind"] != KIND_SUPERVISED)]
    values = case_values(chosen, metric, by=("sequence", "center"))
    sequences = sequences_of(values)
    models = sorted(values["model"].unique())
    colors = model_colors(models)
    figure, axes = new_figure(DOUBLE_COLUMN_IN, 2.0, 1, len(sequences), sharey=True)
    for c, sequence in enumerate(sequences):
        ax = axes[0][c]
        here = values.loc[values["sequence"] == sequence]
        centers = sorted(here["center"].unique())
        offsets = np.linspace(-0.2, 0.2, len(models)) if len(models) > 1 else [0.0]
        for offset, model in zip(offsets, models, strict=True):
            for x, center in enumerate(centers):
                data = here.loc[(here["model"] == model) & (here["center"] == center), "value"].to_numpy()
                mean, low, high = mean_ci(data, n_resamples=n_resamples, seed=seed)
                if np.isnan(mean):
                    continue
                ax.errorbar(
                    x + offset,
                    mean,
                    yerr=[[mean - low], [high - mean]],
                    fmt="o",
                    color=colors[model],
                    capsize=1.5,
                    label=model if x == 0 else None,
                )
            ax.set_xticks(range(len(centers)), centers, rotation=30, ha="right")
        ax.set_title(sequence)
        ax.set_xlabel("center")
        ax.set_ylim(-0.03, 1.03)
        ax.grid(axis="y")
    axes[0][0].set_ylabel(f"{METRIC_LABELS.get(metric, metric)} (mean, 95 % CI)")
    legend_below(figure, axes[0][-1])
    figure.suptitle(f"Per-center {METRIC_LABELS.get(metric, metric)}, strategy {strategy}")
    return figure
