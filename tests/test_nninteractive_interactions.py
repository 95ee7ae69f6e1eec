"""Prompts as nnInteractive interactions: coordinates in (z, y, x), the order, and rounds of clicks as prefixes."""

import dataclasses
import itertools

import numpy as np

from zeroshot.interactive import Click, add_clicks
from zeroshot.prompts import SlicePrompt, VolumePrompts
from zeroshot.segmenters.nninteractive_interactions import (
    BoxInteraction,
    InitialSegmentation,
    PointInteraction,
    plan_interactions,
)


def _prompts(*slices: SlicePrompt) -> VolumePrompts:
    return VolumePrompts(case_id="c", strategy="test", seed=0, source="gt", slices=tuple(slices))


def test_a_box_is_one_slice_thick_and_half_open_in_z_y_x():
    (box,) = plan_interactions(_prompts(SlicePrompt(z=4, box=(10, 20, 30, 25))))
    assert box == BoxInteraction(4, (10, 20, 30, 25))
    # inclusive x1 = 30 and y1 = 25 become the half-open ends 31 and 26
    assert box.bbox_zyx() == [[4, 5], [20, 26], [10, 31]]
    assert box.record() == {"kind": "box", "z": 4, "box": [10, 20, 30, 25]}


def test_points_are_z_y_x_clicks_with_their_sign():
    plan = plan_interactions(_prompts(SlicePrompt(z=2, points=((7, 3), (1, 9)), labels=(1, 0))))
    assert plan == (PointInteraction(2, 7, 3, True), PointInteraction(2, 1, 9, False))
    assert [p.zyx() for p in plan] == [(2, 3, 7), (2, 9, 1)]


def test_masks_of_every_slice_are_one_initial_segmentation_given_first():
    first, second = np.zeros((4, 5), bool), np.zeros((4, 5), bool)
    first[1, 2] = second[3, 4] = True
    plan = plan_interactions(
        _prompts(
            SlicePrompt(z=1, mask=first),
            SlicePrompt(z=3, box=(0, 0, 2, 2), points=((1, 1),), labels=(1,), mask=second),
        )
    )
    assert [type(i) for i in plan] == [InitialSegmentation, BoxInteraction, PointInteraction]
    volume = plan[0].volume((5, 4, 5))
    assert volume.dtype == np.uint8 and plan[0].slices == (1, 3)
    assert np.argwhere(volume).tolist() == [[1, 1, 2], [3, 3, 4]]
    assert plan[0].record() == {"kind": "initial_segmentation", "slices": [1, 3]}


def test_initial_segmentations_compare_by_content():
    mask = np.eye(4, dtype=bool)
    same = plan_interactions(_prompts(SlicePrompt(z=0, mask=mask.copy())))
    assert same == plan_interactions(_prompts(SlicePrompt(z=0, mask=mask)))
    assert same != plan_interactions(_prompts(SlicePrompt(z=0, mask=~mask)))
    assert same != plan_interactions(_prompts(SlicePrompt(z=1, mask=mask)))


def test_boxes_come_before_points_whatever_their_slice():
    plan = plan_interactions(
        _prompts(
            SlicePrompt(z=1, points=((1, 1),), labels=(0,)),
            SlicePrompt(z=5, box=(0, 0, 3, 3), points=((2, 2),), labels=(1,)),
        )
    )
    assert [(i.kind, i.z) for i in plan] == [("box", 5), ("point", 1), ("point", 5)]


def test_each_round_of_clicks_extends_the_previous_rounds_interactions():
    initial = _prompts(SlicePrompt(z=5, box=(2, 2, 8, 8), points=((4, 4),), labels=(1,)))
    clicks = [
        Click(round=1, z=7, x=3, y=3, label=1),
        Click(round=2, z=5, x=6, y=6, label=0),  # on the key slice, after its own point
        Click(round=3, z=2, x=1, y=1, label=1),  # on a slice before every other
        Click(round=4, z=7, x=5, y=5, label=0),
    ]
    plans = [plan_interactions(initial)]
    for n in range(1, len(clicks) + 1):
        plans.append(plan_interactions(add_clicks(initial, clicks[:n])))
    for before, after in itertools.pairwise(plans):
        assert after[: len(before)] == before and len(after) == len(before) + 1
    assert plans[-1][2:] == tuple(PointInteraction(c.z, c.x, c.y, c.label == 1) for c in clicks)


def test_click_records_that_do_not_match_the_points_are_ignored():
    initial = _prompts(SlicePrompt(z=5, box=(2, 2, 8, 8)))
    clicked = add_clicks(initial, [Click(round=1, z=7, x=3, y=3, label=1), Click(round=2, z=2, x=1, y=1, label=1)])
    by_slice = [(i.kind, i.z) for i in plan_interactions(clicked)]
    assert by_slice == [("box", 5), ("point", 7), ("point", 2)]
    wrong = dataclasses.replace(clicked, details={"clicks": [{"round": 1, "z": 7, "x": 0, "y": 0, "label": 1}]})
    assert [(i.kind, i.z) for i in plan_interactions(wrong)] == [("box", 5), ("point", 2), ("point", 7)]
    malformed = dataclasses.replace(clicked, details={"clicks": [{"z": "seven"}]})
    assert plan_interactions(malformed) == plan_interactions(wrong)
