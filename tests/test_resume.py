"""A run killed with SIGKILL at an arbitrary moment and resumed ends with exactly the rows of an uninterrupted run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
from fixtures_runner import SHAPE, comparable, kill_when, write_strategies, write_tiny_dataset

from zeroshot.runner import RunDir


def eval_command(manifest: Path, strategies, out: Path) -> list[str]:
    return [
        sys.executable, "-m", "zeroshot.cli", "eval", "--data", str(manifest), "--model", "box-fill",
        "--strategy", str(strategies[0]), "--strategy", str(strategies[1]), "--seeds", "0", "1",
        "--out", str(out), "--save-pred", "--workers", "1", "--no-progress",
    ]  # fmt: skip


def test_kill_9_mid_run_then_resume_gives_the_uninterrupted_results(tmp_path):
    manifest = write_tiny_dataset(tmp_path / "data", subjects=3)
    strategies = write_strategies(tmp_path / "strategies")
    total = 3 * 3 * 2 * 2
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    reference = tmp_path / "reference"
    subprocess.run(eval_command(manifest, strategies, reference), check=True, env=env, capture_output=True)

    killed = tmp_path / "killed"
    process = subprocess.Popen(eval_command(manifest, strategies, killed), env=env, stdout=subprocess.DEVNULL)
    kill_when(process, lambda: len(RunDir(killed).done_keys()) >= 3, timeout=120)
    present = RunDir(killed).done_keys()
    assert 3 <= len(present) < total, "the kill must land mid-run"
    for record in RunDir(killed).store.records():  # every row visible is complete
        assert record.row["case_id"] == record.key.case_id and record.n_slices == SHAPE[0]
    manifest_json = json.loads((killed / "run.json").read_text())
    assert manifest_json["invocations"][-1]["status"] == "running"  # the killed invocation says so

    resumed = subprocess.run(eval_command(manifest, strategies, killed), check=True, env=env, capture_output=True)
    assert f"{total - len(present)} row(s) computed now" in resumed.stdout.decode()
    statuses = [i["status"] for i in json.loads((killed / "run.json").read_text())["invocations"]]
    assert statuses[0].startswith("died") and statuses[1] == "finished"
    expected = pd.read_parquet(reference / "results.parquet")
    got = pd.read_parquet(killed / "results.parquet")
    assert len(got) == total
    pd.testing.assert_frame_equal(comparable(got), comparable(expected))
    pd.testing.assert_frame_equal(
        pd.read_parquet(killed / "slices.parquet"), pd.read_parquet(reference / "slices.parquet")
    )
    assert not [p for p in killed.rglob(".*.tmp*")], "temporaries of the killed writer are cleaned up"
    for row in got.itertuples():
        assert (killed / row.prediction).is_file()
