"""Interactive evaluation in the runner (``zeroshot eval --clicks``): one row per round, exact resume, one encoding.

GrabCut (weight-free, at a small working size) and random-weight SAM2 at 128 px run the machinery on tiny phantom
volumes; none of these Dice values is accuracy.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from fixtures_runner import (
    FAST_GRABCUT,
    IDENTITY,
    SHAPE,
    Counting,
    click_config_for,
    comparable,
    kill_when,
    write_strategies,
    write_tiny_dataset,
)

from zeroshot.cli import main
from zeroshot.compare.summary import format_summary
from zeroshot.errors import ConfigError, PromptError
from zeroshot.interactive import ClickSettings, clicks_from_records
from zeroshot.runner import RowKey, RunDir, run_eval
from zeroshot.runner.evaluate import load_strategies_for_run, plan_curves, select_cases
from zeroshot.runner.executors import CaseJob, RunContext
from zeroshot.runner.ray_executor import CaseWorker
from zeroshot.segmenters.grabcut import GrabCutSegmenter
from zeroshot.store import RowRecord, RunStore
from zeroshot.store.parts import STORE_COLUMNS
from zeroshot.store.paths import legacy_key, legacy_row_path

TESTS = Path(__file__).resolve().parent
CURVE = IDENTITY  # a click curve is one row identity's rounds


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_tiny_dataset(tmp_path_factory.mktemp("data"), subjects=1)


@pytest.fixture(scope="module")
def strategy(tmp_path_factory) -> Path:
    return write_strategies(tmp_path_factory.mktemp("strategies"))[0]


def row_bytes(out: Path) -> dict[RowKey, tuple[str, str]]:
    """Each stored row: the log stem holding it and its content (a row written again shows as another stem)."""
    stored = {}
    for stem, chunk in RunDir(out).store.chunks():
        for row in chunk.rows.drop(columns=list(STORE_COLUMNS)).to_dict("records"):
            stored[RowKey.of_row(row)] = (stem, json.dumps(row, sort_keys=True, default=str))
    return stored


def rewrite_store(out: Path, *, drop: RowKey | None = None, edit=None) -> None:
    """Write the run's store again without the row ``drop`` and with ``edit(row)`` applied to its last row."""
    store = RunDir(out).store
    records, prompts = list(store.records()), store.prompt_sets()
    shutil.rmtree(store.folder)
    fresh = RunStore(out)
    for key, text in prompts.items():
        fresh.append_prompts(key, text)
    for index, record in enumerate(records):
        row = dict(record.row)
        if edit is not None and index == len(records) - 1:
            edit(row)
        if record.key != drop:
            fresh.append_row(RowRecord(record.key, row, record.slices, record.info))
    fresh.close()


# ------------------------------------------------------------------------------------------------------ row keys
def test_row_keys_of_rounds_have_their_own_paths_and_sort_after_their_curve():
    rundir = RunDir("/runs/x")
    curve = RowKey("T2", "case-1", "random:sam2@128", "box-mid", 3)
    path = rundir.prediction_path(curve.at_round(12))
    assert path == Path("/runs/x/predictions/T2/case-1/random%3Asam2%40128/box-mid/seed3/round12.nii.gz")
    legacy = legacy_row_path(rundir.root, curve.at_round(12))  # the layout before the store (zeroshot migrate)
    assert legacy == Path("/runs/x/rows/T2/case-1/random%3Asam2%40128/box-mid/seed3/round12.json")
    assert legacy_key(rundir.root, legacy) == curve.at_round(12)
    assert legacy_key(rundir.root, legacy_row_path(rundir.root, curve)) == curve  # without clicks: seed<k>.json
    assert legacy_key(rundir.root, legacy.with_name("roundx.json")) is None
    assert legacy_key(rundir.root, legacy.with_name(".round1.json.123.tmp")) is None
    assert RowKey.from_tuple(curve.at_round(12).astuple()) == curve.at_round(12)
    assert sorted([curve.at_round(10), curve.at_round(2), curve, curve.at_round(0)]) == [
        curve,
        curve.at_round(0),
        curve.at_round(2),
        curve.at_round(10),
    ]
    assert curve.at_round(4).curve == curve
    assert curve.at_round(4).describe().endswith("seed=3 round=4")


