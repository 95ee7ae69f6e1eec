"""``zeroshot prompts`` and the dataset-level functions behind it, on a tiny NIfTI dataset written here."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from zeroshot.cli import main
from zeroshot.datasets import discover
from zeroshot.errors import PromptError
from zeroshot.prompts import (
    find_coarse_file,
    load_strategy,
    prompts_for_case,
    read_coarse_mask,
    read_prompts_file,
    read_source_mask,
)
from zeroshot.volume import read_volume

SHAPE_XYZ = (24, 20, 10)  # file order (i, j, k); canonical arrays are (z, y, x) = (10, 20, 24)
AFFINE = np.diag([-1.2, -1.1, 3.0, 1.0])  # LPS-ordered voxel axes: canonical without flips; 3.96 mm³ voxels


def _save(path: Path, data: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, AFFINE), path)


def _label(filled: bool, offset: int = 0) -> np.ndarray:
    label = np.zeros(SHAPE_XYZ, np.uint8)
    if filled:
        label[6 + offset : 15 + offset, 5:12, 2:8] = 1
        label[7 + offset : 9 + offset, 6:8, 4] = 2  # another structure inside: not part of label 1
    return label


@pytest.fixture()
def dataset(tmp_path: Path) -> Path:
    """Three T2 cases in a manifest: two with a structure, one whose label is empty."""
    root = tmp_path / "data"
    rows = ["case_id,image,label,sequence,center,split"]
    for index, (case_id, filled) in enumerate((("c1", True), ("c2", True), ("c3", False))):
        image = np.random.default_rng(index).random(SHAPE_XYZ).astype(np.float32)
        _save(root / "images" / f"{case_id}_0000.nii.gz", image)
        _save(root / "labels" / f"{case_id}.nii.gz", _label(filled, offset=index))
        rows.append(f"{case_id},images/{case_id}_0000.nii.gz,labels/{case_id}.nii.gz,T2,A,test")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture()
def coarse(tmp_path: Path) -> Path:
    """Coarse masks: c1 in a per-sequence subfolder, c2 empty, c3 missing."""
    folder = tmp_path / "coarse"
    _save(folder / "T2" / "c1.nii.gz", _label(True, offset=2))
    _save(folder / "c2.nii", _label(False))
    return folder


def test_cli_writes_every_case_strategy_and_seed_reproducibly(dataset, tmp_path, capsys):
    out = tmp_path / "run" / "prompts.jsonl"
    argv = ["prompts", "--data", str(dataset), "--strategy", "box-mid-jitter10", "mask-mid", "--seed", "0", "1"]
    assert main([*argv, "--out", str(out), "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "wrote 8 prompt set(s) for 3 case(s) x 2 strategy(ies) x 2 seed(s)" in captured.out
    assert "; 4 failed" in captured.out
    assert "failed: T2/c3 box-mid-jitter10 seed 0: case c3: the gt source mask is empty" in captured.err
    lines = out.read_text().splitlines()
    keys = [(d["case_id"], d["strategy"], d["seed"]) for d in map(json.loads, lines)]
    assert keys == [(c, s, seed) for c in ("c1", "c2") for s in ("box-mid-jitter10", "mask-mid") for seed in (0, 1)]
    first = json.loads(lines[0])
    assert first["details"]["sequence"] == "T2"
    assert first["oracle"] == {"gt_prompt": True, "gt_z_range": False}
    # The box is in canonical (z, y, x) pixel coordinates: x along the file's i axis here.
    assert first["details"]["slices"][0]["tight_box"] == [6, 5, 14, 11]
    assert len(list((out.parent / "prompts.masks").glob("*.png"))) == 2  # one per case (both seeds: same mask)
    again = tmp_path / "again" / "prompts.jsonl"
    assert main([*argv, "--out", str(again), "--no-progress"]) == 0
    assert again.read_bytes() == out.read_bytes()
    assert len(read_prompts_file(out)) == 8


def test_cli_coarse_strategy_and_its_failures(dataset, coarse, tmp_path, capsys):
    out = tmp_path / "coarse.jsonl"
    argv = ["prompts", "--data", str(dataset), "--strategy", "box-mid-coarse", "--coarse", str(coarse)]
    assert main([*argv, "--out", str(out), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "T2/c2 box-mid-coarse seed 0: case c2: the coarse source mask is empty" in err
    assert "T2/c3 box-mid-coarse seed 0: case T2/c3: no coarse mask found" in err
    (only,) = read_prompts_file(out)
    assert only.case_id == "c1" and only.source == "coarse"
    assert dict(only.oracle) == {"gt_prompt": False, "gt_z_range": False}
    assert only.slices[0].box == (8, 5, 16, 11)  # the coarse mask's box (offset 2), not the label's


def test_cli_errors(dataset, tmp_path, capsys):
    out = str(tmp_path / "p.jsonl")
    base = ["prompts", "--data", str(dataset), "--out", out, "--no-progress"]
    with pytest.raises(SystemExit):  # refused while parsing
        main([*base, "--strategy", "box-mid", "--seed", "-1"])
    assert "argument --seed: seeds are whole numbers from 0 to 2**63 - 1" in capsys.readouterr().err
    assert main([*base, "--strategy", "box-mid", "box-mid"]) == 2
    assert "--strategy: box-mid given more than once" in capsys.readouterr().err
    assert main([*base, "--strategy", "box-mid", "--case", "c3"]) == 2
    assert "no prompts written to" in capsys.readouterr().err
    assert main([*base, "--strategy", "no-such-strategy"]) == 2
    assert "strategy 'no-such-strategy' not found" in capsys.readouterr().err


def test_label_value_option(dataset, tmp_path):
    out = tmp_path / "label2.jsonl"
    argv = ["prompts", "--data", str(dataset), "--strategy", "box-mid", "--case", "c1", "--label", "2"]
    assert main([*argv, "--out", str(out), "--no-progress"]) == 0
    (only,) = read_prompts_file(out)
    assert only.slices[0].box == (7, 6, 8, 7)


def test_coarse_file_lookup_and_errors(dataset, coarse, tmp_path):
    cases = {c.case_id: c for c in discover(dataset)}
    assert find_coarse_file(coarse, cases["c1"]) == coarse / "T2" / "c1.nii.gz"
    assert find_coarse_file(coarse, cases["c2"]) == coarse / "c2.nii"
    with pytest.raises(PromptError, match=r"case T2/c3: no coarse mask found \(tried .*c3.nii.gz"):
        find_coarse_file(coarse, cases["c3"])
    with pytest.raises(PromptError, match=r"nowhere: coarse mask folder not found"):
        find_coarse_file(tmp_path / "nowhere", cases["c1"])
    volume = read_volume(cases["c1"].image)
    coarse_mask = read_coarse_mask(coarse, cases["c1"], volume, label=1)
    assert coarse_mask.shape == volume.shape == (10, 20, 24) and coarse_mask.dtype == bool
    strategy = load_strategy("box-mid-coarse")
    with pytest.raises(PromptError, match=r"strategy 'box-mid-coarse' prompts from coarse masks: give their folder"):
        read_source_mask(strategy, cases["c1"], volume, label=1)
    assert np.array_equal(read_source_mask(strategy, cases["c1"], volume, coarse_dir=coarse, label=1), coarse_mask)


def test_a_case_without_label_cannot_prompt_from_ground_truth(dataset):
    case = discover(dataset)[0]
    unlabelled = type(case)(case.case_id, case.sequence, case.center, case.split, case.image, None)
    volume = read_volume(case.image)
    with pytest.raises(PromptError, match=r"case T2/c1: has no label file"):
        read_source_mask(load_strategy("box-mid"), unlabelled, volume, label=1)
    made, failures = prompts_for_case(unlabelled, [load_strategy("box-mid")], [0, 1], label=1)
    assert made == [] and [f.seed for f in failures] == [0, 1]
    broken = type(case)(case.case_id, case.sequence, case.center, case.split, case.image.with_name("x.nii.gz"), None)
    made, failures = prompts_for_case(broken, [load_strategy("box-mid")], [0], label=1)
    assert made == [] and "file not found" in failures[0].reason


def test_real_scan_smoke(real_example):
    """The one real MR at hand (TotalSegmentator's automatic pancreas, label 7): prompts land on the pancreas."""
    from zeroshot.prompts import make_prompts
    from zeroshot.volume import read_label

    volume = read_volume(real_example / "image.nii.gz")
    pancreas = read_label(real_example / "labels.nii.gz", volume, label=7)
    for name in ("box-mid", "points-3pos-3neg", "box-every-slice"):
        prompts = make_prompts(load_strategy(name), case_id="ts-mr", volume=volume, source_mask=pancreas, seed=0)
        for s in prompts.slices:
            rows, cols = np.nonzero(pancreas[s.z])
            if s.box is not None:
                assert s.box == (cols.min(), rows.min(), cols.max(), rows.max())
            for (x, y), label in zip(s.points, s.labels, strict=True):
                assert pancreas[s.z, y, x] == bool(label)
    assert len(prompts.slices) == np.count_nonzero(pancreas.any(axis=(1, 2)))
