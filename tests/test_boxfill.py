import numpy as np
import pytest

from zeroshot.errors import ConfigError, PromptError
from zeroshot.prompts import SlicePrompt, VolumePrompts
from zeroshot.segmenters.base import Segmenter, Session
from zeroshot.segmenters.boxfill import BoxFillSegmenter, bounding_box, disk_mask, prompt_region
from zeroshot.volume import volume_from_array


def _prompts(*slices: SlicePrompt) -> VolumePrompts:
    return VolumePrompts(case_id="c", strategy="test", seed=0, source="gt", slices=tuple(slices))


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def test_box_fill_satisfies_the_segmenter_protocol():
    segmenter = BoxFillSegmenter()
    session = segmenter.prepare(volume_from_array(np.zeros((2, 4, 4))))
    assert isinstance(segmenter, Segmenter)
    assert isinstance(session, Session)
    assert segmenter.describe()["name"] == "box-fill"


def test_box_on_every_slice_of_a_cuboid_gives_dice_one():
    label = np.zeros((6, 20, 30), dtype=bool)
    label[1:5, 4:11, 7:19] = True  # y 4..10, x 7..18 inclusive
    volume = volume_from_array(np.random.default_rng(0).normal(size=label.shape), (3.0, 1.0, 1.0))
    prompts = _prompts(*(SlicePrompt(z=z, box=(7, 4, 18, 10)) for z in range(1, 5)))
    result = BoxFillSegmenter().prepare(volume).segment(prompts)
    assert result.mask.dtype == bool and result.mask.shape == label.shape
    assert _dice(result.mask, label) == 1.0
    assert result.probabilities is None


def test_box_fill_of_an_ellipse_gives_the_area_ratio():
    # Ellipse with semi-axes 9 (y) and 14 (x) px, boxed by its own inclusive bounding box.
    yy, xx = np.mgrid[:40, :50]
    ellipse = ((yy - 20) / 9.0) ** 2 + ((xx - 25) / 14.0) ** 2 <= 1.0
    rows, cols = np.flatnonzero(ellipse.any(1)), np.flatnonzero(ellipse.any(0))
    box_area = (rows[-1] - rows[0] + 1) * (cols[-1] - cols[0] + 1)
    ratio = ellipse.sum() / box_area  # independent of the segmenter: pixel counts
    label = ellipse[None].repeat(3, axis=0)
    prompts = _prompts(*(SlicePrompt(z=z, box=(cols[0], rows[0], cols[-1], rows[-1])) for z in range(3)))
    mask = BoxFillSegmenter().prepare(volume_from_array(np.zeros(label.shape))).segment(prompts).mask
    iou = np.logical_and(mask, label).sum() / np.logical_or(mask, label).sum()
    assert iou == pytest.approx(ratio, abs=1e-12)
    assert _dice(mask, label) == pytest.approx(2 * ratio / (1 + ratio), abs=1e-12)
    assert 0.7 < ratio < 0.85  # pi/4 for a continuous ellipse


def test_only_prompted_slices_are_filled_by_default():
    volume = volume_from_array(np.zeros((8, 10, 10)))
    prompts = _prompts(SlicePrompt(z=2, box=(1, 1, 3, 3)), SlicePrompt(z=6, box=(5, 5, 8, 8)))
    result = BoxFillSegmenter().prepare(volume).segment(prompts)
    assert np.flatnonzero(result.mask.any(axis=(1, 2))).tolist() == [2, 6]
    assert result.info["interpolated_slices"] == []


def test_interpolation_fills_boxes_between_key_slices_only():
    volume = volume_from_array(np.zeros((9, 20, 20)))
    prompts = _prompts(SlicePrompt(z=2, box=(0, 0, 4, 4)), SlicePrompt(z=6, box=(8, 4, 16, 12)))
    result = BoxFillSegmenter(interpolate_between_key_slices=True).prepare(volume).segment(prompts)
    assert np.flatnonzero(result.mask.any(axis=(1, 2))).tolist() == [2, 3, 4, 5, 6]
    assert result.info["interpolated_slices"] == [3, 4, 5]
    # Halfway (z=4) the box is the mean of the two key boxes: (4, 2, 10, 8).
    assert bounding_box(result.mask[4]) == (4, 2, 10, 8)
    assert result.mask[4].sum() == 7 * 7


def test_mask_prompt_wins_over_box():
    shape = (3, 8, 8)
    mask = np.zeros(shape[1:], dtype=bool)
    mask[2:4, 2:5] = True
    prompts = _prompts(SlicePrompt(z=1, box=(0, 0, 7, 7), mask=mask))
    result = BoxFillSegmenter().prepare(volume_from_array(np.zeros(shape))).segment(prompts)
    np.testing.assert_array_equal(result.mask[1], mask)


def test_points_only_paint_spacing_aware_disks_and_ignore_negatives():
    # 0.5 mm x 2 mm pixels: a 2 mm radius spans 4 rows and 1 column each side of the point.
    prompt = SlicePrompt(z=0, points=((10, 10), (2, 2)), labels=(1, 0))
    region = prompt_region(prompt, (21, 21), (0.5, 2.0), point_radius_mm=2.0)
    assert bounding_box(region) == (9, 6, 11, 14)
    assert not region[2, 2]
    result = (
        BoxFillSegmenter(point_radius_mm=2.0)
        .prepare(volume_from_array(np.zeros((1, 21, 21)), (1.0, 0.5, 2.0)))
        .segment(_prompts(prompt))
    )
    assert result.info["negative_points_ignored"] == 1
    np.testing.assert_array_equal(result.mask[0], region)


def test_disk_always_contains_its_centre():
    disk = disk_mask((5, 5), (2, 3), radius_mm=0.1, spacing_yx_mm=(1.0, 1.0))
    assert disk.sum() == 1 and disk[2, 3]


def test_negative_points_alone_give_an_empty_slice_that_is_reported():
    prompts = _prompts(SlicePrompt(z=0, points=((1, 1),), labels=(0,)))
    result = BoxFillSegmenter().prepare(volume_from_array(np.zeros((1, 4, 4)))).segment(prompts)
    assert not result.mask.any()
    assert result.info["empty_key_slices"] == [0]


def test_bad_radius_is_refused():
    with pytest.raises(ConfigError, match="point_radius_mm"):
        BoxFillSegmenter(point_radius_mm=0.0)


def test_prompt_outside_the_volume_is_refused():
    prompts = _prompts(SlicePrompt(z=0, box=(0, 0, 9, 3)))
    with pytest.raises(PromptError, match="leaves"):
        BoxFillSegmenter().prepare(volume_from_array(np.zeros((1, 4, 4)))).segment(prompts)
