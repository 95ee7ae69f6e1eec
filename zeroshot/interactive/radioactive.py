"""The ``radioactive`` protocol: a sign drawn from the error counts, then component centres or a scribble.

RadioActive's rule is its interactive prompter for 2D models (``twoDInteractivePrompter`` in
``src/radioa/prompts/interactive_prompter.py``, MIC-DKFZ/radioactive 1796386, arXiv 2411.07885; rules and lines in
``docs/interactive.md``).

Each round, unless the prediction is perfect (then no click: the curve stays flat):

* **sign**: negative when there is no false negative, positive when there is no false positive, else negative with
  probability FP / (FP + FN) (voxel counts; one Bernoulli draw from the round's seeded stream);
* **positive**: the largest 3D (26-connected) false-negative component; on every axial slice it spans, one positive
  click at the foreground pixel nearest (``cKDTree``) to the rounded centre of mass of the component's largest
  8-connected piece on that slice;
* **negative**: on the plane ``y = const`` (a (z, x) plane; RadioActive's "sagittal" axis 1) holding the most false
  positives, a scribble: the contour of the ground truth dilated by a disk of radius 2 (``find_contours``), a
  stretch of 60 % of its length centred on a contour point drawn among those on predicted pixels (Python's
  ``random`` reseeded with 1 before each scribble), rasterised and cut to its largest 8-connected piece; where that
  plane holds no ground truth, the whole column (every z) with the most predicted pixels. **The scribble becomes
  points**: each of its pixels that the prediction covers is one negative click on its own axial slice ``z`` at
  ``(x, y = the plane)``, the point form RadioActive itself hands its 2D models. Where no scribble can be drawn
  (no contour point on the prediction, or none of the scribble on it), RadioActive falls back to three voxels drawn
  from the false positives (NumPy reseeded with 1) and, as its code does, labels them **positive**
  (``get_pos_clicks3D``).

RadioActive's seed is 1 (``experiments_runner.py`` passes ``seed=1`` to every prompter) and its budget 5 rounds.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree
from skimage.measure import find_contours, label
from skimage.morphology import disk

from zeroshot.interactive.clicks import Click
from zeroshot.interactive.settings import ClickSettings
from zeroshot.prompts import NEGATIVE, POSITIVE

__all__ = ["SEED", "choose", "contour_scribble", "negative_clicks", "positive_clicks"]

#: The seed RadioActive's prompters get (``experiments_runner.py``) and reseed with before each scribble/fallback.
SEED = 1
#: Dilation radius (px) of the ground truth whose contour the scribble follows (``contour_distance``).
CONTOUR_DISTANCE_PX = 2
#: Fraction of the contour's length the scribble covers (``scribble_length``).
SCRIBBLE_LENGTH = 0.6
#: Voxels drawn from the false positives when no scribble can be drawn (``negative_failed_choose_n_points``).
FALLBACK_POINTS = 3


def choose(
    gt: np.ndarray,
    pred: np.ndarray,
    spacing_mm: Sequence[float],
    *,
    settings: ClickSettings,
    round_index: int,
    key_slices: Sequence[int],
    rng: np.random.Generator,
) -> tuple[Click, ...]:
    """The clicks of one round (see the module docstring); spacing and key slices are not used."""
    false_neg = gt & ~pred
    false_pos = pred & ~gt
    n_fn, n_fp = int(false_neg.sum()), int(false_pos.sum())
    if n_fn == 0 and n_fp == 0:
        return ()
    if n_fn == 0:
        negative = True
    elif n_fp == 0:
        negative = False
    else:
        negative = bool(rng.binomial(1, n_fp / (n_fn + n_fp)))
    if negative:
        return negative_clicks(gt, pred, false_pos, round_index)
    return positive_clicks(false_neg, round_index)


def _largest_piece(mask: np.ndarray) -> np.ndarray:
    """The largest full-connectivity component (``np.argsort`` of the sizes, last entry, as RadioActive)."""
    labels = label(mask)
    sizes = np.bincount(labels.ravel())[1:]
    return labels == int(np.argsort(sizes)[-1]) + 1


def positive_clicks(false_neg: np.ndarray, round_index: int) -> tuple[Click, ...]:
    """One positive click per axial slice of the largest 3D false-negative component (see the module docstring)."""
    component = _largest_piece(false_neg)
    clicks = []
    for z in np.flatnonzero(component.any(axis=(1, 2))):
        piece = _largest_piece(component[z])
        foreground = np.column_stack(np.nonzero(piece))
        centre = np.mean(np.nonzero(piece), axis=1).round().astype(int)
        _, index = cKDTree(foreground).query([centre], k=1)
        y, x = foreground[int(index[0])]
        clicks.append(Click(round=round_index, z=int(z), x=int(x), y=int(y), label=POSITIVE))
    return tuple(clicks)


def negative_clicks(gt: np.ndarray, pred: np.ndarray, false_pos: np.ndarray, round_index: int) -> tuple[Click, ...]:
    """The scribble's points on the (z, x) plane with the most false positives, or the fallback clicks."""
    plane = int(np.argmax(false_pos.sum(axis=(0, 2))))
    plane_gt, plane_pred = gt[:, plane, :], pred[:, plane, :]
    if plane_gt.any():
        scribble = contour_scribble(plane_gt, plane_pred)
    else:
        scribble = np.zeros_like(plane_pred)
        scribble[:, int(np.argmax(plane_pred.sum(axis=0)))] = True
    if scribble is not None:
        on_prediction = scribble & plane_pred
        if on_prediction.any():
            zs, xs = np.nonzero(on_prediction)
            return tuple(
                Click(round=round_index, z=int(z), x=int(x), y=plane, label=NEGATIVE)
                for z, x in zip(zs, xs, strict=True)
            )
    voxels = np.argwhere(false_pos)
    chosen = np.random.RandomState(SEED).choice(len(voxels), size=min(len(voxels), FALLBACK_POINTS), replace=False)
    return tuple(Click(round=round_index, z=int(z), x=int(x), y=int(y), label=POSITIVE) for z, y, x in voxels[chosen])


