"""Interactive results: Dice after k clicks, NoC, the round-0 filter of the other tables, the Dice-vs-clicks figure.

Known answers come from fabricated curves (:mod:`fixtures_clicks`): Dice = 0.5 + offset + 0.06 k per case.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fixtures_clicks import (
    NOC_85,
    NOC_90,
    OFFSETS,
    expected_case_dice,
    interactive_results,
    write_run,
)

from zeroshot import stats
from zeroshot.cli import build_parser, main
from zeroshot.compare import (
    AFTER_CLICKS,
    NOC_THRESHOLDS,
    BootstrapOptions,
    RunError,
    click_curves,
    clicks_table,
    compare_runs,
    initial_rows,
    is_interactive,
    load_runs,
    noc_table,
    prepare_rows,
    summary_table,
)
from zeroshot.compare.clicks import case_noc
from zeroshot.compare.render import clicks_display, noc_display
from zeroshot.errors import ConfigError
from zeroshot.figures import FigureSkipped, make_figures, plot_decay, plot_dice_vs_clicks
from zeroshot.figures.clicks import click_curve_summary
from zeroshot.figures.style import save_figure

FAST = BootstrapOptions(n_resamples=300, seed=4)
N_CASES = len(OFFSETS)


def _curves(raw: pd.DataFrame, **kwargs) -> pd.DataFrame:
    return click_curves(prepare_rows(raw), **kwargs)


def _one(frame: pd.DataFrame, **where) -> pd.DataFrame:
    mask = np.ones(len(frame), dtype=bool)
    for column, value in where.items():
        mask &= (frame[column] == value).to_numpy()
    return frame.loc[mask]


@pytest.fixture(scope="module")
def t1() -> pd.DataFrame:
    """medsam2 on T1, box-mid one click per round and pt-both two clicks per round (8 rounds, 2 seeds)."""
    return interactive_results(sequences=("T1",), models=("medsam2",), strategies=("box-mid", "pt-both"),
                               per_round={"pt-both": "both"})  # fmt: skip


@pytest.fixture(scope="module")
def t1_curves(t1) -> pd.DataFrame:
    return _curves(t1)


def test_noc_known_answers_and_never_reached(t1_curves):
    box = _one(t1_curves, strategy="box-mid")
    for threshold, expected in ((0.85, NOC_85), (0.90, NOC_90)):
        per_case = case_noc(box, threshold).sort_values("case_id")
        assert per_case["noc"].tolist() == list(map(float, expected))
    statuses = case_noc(box, 0.85).sort_values("case_id")["status"].tolist()
    # Case 1 reaches 0.85 with its last click (NoC 8 = budget) but is not "never reached"; case 0 is.
    assert statuses == ["never", "reached", "reached", "reached", "reached", "reached"]
    table = noc_table(box, options=FAST)
    assert table["threshold"].tolist() == [0.85, 0.90]
    at85, at90 = table.iloc[0], table.iloc[1]
    assert (at85["mean"], at90["mean"]) == pytest.approx((sum(NOC_85) / N_CASES, sum(NOC_90) / N_CASES))
    assert (at85["n_never_reached"], at90["n_never_reached"]) == (1, 2)
    assert (at85["share_never_reached"], at90["share_never_reached"]) == pytest.approx((1 / 6, 2 / 6))
    assert (at85["n_cases"], at85["budget_clicks"], at85["n_excluded"], at85["n_incomplete"]) == (6, 8, 0, 0)
    ci = stats.bootstrap_ci(np.array(NOC_85, dtype=float), n_resamples=300, seed=4)
    assert (at85["ci_low"], at85["ci_high"]) == pytest.approx((ci.low, ci.high))
    assert at85["median"] == pytest.approx(np.median(NOC_85))


def test_noc_uses_the_seed_averaged_curve(t1_curves):
    # Seeds sit at +-0.01 around the case curve: case 3's seed 0 reaches 0.90 after 4 clicks (0.905 + 0.01 - 0.06)
    # but its seed-averaged Dice only after 5, like every other table where the case is the unit.
    case3 = _one(case_noc(_one(t1_curves, strategy="box-mid"), 0.90), case_id="phantom_003")
    assert case3["noc"].iloc[0] == 5.0


def test_dice_after_k_clicks_known_means_and_ci(t1_curves):
    table = clicks_table(_one(t1_curves, strategy="box-mid"), options=FAST)
    assert table["clicks"].tolist() == list(AFTER_CLICKS)
    for _, line in table.iterrows():
        expected = [expected_case_dice("medsam2", "T1", i, int(line["clicks"])) for i in range(N_CASES)]
        assert line["mean"] == pytest.approx(np.mean(expected))
        summary = stats.summarize(np.array(expected), n_resamples=300, seed=4)
        assert (line["ci_low"], line["ci_high"]) == pytest.approx((summary.ci.low, summary.ci.high))
        assert line["n_cases"] == N_CASES and line["budget_clicks"] == 8
    again = clicks_table(_one(t1_curves, strategy="box-mid"), options=FAST)
    pd.testing.assert_frame_equal(table, again)  # seeded: the same numbers every time
    other = clicks_table(_one(t1_curves, strategy="box-mid"), options=BootstrapOptions(n_resamples=300, seed=5))
    assert not np.allclose(other["ci_low"].iloc[1:], table["ci_low"].iloc[1:])


def test_after_clicks_are_clipped_to_the_budget():
    raw = interactive_results(sequences=("T2",), models=("medsam2",), rounds=4)
    table = clicks_table(_curves(raw), after_clicks=(10, 0, 2, 3, 3), options=FAST)
    assert table["clicks"].tolist() == [0, 2, 3, 4] and set(table["budget_clicks"]) == {4}
    last = [expected_case_dice("medsam2", "T2", i, 4) for i in range(N_CASES)]
    assert table["mean"].iloc[-1] == pytest.approx(np.mean(last))


def test_two_clicks_per_round_use_the_last_round_within_k(t1_curves):
    # Case 1 (odd) clicks 2, 4, 5, 7, 9, 10, 12, 14 after rounds 1..8; case 0 clicks 2, 4, ..., 16.
    both = _one(t1_curves, strategy="pt-both")
    assert set(both["budget_clicks"]) == {16}
    case1 = _one(both, case_id="phantom_001").set_index("clicks")["value"]
    for k, made in {0: 0, 1: 0, 3: 2, 5: 5, 6: 5, 8: 7, 15: 14, 16: 14}.items():
        assert case1[k] == pytest.approx(expected_case_dice("medsam2", "T1", 1, made)), k
    per_case = case_noc(both, 0.85).set_index("case_id")["noc"]
    assert per_case["phantom_001"] == 9.0  # 7 clicks give 0.825, the next round (9 clicks) 0.945
    assert per_case["phantom_000"] == 10.0  # 0.305 + 0.06 k >= 0.85 first at an even k: 10


def test_round_stands_for_clicks_without_an_n_clicks_column(t1):
    box = t1.loc[t1["strategy"] == "box-mid"]
    with_counts = _curves(box)
    without = _curves(box.drop(columns=["n_clicks"]))
    pd.testing.assert_frame_equal(with_counts, without)


def _t1_box() -> pd.DataFrame:
    return interactive_results(sequences=("T1",), models=("medsam2",))


def _curve_mask(raw: pd.DataFrame, index: int, seeds=(0, 1)) -> pd.Series:
    return (raw["case_id"] == f"phantom_{index:03d}") & raw["seed"].isin(seeds)


def _fail(raw: pd.DataFrame, mask: pd.Series, columns=("dice",)) -> pd.DataFrame:
    """Mark rows failed as the runner does: metrics and flags unknown."""
    raw = raw.astype({"empty_gt": object, "empty_pred": object})
    raw.loc[mask, [*columns, "empty_gt", "empty_pred"]] = np.nan
    raw.loc[mask, "failed"] = True
    return raw


def test_incomplete_curves_are_counted_not_averaged():
    raw = _t1_box()
    # Case 2 (NoC@85 = 6) and case 4 (NoC@85 = 3) stop after round 4 for one seed: a run still under way.
    raw = raw.loc[~(_curve_mask(raw, 2, (1,)) & (raw["round"] > 4))]
    raw = raw.loc[~(_curve_mask(raw, 4, (0,)) & (raw["round"] > 4))]
    curves = _curves(raw)
    case2 = _one(curves, case_id="phantom_002").set_index("clicks")
    assert case2.loc[4, "known"] and not case2.loc[5, "known"] and np.isnan(case2.loc[5, "value"])
    table = clicks_table(curves, options=FAST).set_index("clicks")
    assert table.loc[3, "n_incomplete"] == 0 and table.loc[5, "n_incomplete"] == 2
    assert table.loc[8, "n_cases"] == N_CASES - 2
    expected = [expected_case_dice("medsam2", "T1", i, 8) for i in (0, 1, 3, 5)]
    assert table.loc[8, "mean"] == pytest.approx(np.mean(expected))
    noc = case_noc(curves, 0.85).set_index("case_id")
    assert noc.loc["phantom_002", "status"] == "incomplete" and np.isnan(noc.loc["phantom_002", "noc"])
    assert noc.loc["phantom_004", "noc"] == 3.0  # reached before its curve stops
    line = noc_table(curves, thresholds=(0.85,), options=FAST).iloc[0]
    assert (line["n_cases"], line["n_incomplete"], line["n_never_reached"]) == (5, 1, 1)


def test_a_failed_last_round_ends_the_curve_at_the_worst_case():
    raw = _t1_box()
    # Case 5 fails in round 3 (no click count recorded) for both seeds and the run moves on.
    raw = raw.loc[~(_curve_mask(raw, 5) & (raw["round"] > 3))].copy()
    raw = _fail(raw, _curve_mask(raw, 5) & (raw["round"] == 3), ("dice", "n_clicks"))
    curves = _curves(raw)
    case5 = _one(curves, case_id="phantom_005").set_index("clicks")
    # The failed row carries the count of the round before (2 clicks): from 2 clicks on, Dice is 0.
    assert case5["known"].all()
    assert case5.loc[1, "value"] == pytest.approx(expected_case_dice("medsam2", "T1", 5, 1))
    assert (case5.loc[2:, "value"] == 0.0).all()
    noc = case_noc(curves, 0.90).set_index("case_id")
    assert noc.loc["phantom_005", "noc"] == 1.0  # reached before the failure
    table = clicks_table(curves, options=FAST).set_index("clicks")
    assert table.loc[8, "n_cases"] == N_CASES and table.loc[8, "n_incomplete"] == 0


def test_failed_round_zero_alone_scores_the_budget_at_dice_zero():
    raw = _t1_box()
    raw = raw.loc[~(_curve_mask(raw, 5) & (raw["round"] > 0))].copy()
    raw = _fail(raw, _curve_mask(raw, 5))
    noc = case_noc(_curves(raw), 0.85).set_index("case_id")
    assert (noc.loc["phantom_005", "noc"], noc.loc["phantom_005", "status"]) == (8.0, "never")


def test_both_empty_cases_are_excluded_and_counted():
    raw = _t1_box()
    empty = _curve_mask(raw, 0)
    raw.loc[empty, ["empty_gt", "empty_pred"]] = True
    raw.loc[empty, "dice"] = np.nan
    curves = _curves(raw)
    table = clicks_table(curves, options=FAST)
    assert (table["n_excluded"] == 1).all() and (table["n_cases"] == N_CASES - 1).all()
    line = noc_table(curves, thresholds=(0.85,), options=FAST).iloc[0]
    assert (line["n_excluded"], line["n_cases"], line["n_never_reached"]) == (1, 5, 0)
    assert line["mean"] == pytest.approx(np.mean(NOC_85[1:]))
    perfect = click_curves(prepare_rows(raw, both_empty_as_perfect=True))
    assert (_one(perfect, case_id="phantom_000")["value"] == 1.0).all()


def test_supervised_and_round_less_rows_are_left_out_of_the_curves():
    raw = _t1_box()
    supervised = raw.loc[raw["round"] == 0].drop(columns=["round", "n_clicks", "clicks"])
    supervised = supervised.assign(model="nnunet-T1", strategy="supervised", kind="supervised", train_sequence="T1")
    rows = prepare_rows(pd.concat([raw, supervised], ignore_index=True))
    assert set(click_curves(rows)["model"]) == {"medsam2"}
    assert set(initial_rows(rows)["model"]) == {"medsam2", "nnunet-T1"}


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda t: t.drop(columns="round"), "no round column: not an interactive run"),
        (lambda t: t.assign(round=np.nan), "no interactive row"),
        (lambda t: t.loc[t["round"] != 3], r"rounds \[0, 1, 2, 4, 5, 6, 7, 8\]; expected one row per round"),
        (lambda t: t.loc[t["round"] != 0], "expected one row per round 0, 1, 2"),
        (lambda t: pd.concat([t, t.loc[t["round"] == 2]]), r"rounds \[0, 1, 2, 2, 3"),
        (lambda t: t.assign(round=t["round"] + 0.5), "column round: expected whole numbers >= 0, found 0.5"),
        (lambda t: t.assign(n_clicks=t["n_clicks"] + 1), "round 0 .* has n_clicks != 0"),
        (lambda t: t.assign(n_clicks=t["n_clicks"].where(t["round"] != 5, 1)), "n_clicks decreases"),
        (lambda t: t.assign(n_clicks=t["n_clicks"] * -1), "column n_clicks: expected whole numbers >= 0"),
    ],
)
def test_malformed_interactive_rows_are_refused(edit, match):
    rows = prepare_rows(edit(_t1_box()).reset_index(drop=True))
    with pytest.raises(RunError, match=match):
        click_curves(rows)


def test_unknown_metric_and_noc_of_a_distance_are_refused(t1_curves, t1):
    rows = prepare_rows(t1)
    with pytest.raises(RunError, match="metric 'nsd_9mm' is not a column"):
        click_curves(rows, metric="nsd_9mm")
    nsd = click_curves(rows, metric="nsd_2mm")
    assert nsd["value"].max() == 1.0 and set(nsd["metric"]) == {"nsd_2mm"}
    with pytest.raises(RunError, match="NoC needs an overlap metric such as dice, found 'hd95_mm'"):
        noc_table(click_curves(rows, metric="hd95_mm"))


@pytest.mark.parametrize("after", [(), (-1,), (2.5,), (True,)])
def test_after_clicks_options_are_checked(t1_curves, after):
    with pytest.raises(ConfigError, match=r"after_clicks \(--after-clicks\)"):
        clicks_table(t1_curves, after_clicks=after)


@pytest.mark.parametrize("thresholds", [(), (85,), (0.0,), (1.5,), ("0.9",)])
def test_noc_thresholds_are_checked(t1_curves, thresholds):
    with pytest.raises(ConfigError, match=r"noc_thresholds \(--noc\)"):
        noc_table(t1_curves, thresholds=thresholds)


def _with_edge_rows(raw: pd.DataFrame) -> pd.DataFrame:
    """A failed and a missed round-0 row, so the round filter is checked on penalised outcomes too."""
    failed = _curve_mask(raw, 1, (0,)) & (raw["model"] == "medsam2") & (raw["round"] == 0)
    raw = _fail(raw, failed, ("dice", "nsd_2mm", "hd95_mm"))
    missed = _curve_mask(raw, 2, (1,)) & (raw["sequence"] == "T2") & (raw["round"] == 0)
    raw.loc[missed, ["dice", "nsd_2mm"]] = 0.0
    raw.loc[missed, ["hd95_mm", "assd_mm"]] = np.inf
    raw.loc[missed, "empty_pred"] = True
    return raw


def test_round_filter_keeps_every_initial_prompt_table_unchanged(tmp_path):
    interactive = _with_edge_rows(interactive_results(sequences=("T1", "T2"), strategies=("box-mid", "pt")))
    plain = interactive.loc[interactive["round"] == 0].drop(columns=["round", "n_clicks", "clicks"])
    with_clicks = compare_runs([write_run(tmp_path / "a", interactive)], tmp_path / "out_a", options=FAST)
    without = compare_runs([write_run(tmp_path / "b", plain)], tmp_path / "out_b", options=FAST)
    for name in ("summary", "cross_sequence", "paired"):
        pd.testing.assert_frame_equal(getattr(with_clicks, name), getattr(without, name))
    for name in ("summary.csv", "cross_sequence.csv", "paired.csv", "per_case.csv"):
        assert (tmp_path / "out_a" / name).read_bytes() == (tmp_path / "out_b" / name).read_bytes(), name
    assert without.clicks is None and not (tmp_path / "out_b" / "clicks.csv").exists()
    assert "initial prompts only (round 0)" in (tmp_path / "out_a" / "summary.md").read_text()
    assert "round 0" not in (tmp_path / "out_b" / "summary.md").read_text()
    # Without the filter, later rounds would enter the summary as methods of their own.
    assert len(summary_table(prepare_rows(interactive), metrics=["dice"], options=FAST)) == 9 * len(
        summary_table(prepare_rows(plain), metrics=["dice"], options=FAST)
    )


def test_initial_rows_refuses_a_row_in_both_kinds_of_run(tmp_path):
    interactive = _t1_box()
    plain = interactive.loc[interactive["round"] == 0].drop(columns=["round", "n_clicks", "clicks"])
    runs = load_runs([write_run(tmp_path / "a", interactive), write_run(tmp_path / "b", plain)])
    assert is_interactive(runs.results) and not is_interactive(plain)
    with pytest.raises(RunError, match="both round 0 of an interactive run and a row of a non-interactive run"):
        initial_rows(runs.results)
    other = plain.assign(strategy="point-center")
    mixed = load_runs([write_run(tmp_path / "c", interactive), write_run(tmp_path / "d", other)])
    kept = initial_rows(mixed.results)
    assert len(kept) == 2 * len(plain) and "round" not in kept.columns


def test_compare_writes_click_tables(tmp_path):
    raw = interactive_results(sequences=("T1", "OOP"), strategies=("box-mid", "short"))
    raw = raw.loc[(raw["strategy"] == "box-mid") | (raw["round"] <= 4)]  # "short" has a budget of 4 clicks
    output = compare_runs([write_run(tmp_path / "run", raw)], tmp_path / "out", options=FAST)
    names = {p.name for p in output.files}
    assert {"clicks.csv", "clicks.md", "clicks.tex", "noc.csv", "noc.md", "noc.tex", "per_case_clicks.csv"} <= names
    markdown = (tmp_path / "out" / "clicks.md").read_text()
    assert (
        "| sequence | method | budget (clicks) | n | 0 clicks | 1 click | 3 clicks | 4 clicks | 5 clicks | 8 clicks |"
        in (markdown)
    )
    short = next(line for line in markdown.splitlines() if "| T1 | medsam2 / short |" in line)
    assert short.endswith("| – | – |") and "| 4 | 6 |" in short
    noc_md = (tmp_path / "out" / "noc.md").read_text()
    assert "| T1 | medsam2 / box-mid | 8 | 5.0 [" in noc_md and "1 / 6 (17 %)" in noc_md and "2 / 6 (33 %)" in noc_md
    per_case = pd.read_csv(tmp_path / "out" / "per_case_clicks.csv")
    assert len(per_case) == 2 * 2 * N_CASES * 9 + 2 * 2 * N_CASES * 5
    settings = (tmp_path / "out" / "comparison.json").read_text()
    assert '"after_clicks": [\n      0,\n      1,\n      3,\n      5,\n      8\n    ]' in settings


def test_displays_of_empty_tables_are_empty():
    assert clicks_display(pd.DataFrame()).empty and noc_display(pd.DataFrame()).empty


def test_cli_compare_click_options(tmp_path, capsys):
    run = write_run(tmp_path / "run", interactive_results(sequences=("T1",), models=("medsam2",)))
    out = tmp_path / "out"
    argv = ["compare", str(run), "--resamples", "50", "--after-clicks", "2", "0", "--noc", "0.8", "--out", str(out)]
    assert main(argv) == 0
    assert str(out / "noc.csv") in capsys.readouterr().out
    assert pd.read_csv(out / "clicks.csv")["clicks"].tolist() == [0, 2]
    noc = pd.read_csv(out / "noc.csv")
    assert noc["threshold"].tolist() == [0.8] and noc["n_never_reached"].tolist() == [1]
    assert main(["compare", str(run), "--noc", "85", "--out", str(tmp_path / "bad")]) == 2
    assert "expected Dice values in (0, 1] such as 0.85, found 85.0" in capsys.readouterr().err
    help_text = build_parser()._subparsers._group_actions[0].choices["compare"].format_help()
    assert f"default {' '.join(map(str, AFTER_CLICKS))}" in " ".join(help_text.split())
    assert f"default {' '.join(f'{t:.2f}' for t in NOC_THRESHOLDS)}" in " ".join(help_text.split())


def test_dice_vs_clicks_panels_lines_and_bands(t1):
    raw = interactive_results(sequences=("T1", "T2", "OOP"), strategies=("box-mid", "pt-both"),
                              per_round={"pt-both": "both"})  # fmt: skip
    curves = _curves(raw)
    figure = plot_dice_vs_clicks(curves, n_resamples=200, seed=0)
    assert [ax.get_title() for ax in figure.axes] == ["T1", "T2", "OOP"]
    ax = figure.axes[0]
    assert ax.get_xlabel() == "corrective clicks" and ax.get_ylabel() == "Dice (mean, 95 % CI)"
    lines = {line.get_label(): line for line in ax.get_lines() if not line.get_label().startswith("_")}
    assert set(lines) == {f"{m} / {s}" for m in ("medsam2", "sam2.1-tiny") for s in ("box-mid", "pt-both")}
    assert lines["medsam2 / box-mid"].get_linestyle() == "-" and lines["medsam2 / pt-both"].get_linestyle() == "--"
    assert lines["medsam2 / box-mid"].get_color() == lines["medsam2 / pt-both"].get_color()
    assert lines["medsam2 / box-mid"].get_color() != lines["sam2.1-tiny / box-mid"].get_color()
    x, y = lines["medsam2 / box-mid"].get_data()
    assert list(x) == list(range(9)) and list(lines["medsam2 / pt-both"].get_data()[0]) == list(range(17))
    expected = [np.mean([expected_case_dice("medsam2", "T1", i, k) for i in range(N_CASES)]) for k in range(9)]
    np.testing.assert_allclose(y, expected)
    assert len(ax.collections) == 4  # one CI band per line
    assert sorted(line.get_ydata()[0] for line in ax.get_lines() if line.get_label().startswith("_")) == [0.85, 0.9]
    assert "dotted: Dice 0.85, 0.9" in figure.get_suptitle()
    single = plot_dice_vs_clicks(_one(curves, strategy="box-mid"), thresholds=(), n_resamples=50, seed=0)
    labels = {line.get_label() for line in single.axes[0].get_lines()}
    assert labels == {"medsam2", "sam2.1-tiny"} and "dotted" not in single.get_suptitle()


def test_dice_vs_clicks_skips_without_rounds_or_values(t1_curves):
    with pytest.raises(FigureSkipped, match="no round column"):
        plot_dice_vs_clicks(None, n_resamples=50, seed=0)
    with pytest.raises(FigureSkipped, match="no case has a value"):
        plot_dice_vs_clicks(t1_curves.assign(value=np.nan), n_resamples=50, seed=0)
    summary = click_curve_summary(t1_curves.assign(value=t1_curves["value"].where(t1_curves["clicks"] < 3)),
                                  n_resamples=50, seed=0)  # fmt: skip
    assert set(summary["clicks"]) == {0, 1, 2}


def test_make_figures_draws_dice_vs_clicks_and_filters_slices(tmp_path, capsys):
    raw = interactive_results(sequences=("T1", "T2"), models=("medsam2",))
    run = write_run(tmp_path / "run", raw)
    # Per-slice rows for round 0 (slice Dice 0.2) and round 1 (slice Dice 1.0): the decay figure shows round 0.
    slices = pd.DataFrame(
        [
            {"case_id": f"phantom_{i:03d}", "sequence": s, "model": m, "strategy": "box-mid", "seed": 0,
             "round": r, "z": z, "dist_mm": 3.0 * z, "slice_dice": 0.2 if r == 0 else 1.0}
            for s in ("T1", "T2") for i in range(N_CASES) for m in ("medsam2",) for r in (0, 1)
            for z in range(4)
        ]
    )  # fmt: skip
    slices.to_parquet(run / "slices.parquet", index=False)
    assert main(["figures", str(run), "--resamples", "50", "--noc", "0.8", "--out", str(tmp_path / "figs")]) == 0
    printed = capsys.readouterr().out
    assert str(tmp_path / "figs" / "dice_vs_clicks.pdf") in printed and "skipped dice_vs_clicks" not in printed
    reference = plot_decay(slices.loc[slices["round"] == 0], strategy="box-mid", n_resamples=50, seed=0)
    assert all(np.allclose(line.get_ydata(), 0.2) for line in reference.axes[0].get_lines())
    expected = save_figure(reference, tmp_path / "reference", "propagation_decay")[1]
    assert (tmp_path / "figs" / "propagation_decay.png").read_bytes() == expected.read_bytes()
    # The CLI's figure is the plot of the click curves with its --noc line, byte for byte.
    curves = _curves(raw)
    drawn = save_figure(plot_dice_vs_clicks(curves, thresholds=(0.8,), n_resamples=50, seed=0), tmp_path / "ref", "c")
    assert (tmp_path / "figs" / "dice_vs_clicks.pdf").read_bytes() == drawn[0].read_bytes()
    with pytest.raises(ConfigError, match="noc_thresholds"):
        make_figures([run], tmp_path / "bad", noc_thresholds=(90,))
