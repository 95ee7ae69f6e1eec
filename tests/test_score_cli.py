"""``zeroshot score`` and zeroshot.scoring: folder against folder, broken predictions become failed rows."""

from __future__ import annotations

import json
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from zeroshot.cli import main
from zeroshot.errors import DatasetError, MetricsError, VolumeError
from zeroshot.metrics import score_case
from zeroshot.scoring import match_cases, score_files, score_folder
from zeroshot.volume import read_volume

SPACING_XYZ = (0.8, 1.5, 5.0)  # file voxel sizes along i, j, k
AFFINE = np.diag([*SPACING_XYZ, 1.0])
SHAPE_XYZ = (20, 18, 8)


def save(path: Path, data: np.ndarray, affine: np.ndarray = AFFINE) -> Path:
    nib.save(nib.Nifti1Image(np.asarray(data), affine), path)
    return path


def organ(offset: int = 0) -> np.ndarray:
    mask = np.zeros(SHAPE_XYZ, np.uint8)
    mask[5 + offset : 14 + offset, 4:12, 2:6] = 1
    return mask


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    """Labels for seven cases; predictions: good, shifted, empty, missing, off-grid shape and affine, non-binary."""
    gt_dir, pred_dir = tmp_path / "labelsTs", tmp_path / "pred"
    gt_dir.mkdir()
    pred_dir.mkdir()
    for case in ("good", "shifted", "empty", "missing", "shape", "affine", "nonbinary"):
        label = organ()
        label[0, 0, 0] = 2  # another structure, background for --label 1
        save(gt_dir / f"{case}.nii.gz", label)
    save(pred_dir / "good.nii.gz", organ())
    save(pred_dir / "shifted.nii.gz", organ(offset=2))
    save(pred_dir / "empty.nii.gz", np.zeros(SHAPE_XYZ, np.uint8))
    save(pred_dir / "shape.nii.gz", organ()[:, :, :-1])
    moved = AFFINE.copy()
    moved[0, 3] = 3.0
    save(pred_dir / "affine.nii.gz", organ(), moved)
    nonbinary = organ().astype(np.float32)
    nonbinary[6, 6, 3] = 0.5
    save(pred_dir / "nonbinary.nii.gz", nonbinary)
    save(pred_dir / "extra.nii.gz", organ())  # a prediction without a label
    (pred_dir / "plans.json").write_text("{}")  # not a NIfTI: ignored
    return pred_dir, gt_dir


def test_score_cli_scores_every_case_and_records_broken_ones(folders, tmp_path, capsys) -> None:
    pred_dir, gt_dir = folders
    out = tmp_path / "scores"
    argv = ["score", "--pred", str(pred_dir), "--gt", str(gt_dir), "--out", str(out), "--tolerance", "1", "2.5"]
    assert main([*argv, "--workers", "2"]) == 0

    csv = pd.read_csv(out / "results.csv")
    parquet = pd.read_parquet(out / "results.parquet")
    assert list(csv["case_id"]) == ["affine", "empty", "good", "missing", "nonbinary", "shape", "shifted"]
    assert list(parquet.columns) == list(csv.columns)
    assert list(csv.columns) == [
        "case_id", "dice", "iou", "vol_gt_ml", "vol_pred_ml", "rel_vol_err", "hd95_mm", "hd_mm", "assd_mm",
        "masd_mm", "nsd_1mm", "nsd_2.5mm", "d_max_mm", "empty_gt", "empty_pred", "failed", "error",
    ]  # fmt: skip
    rows = parquet.set_index("case_id")
    assert rows["failed"].dtype == bool
    assert not rows.loc[["good", "shifted", "empty"], "failed"].any()
    assert rows.loc["good", "dice"] == 1.0 and rows.loc["good", "hd95_mm"] == 0.0
    assert bool(rows.loc["empty", "empty_pred"]) and math.isinf(rows.loc["empty", "hd95_mm"])
    errors = rows["error"]
    assert "no prediction file missing.nii.gz" in errors["missing"]
    assert (
        "not on its label's voxel grid" in errors["shape"]
        and "shape (7, 18, 20) (z, y, x) differs from (8, 18, 20)" in errors["shape"]
    )
    assert "the grid is shifted by 3 mm" in errors["affine"]
    assert "not a binary mask: values 0, 0.5, 1" in errors["nonbinary"]
    failed = rows[rows["failed"]]
    assert set(failed.index) == {"missing", "shape", "affine", "nonbinary"}
    assert failed["dice"].isna().all()
    expected_d_max = math.dist((0, 0, 0), np.multiply(SHAPE_XYZ, SPACING_XYZ))
    assert failed["d_max_mm"].to_numpy() == pytest.approx([expected_d_max] * 4)  # penalties can use it

    # The shifted case equals score_case on the arrays in (z, y, x) order with the file's (z, y, x) spacing
    # (NIfTI stores it in float32: 0.8 reads back as 0.800000011920929).
    spacing = read_volume(gt_dir / "shifted.nii.gz").spacing_mm
    assert spacing == pytest.approx(SPACING_XYZ[::-1], rel=1e-6)
    reference = score_case(organ().T, organ(offset=2).T, spacing, tolerances_mm=(1.0, 2.5)).as_row()
    for key in ("dice", "hd95_mm", "hd_mm", "assd_mm", "masd_mm", "nsd_1mm", "nsd_2.5mm", "vol_gt_ml"):
        assert rows.loc["shifted", key] == pytest.approx(reference[key], rel=1e-12), key

    record = json.loads((out / "score.json").read_text())
    assert (record["n_cases"], record["n_failed"], record["tolerances_mm"]) == (7, 4, [1.0, 2.5])
    assert record["unmatched_predictions"] == ["extra"]
    captured = capsys.readouterr()
    assert "scored 3 of 7 cases" in captured.out
    assert "failed: nonbinary:" in captured.err and "without a label: extra" in captured.err
    assert not list(out.glob(".*tmp"))  # no temporary files left behind


