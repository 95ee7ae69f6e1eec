"""Finding cases in the CrossPan, nnU-Net and manifest layouts; selecting them; refusing what cannot be used."""

from __future__ import annotations

import json
import shutil
import warnings

import nibabel as nib
import numpy as np
import pytest

from zeroshot.datasets import detect_layout, discover, select
from zeroshot.errors import DatasetError, ZeroshotWarning


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


@pytest.mark.parametrize(
    ("bad_id", "reason"),
    [
        ("../x", "path separator"),
        ("/abs", "path separator"),
        ("a/b", "path separator"),
        ("..", "not a file name"),
        (".", "not a file name"),
        ("a\\b", "path separator"),
        ("", "is empty"),
        ("a\tb", "control character"),
    ],
)
def test_unsafe_case_ids_are_refused(tmp_path, bad_id, reason):
    _nii(tmp_path / "x.nii.gz")
    (tmp_path / "m.csv").write_text(f'case_id,image,label\n"{bad_id}",x.nii.gz,x.nii.gz\n')
    with pytest.raises(DatasetError, match=f"line 2: case id .* {reason}"):
        discover(tmp_path / "m.csv")


def test_case_ids_with_spaces_are_one_safe_file_name(tmp_path):
    _nii(tmp_path / "img" / "lps flipped.nii.gz")
    _nii(tmp_path / "lab" / "lps flipped.nii.gz")
    (tmp_path / "m.csv").write_text(
        "case_id,image,label,sequence\nlps flipped,img/lps flipped.nii.gz,lab/lps flipped.nii.gz,T1\n"
    )
    (case,) = discover(tmp_path / "m.csv")
    assert case.key == "T1/lps flipped"


def test_every_bad_manifest_row_is_listed_in_one_error(tmp_path):
    _nii(tmp_path / "x.nii.gz")
    (tmp_path / "m.csv").write_text(
        "case_id,image,label\n"
        "good,x.nii.gz,x.nii.gz\n"
        "a/b,x.nii.gz,x.nii.gz\n"
        "ok too,x.nii.gz,x.nii.gz\n"
        "..,x.nii.gz,x.nii.gz\n"
        "c,gone.nii.gz,x.nii.gz\n"
        "d,,x.nii.gz\n"
    )
    with pytest.raises(DatasetError) as caught:
        discover(tmp_path / "m.csv")
    message = str(caught.value)
    assert "4 of 6 row(s) cannot be used" in message
    for line in (
        "line 3: case id 'a/b' holds a path separator",
        "line 5: case id '..' is not a file name",
        "line 6: case id 'c' names image",
        "gone.nii.gz, which does not exist",
        "line 7: case id 'd' has no image",
    ):
        assert line in message
    assert "line 2" not in message and "line 4" not in message


def test_duplicate_ids_and_bad_manifests(tmp_path):
    _nii(tmp_path / "x.nii.gz")
    (tmp_path / "m.csv").write_text("case_id,image,label,sequence\nx,x.nii.gz,x.nii.gz,T1\nx,x.nii.gz,x.nii.gz,T1\n")
    with pytest.raises(DatasetError, match="duplicate case id 'T1/x'"):
        discover(tmp_path / "m.csv")
    (tmp_path / "m.csv").write_text("id,path\nx,x.nii.gz\n")
    with pytest.raises(DatasetError, match=r"missing column\(s\) case_id, image; expected .* \(found id,path\)"):
        discover(tmp_path / "m.csv")
    (tmp_path / "m.csv").write_text("case_id,image,label\nx,gone.nii.gz,x.nii.gz\n")
    with pytest.raises(
        DatasetError, match=r"(?s)m.csv: 1 of 1 row\(s\) .*line 2: case id 'x' names image .*gone.nii.gz"
    ):
        discover(tmp_path / "m.csv")


