"""Mask post-processing of the final 3D mask, on the CPU with SciPy: identical whatever device produced the mask.

These steps act on the thresholded mask at the input grid, after propagation. SAM2's own small-hole filling on
its low-resolution logits, inside propagation, is another step (:mod:`zeroshot.segmenters.hole_filling`).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["fill_holes_per_slice", "keep_largest_component", "postprocess_mask"]

#: 26-connectivity in 3D (faces, edges and corners), as ``skimage.measure.label``'s default that MedSAM2 uses.
_FULL_3D = np.ones((3, 3, 3), dtype=bool)


def keep_largest_component(mask: np.ndarray) -> np.ndarray:
    """Keep the largest 26-connected component of a 3D mask.

    Parameters
    ----------
    mask : (Z, Y, X) bool array

    Returns
    -------
    (Z, Y, X) bool array
        An empty mask stays empty. Of components with equal size the first in raster order (lowest ``z``, then
        ``y``, then ``x`` of its first voxel) is kept, so the result is deterministic.

    Examples
    --------
    >>> m = np.zeros((1, 1, 6), dtype=bool); m[0, 0, [0, 2, 3]] = True
    >>> keep_largest_component(m).astype(int).tolist()
    [[[0, 0, 1, 1, 0, 0]]]
    """
    labels, count = ndimage.label(mask, structure=_FULL_3D)
    if count <= 1:
        return mask.astype(bool, copy=True)
    sizes = np.bincount(labels.ravel())[1:]
    return labels == int(np.argmax(sizes)) + 1


def fill_holes_per_slice(mask: np.ndarray) -> np.ndarray:
    """Fill the holes of each axial slice (background regions not connected to the slice border).

    Parameters
    ----------
    mask : (Z, Y, X) bool array

    Returns
    -------
    (Z, Y, X) bool array
    """
    out = np.empty_like(mask, dtype=bool)
    for z in range(mask.shape[0]):
        out[z] = ndimage.binary_fill_holes(mask[z])
    return out


def postprocess_mask(
    mask: np.ndarray, *, fill_enclosed_holes: bool = False, largest_component: bool = False
) -> np.ndarray:
    """Apply the optional post-processing steps in a fixed order: enclosed-hole filling, then largest component.

    Parameters
    ----------
    mask : (Z, Y, X) bool array
    fill_enclosed_holes : bool
        Fill every enclosed hole, whatever its size, slice by slice (:func:`fill_holes_per_slice`).
    largest_component : bool
        Keep the largest 26-connected 3D component (:func:`keep_largest_component`), as MedSAM2 does.

    Returns
    -------
    (Z, Y, X) bool array
        A new array; ``mask`` is not modified.
    """
    out = mask.astype(bool, copy=True)
    if fill_enclosed_holes:
        out = fill_holes_per_slice(out)
    if largest_component:
        out = keep_largest_component(out)
    return out
