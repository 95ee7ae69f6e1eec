"""Finding cases in the CrossPan, nnU-Net and manifest layouts; selecting them; refusing what cannot be used."""

from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
import pytest

from zeroshot.datasets import detect_layout, discover, select
from zeroshot.errors import DatasetError


def _nii(path, value=1):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.full((4, 4, 3), value, np.uint8), np.eye(4)), path)


@pytest.fixture
def crosspan(tmp_path):
    root = tmp_path / "crosspan"
    for seq, split, case in [("T1", "train", "a"), ("T1", "test", "b"), ("T2", "test", "b"), ("OOP", "val", "c")]:
        _nii(root / seq / split / "images" / f"{case}_0000.nii.gz")
        _nii(root / seq / split / "labels" / f"{case}.nii.gz")
    return root


def test_crosspan_layout(crosspan):
    assert detect_layout(crosspan) == "crosspan"
    cases = discover(crosspan)
    assert [(c.sequence, c.case_id, c.split, c.center) for c in cases] == [
        ("T1", "a", "train", "unknown"),
        ("T1", "b", "test", "unknown"),
        ("T2", "b", "test", "unknown"),
        ("OOP", "c", "val", "unknown"),
    ]
    assert cases[1].key == "T1/b" and cases[1].label.name == "b.nii.gz"
    assert [c.key for c in select(cases, sequences=["t2"])] == ["T2/b"]
    assert [c.key for c in select(cases, splits=["test"], case_ids=["b"])] == ["T1/b", "T2/b"]


def test_missing_label_is_an_error_naming_the_case(crosspan):
    (crosspan / "T1" / "train" / "labels" / "a.nii.gz").unlink()
    with pytest.raises(DatasetError, match=r"1 image\(s\) without a label file: T1/a"):
        discover(crosspan)
    assert next(c.key for c in discover(crosspan, require_labels=False)) == "T1/a"


def test_nnunet_layout(tmp_path):
    root = tmp_path / "Dataset101_Pancreas"
    _nii(root / "imagesTr" / "p1_0000.nii.gz")
    _nii(root / "imagesTr" / "p1_0001.nii.gz")  # a second channel is not a second case
    _nii(root / "labelsTr" / "p1.nii.gz")
    _nii(root / "imagesTs" / "p2_0000.nii.gz")
    _nii(root / "labelsTs" / "p2.nii.gz")
    (root / "dataset.json").write_text(json.dumps({"channel_names": {"0": "T2"}, "labels": {"background": 0}}))
    assert detect_layout(root) == "nnunet"
    cases = discover(root)
    assert [(c.case_id, c.sequence, c.split) for c in cases] == [("p1", "T2", "train"), ("p2", "T2", "test")]
    (root / "dataset.json").write_text("{broken")
    with pytest.raises(DatasetError, match="dataset.json: not valid JSON"):
        discover(root)


def test_manifest_layout_with_relative_paths(tmp_path):
    _nii(tmp_path / "imgs" / "x.nii.gz")
    _nii(tmp_path / "labs" / "x.nii.gz")
    csv = tmp_path / "list.csv"
    csv.write_text("case_id,image,label,sequence,center,split\nx,imgs/x.nii.gz,labs/x.nii.gz,oop,siteA,test\n")
    (case,) = discover(csv)
    assert (case.case_id, case.sequence, case.center, case.split) == ("x", "OOP", "siteA", "test")
    assert case.image == (tmp_path / "imgs" / "x.nii.gz").resolve()
    assert detect_layout(csv) == "manifest"


@pytest.mark.parametrize("bad_id", ["../x", "/abs", "a/b", "..", "a\\b", ""])
def test_unsafe_case_ids_are_refused(tmp_path, bad_id):
    _nii(tmp_path / "x.nii.gz")
    (tmp_path / "m.csv").write_text(f"case_id,image,label\n{bad_id},x.nii.gz,x.nii.gz\n")
    with pytest.raises(DatasetError, match="not a safe file name"):
        discover(tmp_path / "m.csv")


def test_duplicate_ids_and_bad_manifests(tmp_path):
    _nii(tmp_path / "x.nii.gz")
    (tmp_path / "m.csv").write_text("case_id,image,label,sequence\nx,x.nii.gz,x.nii.gz,T1\nx,x.nii.gz,x.nii.gz,T1\n")
    with pytest.raises(DatasetError, match="duplicate case id 'T1/x'"):
        discover(tmp_path / "m.csv")
    (tmp_path / "m.csv").write_text("id,path\nx,x.nii.gz\n")
    with pytest.raises(DatasetError, match=r"missing column\(s\) \['case_id', 'image'\]"):
        discover(tmp_path / "m.csv")
    (tmp_path / "m.csv").write_text("case_id,image,label\nx,gone.nii.gz,x.nii.gz\n")
    with pytest.raises(DatasetError, match=r"m.csv:2: image .*gone.nii.gz of case 'x' not found"):
        discover(tmp_path / "m.csv")


def test_unknown_and_empty_layouts(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="unknown layout; expected"):
        discover(tmp_path / "empty")
    with pytest.raises(DatasetError, match="unknown layout 'bids'"):
        discover(tmp_path / "empty", layout="bids")
    with pytest.raises(DatasetError, match="no such dataset"):
        discover(tmp_path / "missing")
    (tmp_path / "empty" / "T1").mkdir()
    with pytest.raises(DatasetError, match="no cases found in the crosspan layout"):
        discover(tmp_path / "empty")


def test_empty_selection_says_what_exists(crosspan):
    with pytest.raises(
        DatasetError, match=r"no case matches sequence=\['T3'\]; the dataset has sequences T1, T2, OOP; centers unknown"
    ):
        select(discover(crosspan), sequences=["T3"])


def test_manifest_wins_over_crosspan_tree(phantom_data, tmp_path):
    cases = discover(phantom_data)
    assert len(cases) == 18
    assert {c.center for c in cases} == {"center-A", "center-B", "center-C", "center-D"}
    copy = tmp_path / "tree"
    shutil.copytree(phantom_data, copy)
    (copy / "manifest.csv").unlink()
    tree_cases = discover(copy)
    assert [c.key for c in tree_cases] == [c.key for c in cases]
    assert {c.center for c in tree_cases} == {"unknown"}
