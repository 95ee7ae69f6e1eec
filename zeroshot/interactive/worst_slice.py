"""The ``zeroshot`` protocol: the deepest point of the largest 2D error region on the worst slice.

Each round compares the 3D prediction with the ground truth, picks a slice (the one with the largest misclassified
area in mm², by default) and clicks: a positive click at the interior point farthest (in mm) from the boundary of
the largest false-negative region of that slice, or a negative click at that point of the largest false-positive
region, whichever region is larger (one click per round, the common protocol of micro-sam's interactive tools,
SAM-Med3D and VISTA3D), or one of each. Deterministic: no random draw.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from zeroshot.interactive.clicks import Click
from zeroshot.interactive.settings import ClickSettings
from zeroshot.prompts import NEGATIVE, POSITIVE
from zeroshot.prompts.points import farthest_interior_point
from zeroshot.prompts.regions import largest_component

__all__ = ["choose"]


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
    """The clicks of one round (see the module docstring); ``rng`` is not used.

    Ties are broken deterministically: the lowest slice index among equally wrong slices, the positive click when
    the false-negative and false-positive regions are equally large, the first pixel in raster order among equally
    deep ones.
    """
    false_neg = gt & ~pred
    false_pos = pred & ~gt
    error_area = (false_neg | false_pos).sum(axis=(1, 2))
    if settings.slice_rule == "key-slice":
        candidates = np.zeros_like(error_area)
        keys = [z for z in key_slices if 0 <= z < gt.shape[0]]
        candidates[keys] = error_area[keys]
        error_area = candidates
    if not error_area.any():
        return ()
    z = int(np.argmax(error_area))
    spacing_yx = (float(spacing_mm[1]), float(spacing_mm[2]))
    regions = {POSITIVE: largest_component(false_neg[z]), NEGATIVE: largest_component(false_pos[z])}
    sizes = {label: int(region.sum()) for label, region in regions.items()}
    if settings.per_round == "one":
        labels = [POSITIVE if sizes[POSITIVE] >= sizes[NEGATIVE] else NEGATIVE]
    else:
        labels = [label for label in (POSITIVE, NEGATIVE) if sizes[label] > 0]
    clicks = []
    for label in labels:
        x, y = farthest_interior_point(regions[label], spacing_yx)
        clicks.append(Click(round=round_index, z=z, x=x, y=y, label=label))
    return tuple(clicks)
