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


def test_demo_calls_the_library_not_the_command_line(tmp_path, monkeypatch, capsys):
    import inspect

    import zeroshot.cli
    from zeroshot import demo

    assert "zeroshot.cli" not in inspect.getsource(demo)  # no lower layer driving a higher one through argv

    def no_cli(*args, **kwargs):
        raise AssertionError("the demo went through the command line")

    monkeypatch.setattr(zeroshot.cli, "main", no_cli)
    out = tmp_path / "demo"
    result = demo.run_demo(out, cases=1, models=["box-fill"], strategies=("box-mid",), workers=0)
    assert result.compare == out / "compare" and result.figures == out / "figures"
    assert any((out / "figures").glob("*.png"))
    printed = capsys.readouterr().out
    assert str(out / "compare" / "summary.csv") in printed and "skipped dice_vs_clicks" in printed

    # The tables are those `zeroshot compare` writes for the same run, byte for byte.
    monkeypatch.undo()
    assert main(["compare", str(out / "run"), "--out", str(tmp_path / "by_cli")]) == 0
    for table in sorted((out / "compare").iterdir()):
        assert table.read_bytes() == (tmp_path / "by_cli" / table.name).read_bytes(), table.name
