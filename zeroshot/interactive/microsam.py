"""The ``microsam`` protocol: one positive and one negative voxel drawn from the errors, as micro-sam.

micro-sam's rule is its ``IterativePromptGenerator`` (``micro_sam/prompt_generators.py``,
computational-cell-analytics/micro-sam 3acdcd7; rules and lines in ``docs/interactive.md``), applied here to the
whole volume (its 3D branch, masks ``(1, Z, Y, X)``).

Every round makes two clicks, always:

* a positive one at a voxel drawn uniformly from the false negatives; with none, from the true positives (the
  model was right everywhere it could be: it is clicked where it was already correct);
* a negative one at a voxel drawn uniformly from the false positives; with none, from the background inside the
  structure's box widened by 3 voxels, which micro-sam's 3D branch builds over the first two spatial axes only
  (z and y, clipped at the row and column counts) and over every column; with none there either, from the whole
  background.

micro-sam draws from NumPy's unseeded global generator; here each round draws from its own seeded stream
(:func:`~zeroshot.interactive.settings.click_rng`), positive first. A perfect prediction still gets its two clicks
(micro-sam never stops early). An empty ground truth gets none: micro-sam only prompts objects that exist (its
generator would fail on an empty one).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from zeroshot.interactive.clicks import Click
from zeroshot.interactive.settings import ClickSettings
from zeroshot.prompts import NEGATIVE, POSITIVE

__all__ = ["BOX_MARGIN_PX", "choose", "negative_region", "positive_region"]

#: ``custom_df``: the structure's box is widened by this many voxels for the negative fallback.
BOX_MARGIN_PX = 3


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
    """The two clicks of one round (see the module docstring); spacing and key slices are not used."""
    if not gt.any():
        return ()
    clicks = [_draw(positive_region(gt, pred), POSITIVE, round_index, rng)]
    negatives = negative_region(gt, pred)
    if negatives.any():  # empty only when the structure fills the whole volume
        clicks.append(_draw(negatives, NEGATIVE, round_index, rng))
    return tuple(clicks)


def positive_region(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Where the positive click is drawn: the false negatives, else the true positives."""
    false_neg = gt & ~pred
    return false_neg if false_neg.any() else gt & pred


def negative_region(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Where the negative click is drawn: the false positives, else the box background, else all background.

    The box is micro-sam's 3D one: rows ``z0 - 3 .. min(z1 + 4, Y)`` of the first axis and ``y0 - 3 ..
    min(y1 + 4, X)`` of the second (each start clipped at 0), every column of the third, minus the structure.
    """
    false_pos = pred & ~gt
    if false_pos.any():
        return false_pos
    z, y, _ = np.nonzero(gt)
    height, width = gt.shape[-2:]
    box = np.zeros_like(gt)
    box[
        max(int(z.min()) - BOX_MARGIN_PX, 0) : min(int(z.max()) + 1 + BOX_MARGIN_PX, height),
        max(int(y.min()) - BOX_MARGIN_PX, 0) : min(int(y.max()) + 1 + BOX_MARGIN_PX, width),
    ] = True
    around = box & ~gt
    return around if around.any() else ~gt


def _draw(region: np.ndarray, label: int, round_index: int, rng: np.random.Generator) -> Click:
    """A voxel drawn uniformly from ``region`` (its voxels in raster order, as ``torch.where`` lists them)."""
    flat = np.flatnonzero(region)
    z, y, x = np.unravel_index(int(flat[rng.integers(len(flat))]), region.shape)
    return Click(round=round_index, z=int(z), x=int(x), y=int(y), label=label)