# ------------------------------------------------------------------------------------------------- a whole run
def test_interactive_run_writes_every_round_with_its_clicks(dataset, strategy, tmp_path):
    counter = Counting()
    out = tmp_path / "run"
    summary = run_eval(
        click_config_for(dataset, strategy, out, sequences=("T2", "OOP")), progress=False, build=counter.build
    )
    results = summary.results
    assert summary.rows_selected == summary.rows_computed == len(results) == 2 * 4
    assert counter.prepares == 2, "one session (one image encoding) per case for the whole curve"
    assert results.columns[:11].tolist() == [
        *CURVE[:2], "center", "split", *CURVE[2:], "round", "n_clicks", "clicks", "click_protocol"
    ]  # fmt: skip
    assert set(results["click_protocol"]) == {"zeroshot"}
    assert results["round"].dtype == np.int64 and results["n_clicks"].dtype == np.int64
    assert not results["failed"].any()
    for _, curve in results.groupby(CURVE):
        curve = curve.sort_values("round")
        assert curve["round"].tolist() == [0, 1, 2, 3]
        clicks = [json.loads(text) for text in curve["clicks"]]
        assert [len(c) for c in clicks] == curve["n_clicks"].tolist()
        assert curve["n_clicks"].iloc[0] == 0 and curve["n_clicks"].is_monotonic_increasing
        for before, after in itertools.pairwise(clicks):
            assert after[: len(before)] == before, "clicks accumulate"
        assert all(c["round"] <= r for r, cs in zip(curve["round"], clicks, strict=True) for c in cs)
        assert clicks_from_records(clicks[-1])  # the recorded form reads back
    # Round 0 equals the row of the same run without clicks.
    plain = run_eval(
        click_config_for(dataset, strategy, tmp_path / "plain", sequences=("T2", "OOP"), clicks=None),
        progress=False,
        build=counter.build,
    ).results
    assert "round" not in plain.columns
    initial = results[results["round"] == 0].drop(columns=["round", "n_clicks", "clicks", "click_protocol"])
    pd.testing.assert_frame_equal(comparable(initial), comparable(plain))
    slices = pd.read_parquet(out / "slices.parquet")
    assert sorted(slices["round"].unique()) == [0, 1, 2, 3] and len(slices) == len(results) * SHAPE[0]
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["identity"]["fixed"]["clicks"] == {
        "protocol": "zeroshot",
        "slice_rule": "largest-error",
        "per_round": "one",
        "feed_mask": False,
    }
    assert manifest["identity"]["click_rounds"] == 3 and manifest["invocations"][-1]["clicks"]["rounds"] == 3
    text = format_summary(summary)
    assert "curves" in text and "(round 3)" in text


def test_rounds_after_a_perfect_prediction_are_flat_and_skip_the_model(tmp_path):
    """A user with nothing left to correct makes no click; the curve still has every round (and rows say so)."""
    folder = tmp_path / "strategies"
    folder.mkdir()
    every = folder / "mask-all.yaml"
    every.write_text("prompt: {type: mask}\nkey_slices: {rule: every}\n")
    manifest = write_tiny_dataset(tmp_path / "data", subjects=1)
    config = click_config_for(manifest, every, tmp_path / "run", models=("box-fill",), clicks=ClickSettings(rounds=2))
    results = run_eval(config, progress=False).results
    assert results["round"].tolist() == [0, 1, 2]
    assert results["n_clicks"].tolist() == [0, 0, 0] and (results["dice"] == 1.0).all()


def test_more_rounds_extend_each_curve_without_touching_its_rows(dataset, strategy, tmp_path):
    counter = Counting()
    out = tmp_path / "run"
    run_eval(
        click_config_for(dataset, strategy, out, clicks=ClickSettings(rounds=2)), progress=False, build=counter.build
    )
    before = row_bytes(out)
    segments = counter.segments
    summary = run_eval(click_config_for(dataset, strategy, out), progress=False, build=counter.build)
    assert summary.rows_computed == 1 and counter.segments - segments == 2  # replay round 2, then round 3
    assert {p: row_bytes(out)[p] for p in before} == before
    whole = run_eval(
        click_config_for(dataset, strategy, tmp_path / "whole"), progress=False, build=counter.build
    ).results
    pd.testing.assert_frame_equal(comparable(summary.results), comparable(whole))
    assert json.loads((out / "run.json").read_text())["identity"]["click_rounds"] == 3
    # Fewer rounds than written: nothing to do, the longer curves stay.
    shorter = run_eval(click_config_for(dataset, strategy, out, clicks=ClickSettings(rounds=1)), progress=False)
    assert shorter.rows_computed == 0 and len(shorter.results) == 4


