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
    assert f"Report: {out / 'report' / 'index.html'}" in printed  # the demo ends with the report's path
    page = (out / "report" / "index.html").read_text(encoding="utf-8")
    assert "Synthetic phantom data" in page and len(list((out / "report" / "cases").glob("*.png"))) > 0
    assert main(args) == 0
    assert "0 row(s) computed now" in capsys.readouterr().out


@pytest.mark.slow
def test_default_demo_shows_the_supervised_baseline_beside_the_zero_shot_models(tmp_path, capfd):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--cases", "1"]) == 0
    assert "training phantom-cnn on 3 T1 training case(s)" in capfd.readouterr().err
    results = pd.read_parquet(out / "run" / "results.parquet")
    assert {"box-fill", "grabcut"} <= set(results["model"])
    assert set(results["sequence"]) == {"T1", "T2", "OOP"} and set(results["split"]) == {"test"}
    assert any((out / "figures").glob("*.png"))
    # The supervised rows: in-sequence success, cross-sequence collapse (phantom numbers).
    supervised = pd.read_parquet(out / "compare" / "baseline_results.parquet").set_index("sequence")
    assert set(supervised["model"]) == {"phantom-cnn-T1"}
    assert supervised.loc["T1", "dice"] > 0.7
    assert supervised.loc["T2", "dice"] < 0.1 and supervised.loc["OOP", "dice"] < 0.1
    # Scored exactly as `zeroshot compare --baseline-preds` scores a user's nnU-Net folder.
    by_cli = tmp_path / "by_cli"
    assert main(["compare", str(out / "run"), "--baseline-preds", f"phantom-cnn-T1={out / 'supervised'}",
                 "--out", str(by_cli)]) == 0  # fmt: skip
    for table in sorted((out / "compare").iterdir()):
        assert table.read_bytes() == (by_cli / table.name).read_bytes(), table.name
    capfd.readouterr()
    assert main(["demo", "--out", str(out), "--cases", "1"]) == 0  # resumes: no row, no training again
    assert "training phantom-cnn" not in capfd.readouterr().err


def test_demo_calls_the_library_not_the_command_line(tmp_path, monkeypatch, capsys):
    import inspect

    import zeroshot.cli
    from zeroshot import demo

    assert "zeroshot.cli" not in inspect.getsource(demo)  # no lower layer driving a higher one through argv

    def no_cli(*args, **kwargs):
        raise AssertionError("the demo went through the command line")

    monkeypatch.setattr(zeroshot.cli, "main", no_cli)
    out = tmp_path / "demo"
    result = demo.run_demo(out, cases=1, models=["box-fill"], strategies=("box-mid",), workers=0, supervised=False)
    assert result.compare == out / "compare" and result.figures == out / "figures"
    assert result.report == out / "report" / "index.html"
    assert 'id="table-summary"' in result.report.read_text(encoding="utf-8")  # with the tables and figures
    assert (out / "report" / "figures" / "overlays.png").is_file()
    assert any((out / "figures").glob("*.png"))
    printed = capsys.readouterr().out
    assert str(out / "compare" / "summary.csv") in printed and "skipped dice_vs_clicks" in printed

    # The tables are those `zeroshot compare` writes for the same run, byte for byte.
    monkeypatch.undo()
    assert main(["compare", str(out / "run"), "--out", str(tmp_path / "by_cli")]) == 0
    for table in sorted((out / "compare").iterdir()):
        assert table.read_bytes() == (tmp_path / "by_cli" / table.name).read_bytes(), table.name


def test_demo_refuses_a_phantom_without_test_cases(tmp_path):
    from zeroshot.demo import run_demo
    from zeroshot.errors import ZeroshotError
    from zeroshot.phantom import write_phantom_dataset

    write_phantom_dataset(tmp_path / "demo" / "data", cases=2, seed=0)  # train cases only, as older demos wrote
    with pytest.raises(ZeroshotError, match=r"manifest.csv: this phantom has no test cases .* choose another --out"):
        run_demo(tmp_path / "demo", cases=1, models=["box-fill"], figures=False)


@pytest.mark.parametrize("cases", [0, -1, True])
def test_demo_refuses_fewer_than_one_test_case(tmp_path, cases):
    from zeroshot.demo import run_demo
    from zeroshot.errors import ZeroshotError

    with pytest.raises(ZeroshotError, match=r"--cases: expected at least 1 test case per sequence, got"):
        run_demo(tmp_path, cases=cases)
