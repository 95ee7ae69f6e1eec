"""SAM2 video segmenter on CPU with random weights: machinery, not accuracy.

A SAM2.1-tiny model with random weights at 128 px segments a 14-slice phantom. Random weights make arbitrary
masks, so the tests check what does not depend on the weights: every slice is reached in both directions (a
slice no pass reached has probability exactly 0), a mask prompt is reproduced on its key slice (SAM2 uses it as
the output there), several key slices each condition their own slice, the image encoder runs once per slice per
session, runs are repeatable, and the fast engine agrees with SAM2's own propagation.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from scipy import ndimage

from zeroshot.checkpoints import read_checkpoint_list
from zeroshot.errors import CheckpointError, PromptError, SegmenterError
from zeroshot.phantom import make_phantom_case
from zeroshot.prompts.types import NEGATIVE, POSITIVE, SlicePrompt, VolumePrompts
from zeroshot.segmenters import build_segmenter
from zeroshot.segmenters.base import Segmentation, Segmenter, Session
from zeroshot.segmenters.postprocess import fill_holes_per_slice, keep_largest_component, postprocess_mask
from zeroshot.segmenters.prompt_coords import box_to_model, points_to_model
from zeroshot.segmenters.sam2_lean_step import LeanStep as _LeanStep
from zeroshot.segmenters.sam2_lockstep_plan import MemoryRules, Stream, plan_lockstep
from zeroshot.segmenters.sam2_video import Sam2Segmenter, resolve_config, resolve_device
from zeroshot.volume import volume_from_array

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIZE = 128
SHAPE = (14, 48, 64)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


def ellipse(shape_yx=SHAPE[1:], centre=(24, 30), radii=(10, 14)) -> np.ndarray:
    y, x = np.ogrid[: shape_yx[0], : shape_yx[1]]
    return ((y - centre[0]) / radii[0]) ** 2 + ((x - centre[1]) / radii[1]) ** 2 <= 1.0


def prompts(*slices: SlicePrompt, strategy: str = "test") -> VolumePrompts:
    return VolumePrompts("phantom_000", strategy, 0, "gt", tuple(slices))


@pytest.fixture(scope="module")
def case():
    return make_phantom_case(0, shape=SHAPE)


@pytest.fixture(scope="module")
def volume(case):
    return case.volumes["T1"]


@pytest.fixture(scope="module")
def key(case) -> int:
    zs = np.flatnonzero(case.label.any(axis=(1, 2)))
    return int(zs[len(zs) // 2])


@pytest.fixture(scope="module")
def box_prompts(case, key) -> VolumePrompts:
    ys, xs = np.nonzero(case.label[key])
    return prompts(SlicePrompt(z=key, box=(int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))))


@pytest.fixture(scope="module")
def fast():
    return Sam2Segmenter(image_size=SIZE, device="cpu")


@pytest.fixture(scope="module")
def reference():
    return Sam2Segmenter(image_size=SIZE, device="cpu", engine="reference")


@pytest.fixture(scope="module")
def serial():
    return Sam2Segmenter(image_size=SIZE, device="cpu", engine="fast-serial")


@pytest.fixture(scope="module")
def serial_session(serial, volume):
    with serial.prepare(volume) as prepared:
        yield prepared


@pytest.fixture(scope="module")
def session(fast, volume):
    with fast.prepare(volume) as prepared:
        yield prepared


@pytest.fixture(scope="module")
def reference_session(reference, volume):
    with reference.prepare(volume) as prepared:
        yield prepared


def reached_slices(result: Segmentation) -> np.ndarray:
    """Slices some pass produced logits for (unreached slices keep probability exactly 0)."""
    return np.flatnonzero((result.probabilities > 0).any(axis=(1, 2)))


# --- the segmenter protocol and one box prompt ----------------------------------------------------------------------


def test_box_prompt_end_to_end(fast, session, box_prompts, key):
    assert isinstance(fast, Segmenter) and isinstance(session, Session)
    result = session.segment(box_prompts)
    assert result.mask.shape == SHAPE and result.mask.dtype == bool
    assert result.probabilities.shape == SHAPE and result.probabilities.dtype == np.float32
    assert 0.0 <= result.probabilities.min() and result.probabilities.max() <= 1.0
    np.testing.assert_array_equal(result.mask, result.probabilities > 0.5)  # threshold 0 on logits, no post-proc
    assert result.info["passes"] == [
        {"direction": "forward", "start": key, "slices": SHAPE[0] - key},
        {"direction": "reverse", "start": key, "slices": key + 1},
    ]
    assert reached_slices(result).tolist() == list(range(SHAPE[0]))  # both sides of the key slice
    assert result.info["propagation"] == "reset" and result.info["engine"] == "fast"
    json.dumps(result.info)


def test_same_inputs_give_the_same_result(session, box_prompts, volume):
    first = session.segment(box_prompts)
    again = session.segment(box_prompts)
    np.testing.assert_array_equal(first.mask, again.mask)
    np.testing.assert_array_equal(first.probabilities, again.probabilities)
    rebuilt = Sam2Segmenter(image_size=SIZE, device="cpu")  # same seed, same random weights
    with rebuilt.prepare(volume) as fresh:
        np.testing.assert_array_equal(fresh.segment(box_prompts).probabilities, first.probabilities)


def test_encoder_runs_once_per_slice_per_session(session, box_prompts, key):
    """An ablation and a round of corrective clicks reuse the features: no image encoding after prepare()."""
    session.segment(box_prompts)
    box = box_prompts.slices[0].box
    clicks = prompts(
        SlicePrompt(z=key, box=box, points=((box[0], box[1]),), labels=(NEGATIVE,)),
        SlicePrompt(z=min(key + 2, SHAPE[0] - 1), points=((30, 24),), labels=(POSITIVE,)),
    )
    result = session.segment(clicks)
    assert result.info["encoder_slices_total"] == SHAPE[0]
    assert result.info["encoder_slices_segment"] == 0


def test_reference_engine_encodes_inside_propagation(reference_session, box_prompts, key):
    result = reference_session.segment(box_prompts)
    # every slice of both passes, plus the key slice once more when the prompt is added again after the reset
    assert result.info["encoder_slices_segment"] == SHAPE[0] + 1
    assert reached_slices(result).tolist() == list(range(SHAPE[0]))


# --- prompt kinds ---------------------------------------------------------------------------------------------------


def test_mask_prompt_is_reproduced_on_its_key_slice(session, key):
    mask = ellipse()
    result = session.segment(prompts(SlicePrompt(z=key, mask=mask)))
    # SAM2 uses a mask prompt as the output of its slice (through its S/4 logits, hence not bit-exact).
    assert dice(result.mask[key], mask) > 0.9
    assert reached_slices(result).tolist() == list(range(SHAPE[0]))


def test_point_prompts(session, key):
    points = ((30, 24), (5, 5))
    result = session.segment(prompts(SlicePrompt(z=key, points=points, labels=(POSITIVE, NEGATIVE))))
    assert result.mask.shape == SHAPE
    assert reached_slices(result).tolist() == list(range(SHAPE[0]))


def test_box_and_points_differ_from_box_alone(session, box_prompts, key):
    box = box_prompts.slices[0].box
    alone = session.segment(box_prompts)
    with_click = session.segment(prompts(SlicePrompt(z=key, box=box, points=((box[0], box[1]),), labels=(NEGATIVE,))))
    assert not np.array_equal(alone.probabilities[key], with_click.probabilities[key])


def test_mask_with_points_refines_the_mask(session, key):
    """A mask from an earlier round plus a click: the mask seeds SAM's decoder instead of being the output."""
    mask = ellipse()
    mask_only = session.segment(prompts(SlicePrompt(z=key, mask=mask)))
    refined = session.segment(prompts(SlicePrompt(z=key, mask=mask, points=((30, 24),), labels=(POSITIVE,))))
    assert not np.array_equal(mask_only.probabilities[key], refined.probabilities[key])
    assert refined.info["encoder_slices_segment"] == 0


