"""The data commands as a user runs them: --help, phantom, cases; and the one real scan through a manifest."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from zeroshot.cli import main
from zeroshot.datasets import discover
from zeroshot.volume import read_label, read_label_values, read_volume


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in ("phantom", "cases"):
        assert command in out


def test_console_script_runs():
    result = subprocess.run([sys.executable, "-m", "zeroshot.cli", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("zeroshot ")


def test_phantom_then_cases(tmp_path, capsys):
    assert main(["phantom", "--out", str(tmp_path / "d"), "--cases", "2", "--seed", "0"]) == 0
    assert (tmp_path / "d" / "montage.png").stat().st_size > 10_000
    capsys.readouterr()
    assert main(["cases", str(tmp_path / "d"), "--sequence", "OOP"]) == 0
    out = capsys.readouterr().out
    assert "phantom_000  OOP       center-A  train" in out
    assert "phantom_001  OOP       center-B  train" in out
    assert out.strip().splitlines()[-1].split() == ["total", "1", "1", "2"]


def test_errors_are_printed_without_traceback(tmp_path, capsys):
    assert main(["cases", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("zeroshot cases: error:") and "no such dataset" in err and "Traceback" not in err


def test_real_scan_through_a_manifest(real_example, tmp_path, capsys):
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(
        "case_id,image,label,sequence,center,split\n"
        f"s0001,{real_example / 'image.nii.gz'},{real_example / 'labels.nii.gz'},OOP,totalseg,test\n"
    )
    (case,) = discover(manifest)
    volume = read_volume(case.image)
    pancreas = read_label(case.label, volume, label=7)
    assert volume.shape == (20, 91, 117) and volume.spacing_mm == pytest.approx((3.0, 3.0, 3.0))
    assert int(pancreas.sum()) == 1176
    z = np.nonzero(pancreas.any(axis=(1, 2)))[0]
    assert (z.min(), z.max()) == (0, 15)
    assert main(["cases", str(manifest), "--montage", str(tmp_path / "m.png"), "--label", "7"]) == 0
    assert "s0001    OOP       totalseg  test   20x91x117" in capsys.readouterr().out
    assert (tmp_path / "m.png").stat().st_size > 5_000


def test_phantom_writes_multi_label_files_named_in_dataset_json(tmp_path, capsys):
    out = tmp_path / "d"
    assert main(["phantom", "--out", str(out), "--cases", "1", "--labels", "pancreas=7, spleen=1", "--no-montage"]) == 0
    assert json.loads((out / "dataset.json").read_text())["labels"] == {"background": 0, "spleen": 1, "pancreas": 7}
    (case, *_) = discover(out / "manifest.csv")
    assert read_label_values(case.label) == (0, 1, 7)
    for bad in ("pancreas", "pancreas=7,pancreas=8", "pancreas=x"):
        with pytest.raises(SystemExit):
            main(["phantom", "--out", str(tmp_path / "e"), "--labels", bad])
        assert "expected NAME=VALUE pairs" in capsys.readouterr().err
    assert main(["phantom", "--out", str(tmp_path / "f"), "--labels", "spleen=1"]) == 2
    assert "pancreas" in capsys.readouterr().err