def test_a_missing_middle_row_is_made_again_and_later_rows_are_kept(dataset, strategy, tmp_path):
    out = tmp_path / "run"
    first = run_eval(click_config_for(dataset, strategy, out), progress=False, build=Counting().build).results
    gap = next(key for key in RunDir(out).done_keys() if key.round == 2)
    rewrite_store(out, drop=gap)
    before = row_bytes(out)
    assert gap not in before and len(before) == 3
    again = run_eval(click_config_for(dataset, strategy, out), progress=False, build=Counting().build)
    assert again.rows_computed == 1
    after = row_bytes(out)
    assert {k: after[k] for k in before} == before
    pd.testing.assert_frame_equal(comparable(again.results), comparable(first))


@pytest.mark.parametrize(
    ("changed", "message"),
    [
        ({"clicks": ClickSettings(rounds=3, per_round="both")}, r"settings: clicks\.per_round: \"one\" -> \"both\""),
        ({"clicks": ClickSettings(rounds=3, feed_mask=True)}, r"settings: clicks\.feed_mask: false -> true"),
        (
            {"clicks": ClickSettings(rounds=3, protocol="cvpr25")},
            r"settings: clicks\.protocol: \"zeroshot\" -> \"cvpr25\"",
        ),
        ({"clicks": None}, r"settings: clicks: \{.* -> \(absent\)"),
    ],
)
def test_a_changed_click_rule_is_refused(dataset, strategy, tmp_path, changed, message):
    out = tmp_path / "run"
    run_eval(
        click_config_for(dataset, strategy, out, clicks=ClickSettings(rounds=1)), progress=False, build=Counting().build
    )
    with pytest.raises(ConfigError, match=message):
        run_eval(click_config_for(dataset, strategy, out, **changed), progress=False)


def test_a_run_recorded_before_click_protocols_resumes_as_the_zeroshot_protocol(dataset, strategy, tmp_path):
    out = tmp_path / "run"
    first = run_eval(click_config_for(dataset, strategy, out), progress=False, build=Counting().build).results
    manifest = json.loads((out / "run.json").read_text())
    del manifest["identity"]["fixed"]["clicks"]["protocol"]  # as written before protocols existed
    (out / "run.json").write_text(json.dumps(manifest))
    counter = Counting()
    again = run_eval(click_config_for(dataset, strategy, out), progress=False, build=counter.build)
    assert again.rows_computed == 0 and counter.prepares == 0
    pd.testing.assert_frame_equal(comparable(again.results), comparable(first))
    with pytest.raises(ConfigError, match=r"clicks\.protocol: \"zeroshot\" -> \"microsam\""):
        run_eval(
            click_config_for(dataset, strategy, out, clicks=ClickSettings(rounds=3, protocol="microsam")),
            progress=False,
        )


def test_a_run_without_clicks_is_not_extended_with_clicks(dataset, strategy, tmp_path):
    out = tmp_path / "run"
    run_eval(click_config_for(dataset, strategy, out, clicks=None), progress=False, build=Counting().build)
    with pytest.raises(ConfigError, match=r"settings: clicks: \(absent\) -> \{"):
        run_eval(click_config_for(dataset, strategy, out), progress=False)


def test_shards_of_an_interactive_run_merge_into_the_whole(dataset, strategy, tmp_path):
    from zeroshot.runner import Shard, merge_runs

    both = {"sequences": ("T2", "OOP")}
    whole = run_eval(
        click_config_for(dataset, strategy, tmp_path / "whole", **both), progress=False, build=Counting().build
    )
    for index in range(2):
        shard = click_config_for(dataset, strategy, tmp_path / f"shard{index}", shard=Shard(index, 2), **both)
        run_eval(shard, progress=False, build=Counting().build)
    merged = merge_runs([tmp_path / "shard0", tmp_path / "shard1"], tmp_path / "merged")
    pd.testing.assert_frame_equal(comparable(merged.results), comparable(whole.results))
    assert json.loads((tmp_path / "merged" / "run.json").read_text())["identity"]["click_rounds"] == 3
    with pytest.raises(ConfigError, match=r"row .* round=0 is in both"):
        merge_runs([tmp_path / "whole", tmp_path / "shard0"], tmp_path / "dup")