def test_three_key_slices_each_condition_their_slice(session):
    keys = (3, 7, 11)
    masks = {3: ellipse(centre=(14, 16), radii=(8, 10)), 7: ellipse(), 11: ellipse(centre=(32, 44), radii=(9, 12))}
    result = session.segment(prompts(*(SlicePrompt(z=z, mask=masks[z]) for z in keys)))
    assert result.info["key_slices"] == list(keys)
    assert result.info["passes"] == [
        {"direction": "forward", "start": 3, "slices": SHAPE[0] - 3},
        {"direction": "reverse", "start": 11, "slices": 12},
    ]
    for z in keys:
        assert dice(result.mask[z], masks[z]) > 0.9, z
    assert reached_slices(result).tolist() == list(range(SHAPE[0]))


@pytest.mark.parametrize("z", [0, SHAPE[0] - 1])
def test_key_slice_at_either_end(session, z):
    mask = ellipse()
    result = session.segment(prompts(SlicePrompt(z=z, mask=mask)))
    if z == 0:  # SAM2 cannot reverse from slice 0: the forward pass alone covers the volume
        assert result.info["passes"] == [{"direction": "forward", "start": 0, "slices": SHAPE[0]}]
    else:
        assert result.info["passes"] == [
            {"direction": "forward", "start": z, "slices": 1},
            {"direction": "reverse", "start": z, "slices": SHAPE[0]},
        ]
    assert dice(result.mask[z], mask) > 0.9
    assert reached_slices(result).tolist() == list(range(SHAPE[0]))


