"""Prompt coordinates against oracles that are not ours: ``x * S / W`` arithmetic, and SAM2's own predictor.

SAM2's ``add_new_points_or_box(normalize_coords=True)`` divides pixel coordinates by the frame's width and height
and multiplies by ``image_size``; MedSAM2's 3D inference passes its box that way. The official mapping must give
the same model pixels, bit for bit, for boxes and points on non-square slices.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

from zeroshot.errors import SegmenterError
from zeroshot.prompts.types import POSITIVE, SlicePrompt, VolumePrompts
from zeroshot.segmenters.prompt_coords import (
    COORDS,
    box_to_model,
    box_to_unit,
    check_coords,
    points_to_model,
    points_to_unit,
)
from zeroshot.segmenters.sam2_video import Sam2Segmenter
from zeroshot.volume import volume_from_array

#: (Y, X) slice shapes: non-square both ways, smaller and larger than the model input, and square.
SHAPES = [(91, 117), (117, 91), (40, 300), (512, 512), (13, 7)]


def scaled(value: int, size: int, extent: int) -> Fraction:
    """The exact rational ``value * size / extent``."""
    return Fraction(value * size, extent)


@pytest.mark.parametrize("shape_yx", SHAPES)
@pytest.mark.parametrize("image_size", [128, 512, 1024])
def test_official_box_is_x_times_s_over_w(shape_yx, image_size):
    """Both corners scale as ``x * S / W``, ``y * S / H`` (float32: within one rounding of the exact value)."""
    height, width = shape_yx
    rng = np.random.default_rng(height * width + image_size)
    for _ in range(50):
        x0, x1 = sorted(rng.integers(0, width, size=2).tolist())
        y0, y1 = sorted(rng.integers(0, height, size=2).tolist())
        got = box_to_model((x0, y0, x1, y1), shape_yx=shape_yx, image_size=image_size)
        assert got.dtype == np.float32
        exact = [scaled(x0, image_size, width), scaled(y0, image_size, height)]
        exact += [scaled(x1, image_size, width), scaled(y1, image_size, height)]
        for value, want in zip(got.tolist(), exact, strict=True):
            # two float32 roundings (quotient, product): at most 2 ulp of the result
            assert abs(Fraction(value) - want) <= 2 * np.spacing(np.float32(max(float(want), 1e-30)))


@pytest.mark.parametrize("shape_yx", SHAPES)
def test_official_points_are_x_times_s_over_w(shape_yx):
    height, width = shape_yx
    points = [(0, 0), (width - 1, height - 1), (width // 3, height // 2)]
    got = points_to_model(points, shape_yx=shape_yx, image_size=512)
    for (x, y), (gx, gy) in zip(points, got.tolist(), strict=True):
        assert abs(Fraction(gx) - scaled(x, 512, width)) <= 2 * np.spacing(np.float32(512))
        assert abs(Fraction(gy) - scaled(y, 512, height)) <= 2 * np.spacing(np.float32(512))


def test_official_box_is_smaller_than_its_pixel_area():
    """The difference the issue measured: on a ~100-px-wide slice at 512 the far corner moves by S / W - 1."""
    official = box_to_model((20, 30, 60, 70), shape_yx=(91, 117), image_size=512)
    area = box_to_model((20, 30, 60, 70), shape_yx=(91, 117), image_size=512, coords="area")
    np.testing.assert_allclose(official[:2], area[:2])
    np.testing.assert_allclose(area[2:] - official[2:], [512 / 117 - 1, 512 / 91 - 1], rtol=1e-6)


def test_unit_times_s_is_the_model_pixel():
    for coords in COORDS:
        unit = box_to_unit((3, 4, 50, 60), shape_yx=(91, 117), image_size=512, coords=coords)
        model = box_to_model((3, 4, 50, 60), shape_yx=(91, 117), image_size=512, coords=coords)
        np.testing.assert_array_equal(unit * np.float32(512), model)
        assert points_to_unit(((3, 4),), shape_yx=(91, 117), image_size=512, coords=coords).dtype == np.float32


def test_unknown_mapping_raises():
    with pytest.raises(SegmenterError, match="coords must be one of 'official', 'area'; got 'centre'"):
        check_coords("centre")
    with pytest.raises(SegmenterError, match="coords must be one of"):
        box_to_unit((0, 0, 1, 1), shape_yx=(4, 4), image_size=8, coords="pixel")
    with pytest.raises(SegmenterError, match="coords must be one of"):
        Sam2Segmenter(image_size=64, device="cpu", coords="centre")


@pytest.fixture(scope="module")
def tiny():
    torch.set_num_threads(1)
    return Sam2Segmenter(image_size=64, device="cpu")


def test_session_prompts_equal_sam2s_own_normalisation(tiny):
    """The point inputs our session stores are bit-identical to SAM2's ``normalize_coords=True`` on pixels."""
    shape = (3, 37, 53)
    volume = volume_from_array(np.random.default_rng(0).random(shape, dtype=np.float32) + 1, (3.0, 1.0, 1.0))
    box, points = (5, 7, 40, 30), ((11, 13), (52, 36))
    prompts = VolumePrompts("c", "s", 0, "gt", (SlicePrompt(z=1, box=box, points=points, labels=(POSITIVE, 0)),))
    with tiny.prepare(volume) as session, torch.inference_mode():
        session._add_prompts(prompts.slices)
        ours = session._state.point_inputs_per_obj[0][1]["point_coords"].clone()
        tiny.model.reset_state(session._state)
        tiny.model.add_new_points_or_box(
            session._state,
            frame_idx=1,
            obj_id=1,
            box=np.array(box),
            points=np.array(points, dtype=np.float32),
            labels=np.array([1, 0], dtype=np.int32),
        )
        official = session._state.point_inputs_per_obj[0][1]["point_coords"]
        tiny.model.reset_state(session._state)
    assert torch.equal(ours, official)


def test_docstring_examples_run():
    import doctest

    from zeroshot.segmenters import prompt_coords

    result = doctest.testmod(prompt_coords)
    assert result.attempted >= 5 and result.failed == 0
