import cv2
import numpy as np
import pytest

from zeroshot.errors import ConfigError, SegmenterError
from zeroshot.prompts import SlicePrompt, VolumePrompts, load_strategy, make_prompts
from zeroshot.segmenters.base import Segmenter, Session
from zeroshot.segmenters.boxfill import BoxFillSegmenter
from zeroshot.segmenters.grabcut import GrabCutSegmenter, grabcut_slice, to_uint8
from zeroshot.volume import volume_from_array

FAST = {"working_size_px": 96, "iterations": 2}


def _prompts(*slices: SlicePrompt) -> VolumePrompts:
    return VolumePrompts(case_id="tube", strategy="test", seed=0, source="gt", slices=tuple(slices))


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


@pytest.fixture(scope="module")
def tube():
    """A bright disk drifting in x across slices 2..7 of a noisy 10-slice volume, and its label."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:48, :48]
    label = np.zeros((10, 48, 48), dtype=bool)
    for z in range(2, 8):
        label[z] = (yy - 24) ** 2 + (xx - 18 - 2 * z) ** 2 <= 7**2
    image = np.where(label, 200.0, 100.0) + rng.normal(0, 8, label.shape)
    return volume_from_array(image, (3.0, 1.0, 1.0)), label


def _key_box(label: np.ndarray, z: int) -> tuple[int, int, int, int]:
    rows, cols = np.flatnonzero(label[z].any(1)), np.flatnonzero(label[z].any(0))
    return int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])


def test_grabcut_satisfies_the_segmenter_protocol(tube):
    segmenter = GrabCutSegmenter()
    assert isinstance(segmenter, Segmenter)
    assert isinstance(segmenter.prepare(tube[0]), Session)
    assert segmenter.describe()["working_size_px"] == 256


def test_segments_the_phantom_pancreas_from_a_box_mid_prompt(phantom_case):
    volume, label = phantom_case.volumes["T1"], phantom_case.label
    prompts = make_prompts(
        load_strategy("box-mid"), case_id=phantom_case.case_id, volume=volume, source_mask=label, seed=0
    )
    result = GrabCutSegmenter().prepare(volume).segment(prompts)
    box_fill = BoxFillSegmenter().prepare(volume).segment(prompts)
    assert result.mask.shape == label.shape and result.mask.dtype == bool
    assert _dice(result.mask, label) > 0.5
    assert _dice(result.mask, label) > _dice(box_fill.mask, label) + 0.3


def test_propagates_both_ways_and_stops_where_the_structure_ends(tube):
    volume, label = tube
    result = GrabCutSegmenter(**FAST).prepare(volume).segment(_prompts(SlicePrompt(z=4, box=_key_box(label, 4))))
    assert _dice(result.mask, label) > 0.85
    assert np.flatnonzero(result.mask.any(axis=(1, 2))).min() >= 1
    assert np.flatnonzero(result.mask.any(axis=(1, 2))).max() <= 8
    low, high = result.info["reach"]["4"]
    assert 0 < low <= 2 and 7 <= high < 9  # it stopped on an empty slice before either end


def test_results_are_deterministic(tube):
    volume, label = tube
    prompts = _prompts(SlicePrompt(z=4, box=_key_box(label, 4)))
    segmenter = GrabCutSegmenter(**FAST)
    first = segmenter.prepare(volume).segment(prompts).mask
    again = GrabCutSegmenter(**FAST).prepare(volume).segment(prompts).mask
    np.testing.assert_array_equal(first, again)


@pytest.mark.parametrize("z", [0, 9])
def test_key_slice_at_either_end_of_the_volume(z):
    rng = np.random.default_rng(1)
    label = np.zeros((10, 32, 32), dtype=bool)
    label[:, 10:22, 8:20] = True
    volume = volume_from_array(np.where(label, 200.0, 100.0) + rng.normal(0, 8, label.shape))
    result = GrabCutSegmenter(**FAST).prepare(volume).segment(_prompts(SlicePrompt(z=z, box=(8, 10, 19, 21))))
    assert _dice(result.mask, label) > 0.9
    assert result.info["reach"][str(z)] == [0, 9]


def test_propagation_stops_at_the_next_key_slice(tube):
    volume, label = tube
    prompts = _prompts(SlicePrompt(z=3, box=_key_box(label, 3)), SlicePrompt(z=6, box=_key_box(label, 6)))
    result = GrabCutSegmenter(**FAST).prepare(volume).segment(prompts)
    assert result.info["reach"]["3"][1] == 5 and result.info["reach"]["6"][0] == 4
    assert _dice(result.mask, label) > 0.85


def test_points_seed_foreground_and_background(tube):
    volume, label = tube
    # One positive click alone, then with a negative click inside the disk that must stay background.
    positive = (
        GrabCutSegmenter(**FAST).prepare(volume).segment(_prompts(SlicePrompt(z=4, points=((26, 24),), labels=(1,))))
    )
    assert positive.mask[4, 24, 26]
    assert _dice(positive.mask[4], label[4]) > 0.8
    both = _prompts(SlicePrompt(z=4, box=_key_box(label, 4), points=((26, 24), (22, 24)), labels=(1, 0)))
    result = GrabCutSegmenter(**FAST).prepare(volume).segment(both)
    assert result.mask[4, 24, 26] and not result.mask[4, 24, 22]


def test_mask_prompt_initialises_grabcut(tube):
    volume, label = tube
    result = GrabCutSegmenter(**FAST).prepare(volume).segment(_prompts(SlicePrompt(z=4, mask=label[4])))
    assert _dice(result.mask[4], label[4]) > 0.9
    assert _dice(result.mask, label) > 0.85


def test_empty_mask_prompt_gives_nothing(tube):
    volume, _ = tube
    empty = np.zeros(volume.shape[1:], dtype=bool)
    result = GrabCutSegmenter(**FAST).prepare(volume).segment(_prompts(SlicePrompt(z=4, mask=empty)))
    assert not result.mask.any()


def test_only_negative_points_are_refused(tube):
    with pytest.raises(SegmenterError, match="only negative points"):
        GrabCutSegmenter().prepare(tube[0]).segment(_prompts(SlicePrompt(z=4, points=((3, 3),), labels=(0,))))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"margin_mm": -1.0}, "margin_mm"),
        ({"context_mm": float("nan")}, "context_mm"),
        ({"working_size_px": 8}, "working_size_px"),
        ({"iterations": 0}, "iterations"),
        ({"percentiles": (50.0, 10.0)}, "percentiles"),
    ],
)
def test_bad_options_are_refused(options, message):
    with pytest.raises(ConfigError, match=message):
        GrabCutSegmenter(**options)


def test_margin_is_in_mm_along_each_axis():
    volume = volume_from_array(np.ones((2, 40, 40)), (5.0, 0.5, 2.0))
    session = GrabCutSegmenter().prepare(volume)
    assert session._grow((10, 10, 20, 20), 2.0) == (9, 6, 21, 24)  # 1 column (2 mm), 4 rows (0.5 mm)
    assert session._grow((0, 0, 39, 39), 2.0) == (0, 0, 39, 39)  # clipped to the slice


def test_box_filling_the_slice_returns_the_prompt_unchanged():
    image = np.random.default_rng(0).integers(0, 255, (16, 16), dtype=np.uint8)
    init = np.full((16, 16), cv2.GC_PR_FGD, dtype=np.uint8)
    out = grabcut_slice(image, init, (0, 0, 15, 15), working_size_px=16, box_size_px=16, iterations=1, seed=0)
    assert out.all()
    init[:] = cv2.GC_BGD
    assert not grabcut_slice(
        image, init, (0, 0, 15, 15), working_size_px=16, box_size_px=16, iterations=1, seed=0
    ).any()


def test_uint8_window_matches_the_model_window():
    array = np.concatenate([np.zeros(10), np.linspace(1.0, 100.0, 990)]).reshape(1, 10, 100)
    image = to_uint8(array, percentiles=(0.0, 100.0))
    assert image.dtype == np.uint8
    assert image.reshape(-1)[:10].max() == 0  # zeros stay zero
    assert image.reshape(-1)[10] == 0 and image.max() == 255
