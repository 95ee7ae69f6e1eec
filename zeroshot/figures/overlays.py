"""Qualitative overlays: the best, median and worst case per sequence, on the prompted slice.

Each sequence's row shows the zero-shot model that did best there (the highest mean Dice over cases under the
strategy drawn, among the models whose predictions were saved); the row says which model and its mean Dice, so a
weak baseline (box-fill) is never the face of a run by accident of name order.

Each panel shows the image slice (0.5-99.5 percentile window, physical aspect ratio, radiological view: patient's
right on the left), the ground-truth contour (the run's structure: the label value its ``run.json`` records), the
predicted contour and the prompt (dashed box, + positive and x negative points), cropped around them. It needs the
predictions a run saved (``zeroshot eval --save-pred``), its cached prompts, and the dataset's images and labels.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from zeroshot.compare.runs import RunTables, dataset_root, run_label
from zeroshot.compare.tables import KIND_SUPERVISED
from zeroshot.figures.data import FigureSkipped, sequences_of
from zeroshot.figures.style import DOUBLE_COLUMN_IN, GT_COLOR, PRED_COLOR, PROMPT_COLOR, new_figure, styled

__all__ = ["OverlayCase", "plot_overlays", "select_overlay_cases"]

RANKS = ("best", "median", "worst")
CROP_MARGIN_PX = 12


@dataclass(frozen=True, eq=False)
class OverlayCase:
    """One panel: the slice to show and what to draw on it.

    Attributes
    ----------
    rank : str
        ``best``, ``median`` or ``worst``.
    sequence, case_id, model, strategy : str
    dice : float
        The case's Dice (raw, this seed).
    image : (Y, X) float array
    gt, pred : (Y, X) bool arrays
    spacing_yx_mm : (float, float)
    z : int
    prompt : mapping
        The prompt of this slice (``box``, ``points``, ``labels``), empty if none was found.
    model_mean_dice : float
        The model's mean Dice on this sequence under this strategy (what made it the sequence's best model).
    """

    rank: str
    sequence: str
    case_id: str
    model: str
    strategy: str
    dice: float
    image: np.ndarray
    gt: np.ndarray
    pred: np.ndarray
    spacing_yx_mm: tuple[float, float]
    z: int
    prompt: Mapping[str, Any]
    model_mean_dice: float = float("nan")


def _prompt_slices(text: str | None) -> list[Mapping[str, Any]]:
    """The prompted slices of a stored prompt set (its JSON), or none."""
    if text is None:
        return []
    try:
        document = json.loads(text)
    except ValueError:
        return []
    slices = document.get("slices", []) if isinstance(document, Mapping) else []
    return [s for s in slices if isinstance(s, Mapping) and isinstance(s.get("z"), int)]


def select_overlay_cases(runs: RunTables, rows: pd.DataFrame, *, strategy: str) -> list[OverlayCase]:
    """Load the best, median and worst case (by Dice) per sequence, for that sequence's best model.

    The best model of a sequence has the highest mean Dice under ``strategy`` (penalised rows, seeds averaged
    within a case, ties to the first name) among the zero-shot models with saved predictions there.

    Raises
    ------
    FigureSkipped
        When no prediction under ``strategy`` was saved.
    """
    from zeroshot.datasets import discover
    from zeroshot.runner.rundir import RowKey, RunDir
    from zeroshot.store import PromptKey
    from zeroshot.volume import read_label, read_volume

    candidates = rows.loc[(rows["strategy"] == strategy) & (rows["kind"] != KIND_SUPERVISED) & ~rows["failed"]]
    candidates = candidates.loc[candidates["seed"] == candidates["seed"].min()] if not candidates.empty else candidates
    found = []
    for row in candidates.itertuples(index=False):
        run = RunDir(runs.roots[int(row.run)])
        key = RowKey(row.sequence, row.case_id, row.model, row.strategy, int(row.seed))
        path = run.prediction_path(key)
        if not path.is_file():  # an interactive run saves one per round; round 0 is the initial prompts'
            path = run.prediction_path(key.at_round(0))
        if path.is_file():
            found.append((row, path, run))
    if not found:
        raise FigureSkipped(f"no saved predictions for strategy {strategy} (run zeroshot eval with --save-pred)")
    best = _best_models(rows, found, strategy=strategy)
    cases_by_key = {}
    for root, info in zip(runs.roots, runs.infos, strict=True):
        data, layout = dataset_root(info, root)
        cases_by_key.update({(c.sequence, c.case_id): c for c in discover(data, layout=layout)})
    chosen = []
    for sequence in sequences_of(candidates):
        if sequence not in best:
            continue
        model, model_mean_dice = best[sequence]
        here = sorted(
            ((row, path, run) for row, path, run in found if row.model == model and row.sequence == sequence),
            key=lambda item: (-item[0].dice, item[0].case_id),
        )
        if not here:
            continue
        picks = dict(zip(RANKS, (here[0], here[len(here) // 2], here[-1]), strict=True))
        for rank, (row, path, run) in picks.items():
            case = cases_by_key[(row.sequence, row.case_id)]
            image = read_volume(case.image)
            gt = read_label(case.label, image, label=run_label(runs, int(row.run)), require_label=False)
            pred = read_label(path, image, label=1, require_label=False)  # predictions are written 0/1
            stored = run.stored_prompts(PromptKey(row.sequence, row.case_id, row.strategy, int(row.seed)))
            prompts = _prompt_slices(stored)
            z = int(prompts[0]["z"]) if prompts else int(np.argmax(gt.sum(axis=(1, 2))))
            chosen.append(
                OverlayCase(
                    rank=rank,
                    sequence=row.sequence,
                    case_id=row.case_id,
                    model=model,
                    strategy=strategy,
                    dice=float(row.dice),
                    image=image.array[z],
                    gt=gt[z],
                    pred=pred[z],
                    spacing_yx_mm=(float(image.spacing_mm[1]), float(image.spacing_mm[2])),
                    z=z,
                    prompt=prompts[0] if prompts else {},
                    model_mean_dice=model_mean_dice,
                )
            )
    return chosen


def _best_models(
    rows: pd.DataFrame, found: Sequence[tuple[Any, Path, Any]], *, strategy: str
) -> dict[str, tuple[str, float]]:
    """Per sequence: the model with saved predictions there whose mean Dice is highest, and that mean."""
    saved = {(row.sequence, row.model) for row, _, _ in found}
    scored = rows.loc[(rows["strategy"] == strategy) & (rows["kind"] != KIND_SUPERVISED)]
    per_case = scored.groupby(["sequence", "model", "case_id"])["dice"].mean()
    means = per_case.groupby(level=["sequence", "model"]).mean()
    best: dict[str, tuple[str, float]] = {}
    for (sequence, model), mean in sorted(means.items(), key=lambda item: (item[0][0], -item[1], item[0][1])):
        if (sequence, model) in saved and sequence not in best and np.isfinite(mean):
            best[sequence] = (model, float(mean))
    return best


def _crop(case: OverlayCase) -> tuple[slice, slice]:
    masks = case.gt | case.pred
    ys, xs = np.nonzero(masks)
    box = case.prompt.get("box")
    y_values = [*ys.tolist(), *([box[1], box[3]] if box else [])]
    x_values = [*xs.tolist(), *([box[0], box[2]] if box else [])]
    if not y_values:
        return slice(None), slice(None)
    height, width = masks.shape
    y0, y1 = max(0, min(y_values) - CROP_MARGIN_PX), min(height, max(y_values) + CROP_MARGIN_PX + 1)
    x0, x1 = max(0, min(x_values) - CROP_MARGIN_PX), min(width, max(x_values) + CROP_MARGIN_PX + 1)
    return slice(y0, y1), slice(x0, x1)


def _draw(ax, case: OverlayCase) -> None:
    rows, cols = _crop(case)
    image = case.image[rows, cols]
    low, high = np.percentile(image, [0.5, 99.5]) if image.size else (0.0, 1.0)
    origin_y, origin_x = rows.start or 0, cols.start or 0
    extent = (origin_x - 0.5, origin_x + image.shape[1] - 0.5, origin_y + image.shape[0] - 0.5, origin_y - 0.5)
    ax.imshow(image, cmap="gray", vmin=low, vmax=max(high, low + 1e-6), extent=extent, interpolation="nearest")
    ax.set_aspect(case.spacing_yx_mm[0] / case.spacing_yx_mm[1])
    # Ground truth drawn wider underneath, so it stays visible where the prediction follows it exactly.
    for mask, color, width in ((case.gt, GT_COLOR, 1.6), (case.pred, PRED_COLOR, 0.8)):
        if mask[rows, cols].any():
            ax.contour(
                np.arange(origin_x, origin_x + image.shape[1]),
                np.arange(origin_y, origin_y + image.shape[0]),
                mask[rows, cols].astype(float),
                levels=[0.5],
                colors=[color],
                linewidths=width,
            )
    box = case.prompt.get("box")
    if box:
        x0, y0, x1, y1 = box
        ax.add_patch(
            Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0 + 1, y1 - y0 + 1, fill=False, ls="--", lw=0.8, ec=PROMPT_COLOR)
        )
    for (x, y), label in zip(case.prompt.get("points", []), case.prompt.get("labels", []), strict=False):
        ax.plot([x], [y], "+" if label == 1 else "x", color=PROMPT_COLOR, markersize=5, mew=1.0)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(f"{case.rank}: {case.case_id}, Dice {case.dice:.2f} (z {case.z})")


@styled
def plot_overlays(cases: Sequence[OverlayCase]) -> Figure:
    """A grid of overlays: one row per sequence, columns best / median / worst."""
    if not cases:
        raise FigureSkipped("no overlay cases")
    sequences = list(dict.fromkeys(c.sequence for c in cases))
    figure, axes = new_figure(DOUBLE_COLUMN_IN, 2.0 * len(sequences) + 0.4, len(sequences), len(RANKS))
    for r, sequence in enumerate(sequences):
        for c, rank in enumerate(RANKS):
            ax = axes[r][c]
            match = [case for case in cases if case.sequence == sequence and case.rank == rank]
            if not match:
                ax.set_axis_off()
                continue
            _draw(ax, match[0])
            if c == 0:
                ax.set_ylabel(f"{sequence}: {match[0].model}\nmean Dice {match[0].model_mean_dice:.2f}")
    handles = [
        Line2D([], [], color=GT_COLOR, label="ground truth"),
        Line2D([], [], color=PRED_COLOR, label="prediction"),
        Line2D([], [], color=PROMPT_COLOR, ls="--", label="prompt"),
    ]
    figure.legend(handles=handles, loc="outside lower center", ncols=3)
    models = ", ".join(dict.fromkeys(c.model for c in cases))
    figure.suptitle(
        f"Best zero-shot model per sequence ({models}), strategy {cases[0].strategy}: best, median and worst case"
    )
    return figure
