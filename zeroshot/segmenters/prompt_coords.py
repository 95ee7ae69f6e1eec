"""Prompt coordinates: pixel indices on the input slice mapped to a SAM-family model's square input.

Backend-neutral pure functions (NumPy in, NumPy out), shared by every video backend.
"""

from __future__ import annotations

import numpy as np

__all__ = ["box_to_model", "points_to_model"]


def box_to_model(box: tuple[int, int, int, int], *, shape_yx: tuple[int, int], image_size: int) -> np.ndarray:
    """Map an inclusive pixel box on the input slice to SAM2's model pixel coordinates.

    The box covers the pixel area ``[x0, x1 + 1) x [y0, y1 + 1)``; resized to ``S x S`` that area spans model
    pixels ``x0 * S / X`` to ``(x1 + 1) * S / X - 1`` (inclusive indices, SAM2's box convention: its prompt
    encoder adds 0.5 to reach pixel centres). At ``X == S`` the box is passed unchanged. A box narrower than one
    model pixel collapses to a point rather than inverting.

    Parameters
    ----------
    box : (x0, y0, x1, y1)
        Inclusive pixel indices on the input grid.
    shape_yx : (Y, X)
        Input slice size.
    image_size : int
        Model input size S.

    Returns
    -------
    (4,) float64 array
        ``(x0, y0, x1, y1)`` in model pixels.

    Examples
    --------
    >>> box_to_model((10, 20, 29, 39), shape_yx=(64, 64), image_size=128).tolist()
    [20.0, 40.0, 59.0, 79.0]
    """
    height, width = shape_yx
    sx, sy = image_size / width, image_size / height
    x0, y0, x1, y1 = (float(v) for v in box)
    lo = np.array([x0 * sx, y0 * sy])
    hi = np.maximum(np.array([(x1 + 1) * sx - 1, (y1 + 1) * sy - 1]), lo)
    return np.concatenate([lo, hi])


def points_to_model(points: tuple[tuple[int, int], ...], *, shape_yx: tuple[int, int], image_size: int) -> np.ndarray:
    """Map ``(x, y)`` pixel indices on the input slice to model pixel coordinates (pixel centre to centre).

    Examples
    --------
    >>> points_to_model(((0, 0), (63, 31)), shape_yx=(32, 64), image_size=128).tolist()
    [[0.5, 1.5], [126.5, 125.5]]
    """
    height, width = shape_yx
    xy = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    scale = np.array([image_size / width, image_size / height])
    return (xy + 0.5) * scale - 0.5
