"""One structure per run, end to end, on multi-label ground truth where label 1 (spleen) and 7 (pancreas) differ.

eval --label 7, compare with a perfect supervised pancreas (Dice 1.0), figures with the pancreas contour drawn,
coarse prompts around the pancreas; runs of different labels are never pooled.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from zeroshot.cli import main
from zeroshot.compare import load_runs, prepare_rows
from zeroshot.datasets import discover
from zeroshot.figures.overlays import select_overlay_cases
from zeroshot.phantom import write_phantom_dataset
from zeroshot.prompts.regions import tight_box
from zeroshot.runner import RunDir
from zeroshot.store import PromptKey
from zeroshot.volume import read_label, read_volume, write_mask

PANCREAS, SPLEEN = 7, 1


@pytest.fixture(scope="module")
def multilabel(tmp_path_factory) -> Path:
    """A 3-subject phantom whose label files hold the spleen (1) and the pancreas (7), with a dataset.json."""
    out = tmp_path_factory.mktemp("multilabel") / "data"
    write_phantom_dataset(out, cases=3, seed=0, label_values={"pancreas": PANCREAS, "spleen": SPLEEN})
    return out


def _t1_cases(data: Path):
    return [c for c in discover(data) if c.sequence == "T1"]


def _write_predictions(folder: Path, data: Path, value: int) -> Path:
    """A perfect 0/1 prediction of label ``value`` for every T1 case (what a supervised model would write)."""
    for case in _t1_cases(data):
        image = read_volume(case.image)
        write_mask(folder / f"{case.case_id}.nii.gz", read_label(case.label, image, label=value), image)
    return folder


def _eval(data: Path, out: Path, *extra: str) -> int:
    argv = ["eval", "--data", str(data), "--sequence", "T1", "--model", "box-fill", "--strategy", "box-mid"]
    return main([*argv, "--out", str(out), "--workers", "0", "--no-progress", *extra])


def test_the_phantom_writes_distinct_structures(multilabel):
    case = _t1_cases(multilabel)[0]
    image = read_volume(case.image)
    pancreas = read_label(case.label, image, label=PANCREAS)
    spleen = read_label(case.label, image, label=SPLEEN)
    assert pancreas.sum() > 100 and spleen.sum() > 100 and not (pancreas & spleen).any()
    labels = json.loads((multilabel / "dataset.json").read_text())["labels"]
    assert labels == {"background": 0, "spleen": SPLEEN, "pancreas": PANCREAS}


def test_eval_compare_figures_on_the_structure_named_once(multilabel, tmp_path, capsys):
    run = tmp_path / "run"
    assert _eval(multilabel, run, "--label", "pancreas", "--save-pred") == 0
    assert "note:" not in capsys.readouterr().err
    manifest = json.loads((run / "run.json").read_text())
    assert manifest["identity"]["fixed"]["label"] == PANCREAS
    assert manifest["invocations"][-1]["structure"] == {"label": PANCREAS, "name": "pancreas", "given": True}
    results = pd.read_parquet(run / "results.parquet").set_index("case_id")
    for case in _t1_cases(multilabel):
        image = read_volume(case.image)
        volume_ml = read_label(case.label, image, label=PANCREAS).sum() * np.prod(image.spacing_mm) / 1000
        assert results.loc[case.case_id, "vol_gt_ml"] == pytest.approx(volume_ml)  # the pancreas, not the spleen
    assert (results["dice"] > 0.05).all()  # box-fill of the key slice overlaps the pancreas (the spleen: 0)

    # compare: a perfect supervised pancreas scores Dice 1 against the run's structure
    preds = _write_predictions(tmp_path / "nnunet", multilabel, PANCREAS)
    tables = tmp_path / "tables"
    assert main(["compare", str(run), "--baseline-preds", f"nnunet-T1={preds}", "--out", str(tables)]) == 0
    baseline = pd.read_parquet(tables / "baseline_results.parquet")
    assert len(baseline) == 3 and (baseline["dice"] == 1.0).all() and (baseline["hd95_mm"] == 0.0).all()

    # figures: the overlays draw the pancreas contour
    assert main(["figures", str(run), "--compare", str(tables), "--out", str(tmp_path / "figs")]) == 0
    assert (tmp_path / "figs" / "overlays.png").is_file()
    runs = load_runs([run])
    chosen = select_overlay_cases(runs, prepare_rows(runs.results), strategy="box-mid")
    cases = {c.case_id: c for c in _t1_cases(multilabel)}
    for overlay in chosen:
        image = read_volume(cases[overlay.case_id].image)
        pancreas = read_label(cases[overlay.case_id].label, image, label=PANCREAS)[overlay.z]
        assert overlay.gt.any() and np.array_equal(overlay.gt, pancreas)


def test_the_default_label_on_multi_label_files_is_noted(multilabel, tmp_path, capsys):
    assert _eval(multilabel, tmp_path / "run", "--case", "phantom_000") == 0
    err = capsys.readouterr().err
    assert "zeroshot eval: note: the label files hold several structures (values 1 spleen, 7 pancreas in " in err
    assert "scoring label 1 (spleen), the default" in err


def test_coarse_prompts_surround_the_run_s_structure(multilabel, tmp_path):
    coarse = tmp_path / "coarse"
    for case in _t1_cases(multilabel):  # a multi-label coarse file (another model's full segmentation)
        (coarse / "T1").mkdir(parents=True, exist_ok=True)
        shutil.copy(case.label, coarse / "T1" / f"{case.case_id}.nii.gz")
    run = tmp_path / "run"
    argv = ["--label", "7", "--coarse", str(coarse), "--strategy", "box-mid-coarse", "--case", "phantom_000"]
    assert _eval(multilabel, run, *argv) == 0
    case = next(c for c in _t1_cases(multilabel) if c.case_id == "phantom_000")
    pancreas = read_label(case.label, read_volume(case.image), label=PANCREAS)
    for strategy in ("box-mid", "box-mid-coarse"):
        prompts = json.loads(RunDir(run).stored_prompts(PromptKey("T1", "phantom_000", strategy, 0)))
        (prompt,) = prompts["slices"]
        assert tuple(prompt["box"]) == tight_box(pancreas[prompt["z"]])
    results = pd.read_parquet(run / "results.parquet")
    assert not results["failed"].any()


def test_a_binary_coarse_file_is_the_structure_whatever_its_value(multilabel, tmp_path):
    preds = _write_predictions(tmp_path / "coarse", multilabel, PANCREAS)  # 0/1 files, as supervised models write
    run = tmp_path / "run"
    argv = ["--label", "7", "--coarse", str(preds), "--strategy", "box-mid-coarse", "--case", "phantom_000"]
    assert _eval(multilabel, run, *argv) == 0
    results = pd.read_parquet(run / "results.parquet").set_index("strategy")
    assert not results["failed"].any()
    assert results.loc["box-mid-coarse", "dice"] == results.loc["box-mid", "dice"]


def test_a_strategy_label_that_disagrees_with_the_run_is_refused(multilabel, tmp_path, capsys):
    strategy = tmp_path / "coarse-spleen.yaml"
    strategy.write_text("source: {kind: coarse, label: 1}\nprompt: {type: box}\n")
    argv = ["--label", "7", "--coarse", str(tmp_path), "--strategy", str(strategy)]
    assert _eval(multilabel, tmp_path / "run", *argv) == 2
    err = capsys.readouterr().err
    assert "strategy 'coarse-spleen': source.label 1 differs from the run's label 7" in err
    assert not (tmp_path / "run" / "results.csv").exists()


def test_runs_of_different_labels_are_never_pooled(multilabel, tmp_path, capsys):
    assert _eval(multilabel, tmp_path / "spleen", "--label", "1", "--case", "phantom_000") == 0
    assert _eval(multilabel, tmp_path / "pancreas", "--label", "7", "--case", "phantom_001") == 0
    capsys.readouterr()
    runs = [str(tmp_path / "spleen"), str(tmp_path / "pancreas")]
    assert main(["compare", *runs, "--out", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err
    assert "differ in their label value (--label): 1 and 7" in err
    assert main(["figures", *runs, "--out", str(tmp_path / "f")]) == 2
    assert "differ in their label value" in capsys.readouterr().err
    assert main(["merge", *runs, "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert "settings: label: 1 -> 7" in err and "--new-run" not in err and "Merge only runs of one configuration" in err


def test_the_real_scan_scores_the_pancreas(real_example, tmp_path):
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(
        "case_id,image,label,sequence,center,split\n"
        f"s0001,{real_example / 'image.nii.gz'},{real_example / 'labels.nii.gz'},OOP,totalseg,test\n"
    )
    run = tmp_path / "run"
    argv = ["eval", "--data", str(manifest), "--model", "box-fill", "--strategy", "box-mid", "--label", "7"]
    assert main([*argv, "--out", str(run), "--workers", "0", "--no-progress"]) == 0
    results = pd.read_parquet(run / "results.parquet")
    assert results.loc[0, "vol_gt_ml"] == pytest.approx(1176 * 27 / 1000)  # 1,176 pancreas voxels of 3 mm
    preds = tmp_path / "preds"
    image = read_volume(real_example / "image.nii.gz")
    write_mask(preds / "s0001.nii.gz", read_label(real_example / "labels.nii.gz", image, label=7), image)
    assert main(["compare", str(run), "--baseline-preds", f"nnunet-T1={preds}", "--out", str(tmp_path / "t")]) == 0
    assert pd.read_parquet(tmp_path / "t" / "baseline_results.parquet")["dice"].tolist() == [1.0]


def test_runs_of_other_tolerances_or_datasets_are_never_pooled(phantom_data, tmp_path, capsys):
    other = tmp_path / "other-data"
    write_phantom_dataset(other, cases=2, seed=5)  # another dataset: same case ids, other images
    moved = tmp_path / "moved-data"
    shutil.copytree(phantom_data, moved)  # the same dataset at another path
    assert _eval(phantom_data, tmp_path / "a", "--case", "phantom_000") == 0
    assert _eval(phantom_data, tmp_path / "b", "--case", "phantom_001", "--tolerance-mm", "1") == 0
    assert _eval(other, tmp_path / "c", "--case", "phantom_001") == 0
    argv = ["eval", "--data", str(moved), "--sequence", "T1", "--case", "phantom_000", "--model", "box-fill"]
    assert main([*argv, "--strategy", "box-largest", "--out", str(tmp_path / "d"), "--workers", "0"]) == 0
    capsys.readouterr()
    run = {name: str(tmp_path / name) for name in "abcd"}
    assert main(["compare", run["a"], run["b"], "--out", str(tmp_path / "t")]) == 2
    assert "differ in their NSD tolerances (--tolerance-mm): [2.0] and [1.0]" in capsys.readouterr().err
    assert main(["merge", run["a"], run["b"], "--out", str(tmp_path / "m")]) == 2
    assert "settings: tolerances_mm: [2.0] -> [1.0]" in capsys.readouterr().err
    for command in ("compare", "merge"):
        assert main([command, run["a"], run["c"], "--out", str(tmp_path / command)]) == 2
        err = capsys.readouterr().err
        assert "evaluated different datasets" in err and "with no case in common" in err, command
    # the same files at another path: recognised by the case the runs share
    assert main(["merge", run["a"], run["d"], "--out", str(tmp_path / "ad")]) == 0
    assert main(["compare", run["a"], run["d"], "--resamples", "100", "--out", str(tmp_path / "ad-tables")]) == 0