def test_prompt_outside_the_volume_raises(session):
    with pytest.raises(PromptError, match="outside the volume's 14 slices"):
        session.segment(prompts(SlicePrompt(z=14, box=(1, 1, 5, 5))))
    with pytest.raises(PromptError, match="leaves the 64x48"):
        session.segment(prompts(SlicePrompt(z=3, box=(1, 1, 64, 5))))


# --- engines and policies -------------------------------------------------------------------------------------------


def assert_agree(result: Segmentation, expected: Segmentation) -> None:
    """Float32 agreement: masks (Dice), probabilities within 1e-4, unsaturated logits within 1e-2."""
    assert result.info["passes"] == expected.info["passes"]
    assert dice(result.mask, expected.mask) >= 0.999
    np.testing.assert_allclose(result.probabilities, expected.probabilities, atol=1e-4)
    p_a = np.clip(result.probabilities.astype(np.float64), 1e-6, 1 - 1e-6)
    p_b = np.clip(expected.probabilities.astype(np.float64), 1e-6, 1 - 1e-6)
    assert np.abs(np.log(p_a / (1 - p_a)) - np.log(p_b / (1 - p_b))).max() < 1e-2


AGREEMENT_PROMPTS = {
    "box": lambda box, key: prompts(SlicePrompt(z=key, box=box)),
    "points": lambda box, key: prompts(SlicePrompt(z=key, points=((30, 24), (5, 5)), labels=(POSITIVE, NEGATIVE))),
    "mask": lambda box, key: prompts(SlicePrompt(z=key, mask=ellipse())),
    "three-keys": lambda box, key: prompts(
        SlicePrompt(z=2, mask=ellipse()), SlicePrompt(z=6, box=box), SlicePrompt(z=11, mask=ellipse(radii=(8, 9)))
    ),
    "first-slice": lambda box, key: prompts(SlicePrompt(z=0, box=box)),
    "last-slice": lambda box, key: prompts(SlicePrompt(z=SHAPE[0] - 1, mask=ellipse())),
}


@pytest.mark.parametrize("kind", list(AGREEMENT_PROMPTS))
def test_engines_agree_with_reference(session, serial_session, reference_session, box_prompts, key, kind):
    """Lockstep (``fast``), ``fast-serial`` and SAM2's own propagation give the same probabilities in float32."""
    prompt_set = AGREEMENT_PROMPTS[kind](box_prompts.slices[0].box, key)
    expected = reference_session.segment(prompt_set)
    lockstep = session.segment(prompt_set)
    assert lockstep.info["lockstep"] and lockstep.info["engine"] == "fast"
    assert_agree(lockstep, expected)
    serial_result = serial_session.segment(prompt_set)
    assert not serial_result.info["lockstep"] and "lockstep_fallback" not in serial_result.info
    assert_agree(serial_result, expected)


