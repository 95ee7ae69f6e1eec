"""Propagation decay: slice Dice against the distance (mm) from the nearest prompted slice."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from zeroshot.distance_ties import at_most_mm, bin_index
from zeroshot.figures.data import FigureSkipped, mean_ci, sequences_of
from zeroshot.figures.style import DOUBLE_COLUMN_IN, legend_below, model_colors, new_figure, styled

__all__ = ["decay_curve", "plot_decay"]


def decay_curve(
    slices: pd.DataFrame, *, bin_mm: float, max_mm: float | None = None, n_resamples: int, seed: int
) -> pd.DataFrame:
    """Mean slice Dice per distance bin with a bootstrap CI over cases.

    Slices are binned by ``dist_mm`` into ``[0, bin_mm), [bin_mm, 2 bin_mm), ...`` (a distance that ties a bin edge,
    within a relative 1e-6, falls in the bin it opens: :func:`zeroshot.distance_ties.bin_index`, so with ``bin_mm``
    one slice thickness each slice has its own bin); each case contributes the mean
    of its slices in a bin (the case is the unit, however many slices it has there). Slices where Dice is
    undefined (both masks empty on the slice) are left out; a false positive far from the organ counts as 0.

    Returns
    -------
    DataFrame
        ``distance_mm`` (bin centre), ``mean``, ``ci_low``, ``ci_high``, ``n_cases``.
    """
    valid = slices.loc[slices["slice_dice"].notna() & slices["dist_mm"].notna() & (slices["dist_mm"] >= 0)]
    if max_mm is not None:
        valid = valid.loc[at_most_mm(valid["dist_mm"].to_numpy(), max_mm)]
    bins = bin_index(valid["dist_mm"].to_numpy(), bin_mm)
    per_case = valid.assign(bin=bins).groupby(["bin", "case_id"])["slice_dice"].mean().reset_index()
    records = []
    for index, group in per_case.groupby("bin"):
        mean, low, high = mean_ci(group["slice_dice"].to_numpy(), n_resamples=n_resamples, seed=seed)
        records.append(
            {"distance_mm": (index + 0.5) * bin_mm, "mean": mean, "ci_low": low, "ci_high": high, "n_cases": len(group)}
        )
    return pd.DataFrame(records, columns=["distance_mm", "mean", "ci_low", "ci_high", "n_cases"])


@styled
def plot_decay(
    slices: pd.DataFrame,
    *,
    strategy: str,
    bin_mm: float | None = None,
    min_cases: int = 3,
    n_resamples: int,
    seed: int,
) -> Figure:
    """Slice Dice against distance from the nearest prompted slice, one panel per sequence, a line per model.

    ``bin_mm`` defaults to the smallest positive distance in the table (one slice thickness). Bins with fewer
    than ``min_cases`` cases are not drawn: their means would be noise.
    """
    required = {"dist_mm", "slice_dice", "case_id", "model", "strategy", "sequence"}
    if not required <= set(slices.columns):
        raise FigureSkipped(f"slices table lacks {', '.join(sorted(required - set(slices.columns)))}")
    chosen = slices.loc[slices["strategy"] == strategy]
    if chosen.empty:
        raise FigureSkipped(f"no per-slice rows for strategy {strategy}")
    positive = chosen.loc[chosen["dist_mm"] > 0, "dist_mm"]
    if bin_mm is None:
        if positive.empty:
            raise FigureSkipped("every slice is a prompted slice; nothing propagated")
        bin_mm = float(positive.min())
    sequences = sequences_of(chosen)
    models = sorted(chosen["model"].unique())
    colors = model_colors(models)
    figure, axes = new_figure(DOUBLE_COLUMN_IN, 1.9, 1, len(sequences), sharey=True)
    for c, sequence in enumerate(sequences):
        ax = axes[0][c]
        for model in models:
            here = chosen.loc[(chosen["sequence"] == sequence) & (chosen["model"] == model)]
            curve = decay_curve(here, bin_mm=bin_mm, n_resamples=n_resamples, seed=seed)
            curve = curve.loc[curve["n_cases"] >= min_cases]
            if curve.empty:
                continue
            ax.plot(curve["distance_mm"], curve["mean"], "-", color=colors[model], label=model)
            ax.fill_between(curve["distance_mm"], curve["ci_low"], curve["ci_high"], color=colors[model], alpha=0.2,
                            linewidth=0)  # fmt: skip
        ax.set_title(sequence)
        ax.set_xlabel("distance from prompted slice (mm)")
        ax.set_ylim(-0.03, 1.03)
        ax.set_xlim(left=0)
        ax.grid(axis="y")
    axes[0][0].set_ylabel("slice Dice (mean, 95 % CI)")
    legend_below(figure, axes[0][-1])
    figure.suptitle(f"Propagation decay, strategy {strategy} (bins of {bin_mm:g} mm)")
    return figure
