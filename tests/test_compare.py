"""zeroshot compare: tables with known statistics from fabricated runs, baseline scoring, published numbers, CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fixtures_runs import (
    D_MAX_MM,
    SEEDS,
    expected_case_mean,
    write_baseline_predictions,
    write_synthetic_run,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from zeroshot import stats
from zeroshot.cli import main
from zeroshot.compare import (
    BootstrapOptions,
    RunError,
    case_values,
    compare_runs,
    comparison_rows,
    cross_sequence_table,
    load_runs,
    paired_table,
    parse_baseline_predictions,
    read_published,
    score_baseline_predictions,
    summary_table,
)
from zeroshot.compare.render import format_p, to_latex
from zeroshot.compare.runs import dataset_root
from zeroshot.compare.tables import _groups, case_table
from zeroshot.csv_text import to_csv

PUBLISHED = Path(__file__).resolve().parents[1] / "benchmarks" / "baselines" / "published.csv"
FAST = BootstrapOptions(n_resamples=300, seed=4)


@pytest.fixture(scope="module")
def run_dir(phantom_data, tmp_path_factory) -> Path:
    return write_synthetic_run(tmp_path_factory.mktemp("run") / "run", phantom_data)


@pytest.fixture(scope="module")
def rows(run_dir) -> pd.DataFrame:
    return comparison_rows(load_runs([run_dir]))


def _indices(rows: pd.DataFrame, sequence: str) -> list[int]:
    ids = sorted(rows.loc[rows["sequence"] == sequence, "case_id"].unique())
    return [int(i.rsplit("_", 1)[-1]) for i in ids]


def test_summary_has_known_means_counts_and_the_same_ci_as_stats(rows):
    summary = summary_table(rows, metrics=["dice"], options=FAST)
    line = summary.loc[
        (summary["model"] == "medsam2") & (summary["strategy"] == "box-mid") & (summary["sequence"] == "T1")
    ]
    assert len(line) == 1
    line = line.iloc[0]
    expected = [expected_case_mean("medsam2", "box-mid", "T1", i) for i in _indices(rows, "T1")]
    assert line["mean"] == pytest.approx(np.mean(expected))
    assert line["sd"] == pytest.approx(np.std(expected, ddof=1))
    assert line["median"] == pytest.approx(np.median(expected))
    assert (line["n_cases"], line["n_rows"], line["n_failed"], line["n_missed"]) == (
        len(expected),
        len(expected) * len(SEEDS),
        1,
        0,
    )
    ci = stats.bootstrap_ci(np.array(expected), n_resamples=300, seed=4)
    assert (line["ci_low"], line["ci_high"]) == pytest.approx((ci.low, ci.high))
    assert line["ci_method"] == "percentile" and line["n_resamples"] == 300


def test_missed_organ_and_failed_case_are_penalised_not_dropped(rows):
    hd95 = case_values(rows, "hd95_mm")
    missed = hd95.loc[
        (hd95["model"] == "sam2.1-tiny")
        & (hd95["strategy"] == "box-mid")
        & (hd95["sequence"] == "T2")
        & (hd95["case_id"] == "phantom_001")
    ]
    # seed 0 missed (D_max), seed 1 scored normally: the case mean sits between.
    assert missed["value"].iloc[0] > D_MAX_MM / 2
    assert np.isfinite(hd95["value"]).all()
    summary = summary_table(rows, metrics=["dice"], options=FAST)
    t2 = summary.loc[
        (summary["model"] == "sam2.1-tiny") & (summary["strategy"] == "box-mid") & (summary["sequence"] == "T2")
    ]
    assert t2["n_missed"].iloc[0] == 1
    dice = case_values(rows, "dice")
    assert (dice["n_seeds"] == len(SEEDS)).all()


def test_summary_by_center_groups_and_sorts_sequences(rows):
    per_center = summary_table(rows, metrics=["dice"], by=("sequence", "center"), options=FAST)
    assert set(per_center["center"]) == set(rows["center"])
    assert list(dict.fromkeys(per_center["sequence"])) == ["T1", "T2", "OOP"]
    with pytest.raises(RunError, match="per-sequence summary"):
        cross_sequence_table(per_center)


def test_case_values_refuses_unknown_metric(rows):
    with pytest.raises(RunError, match="metric 'nsd_9mm' is not a column"):
        case_values(rows, "nsd_9mm")


def test_case_table_holds_every_metrics_case_values_from_one_pass(rows):
    cases = case_table(rows, metrics=["dice", "hd95_mm"])
    for metric in ("dice", "hd95_mm"):
        one = cases.values(metric)
        pd.testing.assert_frame_equal(one, case_values(rows, metric))
        # Against the definition: the mean of each case's rows, by hand.
        for _, line in one.sample(5, random_state=0).iterrows():
            keys = ("sequence", "case_id", "model", "strategy", "kind", "train_sequence")
            chosen = rows.loc[np.logical_and.reduce([rows[k] == line[k] for k in keys])]
            assert line["value"] == pytest.approx(chosen[metric].mean())
            assert line["n_seeds"] == len(chosen)
    with pytest.raises(RunError, match="metric 'iou' is not in this case table"):
        cases.values("iou")


def test_tables_from_shared_case_values_equal_their_own(rows):
    cases = case_table(rows)
    pd.testing.assert_frame_equal(summary_table(rows, options=FAST, cases=cases), summary_table(rows, options=FAST))
    pd.testing.assert_frame_equal(paired_table(rows, options=FAST, cases=cases), paired_table(rows, options=FAST))
    with pytest.raises(ValueError, match=r"cases: expected per-case values by \('sequence', 'center'\)"):
        summary_table(rows, by=("sequence", "center"), options=FAST, cases=cases)
    with pytest.raises(ValueError, match="of dice, hd95_mm, iou"):
        paired_table(rows, metrics=["dice", "hd95_mm", "iou"], options=FAST, cases=cases)


def test_groups_by_position_match_pandas_groupby_order_and_members():
    frame = pd.DataFrame(
        {
            "sequence": pd.array(["T2", "T1", None, "T1", "T2", None, "OOP"], dtype="str"),
            "round": [1, 0, 0, np.nan, 1, 0, 2],
            "value": np.arange(7.0),
        }
    )
    expected = [
        (key, group.index.to_numpy()) for key, group in frame.groupby(["sequence", "round"], sort=True, dropna=False)
    ]
    found = _groups(frame, ["sequence", "round"])
    assert [len(m) for _, m in found] == [len(m) for _, m in expected] and len(found) == 5
    for (key, members), (want_key, want_members) in zip(found, expected, strict=True):
        assert [str(k) for k in key] == [str(k) for k in want_key]
        np.testing.assert_array_equal(members, want_members)
    assert _groups(frame.iloc[:0], ["sequence"]) == []


def test_paired_comparisons_holm_over_each_metric(rows):
    paired = paired_table(rows, metrics=["dice", "hd95_mm"], options=FAST)
    for _, family in paired.groupby("metric"):
        np.testing.assert_allclose(family["p_holm"], stats.holm_adjust(family["p_value"].to_numpy()))
    model_pairs = paired.loc[(paired["comparison"] == "model vs model") & (paired["metric"] == "dice")]
    # Two models, four strategies, three sequences.
    assert len(model_pairs) == 12
    j0 = model_pairs.loc[(model_pairs["sequence"] == "OOP") & (model_pairs["method_a"] == "medsam2 / abl-box-j0-k3")]
    assert j0["mean_diff"].iloc[0] == pytest.approx(0.10)
    assert j0["favours"].iloc[0] == "medsam2 / abl-box-j0-k3"
    # For a distance, the lower value is better: the same pair favours the same model.
    hd = paired.loc[(paired["metric"] == "hd95_mm") & (paired["sequence"] == "OOP")]
    hd = hd.loc[hd["method_a"] == "medsam2 / abl-box-j0-k3"]
    assert hd["mean_diff"].iloc[0] < 0 and hd["favours"].iloc[0] == "medsam2 / abl-box-j0-k3"


@pytest.fixture(scope="module")
def baseline_folder(phantom_data, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("nnunet")
    write_baseline_predictions(root / "T2", phantom_data, sequence="T2", mode="perfect")
    write_baseline_predictions(root / "T1", phantom_data, sequence="T1", mode="empty")
    write_baseline_predictions(root / "OOP", phantom_data, sequence="OOP", mode="missing")
    return root


def test_baseline_predictions_are_scored_on_the_runs_cases(run_dir, baseline_folder):
    runs = load_runs([run_dir])
    scored = score_baseline_predictions(runs, [parse_baseline_predictions(f"nnunet-T2={baseline_folder}")])
    by_sequence = {s: g for s, g in scored.groupby("sequence")}
    assert set(by_sequence) == {"T1", "T2", "OOP"}
    assert (by_sequence["T2"]["dice"] == 1.0).all() and not by_sequence["T2"]["failed"].any()
    assert (by_sequence["T1"]["dice"] == 0.0).all() and by_sequence["T1"]["empty_pred"].all()
    assert by_sequence["OOP"]["failed"].all()
    assert set(by_sequence["OOP"]["error"]) == {"no prediction file"}
    assert (scored["train_sequence"] == "T2").all() and (scored["kind"] == "supervised").all()
    rows = comparison_rows(runs, scored)
    summary = summary_table(rows, metrics=["dice"], options=FAST)
    cross = cross_sequence_table(summary)
    nnunet = cross.loc[cross["model"] == "nnunet-T2"].set_index("test_sequence")
    assert nnunet.loc["T2", "mean"] == 1.0 and nnunet.loc["T1", "mean"] == 0.0
    assert nnunet.loc["OOP", "mean"] == 0.0  # missing predictions are failed cases: the worst case
    assert cross["kind"].iloc[0] == "supervised"
    paired = paired_table(rows, metrics=["dice"], options=FAST)
    versus = paired.loc[(paired["comparison"] == "zero-shot vs supervised") & (paired["sequence"] == "T2")]
    assert len(versus) == 8 and (versus["mean_diff"] < 0).all()
    assert (versus["favours"] == "nnunet-T2 (trained on T2)").all()


def test_baseline_with_explicit_test_sequence(run_dir, baseline_folder):
    runs = load_runs([run_dir])
    scored = score_baseline_predictions(runs, [parse_baseline_predictions(f"nnunet-T1@T2={baseline_folder / 'T2'}")])
    assert set(scored["sequence"]) == {"T2"} and (scored["dice"] == 1.0).all()


def test_broken_baseline_prediction_is_a_failed_row_with_its_reason(run_dir, phantom_data, tmp_path):
    import nibabel as nib

    folder = write_baseline_predictions(tmp_path / "preds", phantom_data, sequence="T1", mode="perfect")
    broken = next(iter(sorted(folder.glob("*.nii.gz"))))
    image = nib.load(broken)
    data = np.asarray(image.dataobj).copy()
    data[data == 1] = 2
    nib.save(nib.Nifti1Image(data, image.affine, image.header), broken)
    scored = score_baseline_predictions(load_runs([run_dir]), [parse_baseline_predictions(f"x-T2@T1={folder}")])
    failed = scored.loc[scored["failed"]]
    assert len(failed) == 1 and "not a binary mask" in failed["error"].iloc[0]
    assert (scored.loc[~scored["failed"], "dice"] == 1.0).all()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("nnunet-T1=preds", ("nnunet-T1", "T1", None, "preds")),
        ("my-unet-OOP@T2=a/b=c", ("my-unet-OOP", "OOP", "T2", "a/b=c")),
    ],
)
def test_parse_baseline_predictions(text, expected):
    spec = parse_baseline_predictions(text)
    assert (spec.model, spec.train_sequence, spec.test_sequence, str(spec.folder)) == expected


@pytest.mark.parametrize("text", ["nnunet=preds", "nnunet-T1", "-T1=preds", "nnunet-T1@=preds"])
def test_parse_baseline_predictions_refuses(text):
    with pytest.raises(RunError, match="expected MODEL-TRAIN"):
        parse_baseline_predictions(text)


def test_baseline_folder_errors(run_dir, tmp_path):
    runs = load_runs([run_dir])
    with pytest.raises(RunError, match="is not a folder"):
        score_baseline_predictions(runs, [parse_baseline_predictions(f"x-T1={tmp_path / 'nowhere'}")])
    with pytest.raises(RunError, match="the run has no CT cases"):
        score_baseline_predictions(runs, [parse_baseline_predictions(f"x-T1@CT={tmp_path}")])
    with pytest.raises(RunError, match="say which one the folder holds"):
        score_baseline_predictions(runs, [parse_baseline_predictions(f"x-T1={tmp_path}")])


def test_dataset_root_from_run_json_and_missing(run_dir, phantom_data):
    info = json.loads((run_dir / "run.json").read_text())
    assert dataset_root(info, run_dir) == (Path(str(phantom_data)), None)
    with pytest.raises(RunError, match="records no dataset path"):
        dataset_root({"identity": {}}, run_dir)


def test_published_csv_ships_sourced_numbers_and_bounds():
    published = read_published(PUBLISHED)
    assert published["source"].notna().all()
    assert set(published["relation"]) == {"=", ">", "<"}
    crosspan = published.loc[published["model"].str.contains("CrossPan")]
    assert sorted(crosspan["value"]) == [0.02, 0.85] and crosspan["n"].isna().all()
    pansegnet = published.loc[published["model"] == "PanSegNet"].set_index("train_sequence")
    assert pansegnet.loc["T1", "value"] == 0.850 and pansegnet.loc["T2", "sd"] == 0.064


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda t: t.drop(columns="source"), "missing column"),
        (lambda t: t.assign(relation=["≈", *t["relation"].iloc[1:]]), "has relation '≈'"),
        (lambda t: t.assign(source=["", *t["source"].iloc[1:]]), "has no source"),
    ],
)
def test_published_csv_refuses_bad_rows(tmp_path, edit, match):
    path = tmp_path / "bad.csv"
    edit(pd.read_csv(PUBLISHED)).to_csv(path, index=False)
    with pytest.raises(RunError, match=match):
        read_published(path)
    with pytest.raises(RunError, match="no such file"):
        read_published(tmp_path / "absent.csv")


def test_load_runs_refuses_bad_input(run_dir, tmp_path):
    with pytest.raises(RunError, match="no run directory given"):
        load_runs([])
    with pytest.raises(RunError, match="no such run directory"):
        load_runs([tmp_path / "absent"])
    with pytest.raises(RunError, match="no results.parquet or results.csv"):
        load_runs([tmp_path])
    with pytest.raises(RunError, match="appear twice"):
        load_runs([run_dir, run_dir])
    broken = tmp_path / "broken"
    broken.mkdir()
    pd.DataFrame({"case_id": ["a"], "dice": [0.5]}).to_csv(broken / "results.csv", index=False)
    with pytest.raises(RunError, match="lacks column"):
        load_runs([broken])
    (broken / "results.csv").write_text("\x00\x01 not a table")
    (broken / "results.parquet").write_bytes(b"not parquet")
    with pytest.raises(RunError, match="cannot read results table"):
        load_runs([broken])


def test_render_escapes_latex_and_formats_p():
    display = pd.DataFrame({"method": ["sam2_t / box-mid"], "value": ["0.5 ± 0.1 (95 %)"], "n": [3]})
    latex = to_latex(display, caption="A & B")
    assert r"sam2\_t" in latex and r"$\pm$" in latex and r"95 \%" in latex and r"A \& B" in latex
    assert r"\toprule" in latex and r"\bottomrule" in latex and "{llr}" in latex
    assert format_p(0.0004) == "< 0.001" and format_p(0.0312) == "0.0312" and format_p(float("nan")) == "–"


def _csv_cases() -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(7)
    floats = np.concatenate(
        [
            [np.nan, np.inf, -np.inf, -0.0, 0.0, 1e-300, 5e-324, 1e20, 0.1 + 0.2, 1 / 3, 123456789.123456789],
            rng.normal(size=40),
        ]
    )
    n = floats.size
    text = ["plain", "with, comma", 'with "quote"', "two\nlines", "", " lead", "tab\tin", "é ± –", None, "x"]
    frame = pd.DataFrame(
        {
            "value": floats,
            "f32": floats.astype(np.float32),
            "n": np.arange(n, dtype=np.int64) - 5,
            "u8": np.arange(n, dtype=np.uint8),
            "flag": np.arange(n) % 3 == 0,
            "name": pd.array([text[i % len(text)] for i in range(n)], dtype="str"),
            "objects": pd.Series([text[i % len(text)] if i % 4 else 2.5 for i in range(n)], dtype=object),
        }
    )
    return {
        "mixed": frame,
        "nothing to quote": frame.assign(
            name=pd.array([("a", None, "é ± –", " lead")[i % 4] for i in range(n)], dtype="str"),
            objects=pd.Series(["b", None] * (n // 2), dtype=object),
        ),
        "one empty text column": pd.DataFrame({"a": ["", "b", None]}),
        "header needs quotes": pd.DataFrame({"a,b": [1.5], 'say "x"': ["y"]}),
        # Left to pandas: dates, categories, nullable integers, no rows, no columns, repeated or non-text names.
        "dates": pd.DataFrame({"when": pd.to_datetime(["2026-12-06", None]), "x": [0.5, 1.5]}),
        "category": pd.DataFrame({"c": pd.Categorical(["a", None, "b"]), "x": [1.0, np.nan, 2.0]}),
        "nullable": pd.DataFrame({"i": pd.array([1, None, 3], dtype="Int64")}),
        "no rows": frame.iloc[:0],
        "no columns": pd.DataFrame(index=range(3)),
        "repeated names": pd.DataFrame([[1.5, 2.5]], columns=["a", "a"]),
        "number names": pd.DataFrame({0: [1.5], 1: [np.nan]}),
    }


@pytest.mark.parametrize("case", list(_csv_cases()))
@pytest.mark.parametrize("float_format", ["%.10g", "%.3f", None])
def test_to_csv_writes_the_bytes_pandas_writes(case, float_format, monkeypatch):
    frame = _csv_cases()[case]
    expected = frame.to_csv(index=False, float_format=float_format)
    if case in ("mixed", "nothing to quote", "one empty text column", "header needs quotes"):  # without pandas
        monkeypatch.setattr(pd.DataFrame, "to_csv", None)
    if case == "nothing to quote":  # rows joined by commas, without csv.writer either
        monkeypatch.setattr(csv, "writer", None)
    assert to_csv(frame, float_format=float_format) == expected


def test_comparing_one_run_loads_neither_the_runner_nor_figure_or_model_code(run_dir, tmp_path):
    import subprocess
    import sys

    heavy = ("zeroshot.runner", "zeroshot.interactive", "zeroshot.prompts", "matplotlib", "torch")
    code = (
        "import sys\n"
        "from zeroshot.compare import BootstrapOptions, compare_runs\n"
        f"compare_runs([{str(run_dir)!r}], {str(tmp_path / 'out')!r}, options=BootstrapOptions(n_resamples=50))\n"
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))\n"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]" and (tmp_path / "out" / "per_case.csv").is_file()


def test_bootstrap_options_are_checked_at_construction():
    with pytest.raises(ValueError, match="method: expected one of"):
        BootstrapOptions(method="basic")


def test_compare_runs_writes_every_table(run_dir, baseline_folder, tmp_path):
    output = compare_runs(
        [run_dir],
        tmp_path / "out",
        baseline_predictions=[f"nnunet-T2={baseline_folder}"],
        published=PUBLISHED,
        by_center=True,
        options=FAST,
    )
    names = {p.name for p in output.files}
    for stem in ("summary", "summary_by_center", "cross_sequence", "paired", "published"):
        assert {f"{stem}.csv", f"{stem}.md", f"{stem}.tex"} <= names
    assert {"per_case.csv", "baseline_results.parquet", "comparison.json"} <= names
    cross_md = (tmp_path / "out" / "cross_sequence.md").read_text()
    assert "| nnunet-T2 (trained on T2) | T2 | 0.000 [0.000, 0.000] | 1.000 [1.000, 1.000] |" in cross_md
    assert "test T1 | test T2 | test OOP" in cross_md
    assert "> 0.85" in (tmp_path / "out" / "published.md").read_text()
    settings = json.loads((tmp_path / "out" / "comparison.json").read_text())
    assert settings["bootstrap"] == {"n_resamples": 300, "confidence": 0.95, "method": "percentile", "seed": 4}
    again = compare_runs(
        [run_dir], tmp_path / "again", baseline_predictions=[f"nnunet-T2={baseline_folder}"], options=FAST
    )
    pd.testing.assert_frame_equal(output.summary, again.summary)  # seeded: identical numbers


def test_every_output_is_written_atomically_and_the_baseline_csv_keeps_full_precision(
    run_dir, baseline_folder, tmp_path, monkeypatch
):
    import zeroshot.atomic
    import zeroshot.compare.render
    import zeroshot.compare.report

    written = []

    def recording(path, data):
        written.append(Path(path).name)
        return zeroshot.atomic.write_atomic(path, data)

    monkeypatch.setattr(zeroshot.compare.report, "write_atomic", recording)
    monkeypatch.setattr(zeroshot.compare.render, "write_atomic", recording)
    output = compare_runs(
        [run_dir], tmp_path / "out", baseline_predictions=[f"nnunet-T2={baseline_folder}"], options=FAST
    )
    assert sorted(written) == sorted(p.name for p in output.files)  # every file, none written another way
    parquet = pd.read_parquet(tmp_path / "out" / "baseline_results.parquet")
    csv = pd.read_csv(tmp_path / "out" / "baseline_results.csv")
    numbers = parquet.select_dtypes("float").columns
    assert (parquet[numbers] % 1e-6 > 0).any().any(), "the check needs values with more than 10 digits"
    np.testing.assert_array_equal(csv[numbers].to_numpy(), parquet[numbers].to_numpy())  # no %.10g rounding


def test_cli_compare(run_dir, tmp_path, capsys):
    code = main(["compare", str(run_dir), "--resamples", "200", "--ci-method", "bca", "--out", str(tmp_path / "cli")])
    assert code == 0
    assert str(tmp_path / "cli" / "summary.csv") in capsys.readouterr().out
    summary = pd.read_csv(tmp_path / "cli" / "summary.csv")
    assert set(summary["ci_method"]) == {"bca"} and (summary["ci_low"] <= summary["mean"] + 1e-12).all()
    assert main(["compare", str(run_dir), "--resamples", "0", "--out", str(tmp_path / "bad")]) == 2
    assert "n_resamples: expected a positive count" in capsys.readouterr().err
    assert main(["compare", str(tmp_path / "nothing"), "--out", str(tmp_path / "bad")]) == 2
    assert "no such run directory" in capsys.readouterr().err


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), min_size=1, max_size=30))
def test_to_csv_writes_any_float64_as_pandas_default_does(values):
    """Python's ``repr`` is the text pandas' default gives a float64 (NumPy's ``str``), for every value."""
    frame = pd.DataFrame({"x": np.asarray(values, dtype=np.float64), "tag": ["a"] * len(values)})
    assert to_csv(frame) == frame.to_csv(index=False)
