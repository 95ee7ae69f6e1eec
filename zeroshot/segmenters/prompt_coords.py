"""Prompt coordinates: pixel indices on the input slice mapped onto a SAM-family model's square input.

A box ``(x0, y0, x1, y1)`` holds inclusive pixel indices on the input slice (``X`` columns, ``Y`` rows); a point
``(x, y)`` is a pixel index. The model sees the slice resized to ``S x S`` and takes prompts in its own pixels.
Two mappings (the segmenters' ``coords`` option):

``"official"`` (default)
    every coordinate scaled as ``x * S / X`` and ``y * S / Y``, box corners and points alike, in float32: what
    SAM2's video predictor does with pixel coordinates (``add_new_points_or_box(normalize_coords=True)``:
    divide by the frame's width and height, multiply by ``image_size``; ``sam2/sam2_video_predictor.py``
    lines 212-217 in sam2 1.1.0) and so what MedSAM2's 3D inference gets from the box it passes. The far corner
    lands on the model pixel where the last column *starts*, so the box is up to ``S / X`` model pixels smaller
    than the area its pixels cover.
``"area"``
    the geometry of the resize itself: a box covers the area of its pixels, ``x0 * S / X`` to
    ``(x1 + 1) * S / X - 1`` (inclusive model pixels; a box narrower than one model pixel collapses to a point
    rather than inverting), and a point keeps its pixel's centre, ``(x + 0.5) * S / X - 0.5``. Identity when
    ``X == S``. zeroshot's mapping before it followed the authors by default.

Each mapping comes in two forms: ``*_to_unit`` gives fractions of the model input (what SAM2's predictor
multiplies by ``S``), ``*_to_model`` gives model pixels (``unit * S`` in float32, the predictor's own product).
Backend-neutral pure functions (NumPy in, NumPy out).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from zeroshot.errors import SegmenterError

__all__ = ["COORDS", "box_to_model", "box_to_unit", "check_coords", "points_to_model", "points_to_unit"]

#: The coordinate mappings, the authors' first.
COORDS = ("official", "area")


def check_coords(coords: str) -> str:
    """Return ``coords`` if it names a mapping of :data:`COORDS`.

    Raises
    ------
    SegmenterError
        For any other value.
    """
    if coords not in COORDS:
        raise SegmenterError(f"coords must be one of {', '.join(map(repr, COORDS))}; got {coords!r}")
    return coords


def box_to_unit(
    box: Sequence[int], *, shape_yx: tuple[int, int], image_size: int, coords: str = "official"
) -> np.ndarray:
    """Map an inclusive pixel box on the input slice to fractions of the model input.

    Parameters
    ----------
    box : (x0, y0, x1, y1)
        Inclusive pixel indices on the input grid.
    shape_yx : (Y, X)
        Input slice size.
    image_size : int
        Model input size S.
    coords : {"official", "area"}
        See the module docstring.

    Returns
    -------
    (4,) float32 array
        ``(x0, y0, x1, y1)`` divided by S; times ``float32(S)`` gives model pixels.

    Examples
    --------
    >>> box_to_unit((10, 20, 29, 39), shape_yx=(64, 64), image_size=128).tolist()
    [0.15625, 0.3125, 0.453125, 0.609375]
    """
    height, width = shape_yx
    corners = np.asarray(box, dtype=np.float64).reshape(2, 2)
    if check_coords(coords) == "official":
        return (corners.astype(np.float32) / np.array([width, height], dtype=np.float32)).reshape(4)
    scale = np.array([image_size / width, image_size / height])
    lo = corners[0] * scale
    hi = np.maximum((corners[1] + 1) * scale - 1, lo)
    return (np.concatenate([lo, hi]) / image_size).astype(np.float32)


def points_to_unit(
    points: Sequence[Sequence[int]], *, shape_yx: tuple[int, int], image_size: int, coords: str = "official"
) -> np.ndarray:
    """Map ``(x, y)`` pixel indices on the input slice to fractions of the model input.

    Parameters
    ----------
    points : sequence of (x, y)
    shape_yx : (Y, X)
    image_size : int
    coords : {"official", "area"}

    Returns
    -------
    (N, 2) float32 array

    Examples
    --------
    >>> points_to_unit(((0, 0), (63, 31)), shape_yx=(32, 64), image_size=128, coords="area").tolist()
    [[0.00390625, 0.01171875], [0.98828125, 0.98046875]]
    """
    height, width = shape_yx
    xy = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if check_coords(coords) == "official":
        return xy.astype(np.float32) / np.array([width, height], dtype=np.float32)
    scale = np.array([image_size / width, image_size / height])
    return (((xy + 0.5) * scale - 0.5) / image_size).astype(np.float32)


def box_to_model(
    box: Sequence[int], *, shape_yx: tuple[int, int], image_size: int, coords: str = "official"
) -> np.ndarray:
    """Map an inclusive pixel box to model pixels: :func:`box_to_unit` times S, in float32.

    Examples
    --------
    >>> box_to_model((10, 20, 29, 39), shape_yx=(64, 64), image_size=128).tolist()
    [20.0, 40.0, 58.0, 78.0]
    >>> box_to_model((10, 20, 29, 39), shape_yx=(64, 64), image_size=128, coords="area").tolist()
    [20.0, 40.0, 59.0, 79.0]
    """
    return box_to_unit(box, shape_yx=shape_yx, image_size=image_size, coords=coords) * np.float32(image_size)


def points_to_model(
    points: Sequence[Sequence[int]], *, shape_yx: tuple[int, int], image_size: int, coords: str = "official"
) -> np.ndarray:
    """Map ``(x, y)`` pixel indices to model pixels: :func:`points_to_unit` times S, in float32.

    Examples
    --------
    >>> points_to_model(((0, 0), (63, 31)), shape_yx=(32, 64), image_size=128).tolist()
    [[0.0, 0.0], [126.0, 124.0]]
    """
    return points_to_unit(points, shape_yx=shape_yx, image_size=image_size, coords=coords) * np.float32(image_size)
