"""Point prompts: an interior point farthest from the boundary, further positives, negatives around the structure.

The building blocks are public so that simulated corrective clicks reuse them: a positive click at
``farthest_interior_point(largest_component(false_negative), spacing)``, a negative one in the false positives.
Points are ``(x, y)`` pixel indices (x = column, y = row); distances are in mm with the slice's own spacing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from zeroshot.distance_ties import at_least_mm, at_most_mm, first_farthest
from zeroshot.errors import PromptError
from zeroshot.prompts.regions import bounding_slices, distance_from_region_mm, distance_to_boundary_mm
from zeroshot.prompts.settings import PointSettings

__all__ = [
    "farthest_interior_point",
    "negative_region",
    "place_points",
    "random_points",
    "spread_points",
]

Point = tuple[int, int]


def farthest_interior_point(mask2d: np.ndarray, spacing_yx_mm: tuple[float, float]) -> Point:
    """The pixel of a ``(Y, X)`` mask farthest (in mm) from its boundary, as ``(x, y)``.

    The slice's edge counts as boundary. Among equally deep pixels (within a relative 1e-6, see
    :mod:`zeroshot.distance_ties`) the first in raster order (lowest row, then lowest column) wins, so the answer is
    deterministic and does not depend on whether the spacing came as float32 or float64. The point is always
    inside the mask, even for concave or ring-shaped structures where the centroid is not.

    Raises
    ------
    PromptError
        If ``mask2d`` is not a 2D bool array or holds no true pixel.

    Examples
    --------
    >>> m = np.zeros((5, 9), bool)
    >>> m[1:4, 1:8] = True
    >>> farthest_interior_point(m, (1.0, 1.0))
    (2, 2)
    """
    _check_slice_mask(mask2d, "mask2d")
    block = bounding_slices(mask2d)
    if block is None:
        raise PromptError("mask2d: empty mask, no interior point")
    depth = distance_to_boundary_mm(mask2d[block], spacing_yx_mm)
    row, col = np.unravel_index(first_farthest(depth), depth.shape)
    return int(col + block[1].start), int(row + block[0].start)


def spread_points(
    candidates: np.ndarray,
    count: int,
    spacing_yx_mm: tuple[float, float],
    *,
    existing: Sequence[Point] = (),
    ceiling_mm: np.ndarray | None = None,
) -> list[Point]:
    """Place up to ``count`` points on the true pixels of ``candidates``, each as far as possible from the others.

    Greedy farthest-point sampling: each new point maximises its distance in mm to the nearest point placed so
    far (``existing`` included), capped by ``ceiling_mm`` at that pixel when given (pass the distance to the
    boundary to keep positives away from the edge). Ties (within a relative 1e-6) go to the first pixel in raster
    order. Fewer points come back when the candidates run out.

    Parameters
    ----------
    candidates : (Y, X) bool array
    count : int
    spacing_yx_mm : (float, float)
    existing : sequence of (x, y)
        Points already placed, which new points keep away from.
    ceiling_mm : (Y, X) float array or None
    """
    rows, cols = np.nonzero(candidates)
    score = np.full(rows.size, np.inf)
    if ceiling_mm is not None:
        score = np.minimum(score, ceiling_mm[rows, cols])
    spacing_y, spacing_x = spacing_yx_mm

    def keep_away_from(point: Point) -> None:
        x, y = point
        distance = np.hypot((rows - y) * spacing_y, (cols - x) * spacing_x)
        np.minimum(score, distance, out=score)

    for point in existing:
        keep_away_from(point)
    placed: list[Point] = []
    while len(placed) < count and rows.size:
        best = first_farthest(score)
        if score[best] <= 0:
            break
        point = (int(cols[best]), int(rows[best]))
        placed.append(point)
        keep_away_from(point)
        score[best] = -1.0
    return placed


def random_points(
    candidates: np.ndarray, count: int, rng: np.random.Generator, *, exclude: Sequence[Point] = ()
) -> list[Point]:
    """Up to ``count`` distinct true pixels of ``candidates`` drawn uniformly, none of them in ``exclude``."""
    free = candidates.copy()
    for x, y in exclude:
        free[y, x] = False
    rows, cols = np.nonzero(free)
    chosen = rng.choice(rows.size, size=min(count, rows.size), replace=False) if rows.size else []
    return [(int(cols[i]), int(rows[i])) for i in chosen]


def negative_region(
    mask2d: np.ndarray,
    spacing_yx_mm: tuple[float, float],
    *,
    distance_mm: float,
    width_mm: float | None,
) -> np.ndarray:
    """Background pixels at a given distance in mm from a ``(Y, X)`` mask: where negative clicks may go.

    The region holds the pixels between ``distance_mm`` and ``distance_mm + width_mm`` from ``mask2d`` (no upper
    bound when ``width_mm`` is ``None``), both ends included (within a relative 1e-6, see
    :mod:`zeroshot.distance_ties`); pixels of ``mask2d`` never belong to it. Distances are between pixel
    centres, in mm: a pixel touching the structure along x is ``spacing_x`` away.
    """
    if width_mm is None:
        distance = distance_from_region_mm(mask2d, spacing_yx_mm)
        return at_least_mm(distance, distance_mm) & ~mask2d
    reach = distance_mm + width_mm
    margin = tuple(int(np.ceil(reach / s)) + 1 for s in spacing_yx_mm)
    block = bounding_slices(mask2d, margin=margin)
    region = np.zeros_like(mask2d)
    if block is None:
        return region
    distance = distance_from_region_mm(mask2d[block], spacing_yx_mm)
    region[block] = at_least_mm(distance, distance_mm) & at_most_mm(distance, reach) & ~mask2d[block]
    return region


def place_points(
    mask2d: np.ndarray,
    spacing_yx_mm: tuple[float, float],
    settings: PointSettings,
    rng: np.random.Generator,
    *,
    scope: np.ndarray | None = None,
) -> tuple[tuple[Point, ...], tuple[int, ...], dict[str, Any]]:
    """Positive and negative clicks on one slice under ``settings``.

    Parameters
    ----------
    mask2d : (Y, X) bool array
        The structure on the slice (all its pieces): negatives keep their distance from all of it.
    spacing_yx_mm : (float, float)
    settings : PointSettings
    rng : numpy.random.Generator
        Used by ``random`` placements only.
    scope : (Y, X) bool array or None
        The part of the structure positives go into (e.g. its largest piece); ``mask2d`` when ``None``.

    Returns
    -------
    points : tuple of (x, y)
        Positives first, then negatives.
    labels : tuple of int
        1 for each positive, 0 for each negative.
    info : dict
        ``positives`` and ``negatives`` actually placed (fewer than asked where a region ran out of pixels).
    """
    scope = mask2d if scope is None else scope
    positives = [farthest_interior_point(scope, spacing_yx_mm)]
    if settings.positives > 1:
        more = settings.positives - 1
        if settings.positive_placement == "spread":
            block = bounding_slices(scope)
            depth = np.zeros(scope.shape)
            depth[block] = distance_to_boundary_mm(scope[block], spacing_yx_mm)
            positives += spread_points(scope, more, spacing_yx_mm, existing=positives, ceiling_mm=depth)
        else:
            positives += random_points(scope, more, rng, exclude=positives)
    negatives: list[Point] = []
    if settings.negatives:
        width = settings.ring_width_mm if settings.negative_region == "ring" else None
        region = negative_region(mask2d, spacing_yx_mm, distance_mm=settings.negative_distance_mm, width_mm=width)
        if settings.negative_placement == "spread":
            negatives = spread_points(region, settings.negatives, spacing_yx_mm, existing=positives)
        else:
            negatives = random_points(region, settings.negatives, rng)
    points = tuple(positives + negatives)
    labels = (1,) * len(positives) + (0,) * len(negatives)
    return points, labels, {"positives": len(positives), "negatives": len(negatives)}


def _check_slice_mask(mask2d: np.ndarray, name: str) -> None:
    if not isinstance(mask2d, np.ndarray) or mask2d.ndim != 2 or mask2d.dtype != bool:
        shape = getattr(mask2d, "shape", None)
        dtype = getattr(mask2d, "dtype", type(mask2d).__name__)
        raise PromptError(f"{name}: expected a 2D (Y, X) bool array, got shape {shape} and dtype {dtype}")
