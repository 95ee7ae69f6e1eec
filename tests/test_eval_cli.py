"""``zeroshot eval`` and ``zeroshot merge`` end to end through the CLI, on a small phantom dataset.

Random-weight SAM2 and the weight-free baselines exercise the machinery; none of these numbers is accuracy.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from fixtures_runner import write_strategies, write_tiny_dataset

from zeroshot.cli import main
from zeroshot.metrics import metric_columns

IDENTITY = ["case_id", "sequence", "center", "split", "model", "strategy", "seed"]
FLAGS = ["empty_gt", "empty_pred", "failed", "error", "oracle_gt_prompt", "oracle_gt_z_range", "oracle_gt_roi_crop"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    return write_tiny_dataset(root / "data", subjects=1), write_strategies(root / "strategies")


def eval_args(manifest, strategies, out, *models, extra=()):
    args = ["eval", "--data", str(manifest), "--out", str(out), "--seeds", "0", "1", "--no-progress"]
    for model in models:
        args += ["--model", model]
    for strategy in strategies:
        args += ["--strategy", str(strategy)]
    return [*args, *extra]


def check_run_directory(out, *, models, rows):
    results = pd.read_parquet(out / "results.parquet")
    assert len(results) == rows
    assert results.columns[: len(IDENTITY)].tolist() == IDENTITY
    for column in (*metric_columns((2.0,)), *FLAGS, "prompt_source", "key_slices", "prediction"):
        assert column in results.columns, column
    assert set(results["model"]) == set(models)
    assert not results["failed"].any() and (results["error"] == "").all()
    assert results["dice"].between(0, 1).all() and np.isfinite(results["d_max_mm"]).all()
    assert results["oracle_gt_prompt"].all() and (results["prompt_source"] == "gt").all()
    assert results[["seconds_read", "seconds_segment"]].ge(0).all().all()
    csv = pd.read_csv(out / "results.csv", keep_default_na=False, na_values=[""])
    assert csv.shape == results.shape
    slices = pd.read_parquet(out / "slices.parquet")
    assert set(slices.columns) >= {"z", "dist_slices", "dist_mm", "gt_area_px", "pred_area_mm2", "slice_dice"}
    assert slices.groupby(["case_id", "sequence", "model", "strategy", "seed"]).size().nunique() == 1
    manifest = json.loads((out / "run.json").read_text())
    assert sorted(manifest["identity"]["models"]) == sorted(models)
    assert manifest["invocations"][-1]["argv"][:1] != []
    return results, manifest


def test_eval_cli_with_weight_free_models(data, tmp_path, capsys):
    manifest, strategies = data
    out = tmp_path / "run"
    assert main(eval_args(manifest, strategies, out, "box-fill", extra=["--workers", "0"])) == 0
    printed = capsys.readouterr().out
    assert "12 row(s) computed now" in printed and "box-mid" in printed
    results, _ = check_run_directory(out, models=["box-fill"], rows=3 * 2 * 2)
    assert set(results["sequence"]) == {"T1", "T2", "OOP"}
    assert main(eval_args(manifest, strategies, out, "box-fill", extra=["--workers", "0"])) == 0
    assert "0 row(s) computed now" in capsys.readouterr().out
    merged = tmp_path / "merged"
    assert main(["merge", str(out), "--out", str(merged)]) == 0
    assert "12 rows (0 failed)" in capsys.readouterr().out
    assert pd.read_csv(merged / "results.csv").shape == pd.read_csv(out / "results.csv").shape


def test_eval_cli_refusal_exits_2_and_strict_failures_exit_1(data, tmp_path, capsys):
    manifest, strategies = data
    out = tmp_path / "run"
    assert main(eval_args(manifest, strategies, out, "box-fill", extra=["--sequence", "T1"])) == 0
    assert (
        main(eval_args(manifest, strategies, out, "box-fill", extra=["--sequence", "T1", "--tolerance-mm", "1"])) == 2
    )
    assert "holds results of a different configuration" in capsys.readouterr().err
    broken = tmp_path / "broken"
    broken.mkdir()
    for path in manifest.parent.iterdir():
        (broken / path.name).write_bytes(path.read_bytes())
    (broken / "T1_phantom_000_0000.nii.gz").write_bytes(b"\x1f\x8b truncated")
    args = eval_args(broken / "manifest.csv", strategies, tmp_path / "strict", "box-fill", extra=["--sequence", "T1"])
    assert main(args) == 0
    assert main([*args, "--strict"]) == 1
    assert "4 row(s) failed" in capsys.readouterr().err


@pytest.mark.slow
def test_eval_cli_with_random_sam2_and_grabcut(data, tmp_path):
    manifest, strategies = data
    out = tmp_path / "run"
    models = ["random:sam2.1_hiera_t@128", "grabcut"]
    assert main(eval_args(manifest, strategies, out, *models, extra=["--device", "cpu", "--save-pred"])) == 0
    results, run = check_run_directory(out, models=models, rows=3 * 2 * 2 * 2)
    sam2 = run["identity"]["models"]["random:sam2.1_hiera_t@128"]
    assert sam2["image_size"] == 128 and "random initialisation" in sam2["weights"]
    assert run["invocations"][-1]["models"]["grabcut"]["name"] == "grabcut"
    assert all((out / p).is_file() for p in results["prediction"])


def test_every_list_option_of_every_command_accumulates_when_repeated():
    """`--seeds 0 --seeds 1` means both seeds: an option taking several values extends, never replaces, its list
    (argparse's default silently kept the last one, and `--seed`, an abbreviation of `--seeds`, invites repeating)."""
    import argparse

    from zeroshot.cli import build_parser

    parser = build_parser()
    [commands] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    replacing = [
        f"zeroshot {name} {'/'.join(action.option_strings)}"
        for name, sub in commands.choices.items()
        for action in sub._actions
        if action.option_strings and action.nargs in ("+", "*") and not isinstance(action, argparse._ExtendAction)
    ]
    assert replacing == []
    required = ["eval", "--data", "d", "--out", "o", "--model", "m", "--strategy", "s"]
    repeated = ["--seed", "3", "--seeds", "1", "2", "--tolerance-mm", "1", "--tolerance-mm", "2"]
    args = parser.parse_args([*required, *repeated])
    assert args.seeds == [3, 1, 2] and args.tolerance_mm == [1.0, 2.0]
    defaults = parser.parse_args(required)
    assert defaults.seeds is None and defaults.tolerance_mm is None  # run() reads None as seed 0 and 2 mm
