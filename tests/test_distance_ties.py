"""Distances compared with a relative tolerance: the same answer whether spacing came as float32 or float64.

A NIfTI header stores spacing as float32, an NRRD/MHA as float64. On a 0.6 × 0.8 mm grid many distances are exactly
round (five pixels down is 3 mm, five across 4 mm, together 5 mm), and float32 rounding must not move them across a
limit. Each test below compares the two representations of one grid; each fails with plain ``<=`` / ``argmax``.
"""

from __future__ import annotations

import doctest

import numpy as np
import pandas as pd
import pytest

from zeroshot import distance_ties
from zeroshot.distance_ties import DISTANCE_RTOL, at_least_mm, at_most_mm, bin_index, first_farthest
from zeroshot.figures.decay import decay_curve
from zeroshot.prompts.points import farthest_interior_point, negative_region, spread_points
from zeroshot.segmenters.boxfill import disk_mask

GRID_YX_MM = (0.6, 0.8)
AS_NIFTI_YX_MM = tuple(float(np.float32(s)) for s in GRID_YX_MM)  # 0.6000000238418579, 0.800000011920929


def test_the_two_representations_differ() -> None:
    assert AS_NIFTI_YX_MM != GRID_YX_MM
    assert 5 * AS_NIFTI_YX_MM[0] > 3.0 and 5 * AS_NIFTI_YX_MM[1] > 4.0  # every tie moves outward


def test_docstring_examples_run() -> None:
    result = doctest.testmod(distance_ties, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 4 and result.failed == 0


def test_limits_include_ties_and_nothing_further() -> None:
    limit, half, twice = 2.0, DISTANCE_RTOL / 2, 2 * DISTANCE_RTOL
    assert at_most_mm(limit * (1 + half), limit) and not at_most_mm(limit * (1 + twice), limit)
    assert at_least_mm(limit * (1 - half), limit) and not at_least_mm(limit * (1 - twice), limit)


def test_first_farthest_handles_infinite_and_negative_values() -> None:
    assert first_farthest(np.array([1.0, np.inf, np.inf])) == 1
    assert first_farthest(np.array([-3.0, -1.0, -1.0 - 1e-9])) == 1
    assert first_farthest(np.array([[0.0, 5.0], [5.0 + 1e-7, 0.0]])) == 1  # flat order of a 2D array


def test_bins_of_one_slice_thickness_give_each_slice_its_own_bin() -> None:
    for thickness in (0.7, 1.1, 1.3, 3.3, float(np.float32(0.7))):
        assert np.array_equal(bin_index(np.arange(60) * thickness, thickness), np.arange(60))


def test_disk_of_box_fill_is_the_same_for_both_representations() -> None:
    exact = disk_mask((21, 21), (10, 10), radius_mm=5.0, spacing_yx_mm=GRID_YX_MM)
    from_nifti = disk_mask((21, 21), (10, 10), radius_mm=5.0, spacing_yx_mm=AS_NIFTI_YX_MM)
    assert exact[15, 15]  # (3 mm, 4 mm) away: exactly on the circle, inside
    assert np.array_equal(from_nifti, exact)


def test_negative_ring_is_the_same_for_both_representations() -> None:
    mask = np.zeros((41, 41), bool)
    mask[20, 20] = True  # distances from one pixel: (5, 5) pixels away is exactly 5 mm, (10, 10) exactly 10 mm
    exact = negative_region(mask, GRID_YX_MM, distance_mm=5.0, width_mm=5.0)
    from_nifti = negative_region(mask, AS_NIFTI_YX_MM, distance_mm=5.0, width_mm=5.0)
    assert exact[25, 25] and exact[30, 30]  # both ends of the ring are included
    assert np.array_equal(from_nifti, exact)
    unbounded = negative_region(mask, (0.7, 0.7), distance_mm=3.5, width_mm=None)
    assert unbounded[25, 20] and unbounded[20, 15]  # 5 × 0.7 mm reads 3.4999999999999996 mm in float64


def test_farthest_interior_point_is_the_same_for_both_representations() -> None:
    mask = np.zeros((30, 24), bool)
    mask[1:16, 1:6] = True  # 5 columns wide: its centre column is 3 × 0.8 = 2.4 mm deep
    mask[20:27, 1:21] = True  # 7 rows high: its centre row is 4 × 0.6 = 2.4 mm deep, later in raster order
    assert farthest_interior_point(mask, GRID_YX_MM) == (3, 4)  # the first of the tied pixels
    assert farthest_interior_point(mask, AS_NIFTI_YX_MM) == (3, 4)


def test_spread_points_are_the_same_for_both_representations() -> None:
    candidates = np.ones((9, 9), bool)
    exact = spread_points(candidates, 4, GRID_YX_MM, existing=[(0, 0), (8, 8)])
    assert spread_points(candidates, 4, AS_NIFTI_YX_MM, existing=[(0, 0), (8, 8)]) == exact


def test_decay_curve_puts_each_slice_in_its_own_bin() -> None:
    thickness = 0.7
    slices = pd.DataFrame(
        {
            "case_id": "c1",
            "dist_mm": np.arange(8) * thickness,
            "slice_dice": np.linspace(1.0, 0.3, 8),
        }
    )
    curve = decay_curve(slices, bin_mm=thickness, n_resamples=10, seed=0)
    assert len(curve) == 8
    assert curve["mean"].to_numpy() == pytest.approx(np.linspace(1.0, 0.3, 8))


def test_degraded_shift_is_the_same_for_both_representations() -> None:
    from zeroshot.prompts.sources import degrade_mask

    mask = np.zeros((6, 12, 12), bool)
    mask[2:4, 4:8, 4:8] = True
    shifted = {}
    for yx_mm in (GRID_YX_MM, AS_NIFTI_YX_MM):  # 0.9 mm and 1.2 mm are 1.5 voxels on each
        shifted[yx_mm], info = degrade_mask(mask, (3.0, *yx_mm), shift_mm=(0.0, 0.9, -1.2))
        assert info["shift_voxels"] == [0, 2, -2], f"{yx_mm}: 1.5 voxels are 2, halves away from zero"
    assert np.array_equal(*shifted.values())