def test_hole_filling_acts_in_every_engine(session, serial_session, reference_session, box_prompts, monkeypatch):
    """The agreement above holds with holes being filled: every engine fills some, and the logits change."""
    import zeroshot.segmenters.hole_filling as hole_filling

    filled = []
    original = hole_filling.small_background

    def counting(background, max_area):
        holes = original(background, max_area)
        filled.append(int(holes.sum()))
        return holes

    monkeypatch.setattr(hole_filling, "small_background", counting)
    results = {}
    for name, prepared in (("reference", reference_session), ("fast-serial", serial_session), ("fast", session)):
        filled.clear()
        results[name] = prepared.segment(box_prompts)
        assert results[name].info["fill_hole_area"] == 8
        assert sum(filled) > 0, name
    monkeypatch.undo()
    off = Sam2Segmenter(image_size=SIZE, device="cpu", fill_hole_area=0)
    with off.prepare(session.volume) as unfilled:
        without = unfilled.segment(box_prompts)
    assert without.info["fill_hole_area"] == 0
    assert not np.allclose(without.probabilities, results["reference"].probabilities, atol=1e-3)
    assert_agree(results["fast"], results["reference"])


def test_lockstep_with_sam2_modules_agrees_with_reference(session, reference_session, box_prompts, key, monkeypatch):
    """The restated step (``_LeanStep``) serves SAM2.1; a model it does not restate runs SAM2's own modules."""
    assert _LeanStep.supports(session.model)
    prompt_set = AGREEMENT_PROMPTS["three-keys"](box_prompts.slices[0].box, key)
    monkeypatch.setattr(_LeanStep, "supports", staticmethod(lambda model: False))
    result = session.segment(prompt_set)
    assert result.info["lockstep"]
    assert_agree(result, reference_session.segment(prompt_set))


def test_segment_many_equals_separate_calls(session, box_prompts, key):
    box = box_prompts.slices[0].box
    kinds = ("box", "three-keys", "first-slice", "last-slice")  # different key slices and pass lengths
    prompt_sets = [AGREEMENT_PROMPTS[kind](box, key) for kind in kinds]
    together = session.segment_many(prompt_sets)
    assert len(together) == len(prompt_sets)
    for prompt_set, result in zip(prompt_sets, together, strict=True):
        alone = session.segment(prompt_set)
        assert result.info["prompt_sets_in_call"] == len(prompt_sets) and alone.info["prompt_sets_in_call"] == 1
        assert result.info["key_slices"] == list(prompt_set.key_slices)
        assert result.info["encoder_slices_segment"] == 0 and result.info["encoder_slices_total"] == SHAPE[0]
        assert_agree(result, alone)
    assert session.segment_many([]) == []


def test_segment_many_validates_every_prompt_set_first(session, box_prompts):
    with pytest.raises(PromptError, match="outside the volume's 14 slices"):
        session.segment_many([box_prompts, prompts(SlicePrompt(z=20, box=(1, 1, 5, 5)))])


def test_lockstep_plan_batches_the_two_passes(fast):
    """One key slice in the middle: forward and reverse share every step until the shorter pass ends."""
    rules = MemoryRules.of(fast.model)
    assert (rules.num_maskmem, rules.max_obj_ptrs, rules.stride) == (7, 16, 1)
    forward = Stream(order=tuple(range(5, 14)), cond_slices=(5,), reverse=False, num_slices=14)
    reverse = Stream(order=tuple(range(5, -1, -1)), cond_slices=(5,), reverse=True, num_slices=14)
    plan = plan_lockstep([forward, reverse], rules)
    assert len(plan) == 9 and plan[0] == []  # step 0: the key slice itself comes from the prompt
    for step in range(1, 6):
        (group,) = plan[step]
        assert group.streams == (0, 1) and group.slices == (5 + step, 5 - step)
        # the key slice plus the slices produced so far (at most num_maskmem - 1 of them)
        assert [len(row) for row in group.memory_slots] == [1 + min(step - 1, 6)] * 2
        assert group.memory_tpos[0][0] == 6  # conditioning frames take the last temporal encoding
        assert group.pointer_distance[0][0] == step and group.pointer_distance[1][0] == step
    assert [g.streams for g in plan[6]] == [(0,)]
    # slot = stream * 14 + slice: at slice 2 the reverse stream reads its key slice, then its own slices 4 and 3
    # (SAM2's order: conditioning frames, then the farthest memory first)
    assert plan[3][0].memory_slots[1] == (14 + 5, 14 + 4, 14 + 3)
    assert plan[3][0].memory_tpos[1] == (6, 1, 0)


