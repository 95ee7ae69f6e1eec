"""Slice preprocessing: window, 8-bit path against Pillow and the authors' code, float path, lazy slice stack.

The 8-bit pipelines are checked byte for byte against oracles that are not ours: Pillow's own
``Image.fromarray(u8).convert("RGB").resize((S, S))``, MedSAM2's steps restated line by line (its script is not
importable), and SAM2's own frame loader reading the slices from lossless image files.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from fixtures_recipes import medsam2_images, medsam2_window

from zeroshot.errors import SegmenterError
from zeroshot.segmenters.preprocessing import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    IntensityWindow,
    Preprocessing,
    SliceStack,
    intensity_window,
    normalisation_table,
    prepare_slices,
    resize_uint8,
    scale_to_unit,
    to_preprocessing,
    window_to_uint8,
)

FLOAT = Preprocessing(pipeline="float")

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
    out = prepare_slices(torch.from_numpy(mri), window, image_size=64, preprocessing=FLOAT).numpy()
    assert out.shape == (3, 3, 64, 64) and out.dtype == np.float32
    unit = out * STD + MEAN  # undo the ImageNet normalisation: three identical channels in [0, 1]
    np.testing.assert_allclose(unit[:, 0], unit[:, 1], atol=1e-6)
    np.testing.assert_allclose(unit[:, 0], unit[:, 2], atol=1e-6)
    assert unit.min() >= -1e-6 and unit.max() <= 1 + 1e-6


def test_no_resize_at_the_model_size_is_exact():
    raw = torch.tensor([[[0.0, 2.0], [4.0, 8.0]]])
    out = prepare_slices(raw, IntensityWindow(0.0, 8.0), image_size=2, preprocessing=FLOAT).numpy()
    expected = (np.array([[0.0, 0.25], [0.5, 1.0]]) - MEAN) / STD
    np.testing.assert_allclose(out[0], expected, rtol=1e-6)


@pytest.mark.parametrize("resize", ["bicubic", "bilinear"])
def test_resize_ignores_aspect_and_keeps_a_constant_image_constant(resize):
    raw = torch.full((1, 10, 30), 7.0)
    float_resize = Preprocessing(pipeline="float", resize=resize)
    out = prepare_slices(raw, IntensityWindow(0.0, 14.0), image_size=32, preprocessing=float_resize)
    unit = out.numpy() * STD + MEAN
    assert out.shape == (1, 3, 32, 32)
    np.testing.assert_allclose(unit, 0.5, atol=1e-6)


def test_float_path_with_truncation_is_close_to_medsam2s_pillow_recipe(mri):
    """The float pipeline with MedSAM2's uint8 cast differs from its Pillow resize only by Pillow's rounding."""
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
            preprocessing=Preprocessing(pipeline="float", quantize_uint8=True),
        )[0].numpy()
        levels = np.abs(ours - expected) * STD * 255  # difference in 8-bit grey levels
        # Pillow rounds to uint8 between its two separable passes; that shows only at sharp edges.
        assert levels.mean() < 0.5
        assert np.percentile(levels, 99) < 3.0


@pytest.mark.parametrize("pipeline", ["medsam2", "sam2", "float"])
def test_slice_stack_is_lazy_and_consistent(mri, pipeline):
    stack = SliceStack(mri, image_size=32, preprocessing=Preprocessing(pipeline), device=torch.device("cpu"))
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
        ({"pipeline": "jpeg"}, "pipeline must be one of 'medsam2', 'sam2', 'float'; got 'jpeg'"),
        ({"pipeline": "medsam2", "resize": "bilinear"}, "apply to pipeline='float' only"),
        ({"pipeline": "sam2", "quantize_uint8": True}, "always truncates to uint8"),
    ],
)
def test_invalid_preprocessing_raises(options, message):
    with pytest.raises(SegmenterError, match=message):
        Preprocessing(**options)


def test_describe_is_json():
    record = json.loads(json.dumps(Preprocessing().describe()))
    assert record["pipeline"] == "sam2" and record["percentiles"] == [0.5, 99.5]
    assert record["quantize_uint8"] is False and record["resize"] == "bicubic"


def test_pipeline_names_make_preprocessing():
    assert to_preprocessing("medsam2") == Preprocessing(pipeline="medsam2")
    assert to_preprocessing(FLOAT) is FLOAT
    with pytest.raises(SegmenterError, match="pipeline must be one of"):
        to_preprocessing("uint8")
    with pytest.raises(SegmenterError, match="preprocessing must be a Preprocessing or one of"):
        to_preprocessing(None)
    with pytest.raises(SegmenterError, match="'float' pipeline has no 8-bit normalisation table"):
        normalisation_table(FLOAT)


# --- the 8-bit pipelines against Pillow, MedSAM2's steps and SAM2's frame loader ----------------------------------


@pytest.fixture(scope="module")
def int16_scan() -> np.ndarray:
    """An int16 MR-like volume, non-square slices, zero background and a bright outlier (stored as MR usually is)."""
    rng = np.random.default_rng(4)
    volume = rng.gamma(2.0, 150.0, size=(4, 37, 61)).round().clip(0, 4000).astype(np.int16)
    volume[:, :, :6] = 0
    volume[2, 10, 10] = 32000
    return volume


def test_window_to_uint8_equals_medsam2s_arithmetic(int16_scan):
    """Float32 storage of an int16 scan, window in float64: the same bytes as MedSAM2's step on the raw int16."""
    expected = medsam2_window(int16_scan).astype(np.uint8)
    ours = window_to_uint8(int16_scan.astype(np.float32), intensity_window(int16_scan.astype(np.float32)))
    np.testing.assert_array_equal(ours, expected)
    assert ours.max() == 255 and (ours[:, :, :6] == 0).all()


