"""Error messages print plain numbers, also when the values came from numpy (``0.0``, not ``np.float64(0.0)``)."""

from __future__ import annotations

import doctest

import nibabel as nib
import numpy as np
import pytest

from zeroshot import errors
from zeroshot.errors import ZeroshotError, plain

F = np.float64
I = np.int64  # noqa: E741


def test_plain_examples_run() -> None:
    result = doctest.testmod(errors)
    assert result.attempted >= 2 and result.failed == 0


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ((F(0.0), F(1.3), F(1.0)), "(0.0, 1.3, 1.0)"),
        ((np.float32(1.3),), "(1.3,)"),
        ([I(2), np.bool_(False), "T1"], "[2, False, 'T1']"),
        (np.array([[1, 2], [3, 4]], dtype=np.int16), "[[1, 2], [3, 4]]"),
        (np.array(0.25), "0.25"),
        (F(np.nan), "nan"),
        ("text", "'text'"),
        (2.5, "2.5"),
        ((), "()"),
    ],
)
def test_plain_prints_numbers_as_numbers(value, text) -> None:
    assert plain(value) == text


def zero_spacing_file(tmp_path):
    image = nib.Nifti1Image(np.zeros((3, 4, 5), np.int16), np.diag([1.0, 1.3, 1.0, 1.0]))
    image.header["pixdim"][1:4] = [0.0, 1.3, 1.0]
    path = tmp_path / "flat.nii.gz"
    nib.save(image, path)
    return path


def read_zero_spacing(tmp_path):
    from zeroshot.volume import read_volume

    read_volume(zero_spacing_file(tmp_path))


def volume_with_numpy_spacing(tmp_path):
    from zeroshot.volume import volume_from_array

    volume_from_array(np.zeros((2, 2, 2)), (F(0.0), F(1.3), F(1.0)))


def score_with_numpy_spacing(tmp_path):
    from zeroshot.metrics import score_case

    score_case(np.ones((2, 2, 2), bool), np.ones((2, 2, 2), bool), (F(0.0), F(1.3), F(1.0)))


def score_with_numpy_tolerances(tmp_path):
    from zeroshot.metrics import score_case

    score_case(np.ones((2, 2, 2), bool), np.ones((2, 2, 2), bool), (1, 1, 1), tolerances_mm=np.array([2.0, -1.0]))


def bootstrap_with_numpy_confidence(tmp_path):
    from zeroshot.stats import bootstrap_ci

    bootstrap_ci([0.1, 0.2], confidence=F(1.5))


def eval_with_numpy_seeds(tmp_path):
    from zeroshot.runner import EvalConfig

    EvalConfig(tmp_path, tmp_path, ("box-fill",), ("box-mid",), seeds=(I(0), I(1)))


def clicks_with_numpy_rounds(tmp_path):
    from zeroshot.interactive import ClickSettings

    ClickSettings(rounds=F(2.5))


def grabcut_with_numpy_percentiles(tmp_path):
    from zeroshot.segmenters.grabcut import GrabCutSegmenter

    GrabCutSegmenter(percentiles=(F(99.5), F(0.5)))


def preprocessing_with_numpy_std(tmp_path):
    from zeroshot.segmenters.preprocessing import Preprocessing

    Preprocessing(std=(F(0.2), F(0.0), F(0.2)))


def prompt_with_numpy_box(tmp_path):
    from zeroshot.prompts import SlicePrompt

    SlicePrompt(z=0, box=(I(5), I(2), I(3), I(4)))


def prompts_with_numpy_seed(tmp_path):
    from zeroshot.prompts import make_prompts, strategy_from_dict
    from zeroshot.volume import volume_from_array

    strategy = strategy_from_dict({"prompt": {"type": "box"}}, name="box-mid")
    volume = volume_from_array(np.zeros((4, 4, 4)))
    make_prompts(strategy, case_id="c1", volume=volume, source_mask=np.ones((4, 4, 4), bool), seed=I(-1))


