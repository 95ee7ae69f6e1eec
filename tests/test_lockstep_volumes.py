"""Several volumes in one lockstep call: each volume's logits are those it gets propagated alone.

A random SAM2.1-tiny at 128 px (machinery, not accuracy) segments three phantoms of 8, 11 and 18 slices and
different in-plane sizes, so the streams of one step come from different feature caches, stop at different
slices, and encode their object pointers on different temporal scales (``t_diff_max`` = 7, 10 and 15 with
``max_obj_ptrs_in_encoder`` = 16). The oracle is today's engine run on each volume alone.

Tolerance: the joint call batches the same arithmetic with other volumes' rows, so float32 matrix products may
be blocked differently and round differently (observed: at most 7e-7 on logits of magnitude ~0.5 after 18
recurrent steps). Logits are compared within 1e-5 (about 100 float32 ulps at that magnitude). Random weights make
the object pointers' influence small: encoding them on the longest volume's scale instead of each volume's own
moves the logits by 4e-5, which this tolerance catches (checked by breaking the engine that way). Session results
are compared through their float32 probabilities (logits within 1e-4 where ``|logit| < 5``, where the probability
resolves them); masks must be equal except at voxels whose logit lies within 1e-4 of the threshold.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from zeroshot.errors import PromptError, SegmenterError
from zeroshot.phantom import make_phantom_case
from zeroshot.prompts.types import SlicePrompt, VolumePrompts
from zeroshot.segmenters.sam2_lockstep import run_lockstep
from zeroshot.segmenters.sam2_lockstep_plan import MemoryRules, Stream, plan_lockstep, slot_bases
from zeroshot.segmenters.sam2_video import Sam2Segmenter
from zeroshot.segmenters.video_core import segment_volumes

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIZE = 128
SHAPES = ((8, 40, 56), (11, 48, 64), (18, 44, 60))
LOGIT_TOLERANCE = 1e-5


def logits_of(probabilities: np.ndarray) -> np.ndarray:
    p = np.clip(probabilities.astype(np.float64), 1e-12, 1 - 1e-12)
    return np.log(p) - np.log1p(-p)


@pytest.fixture(scope="module")
def fast():
    return Sam2Segmenter(image_size=SIZE, device="cpu")


@pytest.fixture(scope="module")
def cases():
    return [make_phantom_case(number, shape=shape) for number, shape in enumerate(SHAPES)]


@pytest.fixture(scope="module")
def prompt_sets(cases) -> list[list[VolumePrompts]]:
    """Per volume: a box on the middle labelled slice, and boxes on both end slices (passes of other lengths)."""
    out = []
    for number, case in enumerate(cases):
        zs = np.flatnonzero(case.label.any(axis=(1, 2)))
        key = int(zs[len(zs) // 2])
        ys, xs = np.nonzero(case.label[key])
        box = (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))
        last = case.label.shape[0] - 1
        out.append(
            [
                VolumePrompts(f"case_{number}", "middle", 0, "gt", (SlicePrompt(z=key, box=box),)),
                VolumePrompts(
                    f"case_{number}", "ends", 0, "gt", (SlicePrompt(z=0, box=box), SlicePrompt(z=last, box=box))
                ),
            ]
        )
    return out


@pytest.fixture(scope="module")
def sessions(fast, cases):
    prepared = [fast.prepare(case.volumes["T1"]) for case in cases]
    yield prepared
    for session in prepared:
        session.close()


def test_engine_logits_of_volumes_together_equal_each_alone(fast, sessions, prompt_sets):
    with torch.inference_mode():
        parts = [s._lockstep_streams(p, volume=i) for i, (s, p) in enumerate(zip(sessions, prompt_sets, strict=True))]
        streams = [stream for part in parts for stream in part[0]]
        assert sorted({s.num_slices for s in streams}) == [8, 11, 18] and {s.volume for s in streams} == {0, 1, 2}
        state = sessions[0]._state
        together = run_lockstep(
            fast.model,
            [s._state.cached_features for s in sessions],
            streams,
            [out for part in parts for out in part[1]],
            device=state.device,
            storage_device=state.storage_device,
        )
        assert together.shape[0] == sum(s.num_slices for s in streams)
        bases = slot_bases(streams)
        first = 0
        for session, sets in zip(sessions, prompt_sets, strict=True):
            own_streams, own_cond, _ = session._lockstep_streams(sets)
            alone = run_lockstep(
                fast.model,
                [session._state.cached_features],
                own_streams,
                own_cond,
                device=state.device,
                storage_device=state.storage_device,
            )
            for number, stream in enumerate(own_streams):
                rows = torch.tensor(stream.order)
                expected = alone[rows + number * stream.num_slices]
                got = together[rows + bases[first + number]]
                assert float(expected.abs().max()) > 0.05  # something to compare, beyond the tolerance
                torch.testing.assert_close(got, expected, rtol=0, atol=LOGIT_TOLERANCE)
            first += len(own_streams)


def test_segment_volumes_equals_segment_many_per_volume(sessions, prompt_sets):
    alone = [session.segment_many(sets) for session, sets in zip(sessions, prompt_sets, strict=True)]
    together = segment_volumes(list(zip(sessions, prompt_sets, strict=True)))
    assert len(together) == len(sessions)
    for session, expected_list, got_list in zip(sessions, alone, together, strict=True):
        assert len(got_list) == len(expected_list) == 2
        for expected, got in zip(expected_list, got_list, strict=True):
            assert got.info["volumes_in_call"] == 3 and "volumes_in_call" not in expected.info
            assert got.info["lockstep"] and got.info["passes"] == expected.info["passes"]
            assert got.info["encoder_slices_segment"] == 0
            assert got.info["encoder_slices_total"] == session.volume.num_slices
            assert got.mask.shape == session.volume.shape
            expected_logits, got_logits = logits_of(expected.probabilities), logits_of(got.probabilities)
            unsaturated = np.abs(expected_logits) < 5  # float32 probabilities resolve logits there
            np.testing.assert_allclose(got_logits[unsaturated], expected_logits[unsaturated], rtol=0, atol=1e-4)
            near_threshold = np.abs(expected_logits) <= 1e-4
            assert np.array_equal(got.mask[~near_threshold], expected.mask[~near_threshold])


def test_sessions_that_cannot_share_run_alone(fast, cases, sessions, prompt_sets):
    """Another engine or policy, or no prompt sets: one ``segment_many`` each, the joinable ones still together."""
    serial = Sam2Segmenter(image_size=SIZE, device="cpu", engine="fast-serial")
    continuous = Sam2Segmenter(image_size=SIZE, device="cpu", propagation="continuous")
    volume = cases[0].volumes["T1"]
    with serial.prepare(volume) as serial_session, continuous.prepare(volume) as continuous_session:
        items = [
            (serial_session, prompt_sets[0][:1]),
            (sessions[0], prompt_sets[0][:1]),
            (continuous_session, prompt_sets[0][:1]),
            (sessions[1], prompt_sets[1][:1]),
            (sessions[2], []),
        ]
        results = segment_volumes(items)
        assert [len(r) for r in results] == [1, 1, 1, 1, 0]
        assert "volumes_in_call" not in results[0][0].info and not results[0][0].info["lockstep"]
        assert "volumes_in_call" not in results[2][0].info and "continuous" in results[2][0].info["lockstep_fallback"]
        assert results[1][0].info["volumes_in_call"] == 2 and results[3][0].info["volumes_in_call"] == 2
        expected = serial_session.segment(prompt_sets[0][0])
        np.testing.assert_array_equal(results[0][0].mask, expected.mask)


def test_a_bad_prompt_in_any_volume_stops_the_call(sessions, prompt_sets):
    bad = VolumePrompts("case_0", "bad", 0, "gt", (SlicePrompt(z=8, box=(1, 1, 5, 5)),))
    with pytest.raises(PromptError, match="outside the volume's 8 slices"):
        segment_volumes([(sessions[1], prompt_sets[1]), (sessions[0], [bad])])


def test_a_closed_session_raises(fast, cases, sessions, prompt_sets):
    closed = fast.prepare(cases[0].volumes["T1"])
    closed.close()
    with pytest.raises(SegmenterError, match="closed"):
        segment_volumes([(sessions[0], prompt_sets[0]), (closed, prompt_sets[0])])


def test_plan_lays_volumes_out_one_after_another_with_their_own_bounds(fast):
    """Slots follow each stream's own slice count; pointers stop at each volume's own ends."""
    rules = MemoryRules.of(fast.model)
    short = Stream(order=tuple(range(2, 5)), cond_slices=(2,), reverse=False, num_slices=5, volume=0)
    long_reverse = Stream(order=tuple(range(2, -1, -1)), cond_slices=(2,), reverse=True, num_slices=18, volume=1)
    long_forward = Stream(order=tuple(range(2, 18)), cond_slices=(2,), reverse=False, num_slices=18, volume=1)
    streams = [short, long_reverse, long_forward]
    assert slot_bases(streams) == (0, 5, 23)
    plan = plan_lockstep(streams, rules)
    (group,) = plan[2]  # slice 4, slice 0 and slice 4: the same memory shape, one batch across both volumes
    assert group.streams == (0, 1, 2) and group.volumes == (0, 1, 1) and group.num_slices == (5, 18, 18)
    assert group.out_slots == (4, 5 + 0, 23 + 4)
    assert group.memory_slots[1] == (5 + 2, 5 + 1)  # its own key slice and slice 1, in its own slots
    assert group.pointer_distance[0] == (2, 1) and group.pointer_distance[1] == (2, 1)
    assert len(plan) == 16 and all(g.volumes == (1,) for step in plan[3:] for g in step)


def test_plan_refuses_a_slice_outside_its_volume(fast):
    rules = MemoryRules.of(fast.model)
    with pytest.raises(ValueError, match="stream 0 visits a slice outside its volume's 5 slices"):
        plan_lockstep([Stream(order=(4, 5), cond_slices=(4,), reverse=False, num_slices=5)], rules)


def test_a_session_without_segment_many_gets_one_segment_call_each(cases, sessions, prompt_sets):
    from zeroshot.segmenters import build_segmenter

    volume = cases[0].volumes["T1"]
    baseline = build_segmenter("box-fill").prepare(volume)
    assert not hasattr(baseline, "segment_many")
    results = segment_volumes([(baseline, prompt_sets[0]), (sessions[1], prompt_sets[1][:1])])
    assert [len(r) for r in results] == [2, 1]
    for prompts, result in zip(prompt_sets[0], results[0], strict=True):
        np.testing.assert_array_equal(result.mask, baseline.segment(prompts).mask)
    assert "volumes_in_call" not in results[1][0].info  # the one SAM2 session had nothing to share with
