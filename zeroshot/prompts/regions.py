"""Geometry of mask regions that every prompt rule builds on: extents, connected components, distances in mm.

All functions take boolean arrays in the toolkit's axis order (``(Z, Y, X)`` volumes, ``(Y, X)`` slices) and
spacings in mm in the same order, so anisotropic voxels are measured correctly.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = [
    "bounding_slices",
    "count_components",
    "distance_from_region_mm",
    "distance_to_boundary_mm",
    "largest_component",
    "tight_box",
]


def bounding_slices(mask: np.ndarray, *, margin: int | tuple[int, ...] = 0) -> tuple[slice, ...] | None:
    """Index slices of the smallest block holding every true element of ``mask``, grown by ``margin`` elements.

    Parameters
    ----------
    mask : (...) bool array
    margin : int or tuple of int
        Elements added on both sides of each axis (clipped to the array); one value or one per axis.

    Returns
    -------
    tuple of slice or None
        ``None`` when ``mask`` is empty.

    Examples
    --------
    >>> m = np.zeros((5, 6), bool)
    >>> m[1:3, 2] = True
    >>> bounding_slices(m)
    (slice(1, 3, None), slice(2, 3, None))
    """
    margins = (margin,) * mask.ndim if isinstance(margin, int) else tuple(margin)
    extents = []
    view = mask
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(view.any(axis=other))
        if hits.size == 0:
            return None
        extents.append((int(hits[0]), int(hits[-1]) + 1))
        # Later axes only need to look inside the extent found so far: a small structure costs little.
        index = [slice(None)] * mask.ndim
        index[axis] = slice(*extents[-1])
        view = view[tuple(index)]
    return tuple(
        slice(max(lo - m, 0), min(hi + m, size)) for (lo, hi), m, size in zip(extents, margins, mask.shape, strict=True)
    )


def tight_box(mask2d: np.ndarray) -> tuple[int, int, int, int] | None:
    """The inclusive box ``(x0, y0, x1, y1)`` around every true pixel of a ``(Y, X)`` mask; ``None`` if empty.

    ``x`` is the column and ``y`` the row; ``x1``/``y1`` are the last column/row holding the structure.

    Examples
    --------
    >>> m = np.zeros((4, 6), bool)
    >>> m[1, 2] = m[2, 4] = True
    >>> tight_box(m)
    (2, 1, 4, 2)
    """
    block = bounding_slices(mask2d)
    if block is None:
        return None
    rows, cols = block
    return cols.start, rows.start, cols.stop - 1, rows.stop - 1


def largest_component(mask: np.ndarray) -> np.ndarray:
    """Keep the largest connected component of ``mask`` (full connectivity: 8 in 2D, 26 in 3D).

    Components are counted in elements; among equally large ones the first in raster order wins. An empty mask
    comes back empty.
    """
    labelled, count = ndimage.label(mask, structure=np.ones((3,) * mask.ndim, dtype=bool))
    if count <= 1:
        return mask.copy()
    sizes = np.bincount(labelled.ravel(), minlength=count + 1)
    sizes[0] = 0
    return labelled == int(np.argmax(sizes))


def count_components(mask: np.ndarray) -> int:
    """Number of connected components of ``mask`` (full connectivity, as :func:`largest_component` counts them)."""
    return int(ndimage.label(mask, structure=np.ones((3,) * mask.ndim, dtype=bool))[1])


def distance_to_boundary_mm(mask: np.ndarray, spacing_mm: tuple[float, ...]) -> np.ndarray:
    """For each true element, the distance in mm to the nearest false one (0 outside the mask).

    The array border counts as background: a structure touching the edge of the slice is measured as if the
    image ended there, so an interior point never sits on the border.
    """
    padded = np.pad(mask, 1, constant_values=False)
    distance = ndimage.distance_transform_edt(padded, sampling=spacing_mm)
    return distance[(slice(1, -1),) * mask.ndim]


def distance_from_region_mm(mask: np.ndarray, spacing_mm: tuple[float, ...]) -> np.ndarray:
    """For each element, the distance in mm to the nearest true element of ``mask`` (0 inside it).

    Distances are between element centres, so a background element that touches the region along an axis is
    one spacing away. ``mask`` must not be empty.
    """
    return ndimage.distance_transform_edt(~mask, sampling=spacing_mm)
