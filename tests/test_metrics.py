"""Hand-made cases with known answers, the edge-case table, input validation and the aggregate penalties."""

from __future__ import annotations

import doctest
import io
import math

import numpy as np
import pandas as pd
import pytest

from zeroshot import metrics
from zeroshot.errors import MetricsError
from zeroshot.metrics import (
    CaseMetrics,
    _case,
    _surface,
    apply_penalties,
    metric_columns,
    nsd_column,
    score_case,
    surface_distances,
)

SPACING = (5.0, 1.5, 0.8)  # (z, y, x) mm: every axis different, so a swapped axis shows
BOX = (6, 10, 12)  # box extent in voxels along (z, y, x)


def box_pair(axis: int, shift: int, shape: tuple[int, int, int] = (16, 20, 22)) -> tuple[np.ndarray, np.ndarray]:
    """A box and the same box moved ``shift`` voxels along ``axis``."""
    gt = np.zeros(shape, bool)
    gt[4 : 4 + BOX[0], 4 : 4 + BOX[1], 4 : 4 + BOX[2]] = True
    return gt, np.roll(gt, shift, axis=axis)


# ------------------------------------------------------------------------------------------------- known answers
@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("shift", [1, 2])
def test_shifted_boxes_have_known_overlap_and_hausdorff(axis: int, shift: int) -> None:
    gt, pred = box_pair(axis, shift)
    step_mm = shift * SPACING[axis]
    m = score_case(gt, pred, SPACING, tolerances_mm=(step_mm, step_mm * 0.99))

    n = BOX[axis]
    assert m.dice == pytest.approx((n - shift) / n, rel=1e-12)
    assert m.iou == pytest.approx((n - shift) / (n + shift), rel=1e-12)
    voxel_ml = np.prod(SPACING) / 1000
    assert m.vol_gt_ml == pytest.approx(np.prod(BOX) * voxel_ml, rel=1e-12)
    assert m.vol_pred_ml == pytest.approx(m.vol_gt_ml, rel=1e-12)
    assert m.rel_vol_err == 0.0
    # The far face of each box is exactly `shift` voxels from the other box's face, along `axis` only.
    assert m.hd_mm == pytest.approx(step_mm, rel=1e-12)
    assert m.hd95_mm == pytest.approx(step_mm, rel=1e-12)
    # Every surfel lies within one shift of the other surface, and some lie exactly at it.
    assert m.nsd_at(step_mm) == pytest.approx(1.0, rel=1e-12)
    assert 0.0 < m.nsd_at(step_mm * 0.99) < 1.0
    # A shifted copy is symmetric: both directions have the same distances, so pooled and mean-of-means agree.
    assert 0.0 < m.assd_mm < step_mm
    assert m.masd_mm == pytest.approx(m.assd_mm, rel=1e-12)
    assert not m.empty_gt and not m.empty_pred


def test_identical_masks_score_perfectly() -> None:
    gt, _ = box_pair(0, 0)
    m = score_case(gt, gt.copy(), SPACING, tolerances_mm=(0.5, 2.0))
    assert (m.dice, m.iou, m.rel_vol_err) == (1.0, 1.0, 0.0)
    assert (m.hd95_mm, m.hd_mm, m.assd_mm, m.masd_mm) == (0.0, 0.0, 0.0, 0.0)
    assert m.nsd == (1.0, 1.0)


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (5.0, 1.5, 0.8), (0.7, 2.3, 1.1)])
def test_one_voxel_surface_area_is_the_marching_cubes_octahedron(spacing: tuple[float, float, float]) -> None:
    # Eight corner triangles, each with area vector (s_y s_x, s_z s_x, s_z s_y) / 8.
    voxel = np.zeros((3, 3, 3), bool)
    voxel[1, 1, 1] = True
    sd = surface_distances(voxel, voxel, spacing)
    s0, s1, s2 = spacing
    expected = math.sqrt((s1 * s2) ** 2 + (s0 * s2) ** 2 + (s0 * s1) ** 2)
    assert sd.gt_to_pred.total_area_mm2 == pytest.approx(expected, rel=1e-12)
    assert sd.gt_to_pred.distances_mm.size == 8
    assert np.all(sd.pred_to_gt.distances_mm == 0)


