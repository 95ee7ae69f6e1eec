"""Finishing a video segmentation: union and threshold where the logits are; CPU post-processing deferrable.

The masks and probabilities must be byte-equal to those of the former implementation, kept here as the oracle
(threshold and sigmoid of the union logits on the CPU, then :func:`postprocess_mask`), on the serial and the
lockstep paths of both backends; a deferred post-processing, applied later (by ``zeroshot eval`` in its scoring
workers), must give exactly the segmentation, the rows and the saved masks of one applied at once. Random tiny
weights: machinery only, never accuracy.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from fixtures_batch import saved_masks
from fixtures_runner import comparable, write_tiny_dataset

from zeroshot.phantom import make_phantom_case
from zeroshot.prompts import SlicePrompt, VolumePrompts
from zeroshot.runner import EvalConfig, RunDir, run_eval
from zeroshot.runner.work import finish_prediction, predict_case, read_case
from zeroshot.runner.zextent import ZExtentSession
from zeroshot.segmenters import build_segmenter
from zeroshot.segmenters.base import Segmentation
from zeroshot.segmenters.postprocess import PostProcessing, postprocess_mask
from zeroshot.segmenters.transformers_video import TransformersVideoSegmenter, tiny_sam2_video_model
from zeroshot.segmenters.video_core import VideoSession
from zeroshot.volume import read_label, read_volume

#: Post-processing on, so that the oracle and the deferral have something to do.
STEPS = {"largest_component": True, "fill_enclosed_holes": True}
TIMINGS = {"prepare_s", "propagate_s", "segment_s", "slices_per_s"}


def sam2(engine: str):
    return build_segmenter("random:sam2.1_hiera_t@64", device="cpu", engine=engine, **STEPS)


def transformers():
    return TransformersVideoSegmenter(model=tiny_sam2_video_model(image_size=64, seed=0), device="cpu", **STEPS)


#: (builder, whether ``segment_many`` runs in lockstep): the lockstep path, the core's serial path, SAM2's own loop.
BACKENDS = {
    "sam2-fast": (lambda: sam2("fast"), True),
    "sam2-fast-serial": (lambda: sam2("fast-serial"), False),
    "sam2-reference": (lambda: sam2("reference"), False),
    "transformers": (transformers, None),
}


@pytest.fixture(scope="module")
def case():
    """A small phantom T2 volume and two prompt sets: a box on the middle slice, a point on slice 2."""
    phantom = make_phantom_case(0, shape=(8, 40, 48))
    ys, xs = np.nonzero(phantom.label[4])
    box = (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))
    point = ((int(xs.mean()), int(ys.mean())),)
    prompt_sets = [
        VolumePrompts("c", "box", 0, "gt", (SlicePrompt(z=4, box=box),)),
        VolumePrompts("c", "point", 0, "gt", (SlicePrompt(z=2, points=point, labels=(1,)),)),
    ]
    return phantom.volumes["T2"], prompt_sets


def segment_recording_logits(segmenter, volume, prompt_sets, monkeypatch, *, defer: bool = False):
    """``segment_many`` of the prompt sets, and the union logits each was finished from (as the session held them)."""
    finish, seen = VideoSession._finish, []

    def recording(self, prompts, run, shared, started):
        seen.append(run.logits.clone())
        return finish(self, prompts, run, shared, started)

    monkeypatch.setattr(VideoSession, "_finish", recording)
    with segmenter.prepare(volume) as session:
        session.defer_postprocess = defer
        results = session.segment_many(prompt_sets)
    monkeypatch.setattr(VideoSession, "_finish", finish)
    return results, seen


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_masks_and_probabilities_equal_the_cpu_oracle(backend, case, monkeypatch, one_torch_thread):
    build, lockstep = BACKENDS[backend]
    segmenter = build()
    volume, prompt_sets = case
    results, logits = segment_recording_logits(segmenter, volume, prompt_sets, monkeypatch)
    assert len(logits) == 2
    changed = False
    for result, union in zip(results, logits, strict=True):
        assert union.device == segmenter.options.union_device and union.dtype == torch.float32
        assert result.info.get("lockstep") == lockstep
        raw = union.cpu().numpy() > segmenter.logit_threshold
        expected = postprocess_mask(raw, **STEPS)
        assert result.mask.dtype == bool and result.mask.tobytes() == expected.tobytes()
        expected_probabilities = torch.sigmoid(union.cpu()).numpy()
        assert result.probabilities.dtype == np.float32
        assert result.probabilities.tobytes() == expected_probabilities.tobytes()
        assert result.info["voxels_before_postprocess"] == int(raw.sum())
        assert result.postprocessing is None
        changed |= not np.array_equal(raw, expected)
    assert changed, "the post-processing changed a mask: the comparison covers it"


@pytest.mark.parametrize("backend", ["sam2-fast", "sam2-fast-serial", "transformers"])
def test_deferred_postprocessing_finishes_to_the_segmentation_made_at_once(backend, case, monkeypatch):
    build, _ = BACKENDS[backend]
    segmenter = build()
    volume, prompt_sets = case
    now, _ = segment_recording_logits(segmenter, volume, prompt_sets, monkeypatch)
    later, logits = segment_recording_logits(segmenter, volume, prompt_sets, monkeypatch, defer=True)
    for at_once, deferred, union in zip(now, later, logits, strict=True):
        assert deferred.postprocessing == PostProcessing(**STEPS)
        assert deferred.mask.tobytes() == (union.numpy() > segmenter.logit_threshold).tobytes()  # before the steps
        finished = deferred.finished()
        assert finished.postprocessing is None and finished.mask.tobytes() == at_once.mask.tobytes()
        assert finished.probabilities.tobytes() == at_once.probabilities.tobytes()
        untimed = {key: value for key, value in finished.info.items() if key not in TIMINGS}
        assert untimed == {key: value for key, value in at_once.info.items() if key not in TIMINGS}


def test_without_steps_nothing_is_deferred(case):
    volume, prompt_sets = case
    segmenter = build_segmenter("random:sam2.1_hiera_t@64", device="cpu")
    with segmenter.prepare(volume) as session:
        session.defer_postprocess = True
        result = session.segment(prompt_sets[0])
    assert result.postprocessing is None and result.finished() is result


def test_thresholding_a_tensor_equals_thresholding_its_numpy_array():
    """The comparison the device runs is NumPy's, even for a threshold float32 cannot hold (0.1)."""
    near = np.nextafter(np.float32(0.1), np.float32([-1, 1])).astype(np.float32)
    values = np.array([np.float32(0.1), *near, 0.1, -1024.0, 5.0], dtype=np.float32)
    logits = torch.from_numpy(values)
    for threshold in (0.1, 0.0, -0.5):
        assert (logits > threshold).numpy().tolist() == (values > threshold).tolist()


