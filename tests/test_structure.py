"""The structure of a run: ``--label VALUE|NAME``, its checks, and the label files it is read from."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from zeroshot.cli import main
from zeroshot.datasets import label_file_notice
from zeroshot.errors import ConfigError, VolumeError
from zeroshot.structure import (
    Structure,
    dataset_label_names,
    find_dataset_json,
    multi_label_notice,
    resolve_structure,
)
from zeroshot.volume import read_label, read_label_values, read_volume

AFFINE = np.diag([1.5, 1.5, 3.0, 1.0])


def _write(path, data, affine=AFFINE):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data), affine), path)
    return path


def _multi_label(shape=(8, 8, 4)):
    """Spleen (1) in one corner, pancreas (7) in the other."""
    data = np.zeros(shape, np.uint8)
    data[1:3, 1:3, 1:3] = 1
    data[5:7, 5:7, 1:3] = 7
    return data


@pytest.fixture
def image_and_label(tmp_path):
    image = read_volume(_write(tmp_path / "img.nii.gz", np.ones((8, 8, 4), np.float32)))
    return image, _write(tmp_path / "lab.nii.gz", _multi_label())


# ------------------------------------------------------------------------------------------------- resolution
def test_a_value_a_name_or_the_default(tmp_path):
    v2 = tmp_path / "v2" / "dataset.json"
    v2.parent.mkdir()
    v2.write_text(json.dumps({"labels": {"background": 0, "spleen": 1, "pancreas": 7, "organs": [1, 7]}}))
    assert resolve_structure("7") == Structure(7, None, given=True)
    assert resolve_structure(7, dataset_json=v2) == Structure(7, "pancreas", given=True)
    assert resolve_structure("Pancreas", dataset_json=v2) == Structure(7, "pancreas", given=True)
    assert resolve_structure(None, dataset_json=v2) == Structure(1, "spleen", given=False)
    assert resolve_structure(None).describe() == "label 1"
    v1 = tmp_path / "v1" / "dataset.json"
    v1.parent.mkdir()
    v1.write_text(json.dumps({"labels": {"0": "background", "1": "pancreas", "2": "cancer"}}))
    assert dataset_label_names(v1) == {0: "background", 1: "pancreas", 2: "cancer"}
    assert resolve_structure("cancer", dataset_json=v1).describe() == "label 2 (cancer)"
    assert find_dataset_json(tmp_path / "nowhere", v1.parent / "x.csv", v1.parent) == v1


def test_bad_labels_are_refused_with_the_fix(tmp_path):
    with pytest.raises(ConfigError, match="--label 0: value 0 is the background of every label file"):
        resolve_structure("0")
    with pytest.raises(ConfigError, match="--label -2: label values are 1 or more"):
        resolve_structure("-2")
    with pytest.raises(ConfigError, match="--label 'pancreas': a structure's name needs an nnU-Net dataset.json"):
        resolve_structure("pancreas")
    meta = tmp_path / "dataset.json"
    meta.write_text(json.dumps({"labels": {"background": 0, "spleen": 1}}))
    with pytest.raises(ConfigError, match=r"names no such structure; it has background = 0, spleen = 1"):
        resolve_structure("liver", dataset_json=meta)
    with pytest.raises(ConfigError, match="gives it value 0, the background"):
        resolve_structure("background", dataset_json=meta)
    meta.write_text("{oops")
    with pytest.raises(ConfigError, match="dataset.json: not readable as JSON"):
        resolve_structure("spleen", dataset_json=meta)
    meta.write_text(json.dumps({"labels": ["spleen"]}))
    with pytest.raises(ConfigError, match="'labels' should map names to values, found list"):
        resolve_structure("spleen", dataset_json=meta)
    with pytest.raises(ConfigError, match="label: expected a whole number"):
        Structure(1.5)  # type: ignore[arg-type]


def test_the_default_on_multi_label_files_gets_a_notice(image_and_label):
    _, path = image_and_label
    default = resolve_structure(None)
    notice = multi_label_notice(default, [0, 1, 7], names={1: "spleen", 7: "pancreas"}, where=path)
    assert notice.startswith("the label files hold several structures (values 1 spleen, 7 pancreas in ")
    assert "scoring label 1, the default: choose the structure with --label VALUE or --label NAME" in notice
    assert multi_label_notice(default, [0, 1]) is None  # one structure: nothing to choose
    assert multi_label_notice(Structure(1), [0, 1, 7]) is None  # chosen by the user
    assert label_file_notice(default, path) == multi_label_notice(default, [0, 1, 7], where=path)
    assert label_file_notice(default, None) is None


# -------------------------------------------------------------------------------------------------- label files
def test_a_label_file_is_read_at_the_run_s_value_only(image_and_label):
    image, path = image_and_label
    assert read_label(path, image, label=7).sum() == 2 * 2 * 2
    assert read_label_values(path) == (0, 1, 7)
    with pytest.raises(TypeError, match="label"):
        read_label(path, image)  # type: ignore[call-arg]  # no silent default structure


def test_an_absent_value_names_the_values_present(image_and_label):
    image, path = image_and_label
    message = r"lab.nii.gz: label value 99 is absent; the file holds values 0, 1, 7 \(choose the structure with --label"
    with pytest.raises(VolumeError, match=message):
        read_label(path, image, label=99)
    with pytest.raises(VolumeError, match=message):  # other structures present: never an empty mask
        read_label(path, image, label=99, require_label=False)


def test_a_background_only_file_is_an_empty_mask(tmp_path, image_and_label):
    image, _ = image_and_label
    path = _write(tmp_path / "empty.nii.gz", np.zeros((8, 8, 4), np.uint8))
    assert not read_label(path, image, label=7, require_label=False).any()
    with pytest.raises(VolumeError, match="label value 7 is absent; the file holds values 0"):
        read_label(path, image, label=7)


def test_label_zero_and_non_integer_label_files_are_refused(tmp_path, image_and_label):
    image, path = image_and_label
    with pytest.raises(ConfigError, match="label 0: value 0 is the background"):
        read_label(path, image, label=0)
    smooth = _multi_label().astype(np.float32)
    smooth[5, 5, 1], smooth[6, 6, 2] = 6.6, 7.4
    bad = _write(tmp_path / "smooth.nii.gz", smooth)
    with pytest.raises(VolumeError, match=r"not a label map: 2 voxel\(s\) hold values that are not whole numbers "):
        read_label(bad, image, label=7)
    noisy = _multi_label().astype(np.float32) + np.float32(1e-5)  # float storage noise is not refused
    assert read_label(_write(tmp_path / "noisy.nii.gz", noisy), image, label=7).sum() == 8


# ------------------------------------------------------------------------------------------------ zeroshot score
def _score_folders(tmp_path):
    gt, pred = tmp_path / "labelsTs", tmp_path / "pred"
    for case in ("a", "b"):
        _write(gt / f"{case}.nii.gz", _multi_label())
        _write(pred / f"{case}.nii.gz", (_multi_label() == 7).astype(np.uint8))  # a perfect pancreas
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "spleen": 1, "pancreas": 7}}))
    return gt, pred


def test_score_names_the_structure_and_notes_the_default(tmp_path, capsys):
    gt, pred = _score_folders(tmp_path)
    assert main(["score", "--gt", str(gt), "--pred", str(pred), "--out", str(tmp_path / "o"), "--workers", "1"]) == 0
    err = capsys.readouterr().err
    assert "zeroshot score: note: the label files hold several structures (values 1 spleen, 7 pancreas" in err
    assert (
        main(["score", "--gt", str(gt), "--pred", str(pred), "--out", str(tmp_path / "p"), "--label", "pancreas"]) == 0
    )
    captured = capsys.readouterr()
    assert "note:" not in captured.err and "scored 2 of 2 cases" in captured.out
    table = json.loads((tmp_path / "p" / "score.json").read_text())
    assert table["label"] == 7


def test_score_with_an_absent_label_fails_each_case_with_the_values_present(tmp_path, capsys):
    gt, pred = _score_folders(tmp_path)
    assert main(["score", "--gt", str(gt), "--pred", str(pred), "--out", str(tmp_path / "o"), "--label", "99"]) == 0
    captured = capsys.readouterr()
    assert "scored 0 of 2 cases" in captured.out
    assert "failed: a: " in captured.err and "label value 99 is absent; the file holds values 0, 1, 7" in captured.err
    assert main(["score", "--gt", str(gt), "--pred", str(pred), "--out", str(tmp_path / "o"), "--label", "0"]) == 2
    assert "--label 0: value 0 is the background" in capsys.readouterr().err