def strategy_with_numpy_count(tmp_path):
    from zeroshot.prompts import strategy_from_dict

    strategy_from_dict({"key_slices": {"rule": "spread", "count": I(3)}, "prompt": {"type": "box"}}, name="x")


def after_clicks_with_numpy_values(tmp_path):
    from zeroshot.compare.clicks import check_after_clicks

    check_after_clicks([I(0), F(1.5)])


def phantom_with_numpy_shape(tmp_path):
    from zeroshot.phantom import make_phantom_case

    make_phantom_case(0, shape=(I(4), I(32), I(32)))


def supervised_with_numpy_steps(tmp_path):
    from zeroshot.supervised import SliceCNNSettings

    SliceCNNSettings(steps=F(3.0))


def sam2_with_numpy_image_size(tmp_path):
    from zeroshot.segmenters.sam2_video import Sam2Segmenter

    Sam2Segmenter(image_size=I(100))


def tiny_transformers_with_numpy_image_size(tmp_path):
    from zeroshot.segmenters.transformers_video import tiny_sam2_video_model

    tiny_sam2_video_model(image_size=F(100.0))


def transformers_with_numpy_batch(tmp_path):
    from zeroshot.segmenters.transformers_video import TransformersVideoSegmenter

    TransformersVideoSegmenter(model_id_or_path="x", encoder_batch_size=F(0.5))


@pytest.mark.parametrize(
    ("make_error", "expected"),
    [
        (read_zero_spacing, "flat.nii.gz: voxel spacing must be positive, found (0.0, 1.3, 1.0) mm"),
        (volume_with_numpy_spacing, "spacing must be three positive mm values in (z, y, x) order, got (0.0, 1.3, 1.0)"),
        (score_with_numpy_spacing, "spacing_mm: expected three positive mm values in (z, y, x) order, got (0.0, 1.3"),
        (score_with_numpy_tolerances, "tolerances_mm: expected one or more positive mm values, got [2.0, -1.0]"),
        (bootstrap_with_numpy_confidence, "confidence: expected a fraction in (0, 1), found 1.5"),
        (eval_with_numpy_seeds, "--seeds: seeds are whole numbers from 0 to 2**63 - 1 = 9223372036854775807, got 0"),
        (clicks_with_numpy_rounds, "clicks: rounds must be a whole number >= 0, got 2.5"),
        (grabcut_with_numpy_percentiles, "grabcut: percentiles must satisfy 0 <= low < high <= 100, got (99.5, 0.5)"),
        (preprocessing_with_numpy_std, "mean and std need three values each, std positive; got "),
        (prompt_with_numpy_box, "slice 0: box (5, 2, 3, 4) has x1 < x0 or y1 < y0"),
        (prompts_with_numpy_seed, "case c1: seed must be a non-negative integer, got -1"),
        (strategy_with_numpy_count, "key_slices.count: expected a whole number, got 3"),
        (after_clicks_with_numpy_values, "after_clicks (--after-clicks): expected whole numbers >= 0, found 1.5"),
        (phantom_with_numpy_shape, "phantom shape must be three sizes of at least 8 voxels, got (4, 32, 32)"),
        (sam2_with_numpy_image_size, "image_size must be a multiple of 32 and at least 64, got 100"),
        (tiny_transformers_with_numpy_image_size, "image_size must be a positive multiple of 64, got 100.0"),
        (transformers_with_numpy_batch, "encoder_batch_size must be a positive integer, got 0.5"),
        (supervised_with_numpy_steps, "SliceCNNSettings.steps: expected a positive integer, got 3.0"),
    ],
    ids=lambda v: getattr(v, "__name__", "")[:40] or None,
)
def test_messages_print_plain_numbers(tmp_path, make_error, expected) -> None:
    with pytest.raises((ZeroshotError, ValueError)) as info:
        make_error(tmp_path)
    message = str(info.value)
    assert expected in message
    assert "np." not in message
