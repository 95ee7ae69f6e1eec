"""Mask prompts live inside a run's prompt records: no file per case, and runs that kept PNG files still read.

``box-fill`` paints a mask prompt as its prediction, so a mask read back wrongly changes the rows.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from fixtures_runner import comparable, config_for, write_tiny_dataset

from zeroshot.cli import main
from zeroshot.figures.overlays import _prompt_slices
from zeroshot.prompts.serialise import prompts_from_json, prompts_to_json, write_prompt_masks
from zeroshot.report.cases import case_entries
from zeroshot.report.sources import read_prompt_marks, read_sources
from zeroshot.runner import RunDir, merge_runs, run_eval
from zeroshot.runner.rundir import write_json
from zeroshot.store import PromptKey, RunStore
from zeroshot.store.paths import legacy_prompt_path, legacy_row_path
from zeroshot.store.store import PROMPT_MASKS
from zeroshot.volume import read_label, read_volume

REPOSITORY = Path(__file__).resolve().parents[1]
MASK_STRATEGY = REPOSITORY / "prompts" / "mask-mid.yaml"
BOX_STRATEGY = REPOSITORY / "prompts" / "box-mid.yaml"


def mask_strategies(folder: Path) -> tuple[Path, Path, Path]:
    """The bundled mask and box strategies, and a mask on every slice of the structure (many masks per set)."""
    folder.mkdir(parents=True, exist_ok=True)
    every = folder / "mask-every.yaml"
    every.write_text("prompt: {type: mask}\nkey_slices: {rule: every}\n")
    return MASK_STRATEGY, BOX_STRATEGY, every


def mask_prompt_sets(run: Path) -> dict[PromptKey, object]:
    """Every prompt set of a run that holds a mask prompt, as read for resuming (``RunDir.prompt_set``)."""
    rundir = RunDir(run)
    found = {key: rundir.prompt_set(key) for key in rundir.store.prompt_sets()}
    return {key: prompts for key, prompts in found.items() if any(s.mask is not None for s in prompts.slices)}


def assert_same_prompts(a: dict, b: dict) -> None:
    """Equal prompt sets, masks byte for byte."""
    assert sorted(a, key=PromptKey.astuple) == sorted(b, key=PromptKey.astuple)
    for key, first in a.items():
        second = b[key]
        assert prompts_to_json(first) == prompts_to_json(second)
        for s, t in zip(first.slices, second.slices, strict=True):
            assert (s.mask is None) == (t.mask is None)
            if s.mask is not None:
                assert s.mask.dtype == t.mask.dtype == bool and s.mask.tobytes() == t.mask.tobytes()


def write_mask_files_form(source: Path, target: Path, *, keep_rows: int | None = None) -> None:
    """Copy the run ``source`` to ``target`` as the store wrote it before mask prompts were inline.

    Each prompt set names its masks' PNG files, which lie in ``store/prompt-masks/...``. With ``keep_rows``, only
    the first rows are kept (a run stopped before it ended).
    """
    shutil.copytree(source, target)
    shutil.rmtree(target / "store")
    old, new = RunDir(source).store, RunStore(target)
    for key, text in old.prompt_sets().items():
        prompts = prompts_from_json(text)
        write_prompt_masks(prompts, RunDir(target).prompt_mask_dir(key))
        new.append_prompts(key, prompts_to_json(prompts, mask_files=True))
    for record in sorted(old.records(), key=lambda r: r.key)[:keep_rows]:
        new.append_row(record)
    new.close()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_tiny_dataset(tmp_path_factory.mktemp("data"), subjects=2)


@pytest.fixture(scope="module")
def strategies(tmp_path_factory):
    return mask_strategies(tmp_path_factory.mktemp("strategies"))


@pytest.fixture(scope="module")
def fresh(dataset, strategies, tmp_path_factory):
    """A run with mask strategies, predictions saved (for the report)."""
    out = tmp_path_factory.mktemp("fresh") / "run"
    result = run_eval(config_for(dataset, strategies, out, save_pred=True), progress=False)
    return out, result


# ------------------------------------------------------------------------------------------------- fresh runs
def test_a_run_with_mask_strategies_keeps_its_masks_inside_the_store(fresh):
    out, result = fresh
    assert not result.results["failed"].any() and len(result.results) == 6 * 3 * 2
    assert not (out / "store" / PROMPT_MASKS).exists()
    assert {p.name.split(".", 1)[1] for p in (out / "store").rglob("*") if p.is_file()} == {
        "prompts.parquet",
        "rows.parquet",
        "slices.parquet",
    }
    sets = mask_prompt_sets(out)
    assert len(sets) == 6 * 2 * 2  # cases x mask strategies x seeds
    every = [p for key, p in sets.items() if key.strategy == "mask-every"]
    assert every and all(len(p.slices) > 1 for p in every)
    text = RunDir(out).stored_prompts(next(iter(sets)))
    assert isinstance(json.loads(text)["slices"][0]["mask"], dict)


def test_the_mask_read_back_is_the_prompt_box_fill_painted(fresh, dataset):
    """box-fill's prediction on a mask prompt's key slice is the mask: the stored mask is the one the run used."""
    out, result = fresh
    rows = result.results.set_index(["sequence", "case_id", "strategy", "seed"])
    for key, prompts in mask_prompt_sets(out).items():
        image = read_volume(dataset.parent / f"{key.sequence}_{key.case_id}_0000.nii.gz")
        path = out / rows.loc[(key.sequence, key.case_id, key.strategy, key.seed), "prediction"]
        prediction = read_label(path, image, label=1, require_label=False)
        for s in prompts.slices:
            assert s.mask.any() and np.array_equal(prediction[s.z], s.mask)


def test_the_file_count_does_not_grow_with_cases(dataset, strategies, tmp_path):
    counts = {}
    for subjects in (1, 3):
        data = write_tiny_dataset(tmp_path / f"data{subjects}", subjects=subjects)
        out = tmp_path / f"run{subjects}"
        result = run_eval(config_for(data, strategies, out), progress=False)
        assert len(result.results) == subjects * 3 * 3 * 2
        counts[subjects] = RunDir(out).store.file_count()
    assert counts[1] == counts[3] == 3


# ------------------------------------------------------------------------------------------------- resuming
def eval_command(manifest: Path, strategies, out: Path) -> list[str]:
    command = [sys.executable, "-m", "zeroshot.cli", "eval", "--data", str(manifest), "--model", "box-fill"]
    for strategy in strategies:
        command += ["--strategy", str(strategy)]
    return [*command, "--seeds", "0", "1", "--out", str(out), "--save-pred", "--workers", "1", "--no-progress"]


def test_kill_9_mid_run_with_mask_prompts_then_resume_gives_the_uninterrupted_rows(strategies, tmp_path):
    manifest = write_tiny_dataset(tmp_path / "data", subjects=3)
    env = {**os.environ, "PYTHONPATH": str(REPOSITORY)}
    reference = tmp_path / "reference"
    subprocess.run(eval_command(manifest, strategies, reference), check=True, env=env, capture_output=True)
    total = 9 * 3 * 2
    killed = tmp_path / "killed"
    process = subprocess.Popen(eval_command(manifest, strategies, killed), env=env, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if len(RunDir(killed).done_keys()) >= 3:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            break
        time.sleep(0.02)
    else:
        process.kill()
        pytest.fail(f"the run ended (status {process.returncode}) before it could be killed; make it longer")
    assert 3 <= len(RunDir(killed).done_keys()) < total, "the kill must land mid-run"

    subprocess.run(eval_command(manifest, strategies, killed), check=True, env=env, capture_output=True)
    got, expected = pd.read_parquet(killed / "results.parquet"), pd.read_parquet(reference / "results.parquet")
    pd.testing.assert_frame_equal(comparable(got), comparable(expected))
    assert_same_prompts(mask_prompt_sets(killed), mask_prompt_sets(reference))
    assert not (killed / "store" / PROMPT_MASKS).exists()
    assert RunDir(killed).store.file_count() == 2 * 3  # two invocations, three parts each


def test_a_run_whose_masks_are_png_files_reads_them_and_resumes(fresh, dataset, strategies, tmp_path):
    """The store as written before masks were inline: a stopped run resumes with the masks of its folder."""
    out, result = fresh
    old = tmp_path / "old"
    write_mask_files_form(out, old, keep_rows=20)
    masks = sorted((old / "store" / PROMPT_MASKS).rglob("*.png"))
    assert len(masks) == 6 * (1 + 1) * 2 + sum(  # mask-mid: one slice; mask-every: one file per prompted slice
        len(p.slices) - 1 for k, p in mask_prompt_sets(out).items() if k.strategy == "mask-every"
    )
    assert_same_prompts(mask_prompt_sets(old), mask_prompt_sets(out))

    resumed = run_eval(config_for(dataset, strategies, old, save_pred=True), progress=False)
    assert resumed.rows_computed == len(result.results) - 20
    pd.testing.assert_frame_equal(comparable(resumed.results), comparable(result.results))
    assert sorted((old / "store" / PROMPT_MASKS).rglob("*.png")) == masks  # read, neither rewritten nor added
    assert_same_prompts(mask_prompt_sets(old), mask_prompt_sets(out))


def test_a_changed_mask_file_of_an_older_run_fails_its_rows_by_name(fresh, dataset, strategies, tmp_path):
    out, _ = fresh
    old = tmp_path / "old"
    write_mask_files_form(out, old, keep_rows=0)
    victim = next((old / "store" / PROMPT_MASKS).rglob("*.png"))
    changed = 255 - cv2.imread(str(victim), cv2.IMREAD_UNCHANGED)
    victim.write_bytes(cv2.imencode(".png", changed)[1].tobytes())
    resumed = run_eval(config_for(dataset, strategies, old), progress=False)
    failed = resumed.results.loc[resumed.results["failed"]]
    assert len(failed) >= 1 and failed["error"].str.contains("does not hold the mask its name promises").all()


def test_merge_pools_a_run_with_mask_files_and_one_with_inline_masks(fresh, dataset, strategies, tmp_path):
    out, result = fresh
    t1 = run_eval(config_for(dataset, strategies, tmp_path / "t1", sequences=("T1",)), progress=False)
    rest = run_eval(config_for(dataset, strategies, tmp_path / "rest", sequences=("T2", "OOP")), progress=False)
    write_mask_files_form(tmp_path / "t1", tmp_path / "t1-old")
    merged = tmp_path / "merged"
    merge_runs([tmp_path / "t1-old", tmp_path / "rest"], merged)
    assert len(t1.results) + len(rest.results) == len(result.results)
    assert_same_prompts(mask_prompt_sets(merged), mask_prompt_sets(out))
    again = run_eval(config_for(dataset, strategies, merged), progress=False)
    assert again.rows_computed == 0


# ------------------------------------------------------------------------------------------------ migration
def test_migrating_the_layout_before_the_store_puts_its_mask_files_inline(fresh, dataset, strategies, tmp_path, capsys):
    out, result = fresh
    legacy = tmp_path / "legacy"
    shutil.copytree(out, legacy)
    rundir = RunDir(legacy)
    for record in rundir.store.records():
        write_json(legacy_row_path(legacy, record.key), {"row": dict(record.row), "slices": dict(record.slices),
                                                         "info": dict(record.info)})  # fmt: skip
    for key, text in rundir.store.prompt_sets().items():
        prompts = prompts_from_json(text)
        path = legacy_prompt_path(legacy, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_prompt_masks(prompts, path.with_suffix(".masks"))
        path.write_text(prompts_to_json(prompts, mask_files=True) + "\n")
    shutil.rmtree(rundir.store.folder)
    assert len(list((legacy / "prompts").rglob("*.png"))) > 24

    assert main(["migrate", str(legacy)]) == 0
    assert f"moved {len(result.results)} row(s) and 36 prompt set(s)" in capsys.readouterr().out
    assert not (legacy / "prompts").exists() and not (legacy / "store" / PROMPT_MASKS).exists()
    assert RunDir(legacy).store.file_count() == 3
    assert_same_prompts(mask_prompt_sets(legacy), mask_prompt_sets(out))
    again = run_eval(config_for(dataset, strategies, legacy, save_pred=True), progress=False)
    assert again.rows_computed == 0
    pd.testing.assert_frame_equal(comparable(again.results), comparable(result.results))


def test_migrate_names_a_prompt_file_whose_mask_file_changed(fresh, tmp_path, capsys):
    out, _ = fresh
    legacy = tmp_path / "legacy"
    shutil.copytree(out, legacy)
    rundir = RunDir(legacy)
    key, text = next((k, t) for k, t in rundir.store.prompt_sets().items() if k.strategy == "mask-mid")
    prompts = prompts_from_json(text)
    path = legacy_prompt_path(legacy, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    (mask_file,) = write_prompt_masks(prompts, path.with_suffix(".masks"))
    path.write_text(prompts_to_json(prompts, mask_files=True) + "\n")
    mask_file.write_bytes(b"not a png")
    shutil.rmtree(rundir.store.folder)
    assert main(["migrate", str(legacy)]) == 2
    assert f"migrate: {path}: its mask prompts cannot be read" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------- readers
def test_the_report_shows_the_same_entries_and_images_for_either_form(fresh, tmp_path):
    out, _ = fresh
    old = tmp_path / "old"
    write_mask_files_form(out, old)
    fresh_sources, old_sources = read_sources([out]), read_sources([old])
    rows = list(fresh_sources.runs.results.itertuples(index=False))
    masked = [r for r in rows if r.strategy.startswith("mask")]
    marks = [read_prompt_marks(fresh_sources, r) for r in masked]
    assert marks == [read_prompt_marks(old_sources, r) for r in masked]
    assert all(m and not any(mark.box or mark.points for mark in m) for m in marks)  # the key slices, nothing drawn
    entries, _ = case_entries(fresh_sources, tmp_path / "report-fresh", progress=False)
    old_entries, _ = case_entries(old_sources, tmp_path / "report-old", progress=False)
    assert entries and repr(entries) == repr(old_entries)  # repr: NaN metrics (box_coverage) compare equal
    images = sorted(p.relative_to(tmp_path / "report-fresh") for p in (tmp_path / "report-fresh").rglob("*.png"))
    assert images and images == sorted(
        p.relative_to(tmp_path / "report-old") for p in (tmp_path / "report-old").rglob("*.png")
    )
    for name in images:
        assert (tmp_path / "report-fresh" / name).read_bytes() == (tmp_path / "report-old" / name).read_bytes()


def test_the_overlay_figure_takes_the_same_prompted_slice_from_either_form(fresh, tmp_path):
    out, _ = fresh
    old = tmp_path / "old"
    write_mask_files_form(out, old)
    drawn = ("z", "box", "points", "labels")
    for key in mask_prompt_sets(out):
        first = _prompt_slices(RunDir(out).stored_prompts(key))
        second = _prompt_slices(RunDir(old).stored_prompts(key))
        assert first and [{k: s.get(k) for k in drawn} for s in first] == [{k: s.get(k) for k in drawn} for s in second]