def test_the_union_lives_on_the_compute_device_unless_offloading():
    options = build_segmenter("random:sam2.1_hiera_t@64", device="cpu").options
    on_gpu = replace(options, device=torch.device("cuda", 0))  # a value only: nothing is allocated
    assert on_gpu.union_device == torch.device("cuda", 0)
    assert on_gpu.offloaded().union_device == torch.device("cpu")
    assert options.union_device == torch.device("cpu")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_device_threshold_equals_the_host_threshold_on_cuda(case, monkeypatch):
    volume, prompt_sets = case
    segmenter = build_segmenter("random:sam2.1_hiera_t@64", device="cuda", **STEPS)
    for offloaded in (False, True):
        model = segmenter.with_offload() if offloaded else segmenter
        results, logits = segment_recording_logits(model, volume, prompt_sets, monkeypatch)
        for result, union in zip(results, logits, strict=True):
            assert union.device.type == ("cpu" if offloaded else "cuda")
            host = union.cpu()
            raw = host.numpy() > model.logit_threshold
            assert result.mask.tobytes() == postprocess_mask(raw, **STEPS).tobytes()
            assert result.probabilities.tobytes() == torch.sigmoid(host).numpy().tobytes()  # sigmoid on the host


# ------------------------------------------------------------------------------------ the post-processing value
def test_the_largest_component_is_chosen_in_the_whole_volume_before_the_z_extent_is_cut():
    mask = np.zeros((6, 4, 4), bool)
    mask[0:2, :2, :2] = True  # 8 voxels, inside the extent
    mask[3:6] = True  # 48 voxels, mostly outside
    done = PostProcessing(largest_component=True, z_extent=(0, 3)).apply(mask)
    assert done.mask.any(axis=(1, 2)).tolist() == [False, False, False, True, False, False]
    assert done.z_extent_voxels_cleared == 32 and done.info() == {"z_extent_voxels_cleared": 32}
    assert PostProcessing(largest_component=True).apply(mask).info() == {}
    assert not PostProcessing().does_anything and PostProcessing().within(0, 2).does_anything
    assert mask.sum() == 56, "the input is not modified"


