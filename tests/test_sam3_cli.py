"""``zeroshot eval --model random:sam3 --clicks 2`` end to end on a ``zeroshot phantom`` dataset.

The SAM 3 tracker with random weights (machinery only: its Dice says nothing about SAM 3) gives rows and a click
curve like every other model, with the image encoded once per volume across the rounds.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from zeroshot.cli import main
from zeroshot.runner import RunDir
from zeroshot.volume import read_volume


def test_eval_random_sam3_with_clicks_on_the_phantom(tmp_path, capsys, one_torch_thread):
    data = tmp_path / "phantom"
    assert main(["phantom", "--out", str(data), "--cases", "1", "--no-montage"]) == 0
    out = tmp_path / "run"
    args = ["eval", "--data", str(data), "--sequence", "T1", "--model", "random:sam3", "--strategy", "box-mid"]
    assert main([*args, "--clicks", "2", "--device", "cpu", "--out", str(out), "--no-progress", "--workers", "0"]) == 0
    assert "random:sam3" in capsys.readouterr().out

    results = pd.read_parquet(out / "results.parquet")
    assert results["round"].tolist() == [0, 1, 2] and results["n_clicks"].tolist() == [0, 1, 2]
    assert not results["failed"].any() and results["dice"].between(0, 1).all()
    assert set(results["model"]) == {"random:sam3"} and set(results["click_protocol"]) == {"zeroshot"}
    assert np.isfinite(results["d_max_mm"]).all()

    depth = read_volume(data / "T1" / "train" / "images" / "phantom_000_0000.nii.gz").num_slices
    infos = [record.info for record in sorted(RunDir(out).store.records(), key=lambda r: r.key)]
    assert len(infos) == 3
    assert [info["encoder_slices_total"] for info in infos] == [depth] * 3
    assert [info["encoder_slices_segment"] for info in infos] == [0, 0, 0]
    assert all(info["backend"] == "transformers" for info in infos)

    model = json.loads((out / "run.json").read_text())["identity"]["models"]["random:sam3"]
    text = json.dumps(model)
    assert "sam3_tracker_video" in text and "Sam3TrackerVideoModel" in text