def test_flat_face_surfels_weigh_one_voxel_face() -> None:
    # Four foreground voxels on one side of a cell: the surface is one voxel face, perpendicular to z.
    table = metrics.surfel_area_table(SPACING)
    face_code = 0b11110000  # the four voxels of one z-layer of the 2x2x2 cell
    assert table[face_code] == pytest.approx(SPACING[1] * SPACING[2], rel=1e-12)
    assert table[0] == 0.0 and table[255] == 0.0
    assert np.allclose(table, table[::-1])  # a code and its complement bound the same surface


def test_distances_use_spacing_in_array_axis_order() -> None:
    gt = np.zeros((10, 10, 10), bool)
    gt[3:6, 3:6, 3:6] = True
    far = np.zeros_like(gt)
    far[3:6, 3:6, 3:6] = True
    far[8, 4, 4] = True  # an island 3 voxels beyond the box along z only
    m = score_case(gt, far, (4.0, 1.0, 1.0))
    assert m.hd_mm == pytest.approx(12.0)  # the island's far corners are 3 voxels (12 mm) from the box's top face


def test_two_component_prediction_counts_both_components() -> None:
    gt = np.zeros((8, 30, 30), bool)
    gt[2:6, 5:12, 5:12] = True
    gt[2:6, 18:25, 18:25] = True
    pred = gt.copy()
    pred[2:6, 18:25, 18:25] = False  # one of the two components missed
    m = score_case(gt, pred, (3.0, 1.0, 1.0))
    assert m.dice == pytest.approx(2 * 196 / (392 + 196))
    assert m.hd_mm > 9.0  # the missed component is far from the found one
    assert m.rel_vol_err == pytest.approx(-0.5)


def test_object_touching_the_image_border_is_closed_there() -> None:
    full = np.ones((4, 5, 6), bool)
    m = score_case(full, full, (2.0, 1.0, 1.0))
    assert (m.dice, m.hd_mm) == (1.0, 0.0)
    sd = surface_distances(full, full, (2.0, 1.0, 1.0))
    assert sd.gt_to_pred.total_area_mm2 > 0  # the border of the image is a surface


def test_tree_and_distance_transform_searches_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    gt = rng.random((12, 30, 30)) > 0.7
    pred = np.roll(gt, 2, axis=2)
    pred[0, 0, 0] = True  # a distant false positive
    spacing = (3.3, 0.9, 1.7)
    monkeypatch.setattr(_surface, "TREE_CROSSOVER", 10**9)
    by_edt = surface_distances(gt, pred, spacing)
    monkeypatch.setattr(_surface, "TREE_CROSSOVER", 0)
    by_tree = surface_distances(gt, pred, spacing)
    for a, b in ((by_edt.gt_to_pred, by_tree.gt_to_pred), (by_edt.pred_to_gt, by_tree.pred_to_gt)):
        assert np.array_equal(a.distances_mm, b.distances_mm)
        assert np.array_equal(a.areas_mm2, b.areas_mm2)


def test_integer_masks_with_only_zero_and_one_are_accepted() -> None:
    gt, pred = box_pair(1, 1)
    as_bool = score_case(gt, pred, SPACING)
    as_int = score_case(gt.astype(np.uint8), pred.astype(np.int64), SPACING)
    assert as_int == as_bool