def test_a_z_extent_joins_a_pending_post_processing_and_ends_as_when_applied_at_once():
    mask = np.zeros((6, 4, 4), bool)
    mask[0:2, :2, :2] = True
    mask[3:6] = True
    probabilities = np.where(mask, np.float32(0.9), np.float32(0.1))
    steps = PostProcessing(largest_component=True)

    class Deferring:
        def __init__(self, defer):
            self.defer = defer

        def segment(self, prompts):
            pending = Segmentation(mask.copy(), probabilities.copy(), {"model": "m"}, postprocessing=steps)
            return pending if self.defer else pending.finished()

    prompts = VolumePrompts("c", "s", 0, "gt", (SlicePrompt(z=3, box=(0, 0, 3, 3)),), details={"z_extent": [0, 3]})
    at_once = ZExtentSession(Deferring(False)).segment(prompts)
    deferred = ZExtentSession(Deferring(True)).segment(prompts)
    assert deferred.postprocessing == PostProcessing(largest_component=True, z_extent=(0, 3))
    assert deferred.mask.tobytes() == mask.tobytes() and "z_extent_voxels_cleared" not in deferred.info
    assert deferred.probabilities.tobytes() == at_once.probabilities.tobytes()  # cleared at once
    finished = deferred.finished()
    assert finished.mask.tobytes() == at_once.mask.tobytes() and finished.mask.sum() == 16
    assert finished.info == at_once.info == {"model": "m", "z_extent": [0, 3], "z_extent_voxels_cleared": 32}


# ------------------------------------------------------------------------------------------------- the runner
MODEL = "random:medsam2@64"  # MedSAM2's recipe: largest_component=true


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Three phantom cases (T1, T2, OOP of one subject)."""
    return write_tiny_dataset(tmp_path_factory.mktemp("finishing") / "data", subjects=1)


def test_predict_case_defers_only_when_asked_and_finishing_gives_the_same_mask(dataset, tmp_path, one_torch_thread):
    from zeroshot.datasets import discover
    from zeroshot.runner.evaluate import load_strategies_for_run
    from zeroshot.store import RowKey

    case = next(c for c in discover(dataset.parent) if c.sequence == "T2")
    inputs = read_case(case, [("box-mid", 0)], load_strategies_for_run(["box-mid"]), RunDir(tmp_path), label=1)
    key = RowKey(case.sequence, case.case_id, MODEL, "box-mid", 0)
    segmenter = build_segmenter(MODEL, device="cpu")
    [now] = predict_case(segmenter, inputs, [key])
    [later] = predict_case(segmenter, inputs, [key], defer_postprocess=True)
    assert now.postprocessing is None and later.postprocessing == PostProcessing(largest_component=True)
    assert finish_prediction(later).mask.tobytes() == now.mask.tobytes()
    assert finish_prediction(later).postprocessing is None and finish_prediction(now) is now


def infos(out: Path) -> dict[tuple, dict]:
    """Every row's segmentation info without its timings, by row identity."""
    return {
        (r.key.case_id, r.key.sequence, r.key.strategy): {k: v for k, v in r.info.items() if k not in TIMINGS}
        for r in RunDir(out).store.records()
    }


