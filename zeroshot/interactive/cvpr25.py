"""The ``cvpr25`` protocol: the deepest voxel of the largest 3D error component, as the CVPR 2025 challenge.

The challenge is "Foundation Models for Interactive 3D Biomedical Image Segmentation"; its rule is in
``CVPR25_iter_eval.py`` (JunMa11/CVPR-MedSegFMCompetition 748e862; rules and lines in ``docs/interactive.md``).

One click per round, in 3D: the error (prediction != ground truth, false negatives and false positives together)
is split into 26-connected components; the largest (the lowest label, i.e. the first in raster order, on ties)
gets a click at the voxel of largest Euclidean distance transform, computed in **voxel units** (the challenge
passes no spacing) on the component's bounding box padded by 25 % of its size (at least one voxel) on every side,
so that the volume's border counts as boundary. Among equally deep voxels one is drawn with NumPy's legacy
generator reseeded with 42 before every click (``np.random.seed(42)``; ``np.random.choice`` over the voxels in
raster order). The click is positive where the ground truth holds the structure (under-segmentation), negative
elsewhere. A padded box over 60 million voxels is reduced 2x by block maximum before the transform and the
distances repeated back, as there. No error: no click (the curve stays flat).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from skimage.measure import block_reduce

from zeroshot.interactive.clicks import Click
from zeroshot.interactive.settings import ClickSettings
from zeroshot.prompts import NEGATIVE, POSITIVE

__all__ = ["LARGE_ROI_VOXELS", "TIE_SEED", "choose", "error_component", "padded_distance"]

#: The challenge reseeds NumPy's global generator with this before drawing among equally deep voxels.
TIE_SEED = 42
#: Padding of the component's box on each side, as a fraction of its size (at least one voxel).
PADDING_FRACTION = 0.25
#: Padded boxes with more voxels than this are transformed at half resolution (block maximum).
LARGE_ROI_VOXELS = 60_000_000
_FULL_26 = np.ones((3, 3, 3), bool)


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
    """The click of one round (see the module docstring); spacing, key slices and ``rng`` are not used."""
    component = error_component(gt, pred)
    if component is None:
        return ()
    block, mask = component
    depth = padded_distance(mask) * mask
    if not depth.any():  # only reachable through the half-resolution path: any voxel of the component
        depth = mask.astype(np.float64)
    deepest = np.argwhere(depth == depth.max())  # raster order, as np.argwhere over the whole volume
    legacy = np.random.RandomState(TIE_SEED)
    z, y, x = (int(v) + s.start for v, s in zip(deepest[legacy.choice(len(deepest))], block, strict=True))
    label = POSITIVE if gt[z, y, x] else NEGATIVE
    return (Click(round=round_index, z=z, x=x, y=y, label=label),)


def error_component(gt: np.ndarray, pred: np.ndarray) -> tuple[tuple[slice, ...], np.ndarray] | None:
    """The largest 26-connected component of ``gt != pred`` as (bounding box, its mask inside the box).

    Components are labelled in raster order; among equally large ones the first wins (``np.argmax`` over the
    component sizes, as the challenge does over ``cc3d`` labels). ``None`` when the prediction is perfect.
    """
    error = gt != pred
    if not error.any():
        return None
    labels, _ = ndimage.label(error, structure=_FULL_26)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    largest = int(np.argmax(sizes))
    block = ndimage.find_objects(labels, max_label=largest)[largest - 1]
    return block, labels[block] == largest


def padded_distance(mask: np.ndarray) -> np.ndarray:
    """Euclidean distance (voxel units) of each voxel of a ``(Z, Y, X)`` box to the nearest background voxel.

    The box is padded with background by ``max(int(0.25 * size), 1)`` voxels per side along each axis, so voxels
    on the box's (and the volume's) edge are at distance 1. Padded boxes over :data:`LARGE_ROI_VOXELS` voxels are
    reduced 2x by block maximum, transformed, and each distance repeated over its 2 x 2 x 2 block.
    """
    shape = np.array(mask.shape)
    padding = np.maximum((shape * PADDING_FRACTION).astype(int), 1)
    padded = np.zeros(shape + 2 * padding, dtype=np.uint8)
    inner = tuple(slice(p, p + s) for p, s in zip(padding, shape, strict=True))
    padded[inner] = mask
    if padded.size > LARGE_ROI_VOXELS:
        reduced = block_reduce(padded, block_size=(2, 2, 2), func=np.max)
        distance = ndimage.distance_transform_edt(reduced)
        distance = distance.repeat(2, axis=0).repeat(2, axis=1).repeat(2, axis=2)
    else:
        distance = ndimage.distance_transform_edt(padded)
    return distance[inner]