def test_one_worker_gives_the_same_table(folders, tmp_path) -> None:
    pred_dir, gt_dir = folders
    one = score_folder(pred_dir, gt_dir, tmp_path / "one", workers=1, progress=False, label=1)
    assert one.n_failed == 4 and one.unmatched_predictions == ("extra",)
    assert [p.name for p in one.files] == ["results.csv", "results.parquet", "score.json"]
    two = pd.read_parquet(tmp_path / "one" / "results.parquet")
    pd.testing.assert_frame_equal(one.table, two)


def test_label_option_selects_the_structure(folders, tmp_path) -> None:
    pred_dir, gt_dir = folders
    table = score_folder(pred_dir, gt_dir, tmp_path / "out", label=2, progress=False).table.set_index("case_id")
    # Label 2 is one voxel in the corner, far from every predicted organ.
    assert table.loc["good", "dice"] == 0.0
    assert table.loc["good", "vol_gt_ml"] == pytest.approx(np.prod(SPACING_XYZ) / 1000)


def test_score_files_refuses_a_non_binary_prediction(folders) -> None:
    pred_dir, gt_dir = folders
    with pytest.raises(MetricsError, match=r"nonbinary.nii.gz: not a binary mask: values 0, 0.5, 1"):
        score_files(gt_dir / "nonbinary.nii.gz", pred_dir / "nonbinary.nii.gz", label=1)


def test_score_files_lists_at_most_eight_values(tmp_path) -> None:
    gt = save(tmp_path / "gt.nii.gz", organ())
    pred = save(tmp_path / "pred.nii.gz", np.arange(np.prod(SHAPE_XYZ)).reshape(SHAPE_XYZ).astype(np.int16))
    with pytest.raises(MetricsError, match=r"values 0, 1, 2, 3, 4, 5, 6, 7, \.\.\. \(expected only 0 and 1\)"):
        score_files(gt, pred, label=1)


def test_score_files_refuses_a_prediction_of_another_shape(folders) -> None:
    pred_dir, gt_dir = folders
    with pytest.raises(
        MetricsError, match=r"shape \(7, 18, 20\) \(z, y, x\) differs from \(8, 18, 20\); .*would need resampling"
    ):
        score_files(gt_dir / "shape.nii.gz", pred_dir / "shape.nii.gz", label=1)


def test_score_files_refuses_a_prediction_with_another_affine(folders) -> None:
    pred_dir, gt_dir = folders
    with pytest.raises(
        MetricsError, match=r"not on its label's voxel grid .*: the grid is shifted by 3 mm; .*resampling"
    ):
        score_files(gt_dir / "affine.nii.gz", pred_dir / "affine.nii.gz", label=1)


def _reoriented(data: np.ndarray, affine: np.ndarray, axcodes: tuple[str, str, str]) -> tuple[np.ndarray, np.ndarray]:
    """The same voxels on the same physical grid, stored in another axis order and direction."""
    from nibabel import orientations as ornt

    transform = ornt.ornt_transform(ornt.io_orientation(affine), ornt.axcodes2ornt(axcodes))
    return ornt.apply_orientation(data, transform), affine @ ornt.inv_ornt_aff(transform, data.shape)


@pytest.mark.parametrize("axcodes", [("L", "P", "S"), ("P", "S", "R"), ("S", "L", "A")])
def test_a_prediction_in_another_orientation_of_the_grid_is_scored_losslessly(tmp_path, axcodes) -> None:
    gt = save(tmp_path / "gt.nii.gz", organ())
    shifted, affine = _reoriented(organ(offset=2), AFFINE, axcodes)
    pred = save(tmp_path / "pred.nii.gz", shifted, affine)
    assert nib.aff2axcodes(nib.load(pred).affine) == axcodes
    reference = score_files(gt, save(tmp_path / "same.nii.gz", organ(offset=2)), label=1).as_row()
    assert score_files(gt, pred, label=1).as_row() == reference