def test_lockstep_plan_skips_conditioning_slices_and_splits_shapes(fast):
    rules = MemoryRules.of(fast.model)
    two_keys = Stream(order=tuple(range(2, 14)), cond_slices=(2, 4), reverse=False, num_slices=14)
    one_key = Stream(order=tuple(range(2, 14)), cond_slices=(2,), reverse=False, num_slices=14)
    plan = plan_lockstep([two_keys, one_key], rules)
    assert [g.streams for g in plan[2]] == [(1,)]  # slice 4 is a key slice of stream 0: nothing to compute
    # slice 3: stream 0 attends to both key slices, stream 1 to one; different shapes, separate batches
    assert [(g.streams, len(g.memory_slots[0])) for g in plan[1]] == [((0,), 2), ((1,), 1)]
    # a key slice ahead of the current slice gives a memory but no object pointer (pointers only from the past)
    assert plan[1][0].pointer_slots == ((2,),)


def test_continuous_policy_reuses_forward_memories(volume, box_prompts, session):
    segmenter = Sam2Segmenter(image_size=SIZE, device="cpu", propagation="continuous")
    with segmenter.prepare(volume) as continuous:
        result = continuous.segment(box_prompts)
    reset = session.segment(box_prompts)
    assert result.info["propagation"] == "continuous"
    assert [p["direction"] for p in result.info["passes"]] == ["forward", "reverse"]
    # the passes depend on each other: the fast engine runs them in turn and says why
    assert not result.info["lockstep"] and "continuous policy" in result.info["lockstep_fallback"]
    # the forward pass is the same (batched with the reverse pass under reset: equal to float noise); the reverse
    # pass attends to forward memories, so some logits differ
    key = box_prompts.key_slices[0]
    np.testing.assert_allclose(result.probabilities[key + 1 :], reset.probabilities[key + 1 :], atol=1e-5)
    assert not np.array_equal(result.probabilities[:key], reset.probabilities[:key])


def test_postprocessing_options(volume, key):
    segmenter = Sam2Segmenter(image_size=SIZE, device="cpu", largest_component=True, fill_enclosed_holes=True)
    with segmenter.prepare(volume) as prepared:
        ring = ellipse() & ~ellipse(radii=(4, 5))
        stray = np.zeros(SHAPE[1:], dtype=bool)
        stray[2:5, 55:60] = True
        result = prepared.segment(prompts(SlicePrompt(z=key, mask=ring | stray)))
    _, count = ndimage.label(result.mask, structure=np.ones((3, 3, 3)))
    assert count <= 1
    assert result.info["largest_component"] and result.info["fill_enclosed_holes"]
    for z in range(SHAPE[0]):
        np.testing.assert_array_equal(ndimage.binary_fill_holes(result.mask[z]), result.mask[z])


# --- building -------------------------------------------------------------------------------------------------------


def test_describe_records_the_resolved_configuration(fast):
    record = json.loads(json.dumps(fast.describe()))
    assert record["config"] == "configs/sam2.1/sam2.1_hiera_t.yaml"
    assert "random initialisation (seed 0)" in record["weights"] and record["checkpoint_sha256"] is None
    assert "++model.image_size=128" in record["hydra_overrides"]
    assert "++model.fill_hole_area=0" in record["hydra_overrides"]
    assert record["resolved_config"]["model"]["image_size"] == SIZE
    assert record["resolved_config"]["model"]["memory_attention"]["layer"]["self_attention"]["feat_sizes"] == [8, 8]
    assert record["precision"] == "float32" and record["device"] == "cpu" and record["tf32"] is False
    assert record["coords"] == "official" and record["fill_hole_area"] == 8
    assert record["preprocessing"]["pipeline"] == "sam2"
    assert record["image_size"] == SIZE and record["parameters"] > 30_000_000
    assert record["encoder_batch_size"] == 32  # the largest automatic batch