def contour_scribble(plane_gt: np.ndarray, plane_pred: np.ndarray) -> np.ndarray | None:
    """RadioActive's false-positive scribble on a ``(rows, cols)`` plane, or ``None`` where none can be drawn.

    The contour of ``plane_gt`` dilated by a disk of radius :data:`CONTOUR_DISTANCE_PX`; a stretch of
    ``round(0.6 * length)`` contour points centred on one drawn among those on ``plane_pred`` (Python ``random``
    seeded with :data:`SEED`), rounded to pixels and cut to its largest 8-connected piece.
    """
    draws = random.Random(SEED)
    radius = draws.randint(CONTOUR_DISTANCE_PX, CONTOUR_DISTANCE_PX)  # RadioActive draws it (a range of one value)
    grown = ndimage.binary_dilation(plane_gt, structure=disk(radius))  # skimage's binary_dilation, which it wraps
    if not grown.any():
        return None
    pieces = find_contours(grown)
    if not pieces:
        return None
    contour = np.concatenate(pieces, axis=0)
    length = round(len(contour) * SCRIBBLE_LENGTH)
    rounded = np.round(contour).astype(int)
    on_pred = np.flatnonzero(plane_pred[rounded[:, 0], rounded[:, 1]] == 1)
    if len(on_pred) == 0:
        return None
    centre = int(draws.choices(on_pred)[0])
    stretch = np.take(contour, range(centre - int(length / 2), centre + length - int(length / 2)), axis=0, mode="wrap")
    stretch = np.round(stretch).astype(np.int32)
    scribble = np.zeros_like(plane_gt)
    scribble[stretch[:, 0], stretch[:, 1]] = 1
    pieces_of_scribble = label(scribble)
    values, counts = np.unique(pieces_of_scribble, return_counts=True)
    counts, values = counts[values > 0], values[values > 0]
    return pieces_of_scribble == values[np.argmax(counts)]
