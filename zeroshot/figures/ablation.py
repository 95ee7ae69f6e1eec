"""Prompt ablations: Dice against box jitter, against the number of key slices, and box against points."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from zeroshot.compare.tables import KIND_SUPERVISED, case_values
from zeroshot.figures.data import FigureSkipped, StrategySettings, mean_ci, sequences_of
from zeroshot.figures.style import DOUBLE_COLUMN_IN, legend_below, model_colors, new_figure, styled

__all__ = ["ablation_axes", "plot_ablation"]

AXES = ("jitter", "key slices", "prompt type")


def ablation_axes(settings: Mapping[str, StrategySettings]) -> dict[str, dict[str, object]]:
    """For each ablation axis, the strategies that vary only that axis, mapped to their x value.

    - jitter: box strategies at the smallest key-slice count present, x = jitter %;
    - key slices: box strategies at zero jitter, x = number of prompted slices;
    - prompt type: strategies at zero jitter (or none) and one key slice, x = prompt type.

    An axis with fewer than two distinct x values is left out.
    """
    table = pd.DataFrame([vars(s) for s in settings.values()])
    axes: dict[str, dict[str, object]] = {}
    if table.empty:
        return axes
    boxes = table.loc[table["prompt_type"] == "box"]
    if not boxes.empty and boxes["key_slices"].notna().any():
        fewest = boxes["key_slices"].min()
        jitter = boxes.loc[(boxes["key_slices"] == fewest) & boxes["jitter_percent"].notna()]
        axes["jitter"] = dict(zip(jitter["name"], jitter["jitter_percent"], strict=True))
    slices = boxes.loc[(boxes["jitter_percent"] == 0) & boxes["key_slices"].notna()]
    axes["key slices"] = dict(zip(slices["name"], slices["key_slices"], strict=True))
    plain = table.loc[(table["jitter_percent"].fillna(0) == 0) & (table["key_slices"] == 1)]
    axes["prompt type"] = dict(zip(plain["name"], plain["prompt_type"], strict=True))
    return {axis: chosen for axis, chosen in axes.items() if len(set(chosen.values())) >= 2}


@styled
def plot_ablation(
    rows: pd.DataFrame,
    settings: Mapping[str, StrategySettings],
    *,
    metric: str = "dice",
    n_resamples: int,
    seed: int,
) -> Figure:
    """Mean ``metric`` with bootstrap CI along each ablation axis: one column per axis, one row per sequence.

    Several strategies at one x value (e.g. two names with the same settings) are pooled per case.
    """
    axes_map = ablation_axes({k: v for k, v in settings.items() if k in set(rows["strategy"])})
    if not axes_map:
        raise FigureSkipped("the run's strategies vary no ablation axis (jitter, key slices, prompt type)")
    values = case_values(rows.loc[rows["kind"] != KIND_SUPERVISED], metric)
    sequences = sequences_of(values)
    models = sorted(values["model"].unique())
    colors = model_colors(models)
    names = list(axes_map)
    figure, axes = new_figure(DOUBLE_COLUMN_IN, 1.45 * len(sequences) + 0.4, len(sequences), len(names), sharey=True)
    for r, sequence in enumerate(sequences):
        for c, axis in enumerate(names):
            ax = axes[r][c]
            mapping = axes_map[axis]
            here = values.loc[(values["sequence"] == sequence) & values["strategy"].isin(mapping)]
            here = here.assign(x=here["strategy"].map(mapping))
            categorical = axis == "prompt type"
            levels = sorted(here["x"].unique(), key=str if categorical else float)
            offsets = np.linspace(-0.12, 0.12, len(models)) if categorical and len(models) > 1 else [0.0] * len(models)
            for offset, model in zip(offsets, models, strict=True):
                points = []
                for position, level in enumerate(levels):
                    per_case = here.loc[(here["model"] == model) & (here["x"] == level)]
                    pooled = per_case.groupby("case_id")["value"].mean().to_numpy()
                    mean, low, high = mean_ci(pooled, n_resamples=n_resamples, seed=seed)
                    if not np.isnan(mean):
                        points.append(((position if categorical else float(level)) + offset, mean, low, high))
                if not points:
                    continue
                x, mean, low, high = (np.array(v) for v in zip(*points, strict=True))
                ax.errorbar(
                    x, mean, yerr=[mean - low, high - mean], fmt="o" if categorical else "o-", color=colors[model],
                    capsize=1.5, label=model,
                )  # fmt: skip
                if not categorical:
                    ax.fill_between(x, low, high, color=colors[model], alpha=0.15, linewidth=0)
            if categorical:
                ax.set_xticks(range(len(levels)), levels)
                ax.set_xlim(-0.5, len(levels) - 0.5)
            else:
                ax.set_xticks([float(level) for level in levels], [f"{float(level):g}" for level in levels])
            ax.set_ylim(-0.03, 1.03)
            ax.grid(axis="y")
            if r == 0:
                ax.set_title({"jitter": "box jitter", "key slices": "prompted slices", "prompt type": "prompt"}[axis])
            if r == len(sequences) - 1:
                ax.set_xlabel({"jitter": "jitter (% of box size)", "key slices": "key slices", "prompt type": ""}[axis])
            if c == 0:
                ax.set_ylabel(f"{sequence}\n{metric} (mean, 95 % CI)")
    legend_below(figure, axes[0][-1])
    figure.suptitle("Prompt ablations")
    return figure