def test_a_manifest_with_a_byte_order_mark_is_read(tmp_path):
    _nii(tmp_path / "x.nii.gz")
    text = "case_id,image,label,sequence,center,split\nx,x.nii.gz,x.nii.gz,T1,A,test\n"
    (tmp_path / "m.csv").write_bytes(b"\xef\xbb\xbf" + text.encode())  # Excel's "CSV UTF-8"
    (case,) = discover(tmp_path / "m.csv")
    assert (case.case_id, case.sequence, case.split) == ("x", "T1", "test")


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
    with pytest.raises(DatasetError, match=r"no case matches --sequence T3 \(the dataset has T1, T2, OOP\)"):
        select(discover(crosspan), sequences=["T3"])
    with pytest.raises(
        DatasetError, match=r"no case matches --sequence OOP, --split train together; the dataset has sequences T1, T2"
    ):
        select(discover(crosspan), sequences=["OOP"], splits=["train"])


def test_selection_values_that_match_nothing_are_named(crosspan):
    cases = discover(crosspan)
    with pytest.raises(DatasetError, match=r"--case nope \(the dataset has a, b, c\)"):
        select(cases, case_ids=["a", "nope"])
    with pytest.raises(DatasetError, match=r"--sequence T3 \(.*\); --split dev \(the dataset has test, train, val\)"):
        select(cases, sequences=["T1", "T3"], splits=["test", "dev"])


def test_sequences_splits_and_centers_match_without_regard_to_case(tmp_path):
    _nii(tmp_path / "x.nii.gz")
    (tmp_path / "m.csv").write_text(
        "case_id,image,label,sequence,center,split\nx,x.nii.gz,x.nii.gz,T1,Site-A,TEST\ny,x.nii.gz,x.nii.gz,T2,b,train\n"
    )
    cases = discover(tmp_path / "m.csv")
    assert [c.key for c in select(cases, splits=["test"])] == ["T1/x"]
    assert [c.key for c in select(cases, centers=["site-a"], sequences=["t1"])] == ["T1/x"]
    with pytest.raises(DatasetError, match="--case X"):
        select(cases, case_ids=["X"])  # case ids are exact


def test_a_case_with_both_nii_and_nii_gz_is_refused(crosspan):
    label = crosspan / "T1" / "train" / "labels" / "a.nii.gz"
    shutil.copy(label, label.with_name("a.nii"))
    with pytest.raises(DatasetError, match=r"case 'a' has two label files \(a.nii.gz, a.nii\); keep one"):
        discover(crosspan)
    label.with_name("a.nii").unlink()
    image = crosspan / "T1" / "train" / "images" / "a_0000.nii.gz"
    shutil.copy(image, image.with_name("a_0000.nii"))
    with pytest.raises(DatasetError, match=r"case 'a' has two image files"):
        discover(crosspan)


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


def test_a_manifest_that_hides_tree_images_says_how_many(phantom_data, tmp_path):
    copy = tmp_path / "tree"
    shutil.copytree(phantom_data, copy)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ZeroshotWarning)
        assert len(discover(copy)) == 18  # every tree image listed: no notice
    extra = copy / "T1" / "train" / "images"
    for name in ("extra_0000.nii.gz", "more_0000.nii.gz"):
        shutil.copy(next(extra.glob("phantom_000_0000.nii.gz")), extra / name)
    with pytest.warns(ZeroshotWarning, match=r"leaves 2 of its image\(s\) out .*T1/train/images/extra_0000.nii.gz"):
        cases = discover(copy)
    assert len(cases) == 18


def test_two_files_for_one_case_are_refused_in_coarse_and_baseline_folders(crosspan, tmp_path):
    from zeroshot.compare import RunError
    from zeroshot.compare.baselines import _prediction_file
    from zeroshot.errors import PromptError
    from zeroshot.prompts import find_coarse_file

    case = discover(crosspan)[0]
    for name in (f"{case.case_id}.nii", f"{case.case_id}.nii.gz"):
        _nii(tmp_path / "coarse" / case.sequence / name)
        _nii(tmp_path / "preds" / name)
    with pytest.raises(PromptError, match=r"case T1/a: .* holds two coarse masks \(a.nii.gz, a.nii\); keep one"):
        find_coarse_file(tmp_path / "coarse", case)
    with pytest.raises(RunError, match=r"case 'a' has two prediction files \(a.nii.gz, a.nii\); keep one"):
        _prediction_file(tmp_path / "preds", "a")
