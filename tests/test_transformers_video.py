"""The transformers backend on a tiny random Sam2VideoModel: machinery only (random weights say nothing of accuracy)."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from zeroshot.errors import SegmenterError
from zeroshot.prompts import SlicePrompt, VolumePrompts
from zeroshot.segmenters.base import Segmenter, Session
from zeroshot.segmenters.transformers_video import TransformersVideoSegmenter, tiny_sam2_video_model
from zeroshot.volume import volume_from_array

DEPTH, HEIGHT, WIDTH = 6, 40, 48


def _prompts(*slices: SlicePrompt) -> VolumePrompts:
    return VolumePrompts(case_id="tiny", strategy="test", seed=0, source="gt", slices=tuple(slices))


@pytest.fixture(scope="module")
def volume():
    rng = np.random.default_rng(0)
    array = rng.normal(100.0, 10.0, size=(DEPTH, HEIGHT, WIDTH))
    array[:, 12:28, 14:34] += 80.0  # a bright cuboid "organ"
    return volume_from_array(array, (3.0, 1.5, 1.5))


@pytest.fixture(scope="module")
def segmenter():
    return TransformersVideoSegmenter(model=tiny_sam2_video_model(image_size=64, seed=0), device="cpu")


@pytest.fixture(scope="module")
def session(segmenter, volume):
    return segmenter.prepare(volume)


BOX_AND_POINTS = _prompts(SlicePrompt(z=3, box=(14, 12, 33, 27), points=((24, 20), (2, 2)), labels=(1, 0)))


def test_segmenter_and_session_satisfy_the_protocols(segmenter, session):
    assert isinstance(segmenter, Segmenter)
    assert isinstance(session, Session)


def test_box_and_points_propagate_in_both_directions(session):
    result = session.segment(BOX_AND_POINTS)
    assert result.mask.shape == (DEPTH, HEIGHT, WIDTH) and result.mask.dtype == bool
    assert result.probabilities.shape == (DEPTH, HEIGHT, WIDTH) and result.probabilities.dtype == np.float32
    assert np.all((result.probabilities >= 0) & (result.probabilities <= 1))
    assert result.info["passes"] == [
        {"direction": "forward", "start": 3, "slices": 3},  # 3, 4, 5
        {"direction": "reverse", "start": 3, "slices": 4},  # 3, 2, 1, 0
    ]
    # mask = logit > 0; sigmoid rounds logits near 0 to exactly 0.5 in float32.
    assert np.all(result.probabilities[result.mask] >= 0.5) and np.all(result.probabilities[~result.mask] <= 0.5)


@pytest.mark.parametrize(
    ("z", "passes"),
    [
        (0, [{"direction": "forward", "start": 0, "slices": DEPTH}]),
        (
            DEPTH - 1,
            [
                {"direction": "forward", "start": DEPTH - 1, "slices": 1},
                {"direction": "reverse", "start": DEPTH - 1, "slices": DEPTH},
            ],
        ),
    ],
)
def test_key_slice_at_either_end_reaches_every_slice(session, z, passes):
    result = session.segment(_prompts(SlicePrompt(z=z, box=(14, 12, 33, 27))))
    assert result.info["passes"] == passes


def test_several_key_slices_are_all_conditioning_slices(session):
    mask = np.zeros((HEIGHT, WIDTH), dtype=bool)
    mask[12:28, 14:34] = True
    result = session.segment(_prompts(SlicePrompt(z=1, mask=mask), SlicePrompt(z=4, points=((24, 20),), labels=(1,))))
    assert result.info["key_slices"] == [1, 4]
    # Forward from the first key slice to the end, reverse from the last key slice to 0.
    assert [p["slices"] for p in result.info["passes"]] == [DEPTH - 1, 5]
    # A mask prompt becomes the output on its slice (SAM2's use_mask_input_as_output, through S/4 logits).
    overlap = np.logical_and(result.mask[1], mask).sum() / np.logical_or(result.mask[1], mask).sum()
    assert overlap > 0.8


def test_each_slice_is_encoded_once_per_volume_across_calls(volume):
    segmenter = TransformersVideoSegmenter(
        model=tiny_sam2_video_model(image_size=64), device="cpu", encoder_batch_size=4
    )
    session = segmenter.prepare(volume)
    first = session.segment(BOX_AND_POINTS)
    second = session.segment(_prompts(SlicePrompt(z=5, box=(10, 10, 20, 20))))
    assert first.info["encoder_slices_total"] == DEPTH
    assert second.info["encoder_slices_total"] == DEPTH
    assert first.info["encoder_slices_segment"] == second.info["encoder_slices_segment"] == 0


def test_results_are_deterministic_and_independent_of_earlier_calls(segmenter, volume, session):
    first = session.segment(BOX_AND_POINTS)
    session.segment(_prompts(SlicePrompt(z=0, box=(0, 0, 10, 10))))
    again = session.segment(BOX_AND_POINTS)
    np.testing.assert_array_equal(first.probabilities, again.probabilities)
    rebuilt = TransformersVideoSegmenter(model=tiny_sam2_video_model(image_size=64, seed=0), device="cpu")
    np.testing.assert_array_equal(rebuilt.prepare(volume).segment(BOX_AND_POINTS).probabilities, first.probabilities)


def test_cached_features_match_transformers_own_lazy_encoding(segmenter, volume):
    cached = segmenter.prepare(volume)
    expected = cached.segment(BOX_AND_POINTS)
    # Empty the feature cache: transformers then encodes each slice itself when it reaches it.
    cached._session.cache.clear_all()
    lazy = cached.segment(BOX_AND_POINTS)
    assert lazy.info["encoder_slices_segment"] > 0
    np.testing.assert_allclose(lazy.probabilities, expected.probabilities, atol=1e-5)


def test_loads_a_saved_model_folder(tmp_path, segmenter, session):
    segmenter.model.save_pretrained(tmp_path / "tiny")
    loaded = TransformersVideoSegmenter(model_id_or_path=tmp_path / "tiny", device="cpu")
    described = loaded.describe()
    assert described["model_type"] == "sam2_video" and len(described["weights_sha256"]) == 64
    result = loaded.prepare(session.volume).segment(BOX_AND_POINTS)
    # Same weights (checked bit for bit by the registry tests); transformers 5.x CPU kernels differ in the last
    # float32 bit between two model instances, so probabilities are compared to 1e-6 and masks exactly.
    expected = session.segment(BOX_AND_POINTS)
    np.testing.assert_allclose(result.probabilities, expected.probabilities, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(result.mask, expected.mask)


def test_describe_is_json_serialisable(segmenter):
    described = segmenter.describe()
    assert described["backend"] == "transformers" and described["image_size"] == 64
    assert described["preprocessing"]["percentiles"] == [0.5, 99.5]
    json.dumps(described)


def test_holes_are_filled_where_sam2_fills_them(segmenter, volume, session, monkeypatch):
    """transformers' predictor has none: every slice's output is filled, a prompted slice's before its memory."""
    from zeroshot.segmenters.hole_filling import small_background

    holed = np.zeros((HEIGHT, WIDTH), dtype=bool)
    holed[4:36, 4:44] = True
    holed[10:16, 10:16] = holed[20:26, 30:36] = False  # about 2 x 2 pixels each in the 16 x 16 logits
    mask_prompt = _prompts(SlicePrompt(z=3, mask=holed))

    assert segmenter.describe()["fill_hole_area"] == 8
    outputs = []
    step = type(segmenter.model)._run_single_frame_inference

    def recording(model, **kwargs):
        out = step(model, **kwargs)
        # the dict itself: the filling wraps this step and fills the same dict afterwards
        outputs.append((kwargs["point_inputs"] is not None or kwargs["mask_inputs"] is not None, out))
        return out

    monkeypatch.setattr(type(segmenter.model), "_run_single_frame_inference", recording)
    filled = session.segment(mask_prompt)
    monkeypatch.undo()
    assert "_run_single_frame_inference" not in vars(segmenter.model)  # the wrapping ends with the call
    assert len(outputs) == DEPTH + 1  # the key slice is prompted twice (reset between the passes)
    for prompted, out in outputs:
        assert not small_background(out["pred_masks"] <= 0, 8).any()
        if prompted:  # its memory is encoded from its filled logits, upsampled as SAM2's preflight does
            upsampled = torch.nn.functional.interpolate(
                out["pred_masks"], size=(64, 64), mode="bilinear", align_corners=False
            )
            assert torch.equal(out["high_res_masks"], upsampled)
    assert sum(prompted for prompted, _ in outputs) == 2
    unfilled_segmenter = TransformersVideoSegmenter(
        model=tiny_sam2_video_model(image_size=64, seed=0), device="cpu", fill_hole_area=0
    )
    unfilled = unfilled_segmenter.prepare(volume).segment(mask_prompt)
    assert unfilled_segmenter.describe()["hole_filling"].startswith("off")
    assert unfilled.mask[3, 8, 8] and not unfilled.mask[3, 12, 12]  # the hole stays open without filling
    assert filled.mask[3, 12, 12] and filled.mask[3, 22, 32]  # ... and is closed with it


