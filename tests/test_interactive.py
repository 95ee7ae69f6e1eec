"""Simulated corrective clicks: where they land, what label they carry, and that curves replay exactly."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from zeroshot.errors import ConfigError
from zeroshot.interactive import Click, ClickSettings, add_clicks, choose_clicks, clicks_from_records, replay, simulate
from zeroshot.prompts import SlicePrompt, VolumePrompts
from zeroshot.segmenters.boxfill import BoxFillSegmenter
from zeroshot.volume import volume_from_array

masks = st.integers(0, 2**31 - 1).map(
    lambda seed: tuple(
        ndimage.binary_opening(np.random.default_rng(seed + k).random((5, 12, 17)) > 0.55) for k in (0, 1)
    )
)


@given(masks, st.sampled_from(["one", "both"]), st.sampled_from([(2.0, 1.0, 1.0), (5.0, 0.7, 1.9)]))
@settings(max_examples=60, deadline=None)
def test_each_click_lies_in_the_region_it_corrects_on_the_worst_slice(pair, per_round, spacing):
    gt, pred = pair
    clicks = choose_clicks(gt, pred, spacing, settings=ClickSettings(per_round=per_round), round_index=3)
    error = (gt ^ pred).sum(axis=(1, 2))
    if not error.any():
        assert clicks == ()
        return
    assert clicks, "an imperfect prediction gets a click"
    worst = int(np.argmax(error))
    for click in clicks:
        assert click.round == 3 and click.z == worst
        assert error[click.z] == error.max()
        if click.label == 1:
            assert gt[click.z, click.y, click.x] and not pred[click.z, click.y, click.x]
        else:
            assert pred[click.z, click.y, click.x] and not gt[click.z, click.y, click.x]
    if per_round == "one":
        assert len(clicks) == 1
        eight = np.ones((3, 3), bool)  # regions are 8-connected in a slice
        fn = ndimage.label(gt[worst] & ~pred[worst], structure=eight)[0]
        fp = ndimage.label(pred[worst] & ~gt[worst], structure=eight)[0]
        largest_fn = np.bincount(fn.ravel())[1:].max(initial=0)
        largest_fp = np.bincount(fp.ravel())[1:].max(initial=0)
        assert clicks[0].label == (1 if largest_fn >= largest_fp else 0)


def test_click_is_the_deepest_point_of_the_larger_region():
    gt = np.zeros((3, 20, 30), bool)
    pred = np.zeros_like(gt)
    gt[1, 2:12, 3:25] = True  # 10 x 22 false negative on slice 1
    pred[1, 15:18, 3:6] = True  # small false positive
    (click,) = choose_clicks(gt, pred, (3.0, 1.0, 1.0), settings=ClickSettings(), round_index=1)
    assert (click.z, click.label) == (1, 1)
    assert 6 <= click.y <= 7 and 7 <= click.x <= 20  # 5 px deep inside the 10-row band; x is the column
    both = choose_clicks(gt, pred, (3.0, 1.0, 1.0), settings=ClickSettings(per_round="both"), round_index=1)
    assert [c.label for c in both] == [1, 0] and both[1].y in (15, 16, 17) and both[1].x in (3, 4, 5)


def test_key_slice_rule_only_clicks_on_prompted_slices():
    gt = np.zeros((4, 8, 8), bool)
    gt[0, 2:6, 2:6] = True  # big error on slice 0
    gt[2, 3:5, 3:5] = True  # small error on slice 2 (a key slice)
    pred = np.zeros_like(gt)
    rule = ClickSettings(slice_rule="key-slice")
    (click,) = choose_clicks(gt, pred, (1, 1, 1), settings=rule, round_index=1, key_slices=(2,))
    assert click.z == 2
    assert choose_clicks(gt, pred, (1, 1, 1), settings=rule, round_index=1, key_slices=(3,)) == ()


def test_bad_settings_are_refused():
    with pytest.raises(ConfigError, match="rounds must be a whole number"):
        ClickSettings(rounds=-1)
    with pytest.raises(ConfigError, match="slice_rule must be"):
        ClickSettings(slice_rule="random")
    with pytest.raises(ConfigError, match="per_round must be"):
        ClickSettings(per_round="many")
    with pytest.raises(ConfigError, match="must be equal 3D shapes"):
        choose_clicks(np.zeros((2, 2)), np.zeros((2, 2)), (1, 1, 1), settings=ClickSettings(), round_index=1)
    with pytest.raises(ConfigError, match="recorded clicks are malformed"):
        clicks_from_records([{"round": 1, "z": 0}])


def _phantom_setup(phantom_case):
    gt = phantom_case.label
    volume = phantom_case.volumes["T2"]
    z = int(np.argmax(gt.sum(axis=(1, 2))))
    # A mask prompt makes the key slice exact for box-fill, so corrections go to the other slices.
    prompts = VolumePrompts("phantom_000", "mask-mid", 0, "gt", (SlicePrompt(z=z, mask=gt[z]),))
    return volume, gt, prompts


def _dice(a, b):
    return 2 * (a & b).sum() / (a.sum() + b.sum())


def test_curve_improves_and_is_recorded(phantom_case):
    volume, gt, prompts = _phantom_setup(phantom_case)
    session = BoxFillSegmenter(point_radius_mm=4.0).prepare(volume)
    seen = []
    rounds = list(simulate(session, gt, prompts, settings=ClickSettings(rounds=5), on_round=seen.append))
    assert [r.round for r in rounds] == [0, 1, 2, 3, 4, 5] and seen == rounds
    assert [len(r.clicks) for r in rounds] == [0, 1, 2, 3, 4, 5]
    dice = [_dice(r.segmentation.mask, gt) for r in rounds]
    assert dice[-1] > dice[0]
    assert rounds[-1].prompts.details["clicks"] == [c.as_record() for c in rounds[-1].clicks]
    # The same inputs give the same clicks.
    again = list(simulate(session, gt, prompts, settings=ClickSettings(rounds=5)))
    assert again[-1].clicks == rounds[-1].clicks


def test_perfect_prediction_gets_no_click_and_a_flat_curve(phantom_case):
    volume, gt, _ = _phantom_setup(phantom_case)
    slices = tuple(SlicePrompt(z=z, mask=gt[z]) for z in range(gt.shape[0]) if gt[z].any())
    prompts = VolumePrompts("phantom_000", "mask-every-slice", 0, "gt", slices)
    calls = []
    session = BoxFillSegmenter().prepare(volume)
    original = session.segment
    session.segment = lambda p: calls.append(p) or original(p)
    rounds = list(simulate(session, gt, prompts, settings=ClickSettings(rounds=4)))
    assert [r.clicks for r in rounds] == [()] * 5
    assert all(np.array_equal(r.segmentation.mask, gt) for r in rounds)
    assert len(calls) == 1, "rounds after a perfect prediction do not call the segmenter"


@pytest.mark.parametrize("feed_mask", [False, True])
def test_replay_rebuilds_an_interrupted_curve_exactly(phantom_case, feed_mask):
    volume, gt, prompts = _phantom_setup(phantom_case)
    session = BoxFillSegmenter(point_radius_mm=4.0).prepare(volume)
    rule = ClickSettings(rounds=6, feed_mask=feed_mask, per_round="both")
    full = list(simulate(session, gt, prompts, settings=rule))
    records = [c.as_record() for c in full[3].clicks]
    state = replay(session, prompts, clicks_from_records(records), settings=rule, round_index=3)
    assert np.array_equal(state.segmentation.mask, full[3].segmentation.mask)
    resumed = list(simulate(session, gt, prompts, settings=rule, start=state))
    assert [r.round for r in resumed] == [4, 5, 6]
    for a, b in zip(resumed, full[4:], strict=True):
        assert a.clicks == b.clicks and np.array_equal(a.segmentation.mask, b.segmentation.mask)


def test_add_clicks_merges_into_key_slices_and_adds_new_ones():
    volume = volume_from_array(np.zeros((4, 6, 6)))
    prompts = VolumePrompts("c", "s", 0, "gt", (SlicePrompt(z=1, box=(0, 0, 3, 3)),))
    clicks = (Click(1, 1, 2, 2, 0), Click(2, 3, 4, 5, 1))
    previous = np.ones(volume.shape, bool)
    out = add_clicks(prompts, clicks, previous_mask=previous)
    assert out.key_slices == (1, 3)
    assert out.slices[0].box == (0, 0, 3, 3) and out.slices[0].points == ((2, 2),) and out.slices[0].labels == (0,)
    assert out.slices[1].box is None and out.slices[1].points == ((4, 5),) and out.slices[1].mask.all()
    assert prompts.key_slices == (1,), "the initial prompts are not modified"
