"""MedSAM2-style slice preprocessing: window, scaling, resize, normalisation, lazy slice stack."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from zeroshot.errors import SegmenterError
from zeroshot.segmenters.preprocessing import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    IntensityWindow,
    Preprocessing,
    SliceStack,
    intensity_window,
    prepare_slices,
    scale_to_unit,
)

MEAN = np.asarray(IMAGENET_MEAN)[:, None, None]
STD = np.asarray(IMAGENET_STD)[:, None, None]


@pytest.fixture(scope="module")
def mri() -> np.ndarray:
    rng = np.random.default_rng(0)
    volume = rng.gamma(2.0, 100.0, size=(3, 40, 56)).astype(np.float32)
    volume[:, :5] = 0.0  # background outside the field of view
    volume[1, 20, 20] = 1e6  # an outlier the percentile window must clip
    return volume


def test_window_uses_positive_voxels_only(mri):
    window = intensity_window(mri)
    positive = mri[mri > 0].astype(np.float64)
    assert window.low == pytest.approx(np.percentile(positive, 0.5))
    assert window.high == pytest.approx(np.percentile(positive, 99.5))
    assert window.high < 1e6


def test_window_falls_back_to_all_voxels_without_positive_ones():
    window = intensity_window(np.array([[[-3.0, -1.0, 0.0]]]), percentiles=(0.0, 100.0))
    assert window == IntensityWindow(low=-3.0, high=0.0)


def test_scale_clips_scales_and_keeps_zeros():
    raw = torch.tensor([[0.0, 5.0, 10.0, 15.0, 20.0, 30.0, -4.0]])
    unit = scale_to_unit(raw, IntensityWindow(10.0, 20.0))
    assert unit.tolist() == [[0.0, 0.0, 0.0, 0.5, 1.0, 1.0, 0.0]]
    assert unit.dtype == torch.float32


def test_zero_stays_zero_even_inside_the_window():
    unit = scale_to_unit(torch.tensor([-10.0, 0.0, 10.0]), IntensityWindow(-10.0, 10.0))
    assert unit.tolist() == [0.0, 0.0, 1.0]


def test_degenerate_window_is_a_step():
    unit = scale_to_unit(torch.tensor([0.0, 1.0, 1.0, 0.5]), IntensityWindow(1.0, 1.0))
    assert unit.tolist() == [0.0, 1.0, 1.0, 0.0]


def test_float_precision_is_kept_unless_quantisation_is_asked():
    raw = torch.tensor([10.0 + 1e-3, 10.5])
    window = IntensityWindow(10.0, 11.0)
    fine = scale_to_unit(raw, window)
    coarse = scale_to_unit(raw, window, quantize_uint8=True)
    assert fine[0].item() == pytest.approx(1e-3, rel=1e-3)
    assert coarse.tolist() == pytest.approx([0.0, 127 / 255])  # MedSAM2's uint8 cast truncates 127.5 to 127


def test_prepared_slices_shape_channels_and_normalisation(mri):
    window = intensity_window(mri)
    out = prepare_slices(torch.from_numpy(mri), window, image_size=64, preprocessing=Preprocessing()).numpy()
    assert out.shape == (3, 3, 64, 64) and out.dtype == np.float32
    unit = out * STD + MEAN  # undo the ImageNet normalisation: three identical channels in [0, 1]
    np.testing.assert_allclose(unit[:, 0], unit[:, 1], atol=1e-6)
    np.testing.assert_allclose(unit[:, 0], unit[:, 2], atol=1e-6)
    assert unit.min() >= -1e-6 and unit.max() <= 1 + 1e-6


def test_no_resize_at_the_model_size_is_exact():
    raw = torch.tensor([[[0.0, 2.0], [4.0, 8.0]]])
    out = prepare_slices(raw, IntensityWindow(0.0, 8.0), image_size=2, preprocessing=Preprocessing()).numpy()
    expected = (np.array([[0.0, 0.25], [0.5, 1.0]]) - MEAN) / STD
    np.testing.assert_allclose(out[0], expected, rtol=1e-6)


@pytest.mark.parametrize("resize", ["bicubic", "bilinear"])
def test_resize_ignores_aspect_and_keeps_a_constant_image_constant(resize):
    raw = torch.full((1, 10, 30), 7.0)
    out = prepare_slices(raw, IntensityWindow(0.0, 14.0), image_size=32, preprocessing=Preprocessing(resize=resize))
    unit = out.numpy() * STD + MEAN
    assert out.shape == (1, 3, 32, 32)
    np.testing.assert_allclose(unit, 0.5, atol=1e-6)


def test_matches_medsam2_pillow_recipe(mri):
    """Oracle: MedSAM2's own steps (uint8 cast, Pillow RGB resize, /255, ImageNet) on one slice."""
    from PIL import Image

    image = mri[:1]
    positive = image[image > 0]
    lo, hi = np.percentile(positive, 0.5), np.percentile(positive, 99.5)
    scaled = (np.clip(image, lo, hi) - lo) / (hi - lo) * 255.0
    scaled[image == 0] = 0
    for size in (128, 32):  # up- and down-sampling
        rgb = np.asarray(Image.fromarray(np.uint8(scaled[0])).convert("RGB").resize((size, size))) / 255.0
        expected = (rgb.transpose(2, 0, 1) - MEAN) / STD
        ours = prepare_slices(
            torch.from_numpy(image),
            intensity_window(image),
            image_size=size,
            preprocessing=Preprocessing(quantize_uint8=True),
        )[0].numpy()
        levels = np.abs(ours - expected) * STD * 255  # difference in 8-bit grey levels
        # Pillow rounds to uint8 between its two separable passes; that shows only at sharp edges.
        assert levels.mean() < 0.5
        assert np.percentile(levels, 99) < 3.0


def test_slice_stack_is_lazy_and_consistent(mri):
    stack = SliceStack(mri, image_size=32, preprocessing=Preprocessing(), device=torch.device("cpu"))
    assert len(stack) == 3
    batch = stack.batch(0, 3)
    assert batch.shape == (3, 3, 32, 32)
    torch.testing.assert_close(stack[1], batch[1])
    torch.testing.assert_close(stack[-1], batch[2])
    assert stack.window == intensity_window(mri)


def test_slice_stack_index_outside_raises(mri):
    stack = SliceStack(mri, image_size=32, preprocessing=Preprocessing(), device=torch.device("cpu"))
    with pytest.raises(IndexError, match="outside the volume's 3 slices"):
        stack[3]


def test_slice_stack_needs_a_volume():
    with pytest.raises(SegmenterError, match=r"expected a \(z, y, x\) volume"):
        SliceStack(np.zeros((4, 4)), image_size=32, preprocessing=Preprocessing(), device=torch.device("cpu"))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"percentiles": (99.5, 0.5)}, "percentiles must satisfy"),
        ({"percentiles": (-1.0, 50.0)}, "percentiles must satisfy"),
        ({"resize": "nearest"}, "resize must be"),
        ({"std": (0.2, 0.0, 0.2)}, "std positive"),
    ],
)
def test_invalid_preprocessing_raises(options, message):
    with pytest.raises(SegmenterError, match=message):
        Preprocessing(**options)


def test_describe_is_json():
    record = json.loads(json.dumps(Preprocessing().describe()))
    assert record["percentiles"] == [0.5, 99.5]
    assert record["quantize_uint8"] is False