def test_rows_and_saved_masks_equal_whether_post_processing_runs_in_the_workers_or_in_line(
    dataset, tmp_path, monkeypatch, one_torch_thread
):
    """With a scoring process the model's thread never post-processes; the rows are those made in line."""
    calls = []
    apply = PostProcessing.apply

    def counting(self, mask):
        calls.append(self)
        return apply(self, mask)

    monkeypatch.setattr(PostProcessing, "apply", counting)  # this process only: the spawned workers count nothing

    def run(out: Path, workers: int) -> pd.DataFrame:
        config = EvalConfig(
            data=dataset,
            out=out,
            models=(MODEL,),
            strategies=("box-mid", "cvpr25-box"),
            seeds=(0,),
            device="cpu",
            save_pred=True,
            workers=workers,
        )
        return run_eval(config, progress=False).results

    inline = run(tmp_path / "inline", workers=0)
    assert any(c.largest_component for c in calls) and any(c.z_extent for c in calls)  # in line: here
    calls.clear()
    deferred = run(tmp_path / "deferred", workers=1)
    assert calls == [], "post-processing ran in the scoring process, not on the model's thread"
    assert len(deferred) == 6 and not deferred["failed"].any()
    pd.testing.assert_frame_equal(comparable(deferred), comparable(inline))
    masks = saved_masks(tmp_path / "deferred")
    assert len(masks) == 6 and masks == saved_masks(tmp_path / "inline")
    assert infos(tmp_path / "deferred") == infos(tmp_path / "inline")
    info = infos(tmp_path / "deferred")
    assert all("z_extent_voxels_cleared" in i for i in info.values() if "z_extent" in i)
    changed = [
        info[(row.case_id, row.sequence, row.strategy)]["voxels_before_postprocess"]
        != np.asarray(nib.load(tmp_path / "deferred" / row.prediction).dataobj).sum()
        for row in deferred.itertuples()
    ]
    assert any(changed), "the post-processing changed some masks: the comparison covers it"


def test_the_eval_builds_video_models_without_probabilities_and_the_masks_stay_the_same(dataset, one_torch_thread):
    """``zeroshot eval`` scores masks only: it skips the probabilities (a host copy and sigmoid per prompt set)."""
    from zeroshot.datasets import discover
    from zeroshot.prompts import make_prompts
    from zeroshot.runner.evaluate import _registry_builder, load_strategies_for_run

    config = EvalConfig(data=dataset, out=dataset.parent / "unused", models=(MODEL,), strategies=("box-mid",))
    assert not _registry_builder(config)(MODEL).return_probabilities
    assert _registry_builder(config)("box-fill").name == "box-fill"  # baselines have no such variant
    plain = build_segmenter(MODEL, device="cpu")
    built = plain.without_probabilities()
    assert plain.return_probabilities and not built.return_probabilities
    assert built.model is plain.model and built.without_probabilities() is built
    case = next(c for c in discover(dataset.parent) if c.sequence == "T2")
    volume = read_volume(case.image)
    label = read_label(case.label, volume, label=1)
    strategy = load_strategies_for_run(["box-mid"])["box-mid"]
    prompts = make_prompts(strategy, case_id=case.case_id, volume=volume, source_mask=label, seed=0)
    with plain.prepare(volume) as a, built.prepare(volume) as b:
        full, masks_only = a.segment(prompts), b.segment(prompts)
    assert full.probabilities is not None and masks_only.probabilities is None
    assert masks_only.mask.tobytes() == full.mask.tobytes() and masks_only.mask.any()
