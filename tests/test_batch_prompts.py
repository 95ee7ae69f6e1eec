"""Batched prompt sets: every prompt set of a case (each click round of every curve) in one ``segment_many`` call.

The rows must be those of one ``segment`` call per prompt set: same metrics, byte-equal saved masks, on cases of
different slice counts and shapes, K strategies x seeds, and click curves; an out-of-memory error in one case's
batch leaves the other cases' rows intact. Random tiny SAM2 weights: machinery only, never accuracy.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from fixtures_batch import (
    SHAPES,
    assert_same_rows,
    build,
    config,
    eval_command,
    saved_masks,
    write_mixed_dataset,
)
from fixtures_runner import IDENTITY, comparable, kill_mid_run_then_resume, write_strategies

from zeroshot.interactive import ClickSettings
from zeroshot.runner import RunDir, run_eval
from zeroshot.segmenters.sam2_session import Sam2Session


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("batch")
    return write_mixed_dataset(root / "data"), write_strategies(root / "strategies")


def calls(out: Path) -> list[int]:
    """``prompt_sets_in_call`` of every row's segmentation info."""
    return sorted(record.info["prompt_sets_in_call"] for record in RunDir(out).store.records())


@pytest.fixture(scope="module")
def unbatched(dataset, tmp_path_factory, one_torch_thread):
    out = tmp_path_factory.mktemp("runs") / "unbatched"
    return out, run_eval(config(dataset, out, batch_prompts=False), progress=False, build=build).results


def test_batched_rows_equal_separate_calls(dataset, unbatched, tmp_path, one_torch_thread):
    plain_out, plain = unbatched
    out = tmp_path / "batched"
    results = run_eval(config(dataset, out), progress=False, build=build).results
    assert len(results) == 4 * 2 * 2 and not results["failed"].any()
    assert results["dice"].nunique() > 1  # the rows differ from each other: equal tables mean something
    pd.testing.assert_frame_equal(comparable(results), comparable(plain))
    masks = saved_masks(out)
    assert len(masks) == 16 and masks == saved_masks(plain_out)
    assert calls(out) == [4] * 16 and calls(plain_out) == [1] * 16  # one call per case, K = 2 strategies x 2 seeds
    invocations = [json.loads((o / "run.json").read_text())["invocations"][-1] for o in (out, plain_out)]
    assert [i["batch_prompts"] for i in invocations] == [True, False]


def test_batched_click_curves_equal_separate_calls(dataset, tmp_path, one_torch_thread):
    clicks = ClickSettings(rounds=2)
    plain = run_eval(
        config(dataset, tmp_path / "plain", clicks=clicks, batch_prompts=False), progress=False, build=build
    ).results
    batched = run_eval(config(dataset, tmp_path / "batched", clicks=clicks), progress=False, build=build).results
    assert len(batched) == 4 * 2 * 2 * 3 and not batched["failed"].any()
    assert (batched["n_clicks"] > 0).any()  # some rounds clicked: later rounds re-segmented in batches
    assert_same_rows(batched, plain, identity=[*IDENTITY, "round"])
    assert saved_masks(tmp_path / "batched") == saved_masks(tmp_path / "plain")
    assert max(calls(tmp_path / "batched")) == 4 and max(calls(tmp_path / "plain")) == 1


def test_resumed_curves_join_the_batch_and_give_the_uninterrupted_rows(dataset, tmp_path, one_torch_thread):
    whole = run_eval(
        config(dataset, tmp_path / "whole", clicks=ClickSettings(rounds=2)), progress=False, build=build
    ).results
    out = tmp_path / "extended"
    run_eval(config(dataset, out, clicks=ClickSettings(rounds=1)), progress=False, build=build)
    extended = run_eval(config(dataset, out, clicks=ClickSettings(rounds=2)), progress=False, build=build)
    assert extended.rows_computed == 16  # round 2 of each curve, after replaying round 1
    assert_same_rows(extended.results, whole, identity=[*IDENTITY, "round"])


def _out_of_memory_on(monkeypatch, depth: int, *, also_offloaded: bool) -> list[int]:
    """Make the lockstep propagation raise a CUDA out-of-memory error on volumes of ``depth`` slices."""
    propagate = Sam2Session._propagate_lockstep
    raised: list[int] = []

    def lockstep(self, prompt_sets):
        if self.volume.num_slices == depth and (also_offloaded or not self.options.offload_state_to_cpu):
            raised.append(len(prompt_sets))
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return propagate(self, prompt_sets)

    monkeypatch.setattr(Sam2Session, "_propagate_lockstep", lockstep)
    return raised