@pytest.mark.parametrize(("image_size", "batch"), [(512, 32), (1024, 8), (1024 + 512, 3)])
def test_automatic_encoder_batch_holds_the_pixels_of_8_slices_at_1024(image_size, batch):
    assert Sam2Segmenter(image_size=image_size, device="cpu").encoder_batch_size == batch
    assert Sam2Segmenter(image_size=image_size, device="cpu", encoder_batch_size=5).encoder_batch_size == 5


def test_random_weights_are_seeded_and_leave_global_rng_alone(fast):
    before = torch.random.get_rng_state()
    same = Sam2Segmenter(image_size=SIZE, device="cpu", seed=0)
    other = Sam2Segmenter(image_size=SIZE, device="cpu", seed=1)
    assert torch.equal(torch.random.get_rng_state(), before)
    a, b, c = (m.model.state_dict()["sam_mask_decoder.iou_token.weight"] for m in (fast, same, other))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_checkpoint_loads_and_is_hashed(tmp_path, volume, box_prompts):
    source = Sam2Segmenter(image_size=SIZE, device="cpu", seed=7)
    path = tmp_path / "seed7.pt"
    torch.save({"model": source.model.state_dict()}, path)
    loaded = Sam2Segmenter(image_size=SIZE, device="cpu", seed=0, checkpoint=path)
    assert len(loaded.describe()["checkpoint_sha256"]) == 64
    assert loaded.describe()["weights"] == f"checkpoint {path}"
    with source.prepare(volume) as a, loaded.prepare(volume) as b:
        np.testing.assert_array_equal(a.segment(box_prompts).probabilities, b.segment(box_prompts).probabilities)


@pytest.fixture(scope="module")
def model_keys(fast) -> dict[str, torch.Tensor]:
    return fast.model.state_dict()


@pytest.mark.parametrize(
    ("make_state", "message"),
    [
        (lambda keys: {k: v for k, v in list(keys.items())[1:]}, r"missing \(1\): "),
        (lambda keys: {**keys, "extra.weight": torch.zeros(1)}, r"unexpected \(1\): extra.weight"),
        (lambda keys: {**keys, "no_mem_embed": torch.zeros(1, 1, 7)}, r"shape \(1\): no_mem_embed \(1, 1, 7\)"),
    ],
)
def test_checkpoint_that_does_not_fit_raises(tmp_path, model_keys, make_state, message):
    path = tmp_path / "bad.pt"
    torch.save({"model": make_state(model_keys)}, path)
    with pytest.raises(SegmenterError, match=f"does not fit config configs/sam2.1/sam2.1_hiera_t.yaml: .*{message}"):
        Sam2Segmenter(image_size=SIZE, device="cpu", checkpoint=path)


def test_checkpoint_without_state_dict_raises(tmp_path):
    path = tmp_path / "odd.pt"
    torch.save({"model": {"a": [1, 2]}}, path)
    with pytest.raises(SegmenterError, match="holds no state dict of tensors"):
        Sam2Segmenter(image_size=SIZE, device="cpu", checkpoint=path)