def test_docstring_examples_run() -> None:
    result = doctest.testmod(_case, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 2 and result.failed == 0


# ---------------------------------------------------------------------------------------------- ties at a tolerance
TIE_GRID_MM = (0.8, 1.2, 4.0)  # two voxels along z and one along y: sqrt(1.6² + 1.2²) = 2 mm exactly


def two_ellipsoids() -> tuple[np.ndarray, np.ndarray]:
    """Two overlapping ellipsoids on the 0.8 × 1.2 × 4.0 mm grid; many surfels lie exactly 1.2, 2 or 4 mm apart."""
    z, y, x = np.mgrid[:40, :30, :10]

    def ellipsoid(centre, radii_mm):
        axes = zip((z, y, x), centre, TIE_GRID_MM, radii_mm, strict=True)
        return sum(((g - c) * s) ** 2 / r**2 for g, c, s, r in axes) < 1

    return ellipsoid((20, 15, 5), (12, 10, 14)), ellipsoid((21, 14, 5), (10, 12, 12))


@pytest.mark.parametrize("tolerance", [1.2, 2.0, 4.0])
def test_nsd_does_not_depend_on_how_the_header_stores_the_spacing(tolerance: float) -> None:
    gt, pred = two_ellipsoids()
    as_nifti = tuple(float(np.float32(s)) for s in TIE_GRID_MM)  # 0.800000011920929, 1.2000000476837158, 4.0
    assert as_nifti != TIE_GRID_MM
    exact = score_case(gt, pred, TIE_GRID_MM, tolerances_mm=(tolerance,)).nsd_at(tolerance)
    from_nifti = score_case(gt, pred, as_nifti, tolerances_mm=(tolerance,)).nsd_at(tolerance)
    assert from_nifti == pytest.approx(exact, rel=1e-7)


def test_the_tie_case_really_has_surfels_at_the_tolerance() -> None:
    # Without ties the test above would pass with any rule; it needs a real share of the surface exactly at 2 mm.
    gt, pred = two_ellipsoids()
    forward = surface_distances(gt, pred, TIE_GRID_MM).gt_to_pred
    at_two = forward.areas_mm2[np.isclose(forward.distances_mm, 2.0, rtol=1e-9, atol=0)]
    assert at_two.sum() > 0.03 * forward.total_area_mm2


def test_a_surfel_at_the_tolerance_counts_and_one_just_beyond_does_not() -> None:
    distances = metrics.DirectedSurfaceDistances(
        distances_mm=np.array([1.0, 2.0 * (1 - 1e-9), 2.0, 2.0 * (1 + 5e-7), 2.0 * (1 + 3e-6), 2.1]),
        areas_mm2=np.array([1.0, 2.0, 4.0, 8.0, 16.0, 32.0]),
    )
    assert distances.area_within_mm2(2.0) == 1.0 + 2.0 + 4.0 + 8.0


# ------------------------------------------------------------------------------------------------ edge-case table
def test_empty_prediction_is_a_miss_with_infinite_distances() -> None:
    gt, _ = box_pair(0, 0)
    m = score_case(gt, np.zeros_like(gt), SPACING, tolerances_mm=(1.0, 2.0))
    assert (m.empty_gt, m.empty_pred) == (False, True)
    assert (m.dice, m.iou, m.nsd) == (0.0, 0.0, (0.0, 0.0))
    assert all(math.isinf(d) for d in (m.hd95_mm, m.hd_mm, m.assd_mm, m.masd_mm))
    assert m.rel_vol_err == -1.0 and m.vol_pred_ml == 0.0


def test_empty_ground_truth_with_a_prediction_is_a_false_positive() -> None:
    _, pred = box_pair(0, 0)
    m = score_case(np.zeros_like(pred), pred, SPACING)
    assert (m.empty_gt, m.empty_pred) == (True, False)
    assert (m.dice, m.iou, m.nsd) == (0.0, 0.0, (0.0,))
    assert all(math.isinf(d) for d in (m.hd95_mm, m.hd_mm, m.assd_mm, m.masd_mm))
    assert math.isinf(m.rel_vol_err)


def test_both_empty_is_undefined() -> None:
    empty = np.zeros((4, 5, 6), bool)
    m = score_case(empty, empty, SPACING)
    assert (m.empty_gt, m.empty_pred) == (True, True)
    values = (m.dice, m.iou, m.rel_vol_err, m.hd95_mm, m.hd_mm, m.assd_mm, m.masd_mm, *m.nsd)
    assert all(math.isnan(v) for v in values)
    assert (m.vol_gt_ml, m.vol_pred_ml) == (0.0, 0.0)


def test_d_max_is_the_physical_diagonal_of_the_image() -> None:
    empty = np.zeros((4, 5, 6), bool)
    m = score_case(empty, empty, (3.0, 2.0, 0.5))
    assert m.d_max_mm == pytest.approx(math.sqrt(12.0**2 + 10.0**2 + 3.0**2))


# ------------------------------------------------------------------------------------------------------- columns
def test_nsd_column_names_carry_the_tolerance() -> None:
    assert [nsd_column(t) for t in (2.0, 1, 1.5, 0.25)] == ["nsd_2mm", "nsd_1mm", "nsd_1.5mm", "nsd_0.25mm"]


def test_as_row_has_the_contract_columns_in_order() -> None:
    gt, pred = box_pair(2, 1)
    row = score_case(gt, pred, SPACING, tolerances_mm=(1.0, 2.0, 3.0)).as_row()
    assert tuple(row) == metric_columns((1.0, 2.0, 3.0))
    assert tuple(row) == (
        "dice", "iou", "vol_gt_ml", "vol_pred_ml", "rel_vol_err", "hd95_mm", "hd_mm", "assd_mm", "masd_mm",
        "nsd_1mm", "nsd_2mm", "nsd_3mm", "d_max_mm", "empty_gt", "empty_pred",
    )  # fmt: skip


def test_case_metrics_is_frozen() -> None:
    m = score_case(*box_pair(0, 1), SPACING)
    with pytest.raises(AttributeError, match="cannot assign"):
        m.dice = 1.0  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("gt", "pred", "spacing", "match"),
    [
        (np.zeros((4, 4), bool), np.zeros((4, 4), bool), (1, 1, 1), r"gt: expected a 3D \(z, y, x\) mask"),
        (np.zeros((4, 4, 4), bool), np.zeros((4, 4, 5), bool), (1, 1, 1), r"pred: shape \(4, 4, 5\) differs"),
        (np.zeros((4, 4, 4)), np.full((4, 4, 4), 0.5), (1, 1, 1), r"pred: expected a binary mask .* \[0\.5\]"),
        (np.full((2, 2, 2), 2), np.zeros((2, 2, 2), int), (1, 1, 1), r"gt: expected a binary mask .* \[2\]"),
        (np.full((2, 2, 2), "a"), np.zeros((2, 2, 2), bool), (1, 1, 1), "gt: expected a binary mask"),
        (np.zeros((2, 2, 2), bool), np.zeros((2, 2, 2), bool), (1, 1), "spacing_mm: expected three positive"),
        (np.zeros((2, 2, 2), bool), np.zeros((2, 2, 2), bool), (1, 0, 1), "spacing_mm: expected three positive"),
        (np.zeros((2, 2, 2), bool), np.zeros((2, 2, 2), bool), (1, np.nan, 1), "spacing_mm: expected three"),
        (np.zeros((2, 2, 2), bool), np.zeros((2, 2, 2), bool), ("a", 1, 1), "spacing_mm: expected three mm"),
        (np.zeros((2, 2, 2), bool), np.zeros((2, 2, 2), bool), None, "spacing_mm: expected three mm"),
    ],
)
def test_bad_inputs_are_refused_naming_the_argument(gt, pred, spacing, match) -> None:
    with pytest.raises(MetricsError, match=match):
        score_case(gt, pred, spacing)