# ---------------------------------------------------------------------------------------------------- failures
def test_a_failed_round_ends_its_curve_and_retry_makes_it_again(dataset, strategy, tmp_path):
    out = tmp_path / "run"
    broken = Counting(fail_at=3)  # round 0 and 1 segment, round 2 fails
    results = run_eval(click_config_for(dataset, strategy, out), progress=False, build=broken.build).results
    assert results["round"].tolist() == [0, 1, 2]
    assert results["failed"].tolist() == [False, False, True]
    failed = results.iloc[2]
    assert "decoder exploded" in failed["error"] and np.isnan(failed["dice"])
    assert failed["n_clicks"] == 1 and len(json.loads(failed["clicks"])) == 1  # the clicks before the failure
    assert pd.read_csv(out / "failures.csv")["round"].tolist() == [2]
    assert "round=2" in (out / "logs" / "errors.log").read_text()
    before = row_bytes(out)
    assert run_eval(click_config_for(dataset, strategy, out), progress=False).rows_computed == 0  # failed = finished
    retried = run_eval(
        click_config_for(dataset, strategy, out, retry_failed=True), progress=False, build=Counting().build
    )
    assert retried.rows_computed == 2 and not retried.results["failed"].any()
    after = row_bytes(out)
    assert all(after[k] == b for k, b in before.items() if k.round != 2)
    assert after[next(k for k in before if k.round == 2)] != before[next(k for k in before if k.round == 2)]


def test_unreadable_case_fails_round_zero_only(strategy, tmp_path):
    manifest = write_tiny_dataset(tmp_path / "data", subjects=1)
    (tmp_path / "data" / "T2_phantom_000_0000.nii.gz").write_bytes(b"not a nifti file")
    results = run_eval(
        click_config_for(manifest, strategy, tmp_path / "run"), progress=False, build=Counting().build
    ).results
    assert results[["round", "n_clicks", "clicks", "failed"]].values.tolist() == [[0, 0, "[]", True]]