def test_mask_with_box_on_one_slice_is_refused(session):
    mask = np.ones((HEIGHT, WIDTH), dtype=bool)
    with pytest.raises(SegmenterError, match="not both"):
        session.segment(_prompts(SlicePrompt(z=2, box=(1, 1, 5, 5), mask=mask)))


def test_closed_session_is_refused(segmenter, volume):
    closed = segmenter.prepare(volume)
    closed.close()
    with pytest.raises(SegmenterError, match="closed"):
        closed.segment(BOX_AND_POINTS)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"propagation": "sideways"}, "propagation"),
        ({"precision": "float16"}, "precision"),
        ({"precision": "bfloat16", "device": "cpu"}, "needs a CUDA"),
        ({"encoder_batch_size": 0}, "encoder_batch_size"),
        ({"logit_threshold": float("inf")}, "logit_threshold"),
        ({"device": "tpu"}, "device"),
    ],
)
def test_bad_options_are_refused(options, message):
    with pytest.raises(SegmenterError, match=message):
        TransformersVideoSegmenter(model=torch.nn.Linear(1, 1), **options)


def test_model_is_required():
    with pytest.raises(SegmenterError, match="model_id_or_path"):
        TransformersVideoSegmenter()


def test_missing_model_folder_is_refused(tmp_path):
    with pytest.raises(SegmenterError, match="cannot read a transformers model config"):
        TransformersVideoSegmenter(model_id_or_path=tmp_path / "nothing-here", device="cpu")