@pytest.mark.parametrize(
    ("tolerances", "match"),
    [
        ((), "tolerances_mm: expected one or more positive"),
        ((2.0, -1.0), "tolerances_mm: expected one or more positive"),
        ((math.inf,), "tolerances_mm: expected one or more positive"),
        ((2, 2.0), "name the same NSD column twice"),
    ],
)
def test_bad_tolerances_are_refused(tolerances, match) -> None:
    with pytest.raises(MetricsError, match=match):
        score_case(*box_pair(0, 1), SPACING, tolerances_mm=tolerances)


def test_nsd_at_an_uncomputed_tolerance_is_refused() -> None:
    m = score_case(*box_pair(0, 1), SPACING)
    with pytest.raises(MetricsError, match=r"tolerance_mm: 3.0 mm was not computed \(have \[2.0\]\)"):
        m.nsd_at(3.0)


# ----------------------------------------------------------------------------------------------------- penalties
def results_table() -> pd.DataFrame:
    """One case per row of the edge-case table, plus a failed case whose label could not be read."""
    gt, pred = box_pair(0, 1)
    empty = np.zeros_like(gt)
    rows = {
        "scored": score_case(gt, pred, SPACING, tolerances_mm=(1.0, 2.0)).as_row(),
        "missed": score_case(gt, empty, SPACING, tolerances_mm=(1.0, 2.0)).as_row(),
        "fp": score_case(empty, pred, SPACING, tolerances_mm=(1.0, 2.0)).as_row(),
        "both": score_case(empty, empty, SPACING, tolerances_mm=(1.0, 2.0)).as_row(),
    }
    table = pd.DataFrame([{"case_id": k, **v, "failed": False, "error": ""} for k, v in rows.items()])
    failed = dict.fromkeys(table.columns, np.nan)
    failed.update(case_id="broken", failed=True, error="no prediction", d_max_mm=123.0)
    unreadable = dict(failed, case_id="unreadable", d_max_mm=np.nan)
    return pd.concat([table, pd.DataFrame([failed, unreadable])], ignore_index=True)


