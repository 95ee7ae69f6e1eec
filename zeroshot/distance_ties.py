"""How distances in mm are compared: two distances within a relative 1e-6 of each other are a tie.

Voxel spacing reaches us with representation noise. A NIfTI header stores it as float32, so a 0.8 mm pixel reads
as 0.800000011920929 mm, while an NRRD or MHA file of the same scan gives 0.8 in float64. On a regular grid many
distances are *exactly* equal to a round tolerance (on a 0.8 × 1.2 mm grid, two pixels down and one across is
sqrt(1.6² + 1.2²) = 2 mm), and that noise, 6e-8 of the value, decides on which side of the tolerance they fall.
Every comparison of a distance with a limit, and every choice of "the farthest" pixel, therefore treats values
within :data:`DISTANCE_RTOL` of each other as equal:

- ``d`` is at most ``limit`` when ``d <= limit · (1 + DISTANCE_RTOL)`` (:func:`at_most_mm`);
- ``d`` is at least ``limit`` when ``d >= limit · (1 − DISTANCE_RTOL)`` (:func:`at_least_mm`);
- the farthest of several values is the first one within the relative tolerance of the maximum
  (:func:`first_farthest`);
- ``d`` falls in bin ``k`` of width ``w`` when ``k`` is the largest integer with ``d`` at least ``k · w``
  (:func:`bin_index`);
- a distance becomes the nearest whole number of voxels, halves away from zero, a half within the tolerance
  counting as one (:func:`nearest_voxels`).

1e-6 is 15 times float32's relative rounding and, at a 2 mm tolerance, 2 nm: far below any physical meaning.
"""

from __future__ import annotations

import numpy as np

__all__ = ["DISTANCE_RTOL", "at_least_mm", "at_most_mm", "bin_index", "first_farthest", "nearest_voxels"]

#: Relative difference below which two distances count as equal (see the module docstring).
DISTANCE_RTOL = 1e-6


def at_most_mm(distance_mm: np.ndarray | float, limit_mm: float) -> np.ndarray:
    """Whether each distance is at most ``limit_mm``, ties within :data:`DISTANCE_RTOL` included.

    Examples
    --------
    >>> at_most_mm(np.array([2.0, 2.0000000476837158, 2.01]), 2.0)
    array([ True,  True, False])
    """
    return np.asarray(distance_mm) <= limit_mm * (1.0 + DISTANCE_RTOL)


def at_least_mm(distance_mm: np.ndarray | float, limit_mm: float) -> np.ndarray:
    """Whether each distance is at least ``limit_mm``, ties within :data:`DISTANCE_RTOL` included.

    Examples
    --------
    >>> at_least_mm(np.array([4.99, 4.999999940395355, 5.0]), 5.0)
    array([False,  True,  True])
    """
    return np.asarray(distance_mm) >= limit_mm * (1.0 - DISTANCE_RTOL)


def first_farthest(values_mm: np.ndarray) -> int:
    """Index of the first value (in flat order) within :data:`DISTANCE_RTOL` of the largest one (or equal to it).

    ``np.argmax`` breaks ties by order too, but a tie broken by spacing noise is no tie for it: with a 0.6 × 0.8 mm
    pixel, four pixels down (2.4 mm) and three across (2.4 mm) differ in float32.

    Examples
    --------
    >>> first_farthest(np.array([1.0, 2.4000000953674316, 2.4000000357627869, 2.4]))
    1
    """
    flat = np.ravel(values_mm)
    largest = float(np.max(flat))
    slack = abs(largest) * DISTANCE_RTOL if np.isfinite(largest) else 0.0  # inf - inf would be NaN
    return int(np.flatnonzero(flat >= largest - slack)[0])


def bin_index(distance_mm: np.ndarray, bin_mm: float) -> np.ndarray:
    """Bin of each distance among ``[0, w), [w, 2w), ...`` (``w = bin_mm``); a distance tying ``k · w`` is in bin ``k``.

    Without the tolerance ``floor(3 · 0.7 / 0.7)`` is 2: the third slice of a 0.7 mm grid would share the second's
    bin and leave its own empty.

    Examples
    --------
    >>> spacing = 0.7
    >>> bin_index(np.arange(5) * spacing, spacing)
    array([0, 1, 2, 3, 4])
    """
    return np.floor(np.asarray(distance_mm) / bin_mm * (1.0 + DISTANCE_RTOL)).astype(int)


def nearest_voxels(distance_mm: float, spacing_mm: float) -> int:
    """The whole number of voxels nearest to ``distance_mm`` on an axis of ``spacing_mm``; halves away from zero.

    ``np.rint`` rounds a half to the even neighbour and decides a half by representation noise: a 1.2 mm shift on a
    0.8 mm axis is 1.5 voxels, read as 2 with spacing 0.8 (float64) and as 1 with 0.800000011920929 (the same
    spacing from a NIfTI header). Here both give 2, and -1.2 mm gives -2.

    Examples
    --------
    >>> nearest_voxels(1.2, 0.8), nearest_voxels(1.2, 0.800000011920929), nearest_voxels(-1.2, 0.8)
    (2, 2, -2)
    >>> nearest_voxels(2.0, 0.8), nearest_voxels(0.3, 0.8)
    (3, 0)
    """
    ratio = distance_mm / spacing_mm
    return int(np.copysign(np.floor(abs(ratio) * (1.0 + DISTANCE_RTOL) + 0.5), ratio))