def test_out_of_memory_mid_curve_resumes_on_the_offloading_variant(dataset, strategy, tmp_path):
    oom = Counting(fail_at=3, error=torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"))
    results = run_eval(click_config_for(dataset, strategy, tmp_path / "run"), progress=False, build=oom.build).results
    assert not results["failed"].any() and results["offloaded"].tolist() == [False, False, True, True]
    assert oom.prepares == 2
    whole = run_eval(click_config_for(dataset, strategy, tmp_path / "whole"), progress=False, build=Counting().build)
    pd.testing.assert_frame_equal(
        comparable(results).drop(columns="offloaded"), comparable(whole.results).drop(columns="offloaded")
    )


def test_a_resumed_row_without_clicks_is_named(dataset, strategy, tmp_path):
    out = tmp_path / "run"
    run_eval(
        click_config_for(dataset, strategy, out, clicks=ClickSettings(rounds=1)), progress=False, build=Counting().build
    )
    rewrite_store(out, edit=lambda row: row.pop("clicks"))
    cases = select_cases(click_config_for(dataset, strategy, out))
    message = r"row T2/\S+ model=grabcut strategy=box-mid seed=0 round=1: no readable 'clicks'"
    with pytest.raises(ConfigError, match=message):
        plan_curves(cases, "grabcut", ["box-mid"], [0], RunDir(out), rounds=3)


# ---------------------------------------------------------------------------------------------- executors, kill
def test_the_ray_case_worker_makes_the_same_curve(dataset, strategy, tmp_path):
    out = tmp_path / "run"
    local = run_eval(click_config_for(dataset, strategy, out), progress=False, build=Counting().build).results
    other = RunDir(tmp_path / "worker")
    config = click_config_for(dataset, strategy, other.root)
    context = RunContext(
        rundir=other,
        strategies=load_strategies_for_run(config.strategies),
        label=1,
        tolerances_mm=(2.0,),
        save_pred=False,
        build=Counting().build,
        record_model=lambda *_: None,
        clicks=config.clicks,
    )
    (case,) = select_cases(config)
    records = CaseWorker(context, "grabcut").run(CaseJob(case, (RowKey("T2", case.case_id, "grabcut", "box-mid", 0),)))
    assert [r.row["round"] for r in records] == [0, 1, 2, 3]
    got = pd.DataFrame([dict(r.row) for r in records])
    assert got["clicks"].tolist() == local["clicks"].tolist()
    assert np.allclose(got["dice"], local["dice"])


KILL_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from fixtures_runner import Counting, click_config_for
from zeroshot.interactive import ClickSettings
from zeroshot.runner import run_eval

if __name__ == "__main__":
    workers = int(sys.argv[4])  # not part of a run's identity
    clicks = ClickSettings(rounds=4, protocol=sys.argv[5])
    config = click_config_for(*sys.argv[1:4], sequences=("T2", "OOP"), workers=workers, clicks=clicks)
    run_eval(config, progress=False, build=Counting().build)
"""


def _partial_curves(out: Path) -> int:
    rounds: dict[RowKey, set[int]] = {}
    for key in RunDir(out).done_keys():
        rounds.setdefault(key.curve, set()).add(key.round)
    return sum(1 for r in rounds.values() if 0 < len(r) < 5)


@pytest.mark.parametrize("protocol", ["zeroshot", "cvpr25", "microsam", "radioactive"])
def test_kill_9_mid_curve_then_resume_gives_the_uninterrupted_curves(dataset, strategy, tmp_path, protocol):
    script = tmp_path / "run_clicks.py"
    script.write_text(KILL_SCRIPT.format(tests=str(TESTS)))
    killed = tmp_path / "killed"
    command = [sys.executable, str(script), str(dataset), str(strategy), str(killed)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # Scoring in a worker process writes rows as scores arrive (possibly out of order): the harder case to resume.
    process = subprocess.Popen([*command, "1", protocol], env=env, stdout=subprocess.DEVNULL)
    kill_when(process, lambda: len(RunDir(killed).done_keys()) >= 3 and _partial_curves(killed), timeout=120)
    assert _partial_curves(killed), "the kill must land mid-curve"
    before = row_bytes(killed)
    assert 3 <= len(before) < 10

    subprocess.run([*command, "0", protocol], check=True, env=env, capture_output=True)
    after = row_bytes(killed)
    assert len(after) == 2 * 5
    assert {p: after[p] for p in before} == before, "rows written before the kill are never rewritten"
    reference = tmp_path / "reference"
    clicks = ClickSettings(rounds=4, protocol=protocol)
    config = click_config_for(dataset, strategy, reference, sequences=("T2", "OOP"), clicks=clicks)
    expected = run_eval(config, progress=False, build=Counting().build).results
    assert set(expected["click_protocol"]) == {protocol} and expected["n_clicks"].max() > 0
    got = pd.read_parquet(killed / "results.parquet")
    pd.testing.assert_frame_equal(comparable(got), comparable(expected))
    pd.testing.assert_frame_equal(
        pd.read_parquet(killed / "slices.parquet").sort_values([*CURVE, "round", "z"]).reset_index(drop=True),
        pd.read_parquet(reference / "slices.parquet").sort_values([*CURVE, "round", "z"]).reset_index(drop=True),
    )
    statuses = [i["status"] for i in json.loads((killed / "run.json").read_text())["invocations"]]
    assert statuses[0].startswith("died") and statuses[-1] == "finished"


# ------------------------------------------------------------------------------------------------------- SAM2
def test_sam2_encodes_each_volume_once_for_the_whole_curve(dataset, strategy, tmp_path):
    """Random-weight SAM2.1-tiny at 128 px: every round reuses the session's image features."""
    pytest.importorskip("sam2")
    config = click_config_for(
        dataset,
        strategy,
        tmp_path / "run",
        models=("random:sam2.1_hiera_t@128",),
        device="cpu",
        clicks=ClickSettings(rounds=3, per_round="both", feed_mask=True),
    )
    results = run_eval(config, progress=False).results
    assert results["round"].tolist() == [0, 1, 2, 3] and not results["failed"].any()
    infos = [record.info for record in sorted(RunDir(tmp_path / "run").store.records(), key=lambda r: r.key)]
    assert [info["encoder_slices_total"] for info in infos] == [SHAPE[0]] * 4


# --------------------------------------------------------------------------------------------------------- CLI
def test_eval_cli_clicks_writes_curves_and_refuses_loose_click_options(dataset, strategy, tmp_path, capsys):
    out = tmp_path / "run"
    base = ["eval", "--data", str(dataset), "--strategy", str(strategy), "--model", "grabcut", "--sequence", "T2"]
    base += ["--out", str(out), "--no-progress", "--workers", "0", "--save-pred"]
    assert main([*base, "--clicks", "2", "--click-slice", "key-slice", "--clicks-per-round", "both"]) == 0
    printed = capsys.readouterr().out
    assert "3 row(s) computed now" in printed and "round 0 -> last round" in printed
    results = pd.read_parquet(out / "results.parquet")
    assert results["round"].tolist() == [0, 1, 2]
    assert [Path(p).name for p in results["prediction"]] == ["round0.nii.gz", "round1.nii.gz", "round2.nii.gz"]
    assert all((out / p).is_file() for p in results["prediction"])
    clicks = [c for text in results["clicks"] for c in json.loads(text)]
    key_slice = int(results["key_slices"].iloc[0])
    assert clicks and all(c["z"] == key_slice for c in clicks), "key-slice rule clicks on the key slice only"
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["identity"]["fixed"]["clicks"]["slice_rule"] == "key-slice"
    assert main([*base, "--clicks", "2", "--feed-mask"]) == 2
    assert "clicks.feed_mask: false -> true" in capsys.readouterr().err
    assert main([*base, "--click-slice", "key-slice", "--feed-mask"]) == 2
    assert "--click-slice, --feed-mask: only with --clicks N" in capsys.readouterr().err
    assert main([*base, "--clicks", "0"]) == 2
    assert "--clicks: expected 1 or more rounds, got 0" in capsys.readouterr().err
    assert main([*base, "--click-protocol", "microsam", "--clicks-per-round", "both"]) == 2
    assert "--clicks-per-round: options of the zeroshot protocol; --click-protocol microsam" in capsys.readouterr().err


def test_eval_cli_click_protocol_alone_runs_the_protocols_own_budget(dataset, tmp_path, capsys):
    out = tmp_path / "run"
    command = ["eval", "--data", str(dataset), "--strategy", "cvpr25-box", "--model", "grabcut", "--sequence", "T2"]
    command += ["--out", str(out), "--no-progress", "--workers", "0", "--click-protocol", "cvpr25", "--save-pred"]
    assert main(command) == 0
    results = pd.read_parquet(out / "results.parquet")
    assert results["round"].tolist() == [0, 1, 2, 3, 4, 5], "cvpr25: the box, then 5 clicks"
    assert set(results["click_protocol"]) == {"cvpr25"} and results["oracle_gt_z_range"].all()
    assert json.loads((out / "run.json").read_text())["identity"]["fixed"]["clicks"]["protocol"] == "cvpr25"
    from zeroshot.datasets import discover, select
    from zeroshot.volume import read_label, read_volume

    (case,) = select(discover(dataset), sequences=["T2"])
    volume = read_volume(case.image)
    gt = read_label(case.label, volume, label=1)
    present = np.flatnonzero(gt.any(axis=(1, 2)))
    for path in results["prediction"]:  # every round's prediction lies inside the ground truth's z-extent
        predicted = np.flatnonzero(read_label(out / path, volume, label=1, require_label=False).any(axis=(1, 2)))
        assert predicted.size and present[0] <= predicted.min() and predicted.max() <= present[-1]
    record = min(RunDir(out).store.records(), key=lambda r: r.key)
    assert record.info["z_extent"] == [int(present[0]), int(present[-1])]


# ----------------------------------------------------------------------------------------- grabcut and clicks
def test_grabcut_takes_negative_clicks_off_key_slices_as_background_seeds():
    from zeroshot.prompts import SlicePrompt, VolumePrompts
    from zeroshot.volume import volume_from_array

    # A bright disk on slices 2..7 of a noisy volume; a box on slice 4 propagates through all of them.
    yy, xx = np.mgrid[:48, :48]
    label = np.zeros((10, 48, 48), dtype=bool)
    label[2:8] = (yy - 24) ** 2 + (xx - 24) ** 2 <= 7**2
    image = np.where(label, 200.0, 100.0) + np.random.default_rng(0).normal(0, 8, label.shape)
    session = GrabCutSegmenter(**FAST_GRABCUT).prepare(volume_from_array(image, (3.0, 1.0, 1.0)))
    box = SlicePrompt(z=4, box=(17, 17, 31, 31))
    plain = session.segment(VolumePrompts("c", "s", 0, "gt", (box,))).mask
    assert plain[6, 24, 24], "propagation reaches slice 6"
    negative = SlicePrompt(z=6, points=((24, 24),), labels=(0,))
    result = session.segment(VolumePrompts("c", "s", 0, "gt", (box, negative)))
    assert not result.mask[6, 24, 24], "the negative click is background where propagation passes"
    assert result.info["key_slices"] == [4] and result.info["background_seed_slices"] == [6]
    assert np.array_equal(result.mask[:6], plain[:6]), "slices before the click are unchanged"
    # A mask with a negative point on one slice: the mask seeds GrabCut, the point fixes a background disk.
    both = SlicePrompt(z=4, mask=label[4], points=((24, 24),), labels=(0,))
    seeded = session.segment(VolumePrompts("c", "s", 0, "gt", (both,))).mask
    assert not seeded[4, 24, 24] and seeded[4, 24, 18]


# ------------------------------------------------------------------------------------------------- z-extent
def test_a_z_extent_prompt_clears_every_prediction_outside_it():
    from zeroshot.prompts import SlicePrompt, VolumePrompts
    from zeroshot.runner.zextent import ZExtentSession, within_z_extent
    from zeroshot.segmenters.base import Segmentation

    class Everywhere:
        volume = "the volume"

        def segment(self, prompts):
            return Segmentation(np.ones((6, 4, 4), bool), np.full((6, 4, 4), 0.9, np.float32), {"model": "all"})

        def close(self):
            self.closed = True

    box = (SlicePrompt(z=2, box=(0, 0, 3, 3)),)
    plain = VolumePrompts("c", "s", 0, "gt", box)
    ranged = VolumePrompts("c", "s", 0, "gt", box, details={"z_extent": [1, 3]})
    inner = Everywhere()
    session = ZExtentSession(inner)
    assert session.volume == "the volume"
    assert session.segment(plain).mask.all()
    cut = session.segment(ranged)
    assert cut.mask.any(axis=(1, 2)).tolist() == [False, True, True, True, False, False]
    assert (cut.probabilities[[0, 4, 5]] == 0).all() and (cut.probabilities[1:4] == np.float32(0.9)).all()
    assert cut.info == {"model": "all", "z_extent": [1, 3], "z_extent_voxels_cleared": 3 * 16}
    session.close()
    assert inner.closed
    with pytest.raises(PromptError, match=r"case c: z_extent \[3, 9\] is not \[z_min, z_max\] within the volume's 6"):
        within_z_extent(inner.segment(ranged), VolumePrompts("c", "s", 0, "gt", box, details={"z_extent": [3, 9]}))


@pytest.mark.slow  # ~30 s of CPU (a minute on a shared machine); the grabcut-only CLI test runs by default
def test_cvpr25_protocol_end_to_end_ends_with_the_auc_table_and_a_curve_figure(dataset, tmp_path):
    """Phantom, GrabCut and random-weight SAM2.1-tiny at 64 px, the challenge's box and clicks: eval, compare,
    figures. Random weights test the machinery, never accuracy."""
    pytest.importorskip("sam2")
    run, tables, figures = tmp_path / "run", tmp_path / "tables", tmp_path / "figures"
    command = ["eval", "--data", str(dataset), "--sequence", "T2", "--strategy", "cvpr25-box", "--model", "grabcut"]
    command += ["--model", "random:sam2.1_hiera_t@64", "--click-protocol", "cvpr25", "--clicks", "2"]
    assert main([*command, "--out", str(run), "--no-progress", "--workers", "0"]) == 0
    assert main(["compare", str(run), "--out", str(tables), "--resamples", "100", "--time-cap-s", "90"]) == 0
    auc = pd.read_csv(tables / "auc.csv")
    assert set(auc["model"]) == {"grabcut", "random:sam2.1_hiera_t@64"}
    assert set(auc["strategy"]) == {"cvpr25-box · cvpr25"} and set(auc["rounds"]) == {2}
    assert auc["mean"].between(0, 1).all()  # R = 2: AUCs lie in [0, R - 1]
    assert "DSC_AUC" in (tables / "auc.md").read_text()
    assert main(["figures", str(run), "--out", str(figures), "--resamples", "100"]) == 0
    assert (figures / "dice_vs_clicks.png").stat().st_size > 10_000