def test_missing_checkpoint_raises(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        Sam2Segmenter(image_size=SIZE, device="cpu", checkpoint=tmp_path / "nope.pt")


def test_config_names():
    assert resolve_config("sam2.1_hiera_t") == "configs/sam2.1/sam2.1_hiera_t.yaml"
    assert resolve_config("sam2.1_hiera_b+") == "configs/sam2.1/sam2.1_hiera_b+.yaml"
    assert resolve_config("configs/sam2.1/sam2.1_hiera_l.yaml") == "configs/sam2.1/sam2.1_hiera_l.yaml"
    assert resolve_config("sam2_hiera_s") == "configs/sam2/sam2_hiera_s.yaml"
    with pytest.raises(SegmenterError, match=r"unknown SAM2 config 'sam2.1_hiera_xl'; known names: .*sam2.1_hiera_t"):
        resolve_config("sam2.1_hiera_xl")
    with pytest.raises(SegmenterError, match="unknown SAM2 config"):
        Sam2Segmenter(config="/tmp/sam2.1_hiera_t.yaml", device="cpu")


def test_medsam2_recipe_comes_from_the_checkpoint_list():
    """``checkpoints.txt`` is the one source of a named recipe; ``random:NAME`` builds it with random weights."""
    segmenter = build_segmenter("random:medsam2", device="cpu")
    record = segmenter.describe()
    assert record["name"] == "random:medsam2" and record["image_size"] == 512
    assert record["config"] == "configs/sam2.1/sam2.1_hiera_t.yaml"
    assert record["resolved_config"]["model"]["memory_attention"]["layer"]["cross_attention"]["feat_sizes"] == [32, 32]
    assert record["largest_component"] and record["propagation"] == "reset" and record["logit_threshold"] == 0.0
    assert record["preprocessing"]["percentiles"] == [0.5, 99.5]
    assert record["preprocessing"]["pipeline"] == "medsam2" and record["coords"] == "official"
    assert record["fill_hole_area"] == 8
    assert set(read_checkpoint_list()) >= {"medsam2", "sam2.1-tiny", "sam2.1-large"}
    with pytest.raises(SegmenterError, match="unknown SAM2 config 'medsam3'"):
        build_segmenter("random:medsam3", device="cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_cuda_without_cuda_raises():
    with pytest.raises(SegmenterError, match="device='cuda' was requested but CUDA is not available"):
        resolve_device("cuda")
    with pytest.raises(SegmenterError, match="CUDA is not available"):
        Sam2Segmenter(image_size=SIZE, device="cuda:0")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"device": "tpu"}, "device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got 'tpu'"),
        ({"device": "cpu", "precision": "bfloat16"}, "precision='bfloat16' needs a CUDA device"),
        ({"device": "cpu", "precision": "half"}, "precision must be"),
        ({"device": "cpu", "engine": "turbo"}, "engine must be one of 'fast', 'fast-serial', 'reference'; got 'turbo'"),
        ({"device": "cpu", "propagation": "forward"}, "propagation must be 'reset' or 'continuous'"),
        ({"device": "cpu", "image_size": 100}, "image_size must be a multiple of 32"),
        ({"device": "cpu", "image_size": 32}, "at least 64"),
        ({"device": "cpu", "encoder_batch_size": 0}, "encoder_batch_size must be at least 1"),
        ({"device": "cpu", "logit_threshold": float("nan")}, "logit_threshold must be finite"),
    ],
)
def test_invalid_options_raise(options, message):
    with pytest.raises(SegmenterError, match=message):
        Sam2Segmenter(**options)


def test_closed_session_raises(fast, box_prompts):
    prepared = fast.prepare(volume_from_array(np.ones((3, 16, 16), dtype=np.float32)))
    prepared.close()
    with pytest.raises(SegmenterError, match="session was closed"):
        prepared.segment(box_prompts)


def test_importing_segmenters_does_not_import_torch_or_sam2():
    code = (
        "import sys, zeroshot.segmenters; print('torch' in sys.modules, 'sam2' in sys.modules, 'hydra' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False", "False"]


# --- coordinates (the "area" mapping; the official one: tests/test_prompt_coords.py) -------------------------------


def test_box_mapping_is_identity_at_model_size():
    box = box_to_model((3, 4, 10, 12), shape_yx=(128, 128), image_size=128, coords="area")
    np.testing.assert_array_equal(box, [3, 4, 10, 12])


