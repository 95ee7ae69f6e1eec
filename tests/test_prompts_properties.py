"""Properties of prompts on arbitrary masks, non-square slices and anisotropic spacings (hypothesis).

Distances are checked against a brute-force oracle (the smallest Euclidean distance in mm from a point to any
pixel of the mask), independent of the distance transforms the generator uses.
"""

from __future__ import annotations

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from zeroshot.distance_ties import at_least_mm, at_most_mm
from zeroshot.prompts import (
    BoxSettings,
    farthest_interior_point,
    jitter_box,
    largest_component,
    make_prompts,
    strategy_from_dict,
)
from zeroshot.volume import volume_from_array

SETTINGS = settings(max_examples=60, deadline=None)
spacing_mm = st.floats(min_value=0.3, max_value=5.0, allow_nan=False)
rules = st.sampled_from(["middle", "largest", "centroid", "every", "spread"])


@st.composite
def volumes_with_masks(draw, max_side: int = 18):
    """A (Z, Y, X) bool mask with some structure (noise, so often in many pieces) and its spacing."""
    shape = (
        draw(st.integers(1, 5)),
        draw(st.integers(3, max_side)),
        draw(st.integers(3, max_side)),
    )
    mask = draw(arrays(bool, shape, elements=st.booleans()))
    if not mask.any():
        mask[tuple(draw(st.integers(0, n - 1)) for n in shape)] = True
    spacing = (draw(spacing_mm), draw(spacing_mm), draw(spacing_mm))
    return mask, spacing


def _distance_to_mask_mm(mask2d: np.ndarray, point: tuple[int, int], spacing_yx: tuple[float, float]) -> float:
    rows, cols = np.nonzero(mask2d)
    x, y = point
    return float(np.min(np.hypot((rows - y) * spacing_yx[0], (cols - x) * spacing_yx[1])))


@SETTINGS
@given(volumes_with_masks(), rules, st.sampled_from(["all", "largest"]), st.integers(0, 2**32 - 1))
def test_zero_jitter_box_holds_every_foreground_pixel(data, rule, components, seed):
    mask, spacing = data
    section = {"rule": rule, "count": 3} if rule == "spread" else {"rule": rule}
    strategy = strategy_from_dict(
        {"key_slices": section, "prompt": {"type": "box", "components": components}}, name="b"
    )
    prompts = make_prompts(
        strategy, case_id="h", volume=volume_from_array(mask * 1.0, spacing), source_mask=mask, seed=seed
    )
    for s in prompts.slices:
        x0, y0, x1, y1 = s.box
        covered = mask[s.z] if components == "all" else largest_component(mask[s.z])
        rows, cols = np.nonzero(covered)
        assert rows.size > 0
        assert np.all((cols >= x0) & (cols <= x1) & (rows >= y0) & (rows <= y1))
        assert s.box == (cols.min(), rows.min(), cols.max(), rows.max())  # and no larger


@SETTINGS
@given(
    volumes_with_masks(),
    st.integers(1, 4),
    st.integers(0, 4),
    st.floats(0.0, 6.0),
    st.floats(0.0, 6.0),
    st.sampled_from(["ring", "background"]),
    st.sampled_from(["random", "spread"]),
    st.integers(0, 1000),
)
@example(  # the ring's outer edge 3.4e-6 mm beyond distance + width: a tie under zeroshot.distance_ties
    data=(np.eye(1, 9, dtype=bool).reshape(1, 3, 3), (1.0, 1.9018030728746376, 1.9215309578658692)),
    positives=1,
    negatives=1,
    distance_mm=3.157884120609518,
    width_mm=1.13,
    region="ring",
    placement="random",
    seed=0,
)
def test_points_inside_and_negatives_at_the_requested_distance(
    data, positives, negatives, distance_mm, width_mm, region, placement, seed
):
    mask, spacing = data
    points = {
        "positives": positives,
        "negatives": negatives,
        "negative_region": region,
        "negative_placement": placement,
        "positive_placement": placement,
        "negative_distance_mm": distance_mm,
        "ring_width_mm": width_mm,
    }
    strategy = strategy_from_dict(
        {"key_slices": {"rule": "every"}, "prompt": {"type": "points", "points": points}}, name="p"
    )
    prompts = make_prompts(
        strategy, case_id="h", volume=volume_from_array(mask * 1.0, spacing), source_mask=mask, seed=seed
    )
    spacing_yx = spacing[1:]
    for s, record in zip(prompts.slices, prompts.details["slices"], strict=True):
        assert len(set(s.points)) == len(s.points)
        assert s.labels.count(1) == record["points"]["positives"] >= 1
        assert s.labels.count(0) == record["points"]["negatives"] <= negatives
        for point, label in zip(s.points, s.labels, strict=True):
            x, y = point
            if label == 1:
                assert mask[s.z, y, x]
            else:
                assert not mask[s.z, y, x]
                d = _distance_to_mask_mm(mask[s.z], point, spacing_yx)
                # the documented tie rule (zeroshot.distance_ties), not an absolute epsilon: the ring's outer
                # edge computed via the EDT differs from hypot's value by float rounding (found by Hypothesis)
                assert at_least_mm(d, distance_mm)
                if region == "ring":
                    assert at_most_mm(d, distance_mm + width_mm)


