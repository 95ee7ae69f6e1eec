"""The click protocols of other communities (CVPR 2025 challenge, micro-sam, RadioActive) on fabricated masks whose
correct clicks are known by construction: largest 3D component against largest 2D region, ties, under- against
over-segmentation, no error, a structure on the volume's border, and the fallbacks of each protocol."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from zeroshot.errors import ConfigError
from zeroshot.interactive import (
    DEFAULT_ROUNDS,
    Click,
    ClickSettings,
    choose_clicks,
    click_rng,
    cvpr25,
    microsam,
    radioactive,
)

CVPR25 = ClickSettings(protocol="cvpr25")
MICROSAM = ClickSettings(protocol="microsam")
RADIOACTIVE = ClickSettings(protocol="radioactive")


def clicks(settings: ClickSettings, gt, pred, *, spacing=(1.0, 1.0, 1.0), seed=0, round_index=1) -> tuple[Click, ...]:
    return choose_clicks(
        gt, pred, spacing, settings=settings, round_index=round_index, rng=click_rng(seed, "case", round_index)
    )


def two_errors() -> tuple[np.ndarray, np.ndarray]:
    """A: a 5 x 4 x 4 under-segmented block (80 voxels, 16 per slice) on slices 0-4, away from every border.
    B: a 6 x 6 over-segmented square (36 voxels) on slice 7 alone. The worst slice is 7 (B), the largest 3D error
    component is A."""
    gt = np.zeros((9, 20, 20), bool)
    pred = np.zeros_like(gt)
    gt[0:5, 2:6, 5:9] = True
    pred[7, 10:16, 10:16] = True
    return gt, pred


# --------------------------------------------------------------------------------------------------- settings
def test_each_protocol_has_its_own_budget_and_refuses_the_zeroshot_only_options():
    assert {p: ClickSettings(protocol=p).rounds for p in DEFAULT_ROUNDS} == {
        "zeroshot": 8,
        "cvpr25": 5,
        "microsam": 7,
        "radioactive": 5,
    }
    assert ClickSettings(protocol="cvpr25", rounds=2).rounds == 2
    with pytest.raises(ConfigError, match="protocol must be one of zeroshot, cvpr25, microsam, radioactive"):
        ClickSettings(protocol="sam-med3d")
    with pytest.raises(ConfigError, match="belong to the zeroshot protocol; protocol 'microsam'"):
        ClickSettings(protocol="microsam", per_round="both")


def test_protocols_need_equal_3d_shapes():
    with pytest.raises(ConfigError, match=r"must be equal 3D shapes"):
        clicks(CVPR25, np.zeros((2, 3, 3), bool), np.zeros((2, 3, 4), bool))


@pytest.mark.parametrize("settings", [CVPR25, RADIOACTIVE, ClickSettings()])
def test_no_error_no_click(settings):
    gt = np.zeros((4, 9, 9), bool)
    gt[1:3, 2:6, 2:6] = True
    assert clicks(settings, gt, gt.copy()) == ()


# ------------------------------------------------------------------------------------------------------ CVPR25
def test_cvpr25_clicks_the_largest_3d_component_where_zeroshot_clicks_the_worst_slice():
    gt, pred = two_errors()
    (ours,) = clicks(ClickSettings(), gt, pred)
    assert (ours.z, ours.label) == (7, 0)
    (click,) = clicks(CVPR25, gt, pred)
    assert click.label == 1 and gt[click.z, click.y, click.x] and not pred[click.z, click.y, click.x]
    # EDT in voxels inside the padded box: depth 2 at z 1-3, y 3-4, x 6-7 (12 voxels); the challenge draws one with
    # np.random.seed(42); np.random.choice(12) over them in raster order.
    ties = [(z, y, x) for z in (1, 2, 3) for y in (3, 4) for x in (6, 7)]
    assert (click.z, click.y, click.x) == ties[np.random.RandomState(42).choice(len(ties))]


def test_cvpr25_ignores_spacing_the_depth_is_in_voxels():
    gt, pred = two_errors()
    assert clicks(CVPR25, gt, pred) == clicks(CVPR25, gt, pred, spacing=(5.0, 0.7, 0.7))


def test_cvpr25_over_segmentation_gets_a_negative_click_at_its_unique_deepest_voxel():
    gt = np.zeros((7, 12, 12), bool)
    pred = np.zeros_like(gt)
    pred[1:6, 2:7, 3:8] = True  # 5 x 5 x 5 false positive: the centre alone is 3 voxels deep
    (click,) = clicks(CVPR25, gt, pred)
    assert click == Click(round=1, z=3, x=5, y=4, label=0)


def test_cvpr25_the_volume_border_is_boundary():
    """A false negative 3 voxels wide lying on the x = 0 face: the padded transform makes x = 1 deepest, where a
    transform of the volume alone (no padding) would find x = 0 deepest."""
    gt = np.zeros((5, 9, 10), bool)
    gt[:, :, 0:3] = True  # touches five faces of the volume
    pred = np.zeros_like(gt)
    unpadded = ndimage.distance_transform_edt(gt)
    assert unpadded[2, 4, 0] > unpadded[2, 4, 1]
    (click,) = clicks(CVPR25, gt, pred)
    assert click.x == 1 and click.label == 1


def test_cvpr25_equal_components_the_first_in_raster_order_wins():
    gt = np.zeros((6, 10, 10), bool)
    pred = np.zeros_like(gt)
    gt[4, 6:9, 6:9] = True  # later in raster order
    pred[1, 1:4, 1:4] = True  # earlier, same size, over-segmented
    (click,) = clicks(CVPR25, gt, pred)
    # One slice thick: every voxel is 1 voxel from the padding above or below it, so all nine tie.
    ties = [(1, y, x) for y in (1, 2, 3) for x in (1, 2, 3)]
    assert (click.z, click.y, click.x) == ties[np.random.RandomState(42).choice(9)] and click.label == 0


def test_cvpr25_one_component_of_both_signs_takes_the_sign_of_its_deepest_voxel():
    gt = np.zeros((5, 12, 12), bool)
    pred = np.zeros_like(gt)
    gt[1:4, 1:6, 1:6] = True  # false negative 3 x 5 x 5 ...
    pred[1:4, 6:8, 1:6] = True  # ... touching a thinner false positive: one 26-connected error component
    (click,) = clicks(CVPR25, gt, pred)
    assert click.label == 1 and gt[click.z, click.y, click.x]


def test_cvpr25_large_boxes_are_transformed_at_half_resolution(monkeypatch):
    gt, pred = two_errors()
    monkeypatch.setattr(cvpr25, "LARGE_ROI_VOXELS", 10)
    (click,) = clicks(CVPR25, gt, pred)
    assert gt[click.z, click.y, click.x] and not pred[click.z, click.y, click.x]


# ---------------------------------------------------------------------------------------------------- micro-sam
def test_microsam_one_positive_from_the_false_negatives_and_one_negative_from_the_false_positives():
    gt, pred = two_errors()
    for seed in range(20):
        positive, negative = clicks(MICROSAM, gt, pred, seed=seed)
        assert (
            positive.label == 1
            and gt[positive.z, positive.y, positive.x]
            and not pred[positive.z, positive.y, positive.x]
        )
        assert (
            negative.label == 0
            and pred[negative.z, negative.y, negative.x]
            and not gt[negative.z, negative.y, negative.x]
        )


def test_microsam_draws_uniformly_and_reproducibly():
    gt, pred = two_errors()
    drawn = [clicks(MICROSAM, gt, pred, seed=s) for s in range(200)]
    assert drawn[:5] == [clicks(MICROSAM, gt, pred, seed=s) for s in range(5)]
    positives = {(c[0].z, c[0].y, c[0].x) for c in drawn}
    assert len(positives) > 60  # of 80 voxels: uniform draws, not the deepest point
    assert clicks(MICROSAM, gt, pred, seed=0, round_index=1) != clicks(MICROSAM, gt, pred, seed=0, round_index=2)


def test_microsam_fallbacks_true_positives_then_the_box_background_over_every_column():
    gt = np.zeros((10, 12, 30), bool)
    gt[4:6, 5:7, 3:5] = True
    perfect = gt.copy()
    positive, negative = clicks(MICROSAM, gt, perfect)  # a perfect prediction still gets both clicks
    assert gt[positive.z, positive.y, positive.x]
    region = microsam.negative_region(gt, perfect)
    expected = np.zeros_like(gt)
    expected[1:9, 2:10, :] = True  # z 4-5 and y 5-6 widened by 3; every column (micro-sam's 3D box)
    assert np.array_equal(region, expected & ~gt)
    assert region[4, 5, 29], "a column far from the structure is inside micro-sam's 3D box"
    assert not gt[negative.z, negative.y, negative.x] and expected[negative.z, negative.y, negative.x]


def test_microsam_box_on_the_border_is_clipped_and_a_full_volume_has_no_negative():
    gt = np.zeros((6, 8, 8), bool)
    gt[0:2, 0:2, 0:2] = True  # corner of the volume
    region = microsam.negative_region(gt, gt)
    assert region[:5, :5].sum() == 5 * 5 * 8 - 8 and not region[5:].any() and not region[:, 5:].any()
    full = np.ones((2, 3, 3), bool)
    (positive,) = clicks(MICROSAM, full, full)
    assert positive.label == 1
    assert clicks(MICROSAM, np.zeros((2, 3, 3), bool), full) == ()  # no structure, nothing to prompt


# -------------------------------------------------------------------------------------------------- RadioActive
def test_radioactive_sign_is_negative_with_probability_fp_over_fp_plus_fn():
    gt = np.zeros((3, 10, 10), bool)
    pred = np.zeros_like(gt)
    gt[1, 1:3, 1:4] = True  # 6 false negatives
    pred[1, 6:9, 5:9] = True  # 12 false positives: p(negative) = 2/3
    signs = [
        radioactive.choose(
            gt, pred, (1, 1, 1), settings=RADIOACTIVE, round_index=1, key_slices=(), rng=click_rng(s, "c", 1)
        )
        for s in range(300)
    ]
    negative = np.mean([all(c.label == 0 for c in one) for one in signs])
    assert abs(negative - 2 / 3) < 0.09
    only_fn = gt & ~np.zeros_like(gt)
    assert all(c.label == 1 for c in clicks(RADIOACTIVE, only_fn, np.zeros_like(gt)))
    assert all(c.label == 0 for c in clicks(RADIOACTIVE, np.zeros_like(gt) | gt, gt | pred))


def test_radioactive_positive_click_on_every_slice_of_the_largest_3d_false_negative_component():
    gt, pred = two_errors()
    pred[:] = False
    gt[7, 10:16, 10:16] = True  # B is now a 36-voxel false negative on one slice; A (80) is larger in 3D
    got = radioactive.positive_clicks(gt & ~pred, 1)
    assert [c.z for c in got] == [0, 1, 2, 3, 4] and all(c.label == 1 for c in got)
    # centre of mass (3.5, 6.5) rounds half to even to (4, 6): a foreground pixel, so the click is there
    assert {(c.y, c.x) for c in got} == {(4, 6)}


def test_radioactive_positive_centre_outside_a_c_shape_moves_to_the_nearest_foreground_pixel():
    fn = np.zeros((1, 9, 9), bool)
    fn[0, 1:8, 1:3] = fn[0, 1:3, 1:8] = fn[0, 6:8, 1:8] = True  # a C open to the right; centre of mass off it
    (click,) = radioactive.positive_clicks(fn, 1)
    centre = np.mean(np.nonzero(fn[0]), axis=1).round().astype(int)
    assert not fn[0, centre[0], centre[1]] and fn[0, click.y, click.x]
    distance = np.hypot(*(np.nonzero(fn[0]) - centre[:, None]))
    assert np.hypot(click.y - centre[0], click.x - centre[1]) == distance.min()


def test_radioactive_equal_components_the_one_argsort_lists_last_wins():
    fn = np.zeros((6, 10, 10), bool)
    fn[1, 1:4, 1:4] = True
    fn[4, 6:9, 6:9] = True  # same size, later label: np.argsort(sizes)[-1]
    (click,) = radioactive.positive_clicks(fn, 1)
    assert (click.z, click.y, click.x) == (4, 7, 7)


def test_radioactive_negative_scribble_becomes_negative_points_on_the_worst_plane():
    gt = np.zeros((10, 20, 20), bool)
    gt[2:8, 5:12, 5:12] = True
    pred = gt.copy()
    pred[2:8, 5:12, 12:15] = True  # over-segmentation beside the structure: only false positives
    got = clicks(RADIOACTIVE, gt, pred)
    assert got and all(c.label == 0 for c in got)
    assert {c.y for c in got} == {5}, "the plane y = 5: the first of the planes with the most false positives"
    assert all(pred[c.z, c.y, c.x] and not gt[c.z, c.y, c.x] for c in got)
    assert len({c.z for c in got}) > 1, "a scribble on a (z, x) plane spans several axial slices"
    assert got == clicks(RADIOACTIVE, gt, pred, seed=5), "the scribble's own draws are reseeded with 1"


def test_radioactive_plane_without_structure_gets_the_column_with_most_prediction():
    gt = np.zeros((6, 10, 10), bool)
    gt[1:5, 1:3, 1:3] = True
    pred = gt.copy()
    pred[0:4, 7, 4:9] = True
    pred[0:6, 7, 6] = True  # column x = 6 of plane y = 7 holds the most prediction
    got = clicks(RADIOACTIVE, gt, pred)
    assert {(c.y, c.x) for c in got} == {(7, 6)} and sorted(c.z for c in got) == list(range(6))


def test_radioactive_fallback_labels_three_false_positive_voxels_positive_as_its_code_does():
    gt = np.zeros((8, 16, 30), bool)
    gt[2:6, 4:8, 2:6] = True
    pred = gt.copy()
    pred[2:6, 4:8, 22:27] = True  # false positives far from the structure: no contour point lies on them
    got = clicks(RADIOACTIVE, gt, pred)
    assert len(got) == 3 and all(c.label == 1 for c in got)
    voxels = np.argwhere(pred & ~gt)
    chosen = voxels[np.random.RandomState(1).choice(len(voxels), size=3, replace=False)]
    assert [(c.z, c.y, c.x) for c in got] == [tuple(v) for v in chosen]
