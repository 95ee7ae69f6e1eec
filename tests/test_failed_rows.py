"""Failures never block what comes after: failed rows carry a penalty, compare and figures run on them.

Also the checks around them: seeds validated while parsing, empty shards, files readable by collaborators, one SD
definition, headers kept, box prompts that lose their structure.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from zeroshot.atomic import current_umask, write_atomic
from zeroshot.cli import main
from zeroshot.compare import prepare_rows, summary_table
from zeroshot.compare.tables import BootstrapOptions
from zeroshot.errors import ConfigError, ZeroshotWarning
from zeroshot.runner import EvalConfig, RunDir
from zeroshot.runner.summary import summary_table as eval_summary_table
from zeroshot.store import PromptKey

FAST = BootstrapOptions(n_resamples=200)


@pytest.fixture(scope="module")
def broken_data(phantom_data, tmp_path_factory) -> Path:
    """The phantom's T1 cases with one truncated image and one label on another grid than its image."""
    root = tmp_path_factory.mktemp("broken") / "data"
    shutil.copytree(phantom_data, root)
    image = root / "T1" / "train" / "images" / "phantom_000_0000.nii.gz"
    image.write_bytes(image.read_bytes()[:2000])  # truncated: the header survives, the voxels do not
    label = root / "T1" / "train" / "labels" / "phantom_001.nii.gz"
    nii = nib.load(label)
    nib.save(nib.Nifti1Image(np.asarray(nii.dataobj)[:, :, :-1], nii.affine), label)  # one slice short
    return root


def _eval(data: Path, out: Path, *extra: str) -> int:
    argv = ["eval", "--data", str(data), "--sequence", "T1", "--model", "box-fill", "--strategy", "box-mid"]
    return main([*argv, "--out", str(out), "--workers", "0", "--no-progress", *extra])


def test_failed_rows_carry_d_max_and_compare_and_figures_run(broken_data, tmp_path, capsys):
    run = tmp_path / "run"
    assert _eval(broken_data, run, "--save-pred") == 0
    results = pd.read_parquet(run / "results.parquet").set_index("case_id")
    failed = results.loc[results["failed"]]
    assert sorted(failed.index) == ["phantom_000", "phantom_001"]
    assert "cannot read as NIfTI" in failed.loc["phantom_000", "error"]
    assert "the label is not on its image's voxel grid" in failed.loc["phantom_001", "error"]
    assert np.isfinite(failed["d_max_mm"]).all() and (failed["d_max_mm"] > 100).all()  # from the headers
    capsys.readouterr()
    assert main(["compare", str(run), "--resamples", "200", "--out", str(tmp_path / "tables")]) == 0
    summary = pd.read_csv(tmp_path / "tables" / "summary.csv")
    hd95 = summary.loc[summary["metric"] == "hd95_mm"].iloc[0]
    assert hd95["n_failed"] == 2 and hd95["n_cases"] == len(results)
    assert main(["figures", str(run), "--resamples", "200", "--out", str(tmp_path / "figs")]) == 0
    assert (tmp_path / "figs" / "distributions.png").is_file()


def _rows(d_max: list[float]) -> pd.DataFrame:
    n = len(d_max)
    return pd.DataFrame(
        {
            "case_id": [f"c{i}" for i in range(n)],
            "sequence": "T1",
            "center": "A",
            "model": "m",
            "strategy": "s",
            "seed": 0,
            "dice": [0.8] + [np.nan] * (n - 1),
            "hd95_mm": [3.0] + [np.nan] * (n - 1),
            "empty_gt": [False] + [np.nan] * (n - 1),
            "empty_pred": [False] + [np.nan] * (n - 1),
            "failed": [False] + [True] * (n - 1),
            "d_max_mm": d_max,
        }
    )


def test_a_failed_row_without_any_readable_header_takes_the_largest_d_max():
    rows = prepare_rows(_rows([300.0, np.nan, 250.0]))
    assert rows["hd95_mm"].tolist() == [3.0, 300.0, 250.0]
    assert rows["dice"].tolist() == [0.8, 0.0, 0.0]


def test_without_any_d_max_the_distances_are_left_out_with_a_warning():
    with pytest.warns(ZeroshotWarning, match=r"no row records d_max_mm .* hd95_mm are left out"):
        rows = prepare_rows(_rows([np.nan, np.nan]))
    assert "hd95_mm" not in rows.columns and rows["dice"].tolist() == [0.8, 0.0]


def test_an_empty_shard_says_it_has_no_rows(phantom_data, tmp_path, capsys):
    run = tmp_path / "shard"
    assert _eval(phantom_data, run, "--case", "phantom_000", "--shard", "1/2") == 0
    capsys.readouterr()
    for command in ("compare", "figures"):
        assert main([command, str(run), "--out", str(tmp_path / command)]) == 2
        err = capsys.readouterr().err
        assert "the run holds no result rows (an empty shard" in err and "lacks column" not in err


