"""Prompt generation: key-slice rules, boxes, points, sources and their policies, oracle flags, determinism."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from zeroshot.errors import ConfigError, PromptError
from zeroshot.prompts import (
    BoxSettings,
    KeySliceSettings,
    PointSettings,
    choose_key_slices,
    degrade_mask,
    distance_from_region_mm,
    farthest_interior_point,
    jitter_box,
    load_strategy,
    make_prompts,
    negative_region,
    place_points,
    prompts_to_json,
    random_points,
    spread_points,
    strategy_from_dict,
    tight_box,
)
from zeroshot.volume import volume_from_array


def _strategy(prompt: dict, name: str = "s", **sections) -> object:
    return strategy_from_dict({"prompt": prompt, **sections}, name=name)


def _volume(shape, spacing=(1.0, 1.0, 1.0)):
    return volume_from_array(np.zeros(shape, np.float32), spacing)


def _tube(shape=(12, 30, 40)) -> np.ndarray:
    """A box-ish structure on slices 2..9 whose area peaks at slice 7; slice 5 is empty (a gap)."""
    mask = np.zeros(shape, bool)
    for z in range(2, 10):
        half = 2 + (z == 7) * 4
        mask[z, 10 - half : 12 + half, 15 - half : 20 + half] = True
    mask[5] = False
    return mask


# --------------------------------------------------------------------------------------------------- key slices


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (KeySliceSettings(rule="middle"), (6,)),  # (2 + 9) // 2 = 5 is empty; 6 is nearer than 3
        (KeySliceSettings(rule="largest"), (7,)),
        (KeySliceSettings(rule="every"), (2, 3, 6, 7, 8, 9)),
        (KeySliceSettings(rule="index", index=(3, 8)), (3, 8)),
        (KeySliceSettings(rule="spread", count=1), (6,)),  # one spread slice is the middle one
        (KeySliceSettings(rule="spread", count=4), (2, 3, 6, 8)),  # targets 2, 4, 6, 8; empty 4 moves to 3
    ],
)
def test_key_slice_rules(settings, expected):
    mask = _tube()
    mask[4] = False  # slices 4 and 5 are empty
    chosen, info = choose_key_slices(mask, settings)
    assert chosen == expected
    assert info["z_extent"] == [2, 9]
    assert all(mask[z].any() for z in chosen)


def test_nearest_slice_ties_go_down():
    mask = _tube()  # slice 5 empty; middle of 2..9 is 5; 4 and 6 are equally near
    chosen, info = choose_key_slices(mask, KeySliceSettings(rule="middle"))
    assert chosen == (4,)
    assert info["targets"] == [5]


def test_centroid_rule_uses_the_centre_of_mass():
    mask = np.zeros((10, 6, 6), bool)
    mask[2, :, :] = True  # 36 voxels at z = 2
    mask[8, :2, :2] = True  # 4 voxels at z = 8
    chosen, _ = choose_key_slices(mask, KeySliceSettings(rule="centroid"))
    # centre = (2*36 + 8*4) / 40 = 2.6 -> 3, which is empty -> nearest with structure is 2
    assert chosen == (2,)
    assert choose_key_slices(mask, KeySliceSettings(rule="middle"))[0] == (2,)  # (2 + 8) // 2 = 5: 2 and 8 tie


def test_spread_never_repeats_a_slice():
    mask = np.zeros((8, 4, 4), bool)
    mask[3:5, 1:3, 1:3] = True
    chosen, info = choose_key_slices(mask, KeySliceSettings(rule="spread", count=5))
    assert chosen == (3, 4)
    assert len(info["targets"]) == 5


def test_key_slice_errors():
    with pytest.raises(PromptError, match=r"the source mask is empty: no slice to prompt"):
        choose_key_slices(np.zeros((3, 4, 4), bool), KeySliceSettings())
    mask = _tube()
    with pytest.raises(PromptError, match=r"key slice 12 is outside the volume's 12 slices"):
        choose_key_slices(mask, KeySliceSettings(rule="index", index=(12,)))
    with pytest.raises(PromptError, match=r"key slice 5 holds no structure in the source mask \(it spans slices 2-9\)"):
        choose_key_slices(mask, KeySliceSettings(rule="index", index=(5,)))


# --------------------------------------------------------------------------------------------------------- boxes


def test_tight_box_uses_columns_for_x_on_a_non_square_slice():
    mask = np.zeros((6, 20), bool)
    mask[2:4, 10:16] = True
    assert tight_box(mask) == (10, 2, 15, 3)
    assert tight_box(np.zeros((3, 3), bool)) is None


def test_zero_jitter_keeps_the_tight_box_and_still_draws():
    rng = np.random.default_rng(1)
    box, info = jitter_box((3, 4, 9, 7), (20, 30), (1.0, 1.0), BoxSettings(), rng)
    assert box == (3, 4, 9, 7)
    assert info["side_offsets_px"] == [0.0, 0.0, 0.0, 0.0]
    assert info["clipped"] is False
    # Seven numbers were consumed, whatever the settings.
    assert rng.random() == np.random.default_rng(1).random(8)[7]


def test_outward_jitter_contains_the_tight_box_and_clips_to_the_slice():
    settings = BoxSettings(jitter_percent=50, jitter_direction="outward")
    for seed in range(20):
        box, info = jitter_box((0, 1, 5, 3), (5, 8), (1.0, 1.0), settings, np.random.default_rng(seed))
        x0, y0, x1, y1 = box
        assert x0 <= 0 and y0 <= 1 and x1 >= 5 and y1 >= 3
        assert x1 <= 7 and y1 <= 4 and x0 >= 0
    big = BoxSettings(jitter_mm=100, jitter_direction="outward")
    box, info = jitter_box((2, 2, 3, 3), (5, 8), (1.0, 1.0), big, np.random.default_rng(0))
    assert info["clipped"] is True
    assert 0 <= box[0] <= box[2] <= 7 and 0 <= box[1] <= box[3] <= 4


def test_sides_that_cross_meet_in_the_middle():
    settings = BoxSettings(jitter_percent=400)  # inward moves far larger than half the box
    for seed in range(30):
        x0, y0, x1, y1 = jitter_box((10, 10, 13, 13), (40, 40), (1.0, 1.0), settings, np.random.default_rng(seed))[0]
        assert x0 <= x1 and y0 <= y1


def test_mm_jitter_respects_anisotropic_spacing():
    settings = BoxSettings(jitter_mm=2.0)
    spacing_yx = (4.0, 0.5)  # rows 4 mm apart: 2 mm is half a row; columns 0.5 mm: 2 mm is 4 columns
    offsets = np.array(
        [
            jitter_box((20, 20, 30, 30), (60, 60), spacing_yx, settings, np.random.default_rng(s))[1]["side_offsets_px"]
            for s in range(200)
        ]
    )
    assert np.abs(offsets[:, [0, 2]]).max() == pytest.approx(4.0, abs=0.1)
    assert np.abs(offsets[:, [1, 3]]).max() == pytest.approx(0.5, abs=0.02)


def test_shift_moves_the_whole_box():
    settings = BoxSettings(shift_percent=50)
    box, info = jitter_box((10, 10, 19, 19), (60, 60), (1.0, 1.0), settings, np.random.default_rng(3))
    dx, dy = info["shift_px"]
    assert (box[2] - box[0], box[3] - box[1]) == (9, 9)
    assert box[0] == 10 + round(dx) and box[1] == 10 + round(dy)
    assert abs(dx) <= 5 and abs(dy) <= 5 and (dx, dy) != (0, 0)


# -------------------------------------------------------------------------------------------------------- points


def test_farthest_interior_point_follows_anisotropic_spacing():
    mask = np.zeros((12, 30), bool)
    mask[1:6, 1:6] = True  # a 5 x 5 square
    mask[8:11, 10:19] = True  # a 3-row x 9-column bar
    assert farthest_interior_point(mask, (1.0, 1.0)) == (3, 3)  # square's centre is deeper
    assert farthest_interior_point(mask, (1.0, 0.3)) == (14, 9)  # thin columns: the bar's centre is deeper


def test_farthest_interior_point_of_a_ring_lies_on_the_ring():
    yy, xx = np.mgrid[:41, :41]
    radius = np.hypot(yy - 20, xx - 20)
    ring = (radius >= 12) & (radius <= 18)
    x, y = farthest_interior_point(ring, (1.0, 1.0))
    assert ring[y, x]


def test_farthest_interior_point_errors():
    with pytest.raises(PromptError, match=r"mask2d: expected a 2D \(Y, X\) bool array, got shape \(3, 3\) and dtype"):
        farthest_interior_point(np.ones((3, 3), np.uint8), (1.0, 1.0))
    with pytest.raises(PromptError, match=r"mask2d: empty mask, no interior point"):
        farthest_interior_point(np.zeros((3, 3), bool), (1.0, 1.0))


def test_spread_points_keep_apart_and_stay_in_the_candidates():
    candidates = np.zeros((20, 20), bool)
    candidates[2:18, 2:18] = True
    points = spread_points(candidates, 4, (1.0, 1.0), existing=[(10, 10)])
    assert len(set(points)) == 4
    assert all(candidates[y, x] for x, y in points)
    assert min(np.hypot(x - 10, y - 10) for x, y in points) > 7  # pushed to the corners
    tiny = np.zeros((5, 5), bool)
    tiny[2, 2:4] = True
    assert len(spread_points(tiny, 5, (1.0, 1.0))) == 2  # ran out of candidates


def test_random_points_are_distinct_and_exclude():
    candidates = np.zeros((10, 10), bool)
    candidates[4, 3:6] = True
    points = random_points(candidates, 5, np.random.default_rng(0), exclude=[(4, 4)])
    assert sorted(points) == [(3, 4), (5, 4)]
    assert random_points(np.zeros((3, 3), bool), 2, np.random.default_rng(0)) == []


def test_negative_ring_is_at_the_requested_distance():
    mask = np.zeros((40, 50), bool)
    mask[15:25, 20:30] = True
    spacing = (2.0, 0.8)
    ring = negative_region(mask, spacing, distance_mm=4.0, width_mm=3.0)
    distance = distance_from_region_mm(mask, spacing)
    assert ring.any()
    assert np.all((distance[ring] >= 4.0) & (distance[ring] <= 7.0))
    assert not np.any(ring & mask)
    outside = negative_region(mask, spacing, distance_mm=4.0, width_mm=None)
    assert np.array_equal(outside, (distance >= 4.0) & ~mask)


def test_place_points_records_what_it_could_place():
    mask = np.zeros((9, 9), bool)
    mask[4, 4] = True
    settings = PointSettings(positives=3, negatives=200, negative_distance_mm=1.0, ring_width_mm=0.5)
    points, labels, info = place_points(mask, (1.0, 1.0), settings, np.random.default_rng(0))
    assert points[0] == (4, 4)
    assert info == {"positives": 1, "negatives": 8}  # one pixel; its 8 neighbours are 1 to 1.41 mm away
    assert labels == (1,) + (0,) * 8


def test_place_points_spread_negatives_and_random_positives():
    mask = np.zeros((30, 30), bool)
    mask[10:20, 10:20] = True
    settings = PointSettings(
        positives=4, negatives=4, positive_placement="random", negative_placement="spread", negative_region="background"
    )
    points, labels, _ = place_points(mask, (1.0, 1.0), settings, np.random.default_rng(0))
    positives = [p for p, lab in zip(points, labels, strict=True) if lab == 1]
    negatives = [p for p, lab in zip(points, labels, strict=True) if lab == 0]
    assert len(positives) == len(negatives) == 4
    assert all(mask[y, x] for x, y in positives)
    assert all(not mask[y, x] for x, y in negatives)
    assert {(0, 0), (29, 29)} & set(negatives)  # spread background negatives reach the corners


# ------------------------------------------------------------------------------------------------------ degraded


def test_grow_by_mm_on_an_anisotropic_grid():
    mask = np.zeros((5, 9, 9), bool)
    mask[2, 4, 4] = True
    grown, info = degrade_mask(mask, (3.0, 1.0, 1.0), margin_mm=2.0)
    assert grown[2].sum() == 13  # disc of radius 2 px in-plane
    assert not grown[1].any() and not grown[3].any()  # slices 3 mm away stay empty
    assert info["voxels_before"] == 1 and info["voxels_after"] == 13


def test_shrink_by_mm():
    mask = np.zeros((7, 7, 7), bool)
    mask[1:6, 1:6, 1:6] = True
    shrunk, _ = degrade_mask(mask, (1.0, 1.0, 1.0), margin_mm=-1.0)
    assert shrunk.sum() == 27 and shrunk[2:5, 2:5, 2:5].all()


def test_shift_rounds_to_voxels_and_loses_what_leaves():
    mask = np.zeros((4, 6, 6), bool)
    mask[1, 2, 2] = True
    shifted, info = degrade_mask(mask, (1.0, 1.0, 1.5), shift_mm=(0.0, 2.0, -3.0))
    assert info["shift_voxels"] == [0, 2, -2]
    assert shifted[1, 4, 0] and shifted.sum() == 1
    gone, _ = degrade_mask(mask, (1.0, 1.0, 1.0), shift_mm=(0.0, 10.0, 0.0))
    assert not gone.any()


def test_drop_fraction_and_largest_component():
    mask = np.zeros((10, 8, 8), bool)
    mask[0:10, 1:3, 1:3] = True
    mask[4, 6, 6] = True  # a speck, not connected
    dropped, info = degrade_mask(mask, (1.0, 1.0, 1.0), drop_fraction=0.5, rng=np.random.default_rng(0))
    assert len(info["dropped_slices"]) == 5
    assert not dropped[info["dropped_slices"]].any()
    again, _ = degrade_mask(mask, (1.0, 1.0, 1.0), drop_fraction=0.5, rng=np.random.default_rng(0))
    assert np.array_equal(dropped, again)
    largest, _ = degrade_mask(mask, (1.0, 1.0, 1.0), largest_component_only=True)
    assert largest.sum() == 40 and not largest[4, 6, 6]


def test_degrade_errors():
    mask = np.ones((2, 2, 2), bool)
    with pytest.raises(PromptError, match=r"drop_fraction must be within \[0, 1\], got 1.5"):
        degrade_mask(mask, (1.0, 1.0, 1.0), drop_fraction=1.5)
    with pytest.raises(PromptError, match=r"drop_fraction > 0 needs a random generator"):
        degrade_mask(mask, (1.0, 1.0, 1.0), drop_fraction=0.5)


# -------------------------------------------------------------------------------------------------- make_prompts


def test_box_mid_on_a_phantom_holds_the_key_slice(phantom_case):
    label = phantom_case.label
    volume = phantom_case.volumes["T2"]
    prompts = make_prompts(load_strategy("box-mid"), case_id="p0", volume=volume, source_mask=label, seed=0)
    (only,) = prompts.slices
    z_present = np.flatnonzero(label.any(axis=(1, 2)))
    assert only.z == (z_present[0] + z_present[-1]) // 2
    rows, cols = np.nonzero(label[only.z])
    assert only.box == (cols.min(), rows.min(), cols.max(), rows.max())
    assert prompts.oracle == {"gt_prompt": True, "gt_z_range": False}
    assert prompts.details["strategy_digest"] == load_strategy("box-mid").digest()


def test_oracle_flags_say_which_ground_truth_was_used():
    mask = _tube()
    volume = _volume(mask.shape)
    every = make_prompts(load_strategy("box-every-slice"), case_id="c", volume=volume, source_mask=mask, seed=0)
    assert every.oracle == {"gt_prompt": True, "gt_z_range": True}
    assert every.key_slices == (2, 3, 4, 6, 7, 8, 9)
    coarse = _strategy({"type": "box"}, source={"kind": "coarse"})
    from_coarse = make_prompts(coarse, case_id="c", volume=volume, source_mask=mask, seed=0)
    assert from_coarse.oracle == {"gt_prompt": False, "gt_z_range": False}
    assert from_coarse.source == "coarse"
    coarse_every = _strategy({"type": "box"}, source={"kind": "coarse"}, key_slices={"rule": "every"})
    assert (
        make_prompts(coarse_every, case_id="c", volume=volume, source_mask=mask, seed=0).oracle["gt_z_range"] is False
    )
    degraded = _strategy({"type": "box"}, source={"kind": "degraded", "margin_mm": 1.0})
    from_degraded = make_prompts(degraded, case_id="c", volume=volume, source_mask=mask, seed=0)
    assert from_degraded.oracle["gt_prompt"] is True
    assert from_degraded.details["source"]["degradation"]["margin_mm"] == 1.0


def test_same_seed_same_json_and_jitter_differs_across_seeds_and_cases():
    mask = _tube()
    volume = _volume(mask.shape, (3.0, 0.8, 0.7))
    strategy = load_strategy("box-mid-jitter10")

    def make(seed, case_id="c"):
        return make_prompts(strategy, case_id=case_id, volume=volume, source_mask=mask, seed=seed)

    assert prompts_to_json(make(0)) == prompts_to_json(make(0))
    boxes = {make(seed).slices[0].box for seed in range(8)}
    assert len(boxes) > 1
    assert (
        make(0).slices[0].box != make(0, "other").slices[0].box
        or make(1).slices[0].box != make(1, "other").slices[0].box
    )
    record = make(0).details["slices"][0]
    assert record["tight_box"] == [13, 8, 21, 13]
    assert record["side_offsets_px"] != [0.0, 0.0, 0.0, 0.0]


def test_jitter_magnitudes_share_their_random_directions():
    mask = _tube()
    volume = _volume(mask.shape)
    five = _strategy({"type": "box", "box": {"jitter_percent": 5}})
    ten = _strategy({"type": "box", "box": {"jitter_percent": 10}})
    a = make_prompts(five, case_id="c", volume=volume, source_mask=mask, seed=4).details["slices"][0]
    b = make_prompts(ten, case_id="c", volume=volume, source_mask=mask, seed=4).details["slices"][0]
    assert np.allclose(np.array(b["side_offsets_px"]), 2 * np.array(a["side_offsets_px"]), atol=2e-3)


def test_pieces_on_a_slice_all_or_largest():
    mask = np.zeros((3, 20, 30), bool)
    mask[1, 2:6, 2:6] = True  # 16 px
    mask[1, 10:18, 15:25] = True  # 80 px
    volume = _volume(mask.shape)
    around_all = make_prompts(_strategy({"type": "box"}), case_id="c", volume=volume, source_mask=mask, seed=0)
    assert around_all.slices[0].box == (2, 2, 24, 17)
    assert around_all.details["slices"][0]["pieces"] == 2
    largest = _strategy({"type": "box+points", "components": "largest", "points": {"negatives": 2}})
    only_largest = make_prompts(largest, case_id="c", volume=volume, source_mask=mask, seed=0)
    s = only_largest.slices[0]
    assert s.box == (15, 10, 24, 17)
    assert 15 <= s.points[0][0] <= 24 and 10 <= s.points[0][1] <= 17
    assert all(not mask[1, y, x] for (x, y), lab in zip(s.points, s.labels, strict=True) if lab == 0)


def test_mask_prompt_is_the_source_slice():
    mask = _tube()
    prompts = make_prompts(load_strategy("mask-mid"), case_id="c", volume=_volume(mask.shape), source_mask=mask, seed=0)
    (s,) = prompts.slices
    assert s.box is None and s.points == ()
    assert np.array_equal(s.mask, mask[s.z])
    assert s.mask is not mask[s.z]


def test_points_strategy_on_a_real_grid():
    mask = _tube()
    prompts = make_prompts(
        load_strategy("points-3pos-3neg"),
        case_id="c",
        volume=_volume(mask.shape, (3.0, 0.8, 0.7)),
        source_mask=mask,
        seed=2,
    )
    (s,) = prompts.slices
    assert s.labels == (1, 1, 1, 0, 0, 0)
    distance = distance_from_region_mm(mask[s.z], (0.8, 0.7))
    for (x, y), label in zip(s.points, s.labels, strict=True):
        if label:
            assert mask[s.z, y, x]
        else:
            assert 5.0 <= distance[y, x] <= 10.0


def test_empty_or_tiny_source_policies():
    volume = _volume((6, 10, 12), (2.0, 1.0, 1.0))
    empty = np.zeros(volume.shape, bool)
    gt = np.zeros(volume.shape, bool)
    gt[2:4, 3:6, 4:8] = True
    fail = _strategy({"type": "box"}, source={"kind": "coarse"})
    with pytest.raises(PromptError, match=r"case c: the coarse source mask is empty; strategy 's' fails such cases"):
        make_prompts(fail, case_id="c", volume=volume, source_mask=empty, seed=0)
    tiny = _strategy({"type": "box"}, source={"kind": "coarse", "min_volume_ml": 1.0})
    with pytest.raises(PromptError, match=r"holds 0.048 ml, less than source.min_volume_ml = 1 ml"):
        make_prompts(tiny, case_id="c", volume=volume, source_mask=gt, seed=0)
    middle = _strategy({"type": "box"}, source={"kind": "coarse", "on_empty": "volume-middle-box"})
    whole = make_prompts(middle, case_id="c", volume=volume, source_mask=empty, seed=0)
    assert whole.slices[0].z == 3 and whole.slices[0].box == (0, 0, 11, 9)
    assert whole.source == "volume" and whole.oracle == {"gt_prompt": False, "gt_z_range": False}
    assert whole.details["source"]["fallback"] == "volume-middle-box"
    to_gt = _strategy({"type": "box"}, source={"kind": "coarse", "on_empty": "gt"})
    from_gt = make_prompts(to_gt, case_id="c", volume=volume, source_mask=empty, seed=0, gt_mask=gt)
    assert from_gt.source == "gt" and from_gt.oracle["gt_prompt"] is True
    assert from_gt.slices[0].box == (4, 3, 7, 5)
    assert from_gt.details["source"]["fallback_reason"] == "is empty"
    with pytest.raises(PromptError, match=r"falls back to the ground truth, but no gt_mask was given"):
        make_prompts(to_gt, case_id="c", volume=volume, source_mask=empty, seed=0)
    with pytest.raises(PromptError, match=r"the ground truth it falls back to is empty too"):
        make_prompts(to_gt, case_id="c", volume=volume, source_mask=empty, seed=0, gt_mask=empty)
    with pytest.raises(PromptError, match=r"case c: the gt source mask is empty"):
        make_prompts(load_strategy("box-mid"), case_id="c", volume=volume, source_mask=empty, seed=0)
    shrink_away = _strategy({"type": "box"}, source={"kind": "degraded", "margin_mm": -5.0})
    with pytest.raises(PromptError, match=r"the degraded source mask is empty"):
        make_prompts(shrink_away, case_id="c", volume=volume, source_mask=gt, seed=0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"seed": -1}, r"case c: seed must be a non-negative integer, got -1"),
        ({"seed": True}, r"seed must be a non-negative integer, got True"),
        ({"seed": 1.5}, r"seed must be a non-negative integer, got 1.5"),
        ({"source_mask": np.ones((4, 5, 6), np.uint8)}, r"source_mask must be a bool array, got uint8"),
        ({"source_mask": np.ones((4, 5, 7), bool)}, r"source_mask has shape \(4, 5, 7\), the volume has \(4, 5, 6\)"),
    ],
)
def test_make_prompts_input_errors(kwargs, match):
    arguments = {"case_id": "c", "volume": _volume((4, 5, 6)), "source_mask": np.ones((4, 5, 6), bool), "seed": 0}
    arguments.update(kwargs)
    with pytest.raises(PromptError, match=match):
        make_prompts(load_strategy("box-mid"), **arguments)


def test_gt_mask_is_checked_when_used():
    volume = _volume((4, 5, 6))
    to_gt = _strategy({"type": "box"}, source={"kind": "coarse", "on_empty": "gt"})
    with pytest.raises(PromptError, match=r"gt_mask has shape \(4, 5, 5\)"):
        make_prompts(
            to_gt,
            case_id="c",
            volume=volume,
            source_mask=np.zeros((4, 5, 6), bool),
            seed=0,
            gt_mask=np.ones((4, 5, 5), bool),
        )


def test_numpy_integer_seed_is_accepted_and_recorded_as_int():
    mask = _tube()
    p = make_prompts(
        load_strategy("box-mid"), case_id="c", volume=_volume(mask.shape), source_mask=mask, seed=np.int64(3)
    )
    assert p.seed == 3 and type(p.seed) is int
    assert dataclasses.replace(p, seed=3).seed == 3


def test_cvpr25_box_median_occupied_slice_outward_shift_at_256_and_the_gt_z_extent():
    """The CVPR 2025 challenge's box (get_boxes.py): z_mid = entry n // 2 of the slices holding the structure (the
    upper middle of an even extent), the tight box moved out by int(k * size / 256) on all sides, k in 0..5, plus
    the z-extent, which from the ground truth is the gt_z_range oracle."""
    label = np.zeros((10, 128, 300), bool)
    label[2:8, 40:60, 50:90] = True  # six slices: z_mid = 5, where the middle rule takes 4
    label[3, 40:60, 95:99] = True
    strategy = load_strategy("cvpr25-box")
    volume = volume_from_array(np.zeros(label.shape, np.float32))
    drawn = set()
    for seed in range(40):
        prompts = make_prompts(strategy, case_id="c", volume=volume, source_mask=label, seed=seed)
        (key,) = prompts.slices
        record = prompts.details["slices"][0]
        k = record["outward_256px_drawn"]
        drawn.add(k)
        x_out, y_out = int(k * 300 / 256), int(k * 128 / 256)
        assert key.z == 5 and key.box == (50 - x_out, 40 - y_out, 89 + x_out, 59 + y_out)
        assert prompts.details["z_extent"] == [2, 7]
        assert dict(prompts.oracle) == {"gt_prompt": True, "gt_z_range": True}
    assert drawn == {0, 1, 2, 3, 4, 5}


def test_strategies_without_the_new_settings_keep_their_digests():
    assert load_strategy("box-mid").digest() == "9f5c190365ee6f84"  # as before outward_256px and z_extent existed
    with pytest.raises(ConfigError, match=r"prompt\.box\.outward_256px"):
        strategy_from_dict({"prompt": {"type": "box", "box": {"outward_256px": -1}}}, name="bad")
    with pytest.raises(ConfigError, match=r"prompt\.z_extent"):
        strategy_from_dict({"prompt": {"type": "box", "z_extent": "yes"}}, name="bad")