@SETTINGS
@given(st.integers(1, 40), st.integers(1, 40), st.data())
def test_coordinates_are_column_then_row_on_non_square_slices(height, width, data):
    y = data.draw(st.integers(0, height - 1))
    x = data.draw(st.integers(0, width - 1))
    mask = np.zeros((3, height, width), bool)
    mask[1, y, x] = True
    strategy = strategy_from_dict({"prompt": {"type": "box+points"}}, name="bp")
    prompts = make_prompts(
        strategy, case_id="h", volume=volume_from_array(np.zeros(mask.shape)), source_mask=mask, seed=0
    )
    (s,) = prompts.slices
    assert s.z == 1
    assert s.box == (x, y, x, y)
    assert s.points == ((x, y),)
    assert farthest_interior_point(mask[1], (1.0, 1.0)) == (x, y)


@SETTINGS
@given(
    st.integers(0, 30),
    st.integers(0, 30),
    st.integers(0, 25),
    st.integers(0, 25),
    spacing_mm,
    spacing_mm,
    st.floats(0.0, 20.0),
    st.floats(0.0, 50.0),
    st.integers(0, 2**32 - 1),
)
def test_outward_jitter_stays_within_its_amplitude_per_axis(x0, y0, w, h, sy, sx, jitter_mm, percent, seed):
    shape_yx = (60, 70)
    box = (x0, y0, x0 + w, y0 + h)
    settings_ = BoxSettings(jitter_mm=jitter_mm, jitter_percent=percent, jitter_direction="outward")
    used, info = jitter_box(box, shape_yx, (sy, sx), settings_, np.random.default_rng(seed))
    amplitude_x = percent / 100 * (w + 1) + jitter_mm / sx
    amplitude_y = percent / 100 * (h + 1) + jitter_mm / sy
    assert used[0] <= box[0] and used[1] <= box[1] and used[2] >= box[2] and used[3] >= box[3]
    assert 0 <= used[0] and 0 <= used[1] and used[2] < shape_yx[1] and used[3] < shape_yx[0]
    for side, amplitude in zip(range(4), (amplitude_x, amplitude_y, amplitude_x, amplitude_y), strict=True):
        assert abs(used[side] - box[side]) <= amplitude + 0.5
        assert 0.0 <= info["side_offsets_px"][side] <= amplitude + 1e-3


@SETTINGS
@given(volumes_with_masks(max_side=12), st.integers(0, 2**32 - 1), st.floats(0.0, 30.0))
def test_same_seed_same_prompts_and_every_box_fits_the_slice(data, seed, percent):
    mask, spacing = data
    strategy = strategy_from_dict(
        {
            "key_slices": {"rule": "every"},
            "prompt": {"type": "box", "box": {"jitter_percent": percent, "shift_mm": 2.0}},
        },
        name="j",
    )
    volume = volume_from_array(mask * 1.0, spacing)
    a = make_prompts(strategy, case_id="h", volume=volume, source_mask=mask, seed=seed)
    b = make_prompts(strategy, case_id="h", volume=volume, source_mask=mask, seed=seed)
    assert [s.box for s in a.slices] == [s.box for s in b.slices]
    assert a.details == b.details
    for s in a.slices:
        s.validate_for(mask.shape)