def test_box_mapping_covers_the_resized_pixel_extent():
    # a 2 x upsampling: input pixels 10..29 become model pixels 20..59
    box = box_to_model((10, 5, 29, 5), shape_yx=(64, 64), image_size=128, coords="area")
    np.testing.assert_array_equal(box, [20, 10, 59, 11])
    # anisotropic: x scaled by 2, y by 4
    box = box_to_model((0, 0, 63, 31), shape_yx=(32, 64), image_size=128, coords="area")
    np.testing.assert_array_equal(box, [0, 0, 127, 127])


def test_box_narrower_than_a_model_pixel_does_not_invert():
    x0, y0, x1, y1 = box_to_model((9, 9, 9, 9), shape_yx=(256, 256), image_size=128, coords="area")
    assert x1 >= x0 and y1 >= y0 and x0 == 4.5


def test_points_map_pixel_centres():
    np.testing.assert_array_equal(
        points_to_model(((5, 7),), shape_yx=(128, 128), image_size=128, coords="area"), [[5, 7]]
    )
    np.testing.assert_array_equal(
        points_to_model(((0, 0),), shape_yx=(64, 64), image_size=128, coords="area"), [[0.5, 0.5]]
    )


# --- post-processing (zeroshot.segmenters.postprocess) --------------------------------------------------------------


def test_largest_component_matches_skimage_26_connectivity():
    from skimage.measure import label

    rng = np.random.default_rng(3)
    mask = rng.random((6, 12, 12)) > 0.7
    labels = label(mask, connectivity=3)
    sizes = np.bincount(labels.ravel())[1:]
    np.testing.assert_array_equal(keep_largest_component(mask), labels == np.argmax(sizes) + 1)


def test_largest_component_edge_cases():
    empty = np.zeros((2, 3, 3), dtype=bool)
    assert not keep_largest_component(empty).any()
    diagonal = np.zeros((2, 2, 2), dtype=bool)
    diagonal[0, 0, 0] = diagonal[1, 1, 1] = True  # corner-connected: one component in 26-connectivity
    np.testing.assert_array_equal(keep_largest_component(diagonal), diagonal)
    tie = np.zeros((1, 1, 5), dtype=bool)
    tie[0, 0, [0, 4]] = True
    assert keep_largest_component(tie)[0, 0].tolist() == [True, False, False, False, False]


def test_fill_enclosed_holes_is_per_slice():
    mask = np.zeros((2, 5, 5), dtype=bool)
    mask[:, 1:4, 1:4] = True
    mask[:, 2, 2] = False  # a hole in both slices ...
    mask[1, 2, 3] = False  # ... but open to the background in slice 1
    before = mask.copy()
    filled = fill_holes_per_slice(mask)
    assert filled[0, 2, 2] and not filled[1, 2, 2] and not filled[1, 2, 3]
    np.testing.assert_array_equal(postprocess_mask(mask, fill_enclosed_holes=True), filled)
    np.testing.assert_array_equal(postprocess_mask(mask), before)  # off by default
    np.testing.assert_array_equal(mask, before)  # input untouched


# --- the GPU check script -------------------------------------------------------------------------------------------


def test_gpu_check_script_parses_and_its_benchmarks_take_their_arguments():
    """``benchmarks/gpu_check.sh`` runs once on a GPU machine: a syntax error or a bad option would waste it."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    script = root / "benchmarks" / "gpu_check.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    sys.path.insert(0, str(root / "benchmarks"))
    try:
        import propagation_speed
    finally:
        sys.path.remove(str(root / "benchmarks"))
    text = script.read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    bench_lines = [line.split()[3:] for line in lines if line.startswith("bench bench-")]
    assert len(bench_lines) >= 3  # tiny at 512 and 1024 by default, large at 1024 behind GPU_CHECK_LARGE
    for args in bench_lines:
        parsed = propagation_speed.parse_args(args)
        assert set(parsed.engines.split(",")) <= {"reference", "fast-serial", "fast"}
    assert any("--many" in args for args in bench_lines)
    assert any(propagation_speed.parse_args(args).recipe_costs for args in bench_lines)
    steps = [line for line in lines if line.startswith(("step ", "bench ")) and not line.split()[1].startswith('"$')]
    assert len(steps) >= 5
    assert all(line.split()[2].isdigit() for line in steps)  # every step has a time limit
