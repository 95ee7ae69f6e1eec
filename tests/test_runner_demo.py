"""``zeroshot demo``: phantom, evaluation on all three sequences, tables (figures in the slow variant)."""

from __future__ import annotations

import pandas as pd
import pytest

from zeroshot.cli import main


def test_demo_evaluates_every_sequence_and_resumes(tmp_path, capsys):
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--cases", "1", "--model", "box-fill", "--no-figures", "--workers", "0"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    results = pd.read_csv(out / "run" / "results.csv")
    assert set(results["sequence"]) == {"T1", "T2", "OOP"}
    assert set(results["strategy"]) == {"box-mid", "box-mid-jitter10", "point-center"}
    assert not results["failed"].any() and len(results) == 3 * 3
    assert "OOP      box-fill" in printed and "test the machinery, not accuracy" in printed
    assert main(args) == 0
    assert "0 row(s) computed now" in capsys.readouterr().out


@pytest.mark.slow
def test_default_demo_writes_tables_and_figures(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--cases", "1"]) == 0
    results = pd.read_parquet(out / "run" / "results.parquet")
    assert {"box-fill", "grabcut"} <= set(results["model"])
    assert set(results["sequence"]) == {"T1", "T2", "OOP"}
    assert (out / "compare").is_dir() and any((out / "figures").glob("*.png"))