def test_non_video_model_is_refused(tmp_path):
    from transformers import BertConfig

    BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=1, intermediate_size=8).save_pretrained(tmp_path)
    with pytest.raises(SegmenterError, match="'bert' model"):
        TransformersVideoSegmenter(model_id_or_path=tmp_path, device="cpu")
    model = torch.nn.Linear(1, 1)
    model.config = BertConfig()
    with pytest.raises(SegmenterError, match="not a video model"):
        TransformersVideoSegmenter(model=model, device="cpu")


def test_tiny_model_needs_a_multiple_of_64():
    with pytest.raises(SegmenterError, match="multiple of 64"):
        tiny_sam2_video_model(image_size=96)


def test_importing_the_package_does_not_import_model_libraries():
    mine = ("zeroshot.segmenters.transformers_video", "zeroshot.segmenters.grabcut", "zeroshot.segmenters.boxfill")
    code = (
        "import sys, zeroshot.segmenters as s; "
        f"print(sorted(m for m in ('torch', 'transformers', *{mine!r}) if m in sys.modules)); "
        "print(s.TransformersVideoSegmenter.__name__, s.GrabCutSegmenter.__name__, s.BoxFillSegmenter.__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == "[]"
    assert out[1] == "TransformersVideoSegmenter GrabCutSegmenter BoxFillSegmenter"