def test_degenerate_window_to_uint8_is_a_step():
    assert window_to_uint8(np.array([0.0, 1.0, 2.0, 0.5]), IntensityWindow(1.0, 1.0)).tolist() == [0, 255, 255, 0]


@pytest.mark.parametrize("shape", [(37, 61), (61, 37), (600, 300), (64, 64)])
@pytest.mark.parametrize("image_size", [64, 512])
def test_resize_is_pillows_rgb_resize_byte_for_byte(shape, image_size):
    from PIL import Image

    rng = np.random.default_rng(sum(shape) + image_size)
    slices = rng.integers(0, 256, size=(3, *shape), dtype=np.uint8)
    slices[0, : shape[0] // 2] = 0  # hard edges, where 8-bit rounding between the passes shows
    ours = resize_uint8(slices, image_size)
    for got, image in zip(ours, slices, strict=True):
        rgb = np.asarray(Image.fromarray(image).convert("RGB").resize((image_size, image_size)))
        for channel in range(3):
            np.testing.assert_array_equal(got, rgb[..., channel])


@pytest.mark.parametrize("image_size", [64, 512])
def test_medsam2_pipeline_is_medsam2s_model_input_byte_for_byte(int16_scan, image_size):
    stack = SliceStack(
        int16_scan.astype(np.float32), image_size=image_size, preprocessing=Preprocessing("medsam2"), device="cpu"
    )
    expected = medsam2_images(int16_scan, image_size).float()  # SAM2 reads each slice as float32
    ours = stack.batch(0, len(stack))
    assert ours.dtype == torch.float32 and torch.equal(ours, expected)
    assert torch.equal(stack[2], expected[2])
    raw = torch.from_numpy(int16_scan.astype(np.float32))
    direct = prepare_slices(raw, stack.window, image_size=image_size, preprocessing=stack.preprocessing)
    assert torch.equal(direct, expected)


def test_sam2_pipeline_is_sam2s_own_frame_loader_byte_for_byte(int16_scan, tmp_path):
    """SAM2's ``load_video_frames`` reads the 8-bit slices (written losslessly) and normalises them itself."""
    from PIL import Image
    from sam2.utils.misc import load_video_frames

    levels = medsam2_window(int16_scan).astype(np.uint8)
    for index, image in enumerate(levels):
        Image.fromarray(image).save(tmp_path / f"{index}.jpg", format="PNG")  # PNG bytes: no JPEG loss
    frames, height, width = load_video_frames(
        str(tmp_path), image_size=64, offload_video_to_cpu=True, compute_device=torch.device("cpu")
    )
    assert (height, width) == int16_scan.shape[1:]
    stack = SliceStack(int16_scan.astype(np.float32), image_size=64, preprocessing=Preprocessing("sam2"), device="cpu")
    assert torch.equal(stack.batch(0, len(stack)), frames)


def test_the_two_8_bit_pipelines_differ_in_the_last_float32_bit_only():
    medsam2, sam2 = normalisation_table(Preprocessing("medsam2")), normalisation_table(Preprocessing("sam2"))
    assert medsam2.shape == sam2.shape == (3, 256) and medsam2.dtype == sam2.dtype == torch.float32
    assert not torch.equal(medsam2, sam2)
    assert torch.allclose(medsam2, sam2, rtol=0, atol=3e-7)


def test_medsam2_pipeline_on_the_real_mr_scan(real_example):
    """The real int16 MR scan (117 x 91 in-plane, non-square) through MedSAM2's steps and ours, at 512 px."""
    from zeroshot.volume import read_volume

    volume = read_volume(real_example / "image.nii.gz")
    raw = volume.array.astype(np.int16)  # stored as int16: float32 holds it exactly
    assert np.array_equal(raw, volume.array)
    stack = SliceStack(volume.array, image_size=512, preprocessing=Preprocessing("medsam2"), device="cpu")
    middle = volume.num_slices // 2
    expected = medsam2_images(raw, 512)[middle - 1 : middle + 1].float()
    assert torch.equal(stack.batch(middle - 1, middle + 1), expected)
