"""Scoring one prediction: the case's metric columns and its per-slice table (run in worker processes).

This module imports no model code, so a scoring process starts quickly and never touches a GPU. A prediction whose
CPU post-processing was deferred (largest component, enclosed holes, z-extent) is finished here first
(:func:`finish_and_score`), so that SciPy's work runs in the worker, not on the model's thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from zeroshot.store.schema import SLICE_COLUMNS

if TYPE_CHECKING:
    from zeroshot.segmenters.postprocess import PostProcessing

__all__ = ["SLICE_COLUMNS", "FinishedScores", "Scores", "finish_and_score", "score_prediction", "slice_table"]


@dataclass(frozen=True)
class Scores:
    """The scores of one prediction.

    Attributes
    ----------
    metrics : dict
        The metric columns of the result row (``CaseMetrics.as_row()``).
    slices : dict of str to list
        The per-slice table, column by column (:data:`SLICE_COLUMNS`).
    """

    metrics: dict[str, Any]
    slices: dict[str, list[Any]]


def score_prediction(
    gt: np.ndarray,
    pred: np.ndarray,
    spacing_mm: tuple[float, float, float],
    key_slices: Sequence[int],
    *,
    tolerances_mm: Sequence[float],
) -> Scores:
    """Score ``pred`` against ``gt`` on the ground-truth grid: metric columns and the per-slice table.

    Parameters
    ----------
    gt, pred : (Z, Y, X) bool arrays
    spacing_mm : (float, float, float)
        Voxel size in mm, ``(z, y, x)``.
    key_slices : sequence of int
        The prompted slices (the per-slice table measures each slice's distance to the nearest).
    tolerances_mm : sequence of float
        NSD tolerances.
    """
    from zeroshot.metrics import score_case

    metrics = score_case(gt, pred, spacing_mm, tolerances_mm=tuple(tolerances_mm)).as_row()
    return Scores(metrics=dict(metrics), slices=slice_table(gt, pred, spacing_mm, key_slices))


@dataclass(frozen=True, eq=False)
class FinishedScores:
    """The scores of a prediction finished in a worker, and what finishing it gave the parent back.

    Attributes
    ----------
    scores : Scores
    info : dict of str to int
        Entries the post-processing adds to the row's segmentation info (``z_extent_voxels_cleared``).
    mask : (Z, Y, X) bool array or None
        The post-processed mask, when it was asked back (to save it); else ``None`` (it need not cross again).
    """

    scores: Scores
    info: dict[str, int]
    mask: np.ndarray | None = None


def finish_and_score(
    gt: np.ndarray,
    pred: np.ndarray,
    postprocessing: PostProcessing | None,
    spacing_mm: tuple[float, float, float],
    key_slices: Sequence[int],
    *,
    tolerances_mm: Sequence[float],
    return_mask: bool = False,
) -> FinishedScores:
    """Apply a prediction's deferred post-processing (if any), then score it as :func:`score_prediction` does.

    Parameters
    ----------
    gt, pred : (Z, Y, X) bool arrays
        ``pred`` before its pending post-processing.
    postprocessing : PostProcessing or None
        The steps still to apply to ``pred`` (``None``: ``pred`` is final).
    spacing_mm, key_slices, tolerances_mm
        As for :func:`score_prediction`.
    return_mask : bool
        Also return the post-processed mask (the caller saves it).
    """
    info: dict[str, int] = {}
    if postprocessing is not None:
        done = postprocessing.apply(pred)
        pred, info = done.mask, done.info()
    scores = score_prediction(gt, pred, spacing_mm, key_slices, tolerances_mm=tolerances_mm)
    return FinishedScores(scores, info, pred if return_mask else None)


def slice_table(
    gt: np.ndarray, pred: np.ndarray, spacing_mm: tuple[float, float, float], key_slices: Sequence[int]
) -> dict[str, list[Any]]:
    """Per-slice areas and Dice, and each slice's distance to the nearest prompted slice, to study drift.

    Returns
    -------
    dict of str to list
        One entry per slice ``z`` (all slices, so false positives far from any prompt show too):
        ``dist_slices`` (slices to the nearest key slice; -1 when there is none), ``dist_mm``
        (``dist_slices * spacing_z``; NaN when there is none), ``gt_area_px``, ``pred_area_px`` and the same in
        mm², and ``slice_dice`` (NaN where both masks are empty on the slice, 0 where exactly one is).
    """
    gt = np.asarray(gt, dtype=bool)
    pred = np.asarray(pred, dtype=bool)
    depth = gt.shape[0]
    z = np.arange(depth)
    if len(key_slices):
        keys = np.asarray(sorted(key_slices))
        dist = np.min(np.abs(z[:, None] - keys[None, :]), axis=1)
        dist_mm = dist * float(spacing_mm[0])
    else:
        dist = np.full(depth, -1)
        dist_mm = np.full(depth, np.nan)
    pixel_mm2 = float(spacing_mm[1]) * float(spacing_mm[2])
    gt_area = gt.reshape(depth, -1).sum(axis=1)
    pred_area = pred.reshape(depth, -1).sum(axis=1)
    overlap = (gt & pred).reshape(depth, -1).sum(axis=1)
    total = gt_area + pred_area
    with np.errstate(invalid="ignore", divide="ignore"):
        dice = np.where(total > 0, 2.0 * overlap / np.maximum(total, 1), np.nan)
    return {
        "z": z.tolist(),
        "dist_slices": dist.astype(int).tolist(),
        "dist_mm": dist_mm.astype(float).tolist(),
        "gt_area_px": gt_area.astype(int).tolist(),
        "pred_area_px": pred_area.astype(int).tolist(),
        "gt_area_mm2": (gt_area * pixel_mm2).tolist(),
        "pred_area_mm2": (pred_area * pixel_mm2).tolist(),
        "slice_dice": dice.astype(float).tolist(),
    }