def test_a_prediction_that_needs_resampling_says_what_differs(tmp_path) -> None:
    gt = save(tmp_path / "gt.nii.gz", organ())
    coarser = np.diag([*np.multiply(SPACING_XYZ, (1, 1, 2)), 1.0])
    with pytest.raises(MetricsError, match=r"voxel size 10 x 1.5 x 0.8 mm \(z, y, x\) differs from 5 x 1.5 x 0.8 mm"):
        score_files(gt, save(tmp_path / "coarse.nii.gz", organ(), coarser), label=1)
    angle = np.deg2rad(10)
    rotation = np.eye(4)
    rotation[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    with pytest.raises(MetricsError, match="the voxel axes are rotated against each other"):
        score_files(gt, save(tmp_path / "rotated.nii.gz", organ(), rotation @ AFFINE), label=1)


def test_score_files_reports_a_missing_file(folders) -> None:
    pred_dir, gt_dir = folders
    with pytest.raises(VolumeError, match="missing.nii.gz: file not found"):
        score_files(gt_dir / "missing.nii.gz", pred_dir / "missing.nii.gz", label=1)


def test_an_unreadable_label_takes_d_max_from_the_prediction_s_header(tmp_path) -> None:
    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    gt_dir.mkdir()
    pred_dir.mkdir()
    (gt_dir / "broken.nii.gz").write_bytes(b"not a nifti")
    save(pred_dir / "broken.nii.gz", organ())
    (gt_dir / "lost.nii.gz").write_bytes(b"not a nifti")
    (pred_dir / "lost.nii.gz").write_bytes(b"nor this")
    save(gt_dir / "fine.nii.gz", organ())
    save(pred_dir / "fine.nii.gz", organ())
    table = score_folder(pred_dir, gt_dir, tmp_path / "out", progress=False, label=1).table.set_index("case_id")
    assert bool(table.loc["broken", "failed"]) and "cannot read as NIfTI" in table.loc["broken", "error"]
    assert table.loc["broken", "d_max_mm"] == pytest.approx(math.dist((0, 0, 0), np.multiply(SHAPE_XYZ, SPACING_XYZ)))
    assert math.isnan(table.loc["lost", "d_max_mm"])  # no header readable: compare's fallback applies
    assert table.loc["fine", "dice"] == 1.0


def test_match_cases_pairs_by_case_id(folders) -> None:
    pred_dir, gt_dir = folders
    cases, unmatched = match_cases(pred_dir, gt_dir)
    assert [c.case_id for c in cases][:3] == ["affine", "empty", "good"]
    assert next(c for c in cases if c.case_id == "missing").pred is None
    assert next(c for c in cases if c.case_id == "good").pred == pred_dir / "good.nii.gz"
    assert unmatched == ["extra"]


def test_match_cases_refuses_two_files_for_one_case(folders) -> None:
    pred_dir, gt_dir = folders
    save(pred_dir / "good.nii", organ())
    with pytest.raises(DatasetError, match=r"--pred .*: case 'good' has two files \(good.nii, good.nii.gz\)"):
        match_cases(pred_dir, gt_dir)


def test_match_cases_refuses_missing_and_empty_folders(tmp_path) -> None:
    with pytest.raises(DatasetError, match=r"--gt .*nowhere: no such folder"):
        match_cases(tmp_path, tmp_path / "nowhere")
    with pytest.raises(DatasetError, match=r"--gt .*: no .nii.gz or .nii label files"):
        match_cases(tmp_path, tmp_path)


def test_score_cli_reports_a_missing_folder_without_traceback(tmp_path, capsys) -> None:
    argv = ["score", "--pred", str(tmp_path), "--gt", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    assert "zeroshot score: error: --gt" in capsys.readouterr().err


def test_score_cli_refuses_zero_workers(folders, tmp_path, capsys) -> None:
    pred_dir, gt_dir = folders
    argv = ["score", "--pred", str(pred_dir), "--gt", str(gt_dir), "--out", str(tmp_path / "o"), "--workers", "0"]
    assert main(argv) == 2
    assert "--workers: expected at least 1, got 0" in capsys.readouterr().err


def test_score_folder_refuses_bad_tolerances(folders, tmp_path) -> None:
    pred_dir, gt_dir = folders
    with pytest.raises(MetricsError, match="tolerances_mm: expected one or more positive"):
        score_folder(pred_dir, gt_dir, tmp_path / "o", tolerances_mm=(0.0,), progress=False, label=1)