def test_penalties_follow_the_edge_case_table() -> None:
    raw = results_table()
    out = apply_penalties(raw, d_max_mm=400.0)
    t = out.table.set_index("case_id")
    d_max = raw.loc[0, "d_max_mm"]

    assert list(t["outcome"]) == ["scored", "missed", "false_positive", "both_empty", "failed", "failed"]
    assert list(t["included"]) == [True, True, True, False, True, True]
    assert list(t["penalised"]) == [False, True, True, False, True, True]
    scored = raw.set_index("case_id").loc["scored"]
    assert t.loc["scored", "hd95_mm"] == scored["hd95_mm"] and t.loc["scored", "dice"] == scored["dice"]
    for case in ("missed", "fp"):
        assert t.loc[case, ["dice", "iou", "nsd_1mm", "nsd_2mm"]].tolist() == [0.0] * 4
        assert t.loc[case, ["hd95_mm", "hd_mm", "assd_mm", "masd_mm"]].tolist() == [d_max] * 4
    assert t.loc["missed", "rel_vol_err"] == -1.0
    assert math.isnan(t.loc["fp", "rel_vol_err"])
    assert t.loc["both", ["dice", "hd95_mm", "nsd_2mm"]].isna().all()
    assert t.loc["broken", ["dice", "nsd_2mm"]].tolist() == [0.0, 0.0]
    assert t.loc["broken", "hd95_mm"] == 123.0  # its own D_max
    assert t.loc["unreadable", "hd95_mm"] == 400.0  # the fallback
    assert t.loc["broken", "rel_vol_err"] == -1.0
    # Among included cases no metric is NaN or inf: a mean cannot drop or blow up on a miss.
    included = t[t["included"]]
    assert np.isfinite(included[["dice", "iou", "nsd_2mm", "hd95_mm", "hd_mm", "assd_mm", "masd_mm"]]).all().all()
    c = out.counts
    assert (c.n_scored, c.n_missed, c.n_false_positive, c.n_both_empty, c.n_failed) == (1, 1, 1, 1, 2)
    assert (c.n_included, c.n_total) == (5, 6)
    assert np.isinf(raw.loc[1, "hd95_mm"])  # the input is not modified


def test_both_empty_as_perfect_counts_them_as_perfect() -> None:
    out = apply_penalties(results_table(), both_empty_as_perfect=True, d_max_mm=400.0)
    both = out.table.set_index("case_id").loc["both"]
    assert both[["dice", "iou", "nsd_1mm", "nsd_2mm"]].tolist() == [1.0] * 4
    assert both[["hd95_mm", "hd_mm", "assd_mm", "masd_mm", "rel_vol_err"]].tolist() == [0.0] * 5
    assert bool(both["included"]) and bool(both["penalised"])
    assert out.counts.n_included == 6


def test_penalties_work_on_a_table_read_back_from_csv() -> None:
    raw = results_table()
    raw.loc[raw["failed"], ["empty_gt", "empty_pred"]] = np.nan  # unknown flags on failed rows
    back = pd.read_csv(io.StringIO(raw.to_csv(index=False)))
    out = apply_penalties(back, d_max_mm=400.0)
    assert list(out.table["outcome"]) == ["scored", "missed", "false_positive", "both_empty", "failed", "failed"]


def test_a_table_without_failed_column_is_all_scored_rows() -> None:
    gt, pred = box_pair(1, 2)
    table = pd.DataFrame([score_case(gt, pred, SPACING).as_row()])
    assert apply_penalties(table).counts.n_scored == 1


def test_penalties_refuse_a_miss_without_d_max() -> None:
    with pytest.raises(MetricsError, match=r"1 missed/failed row\(s\) have no d_max_mm .* pass d_max_mm"):
        apply_penalties(results_table())


def test_penalties_refuse_a_table_without_flags() -> None:
    with pytest.raises(MetricsError, match=r"missing column\(s\) \['empty_gt', 'empty_pred'\]"):
        apply_penalties(pd.DataFrame({"dice": [0.5]}))


def test_penalties_refuse_unflagged_rows_that_did_not_fail() -> None:
    table = results_table()
    table.loc[0, "empty_pred"] = np.nan
    with pytest.raises(MetricsError, match=r"1 row\(s\) are not failed but lack empty_gt/empty_pred flags"):
        apply_penalties(table, d_max_mm=400.0)


def test_case_metrics_round_trips_through_a_row() -> None:
    m = score_case(*box_pair(2, 1), SPACING, tolerances_mm=(1.0, 2.0))
    row = m.as_row()
    assert isinstance(m, CaseMetrics)
    assert row["nsd_1mm"] == m.nsd_at(1.0) and row["nsd_2mm"] == m.nsd_at(2.0)
    assert row["d_max_mm"] == m.d_max_mm
