"""Zero-shot against supervised: a forest plot of means with CIs, and the train x test sequence heatmap."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from zeroshot.compare.tables import KIND_SUPERVISED
from zeroshot.figures.data import FigureSkipped, sequences_of
from zeroshot.figures.style import DOUBLE_COLUMN_IN, SUPERVISED_COLOR, model_colors, new_figure, styled

__all__ = ["method_label", "plot_cross_sequence_heatmap", "plot_zero_shot_vs_supervised"]


def method_label(row: pd.Series) -> str:
    """``nnunet-T1 (trained T1)`` for supervised rows, ``medsam2 / box-mid`` for zero-shot rows."""
    if row["kind"] == KIND_SUPERVISED:
        return f"{row['model']} (trained {row['train_sequence']})"
    return f"{row['model']} / {row['strategy']}"


@styled
def plot_zero_shot_vs_supervised(
    summary: pd.DataFrame, *, metric: str = "dice", published: pd.DataFrame | None = None
) -> Figure:
    """Forest plot per test sequence: mean and bootstrap CI of every method, supervised models in black.

    ``summary`` is :func:`zeroshot.compare.summary_table` output. Published numbers (other cases) go in their own
    panel on the right, drawn as open diamonds with ± SD where reported and as arrows for bounds; they share the
    axis but are never mixed into the measured panels.
    """
    chosen = summary.loc[summary["metric"] == metric].copy()
    if chosen.empty:
        raise FigureSkipped(f"no {metric} summary")
    chosen["label"] = [method_label(row) for _, row in chosen.iterrows()]
    sequences = sequences_of(chosen)
    labels = list(dict.fromkeys(chosen.sort_values(["kind", "model", "strategy"], key=_kind_first)["label"]))
    published = published.loc[published["metric"] == metric] if published is not None else None
    has_published = published is not None and not published.empty
    height = max(1.6, 0.16 * len(labels) + 0.9)
    published_height = 0.16 * len(published) + 0.7 if has_published else 0.0
    figure, _ = new_figure(DOUBLE_COLUMN_IN, height + published_height, 1, 1)
    figure.clear()
    top, bottom = figure.subfigures(2, 1, height_ratios=[height, published_height]) if has_published else (figure, None)
    axes = top.subplots(1, len(sequences), sharex=True, squeeze=False)
    colors = model_colors(chosen.loc[chosen["kind"] != KIND_SUPERVISED, "model"])
    y_of = {label: i for i, label in enumerate(reversed(labels))}
    for c, sequence in enumerate(sequences):
        ax = axes[0][c]
        for _, row in chosen.loc[chosen["sequence"] == sequence].iterrows():
            color = SUPERVISED_COLOR if row["kind"] == KIND_SUPERVISED else colors[row["model"]]
            marker = "s" if row["kind"] == KIND_SUPERVISED else "o"
            y = y_of[row["label"]]
            low, high = row["ci_low"], row["ci_high"]
            ax.errorbar(
                row["mean"], y, xerr=[[row["mean"] - low], [high - row["mean"]]], fmt=marker, color=color, capsize=1.5
            )
        ax.set_title(f"test {sequence}")
        ax.set_yticks(list(y_of.values()), list(y_of.keys()) if c == 0 else [])
        ax.set_ylim(-0.7, len(labels) - 0.3)
        ax.set_xlim(0, 1)
        ax.grid(axis="x")
    top.supxlabel(f"{metric}: mean and 95 % bootstrap CI over cases", fontsize=7)
    if bottom is not None:
        _published_panel(bottom.subplots(), published)
    top.suptitle("Zero-shot (colour) vs supervised (black) on the same cases", fontsize=7)
    return figure


def _kind_first(column: pd.Series) -> pd.Series:
    return column.map({KIND_SUPERVISED: "0"}).fillna("1" + column.astype(str)) if column.name == "kind" else column


def _published_panel(ax, published: pd.DataFrame) -> None:
    labels = [_published_label(row) for _, row in published.iterrows()]
    for y, (_, row) in enumerate(published.iloc[::-1].iterrows()):
        value = float(row["value"])
        if row["relation"] == "=":
            sd = float(row["sd"]) if pd.notna(row["sd"]) else 0.0
            ax.errorbar(value, y, xerr=sd, fmt="D", mfc="white", color="0.35", capsize=1.5)
        else:
            direction = 0.08 if row["relation"] == ">" else -0.08
            ax.annotate(
                "", xy=(value + direction, y), xytext=(value, y), arrowprops={"arrowstyle": "->", "color": "0.35"}
            )
            ax.plot([value], [y], "|", color="0.35", markersize=6)
    ax.set_yticks(range(len(labels)), list(reversed(labels)))
    ax.set_ylim(-0.7, len(labels) - 0.3)
    ax.set_xlim(0, 1)
    ax.set_title("Published (other cases; context only): value ± SD, arrow = bound")
    ax.grid(axis="x")


def _published_label(row: pd.Series) -> str:
    """``PanSegNet, T1→T1, PanSegData``: model, direction where known (else the setting), center, dataset."""
    train, test = (row[c] if isinstance(row[c], str) and row[c] else "" for c in ("train_sequence", "test_sequence"))
    setting = f"{train}→{test}" if train and test else str(row["setting"])
    parts = [str(row["model"]), setting]
    if isinstance(row["center"], str) and row["center"]:
        parts.append(row["center"])
    parts.append(str(row["dataset"]).split(" (")[0])
    return ", ".join(parts)


@styled
def plot_cross_sequence_heatmap(cross: pd.DataFrame) -> Figure:
    """Train sequence (rows: supervised models by training sequence, zero-shot methods) x test sequence.

    Cells show the mean (large) and the CI (small); colour is the mean on a fixed 0-1 scale (viridis, readable
    in grey and by colour-blind readers). ``cross`` is :func:`zeroshot.compare.cross_sequence_table` output.
    """
    if cross.empty:
        raise FigureSkipped("empty cross-sequence table")
    frame = cross.assign(label=[_row_label(row) for _, row in cross.iterrows()])
    rows = list(dict.fromkeys(frame["label"]))
    tests = sequences_of(frame.rename(columns={"test_sequence": "sequence"}))
    means = np.full((len(rows), len(tests)), np.nan)
    text = [["" for _ in tests] for _ in rows]
    for _, row in frame.iterrows():
        i, j = rows.index(row["label"]), tests.index(row["test_sequence"])
        means[i, j] = row["mean"]
        text[i][j] = f"{row['mean']:.2f}\n[{row['ci_low']:.2f}, {row['ci_high']:.2f}]"
    figure, axes = new_figure(DOUBLE_COLUMN_IN * 0.6, 0.32 * len(rows) + 1.0)
    ax = axes[0][0]
    image = ax.imshow(np.ma.masked_invalid(means), cmap="viridis", vmin=0, vmax=1, aspect="auto")
    for i in range(len(rows)):
        for j in range(len(tests)):
            if text[i][j]:
                ax.text(j, i, text[i][j], ha="center", va="center", fontsize=5.5,
                        color="black" if means[i, j] > 0.55 else "white")  # fmt: skip
            else:
                ax.text(j, i, "–", ha="center", va="center", fontsize=6, color="0.5")
    ax.set_xticks(range(len(tests)), [f"test {t}" for t in tests])
    ax.set_yticks(range(len(rows)), rows)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(f"{cross['metric'].iloc[0]} by training sequence and test sequence")
    figure.colorbar(image, ax=ax, shrink=0.8, label=f"mean {cross['metric'].iloc[0]}")
    return figure


def _row_label(row: pd.Series) -> str:
    if row["kind"] == KIND_SUPERVISED:
        return f"trained {row['train_sequence']}: {row['model']}"
    return f"zero-shot: {row['model']} / {row['strategy']}"