def test_seeds_are_validated_while_parsing(phantom_data, tmp_path, capsys):
    with pytest.raises(SystemExit) as caught:
        _eval(phantom_data, tmp_path / "run", "--seeds", "99999999999999999999999")
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert "argument --seeds: seeds are whole numbers from 0 to 2**63 - 1" in err
    assert not (tmp_path / "run").exists()
    with pytest.raises(SystemExit):
        main(["prompts", "--data", str(phantom_data), "--strategy", "box-mid", "--seed", "-1", "--out", "x.jsonl"])
    assert "argument --seed: seeds are whole numbers" in capsys.readouterr().err
    with pytest.raises(
        ConfigError, match=r"--seeds: seeds are whole numbers from 0 to 2\*\*63 - 1 .* got 9223372036854775808"
    ):
        EvalConfig(data=phantom_data, out=tmp_path, models=("box-fill",), strategies=("box-mid",), seeds=(2**63,))
    with pytest.raises(ConfigError, match="--label 0: value 0 is the background"):
        EvalConfig(data=phantom_data, out=tmp_path, models=("box-fill",), strategies=("box-mid",), label=0)


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_files_are_written_with_the_umask_s_permissions(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        assert current_umask() == umask
        path = write_atomic(tmp_path / "a" / "row.json", "{}")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == mode


def test_a_run_is_readable_by_collaborators(phantom_data, tmp_path):
    previous = os.umask(0o022)
    try:
        assert _eval(phantom_data, tmp_path / "run", "--case", "phantom_000", "--save-pred") == 0
    finally:
        os.umask(previous)
    files = [p for p in (tmp_path / "run").rglob("*") if p.is_file() and p.name != "run.lock"]
    assert {p.suffix for p in files} >= {".json", ".csv", ".parquet", ".gz"}
    assert {oct(stat.S_IMODE(p.stat().st_mode)) for p in files} == {oct(0o644)}


def test_eval_and_compare_report_the_same_sd_over_cases():
    rows = pd.DataFrame(
        {
            "case_id": ["a", "a", "b", "b", "c", "c"],
            "sequence": "T1",
            "center": "A",
            "model": "m",
            "strategy": "s",
            "seed": [0, 1] * 3,
            "dice": [0.2, 0.4, 0.8, 1.0, 0.5, 0.7],
            "hd95_mm": 1.0,
            "d_max_mm": 100.0,
            "empty_gt": False,
            "empty_pred": False,
            "failed": False,
        }
    )
    expected = float(np.std([0.3, 0.9, 0.6], ddof=1))  # per-case means; the rows' SD would be 0.295
    closing = eval_summary_table(rows)
    compared = summary_table(prepare_rows(rows), metrics=["dice"], options=FAST)
    assert closing.loc[0, "dice_sd"] == pytest.approx(expected)
    assert compared.loc[0, "sd"] == pytest.approx(expected)
    assert closing.loc[0, "dice_mean"] == pytest.approx(compared.loc[0, "mean"])
    assert closing.loc[0, "rows"] == 6


def test_jitter_beyond_the_box_size_is_refused(tmp_path):
    from zeroshot.prompts import load_strategy

    path = tmp_path / "wild.yaml"
    path.write_text("prompt: {type: box, box: {jitter_percent: 500}}\n")
    with pytest.raises(ConfigError, match=r"wild.yaml: prompt.box.jitter_percent: must be <= 100, got 500"):
        load_strategy(path)
    path.write_text("prompt: {type: box, box: {shift_percent: 101}}\n")
    with pytest.raises(ConfigError, match=r"prompt.box.shift_percent: must be <= 100"):
        load_strategy(path)


def test_boxes_that_lose_their_structure_are_recorded_and_warned_about(phantom_data, tmp_path, capsys):
    wild = tmp_path / "wild-mm.yaml"
    wild.write_text("prompt: {type: box, box: {jitter_mm: 1000}}\n")
    run = tmp_path / "run"
    argv = ["--strategy", str(wild), "--case", "phantom_000", "phantom_001", "--seeds", "0", "1", "2"]
    assert _eval(phantom_data, run, *argv) == 0
    results = pd.read_parquet(run / "results.parquet").set_index("strategy")
    assert (results.loc["box-mid", "box_coverage"] == 1.0).all()
    low = int((results.loc["wild-mm", "box_coverage"] < 0.5).sum())
    assert low > 0
    err = capsys.readouterr().err
    assert f"zeroshot eval: note: {low} of 12 box prompt row(s) cover less than 50% of the structure" in err
    assert "strategies wild-mm" in err
    prompts = json.loads(RunDir(run).stored_prompts(PromptKey("T1", "phantom_000", "box-mid", 0)))
    assert prompts["details"]["slices"][0]["box_coverage"] == 1.0
    out = tmp_path / "p.jsonl"
    argv = ["prompts", "--data", str(phantom_data), "--sequence", "T1", "--case", "phantom_000", "--no-progress"]
    assert main([*argv, "--strategy", str(wild), "--seed", "0", "1", "2", "3", "--out", str(out)]) == 0
    assert "box covering less than 50% of the structure" in capsys.readouterr().err


def test_no_notice_for_a_well_behaved_run(phantom_data, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error", ZeroshotWarning)
        assert _eval(phantom_data, tmp_path / "run", "--case", "phantom_000") == 0