def test_out_of_memory_in_one_case_retries_it_offloaded_and_leaves_the_others(
    dataset, unbatched, tmp_path, monkeypatch, one_torch_thread
):
    _, plain = unbatched
    raised = _out_of_memory_on(monkeypatch, SHAPES[1][0], also_offloaded=False)
    results = run_eval(config(dataset, tmp_path / "oom"), progress=False, build=build).results
    assert raised == [4, 4]  # the batch of each of the two 8-slice cases, once
    assert not results["failed"].any()
    offloaded = results.groupby(results["case_id"].str[:2])["offloaded"]
    assert offloaded.all().to_dict() == {"g0": False, "g1": True} and not offloaded.any()["g0"]
    pd.testing.assert_frame_equal(
        comparable(results).drop(columns="offloaded"), comparable(plain).drop(columns="offloaded")
    )


def test_out_of_memory_that_persists_fails_only_that_cases_rows(
    dataset, unbatched, tmp_path, monkeypatch, one_torch_thread
):
    _, plain = unbatched
    _out_of_memory_on(monkeypatch, SHAPES[1][0], also_offloaded=True)
    results = run_eval(config(dataset, tmp_path / "oom"), progress=False, build=build).results
    bad = results["case_id"].str.startswith("g1")
    assert results.loc[bad, "failed"].all() and results.loc[bad, "error"].str.contains("out of memory").all()
    good, expected = comparable(results[~bad]), comparable(plain[~plain["case_id"].str.startswith("g1")])
    pd.testing.assert_frame_equal(good, expected)


def test_kill_9_mid_batch_then_resume_gives_the_uninterrupted_rows(dataset, unbatched, tmp_path):
    """A run killed while a case's batch is being written resumes to the rows of a run never killed."""
    kill_mid_run_then_resume(eval_command(dataset, tmp_path / "killed"), tmp_path / "killed", total=16)
    plain_out, _ = unbatched
    table = pd.read_csv(tmp_path / "killed" / "results.csv")
    assert_same_rows(table, pd.read_csv(plain_out / "results.csv"))
    assert saved_masks(tmp_path / "killed") == saved_masks(plain_out)


# ------------------------------------------------------------------------------ host work off the model's thread
def test_prediction_files_written_in_a_thread_each_before_its_row_and_a_failed_write_fails_only_its_row(
    dataset, tmp_path, monkeypatch
):
    """With scoring processes, ``--save-pred`` files are written by a thread; a write that fails fails its row."""
    import zeroshot.runner.executors as executors

    save = executors.save_prediction
    threads: set[str] = set()

    def flaky(rundir, prediction, volume):
        threads.add(threading.current_thread().name)
        if prediction.key.strategy == "box-jitter" and prediction.key.seed == 1:
            raise OSError("disk full")
        return save(rundir, prediction, volume)

    monkeypatch.setattr(executors, "save_prediction", flaky)
    out = tmp_path / "run"
    results = run_eval(config(dataset, out, models=("box-fill",), workers=1), progress=False).results
    assert threads and all(name.startswith("zeroshot-save") for name in threads)
    bad = (results["strategy"] == "box-jitter") & (results["seed"] == 1)
    assert (
        bad.sum() == 4
        and results.loc[bad, "failed"].all()
        and results.loc[bad, "error"].str.contains("disk full").all()
    )
    assert not results.loc[~bad, "failed"].any()
    assert all((out / path).is_file() for path in results.loc[~bad, "prediction"])
    assert (results.loc[bad, "prediction"] == "").all()


def test_z_extent_clears_each_prompt_set_of_a_batch_by_its_own_extent():
    from zeroshot.prompts import SlicePrompt, VolumePrompts
    from zeroshot.runner.zextent import ZExtentSession
    from zeroshot.segmenters.base import Segmentation

    class Batching:
        def segment_many(self, prompt_sets):
            return [Segmentation(np.ones((6, 4, 4), bool)) for _ in prompt_sets]

    class Single:
        def segment(self, prompts):
            return Segmentation(np.ones((6, 4, 4), bool))

    def with_extent(extent):
        return VolumePrompts("c", "s", 0, "gt", (SlicePrompt(z=2, box=(0, 0, 3, 3)),), details={"z_extent": extent})

    results = ZExtentSession(Batching()).segment_many([with_extent([1, 2]), with_extent([3, 5])])
    assert [r.mask.any(axis=(1, 2)).nonzero()[0].tolist() for r in results] == [[1, 2], [3, 4, 5]]
    assert results[1].info["z_extent_voxels_cleared"] == 3 * 16
    assert not hasattr(ZExtentSession(Single()), "segment_many")  # no batching where the session has none
