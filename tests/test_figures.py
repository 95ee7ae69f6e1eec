"""zeroshot figures: every figure drawn from a fabricated run, its panels and labels, deterministic files, skips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fixtures_runs import SPACING_Z_MM, write_baseline_predictions, write_synthetic_run

from zeroshot.cli import main
from zeroshot.compare import BootstrapOptions, compare_runs, comparison_rows, load_runs, read_published
from zeroshot.compare.runs import RunError
from zeroshot.compare.tables import cross_sequence_table, summary_table
from zeroshot.figures import (
    FIGURES,
    FigureSkipped,
    make_figures,
    plot_ablation,
    plot_cross_sequence_heatmap,
    plot_decay,
    plot_distributions,
    plot_overlays,
    plot_zero_shot_vs_supervised,
)
from zeroshot.figures.data import strategy_settings
from zeroshot.figures.decay import decay_curve
from zeroshot.figures.overlays import select_overlay_cases
from zeroshot.figures.style import save_figure

PUBLISHED = Path(__file__).resolve().parents[1] / "benchmarks" / "baselines" / "published.csv"
RESAMPLES = 200


@pytest.fixture(scope="module")
def run_dir(phantom_data, tmp_path_factory) -> Path:
    return write_synthetic_run(tmp_path_factory.mktemp("run") / "run", phantom_data, with_predictions=True)


@pytest.fixture(scope="module")
def compare_dir(run_dir, phantom_data, tmp_path_factory) -> Path:
    preds = tmp_path_factory.mktemp("nnunet")
    write_baseline_predictions(preds / "T2", phantom_data, sequence="T2", mode="perfect")
    out = tmp_path_factory.mktemp("compare")
    compare_runs([run_dir], out, baseline_predictions=[f"nnunet-T2={preds}"], options=BootstrapOptions(n_resamples=50))
    return out


@pytest.fixture(scope="module")
def runs(run_dir):
    return load_runs([run_dir])


@pytest.fixture(scope="module")
def rows(runs, compare_dir):
    return comparison_rows(runs, pd.read_parquet(compare_dir / "baseline_results.parquet"))


def _titles(figure) -> list[str]:
    return [ax.get_title() for ax in figure.axes]


def test_saved_files_are_deterministic(rows, runs, tmp_path):
    settings = strategy_settings(runs.infos, sorted(rows["strategy"].unique()))
    paths = []
    for folder in ("a", "b"):
        # A fresh figure each time: the bytes depend only on the tables.
        figure = plot_ablation(rows, settings, n_resamples=RESAMPLES, seed=0)
        paths.append(save_figure(figure, tmp_path / folder, "ablation"))
    for first, second in zip(*paths, strict=True):
        assert first.read_bytes() == second.read_bytes(), f"{first.name} differs between two identical calls"
    pdf = paths[0][0].read_bytes()
    assert pdf.startswith(b"%PDF") and b"CreationDate" not in pdf


def test_distributions_panels(rows):
    figure = plot_distributions(rows)
    assert _titles(figure)[:3] == ["T1", "T2", "OOP"]
    assert figure.axes[0].get_ylabel() == "Dice" and figure.axes[3].get_ylabel() == "NSD (2 mm)"
    ticks = [t.get_text() for t in figure.axes[1].get_xticklabels()]
    assert ticks == ["medsam2", "sam2.1-tiny", "nnunet-T2\n(trained T2)"]
    assert "box-mid" in figure.get_suptitle()
    with pytest.raises(FigureSkipped, match="no Dice or NSD"):
        plot_distributions(rows, metrics=["absent"])


def test_zero_shot_vs_supervised_panels(rows):
    summary = summary_table(rows, metrics=["dice"], options=BootstrapOptions(n_resamples=RESAMPLES))
    figure = plot_zero_shot_vs_supervised(summary, published=read_published(PUBLISHED))
    titles = _titles(figure)
    assert titles[:3] == ["test T1", "test T2", "test OOP"]
    assert titles[3].startswith("Published (other cases")
    labels = [t.get_text() for t in figure.axes[0].get_yticklabels()]
    assert "nnunet-T2 (trained T2)" in labels and "medsam2 / box-mid" in labels
    published_labels = [t.get_text() for t in figure.axes[3].get_yticklabels()]
    assert "PanSegNet, T1→T1, PanSegData" in published_labels
    without = plot_zero_shot_vs_supervised(summary)
    assert len(without.axes) == 3
    with pytest.raises(FigureSkipped, match="no nsd_2mm summary"):
        plot_zero_shot_vs_supervised(summary, metric="nsd_2mm")


def test_cross_sequence_heatmap_cells(rows):
    summary = summary_table(rows, metrics=["dice"], options=BootstrapOptions(n_resamples=RESAMPLES))
    figure = plot_cross_sequence_heatmap(cross_sequence_table(summary))
    ax = figure.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["test T1", "test T2", "test OOP"]
    assert ax.get_yticklabels()[0].get_text() == "trained T2: nnunet-T2"
    texts = [t.get_text() for t in ax.texts]
    assert "1.00\n[1.00, 1.00]" in texts  # nnunet-T2 on its own sequence (perfect predictions)
    assert "–" in texts  # nnunet-T2 has no OOP predictions in this fixture: an empty cell, not a number
    assert figure.axes[1].get_ylabel() == "mean dice"


def test_ablation_axes_from_recorded_settings(rows, runs):
    settings = strategy_settings(runs.infos, sorted(rows["strategy"].unique()))
    assert settings["abl-box-j10-k1"].jitter_percent == 10.0
    assert settings["abl-box-j0-k3"].key_slices == 3.0
    assert settings["point-center"].prompt_type == "points"
    figure = plot_ablation(rows, settings, n_resamples=RESAMPLES, seed=0)
    assert _titles(figure)[:3] == ["box jitter", "prompted slices", "prompt"]
    assert figure.axes[0].get_ylabel().startswith("T1")
    assert [t.get_text() for t in figure.axes[2].get_xticklabels()] == ["box", "points"]
    assert [t.get_text() for t in figure.axes[1].get_xticklabels()] == ["1", "3"]
    # medsam2 on OOP: box-mid 0.66 at jitter 0, abl-box-j10-k1 0.61 at 10 % (known from the fixture formula).
    line = figure.axes[6].get_lines()[0]
    x, y = line.get_data()
    assert list(x) == [0.0, 10.0]
    assert y[1] < y[0]


def test_ablation_parses_names_when_settings_are_missing(rows):
    settings = strategy_settings([{}], ["abl-box-j20-k5", "box-mid-jitter10", "point-center", "odd"])
    assert (settings["abl-box-j20-k5"].jitter_percent, settings["abl-box-j20-k5"].key_slices) == (20.0, 5.0)
    assert settings["box-mid-jitter10"].jitter_percent == 10.0
    assert settings["point-center"].prompt_type == "points"
    assert settings["odd"].prompt_type == "unknown" and np.isnan(settings["odd"].jitter_percent)
    only_one = {k: v for k, v in strategy_settings([{}], ["box-mid"]).items()}
    with pytest.raises(FigureSkipped, match="vary no ablation axis"):
        plot_ablation(rows, only_one, n_resamples=RESAMPLES, seed=0)


def test_decay_curve_known_values(runs):
    slices = runs.slices
    here = slices.loc[
        (slices["model"] == "sam2.1-tiny") & (slices["strategy"] == "point-center") & (slices["sequence"] == "OOP")
    ]
    curve = decay_curve(here, bin_mm=SPACING_Z_MM, n_resamples=RESAMPLES, seed=0)
    # slice Dice = case Dice - 0.04 * distance in slices; case Dice averages to the fixture's per-case means.
    case_means = here.loc[here["dist_slices"] == 0].groupby("case_id")["slice_dice"].mean()
    first, second = curve.iloc[0], curve.iloc[1]
    assert first["distance_mm"] == SPACING_Z_MM / 2 and first["mean"] == pytest.approx(case_means.mean())
    assert second["mean"] == pytest.approx(case_means.mean() - 0.04)
    assert (curve["ci_low"] <= curve["mean"] + 1e-12).all() and (curve["n_cases"] == len(case_means)).all()


def test_decay_figure(runs):
    figure = plot_decay(runs.slices, strategy="box-mid", n_resamples=RESAMPLES, seed=0)
    assert _titles(figure) == ["T1", "T2", "OOP"]
    assert figure.axes[0].get_xlabel() == "distance from prompted slice (mm)"
    assert "bins of 3 mm" in figure.get_suptitle()
    assert {line.get_label() for line in figure.axes[0].get_lines()} == {"medsam2", "sam2.1-tiny"}
    with pytest.raises(FigureSkipped, match="no per-slice rows"):
        plot_decay(runs.slices, strategy="absent", n_resamples=RESAMPLES, seed=0)
    with pytest.raises(FigureSkipped, match="lacks"):
        plot_decay(runs.slices.drop(columns="dist_mm"), strategy="box-mid", n_resamples=RESAMPLES, seed=0)


def test_overlays_pick_best_median_worst(runs, rows):
    cases = select_overlay_cases(runs, rows, strategy="box-mid")
    assert [c.rank for c in cases[:3]] == ["best", "median", "worst"]
    assert [c.sequence for c in cases[::3]] == ["T1", "T2", "OOP"]
    t1 = cases[:3]
    assert t1[0].dice >= t1[1].dice >= t1[2].dice
    assert all(c.gt.shape == c.image.shape == c.pred.shape and c.prompt.get("box") for c in cases)
    figure = plot_overlays(cases)
    assert [title.split(":")[0] for title in _titles(figure)[:3]] == ["best", "median", "worst"]
    assert figure.axes[0].get_ylabel().startswith("T1: medsam2\nmean Dice 0.")
    assert figure.get_suptitle().startswith("Best zero-shot model per sequence (medsam2), strategy box-mid")
    with pytest.raises(FigureSkipped, match="no saved predictions"):
        select_overlay_cases(runs, rows, strategy="point-center")


def test_overlays_show_the_best_model_of_each_sequence(phantom_data, tmp_path):
    from fixtures_runs import write_predictions

    from zeroshot.datasets import discover
    from zeroshot.runner.rundir import RunDir

    root = write_synthetic_run(tmp_path / "run", phantom_data, strategies=("box-mid",), with_predictions=True)
    write_predictions(RunDir(root), discover(phantom_data), "sam2.1-tiny", "box-mid", 0)
    results = pd.read_parquet(root / "results.parquet")
    better_on_oop = (results["model"] == "sam2.1-tiny") & (results["sequence"] == "OOP")
    results.loc[better_on_oop, "dice"] += 0.3  # medsam2 leads on T1 and T2, sam2.1-tiny on OOP
    results.to_parquet(root / "results.parquet", index=False)
    runs = load_runs([root])
    cases = select_overlay_cases(runs, comparison_rows(runs), strategy="box-mid")
    assert {(c.sequence, c.model) for c in cases} == {("T1", "medsam2"), ("T2", "medsam2"), ("OOP", "sam2.1-tiny")}
    oop = next(c for c in cases if c.sequence == "OOP")
    assert oop.model_mean_dice == pytest.approx(results.loc[better_on_oop, "dice"].mean())
    figure = plot_overlays(cases)
    assert "Best zero-shot model per sequence (medsam2, sam2.1-tiny)" in figure.get_suptitle()
    labels = [ax.get_ylabel().split("\n")[0] for ax in figure.axes[::3]]
    assert labels == ["T1: medsam2", "T2: medsam2", "OOP: sam2.1-tiny"]


def test_figures_skip_what_a_run_cannot_support(phantom_data, tmp_path):
    bare = write_synthetic_run(
        tmp_path / "bare", phantom_data, sequences=("T2",), strategies=("box-mid",), with_slices=False
    )
    report = make_figures([bare], tmp_path / "out", n_resamples=RESAMPLES)
    skipped = dict(report.skipped)
    assert set(skipped) == {"ablation", "propagation_decay", "overlays", "dice_vs_clicks"}
    assert "no round column" in skipped["dice_vs_clicks"]
    assert "slices.parquet" in skipped["propagation_decay"] and "--save-pred" in skipped["overlays"]
    assert (tmp_path / "out" / "distributions.pdf").is_file()
    with pytest.raises(RunError, match=r"--compare .*: not a zeroshot compare output \(no comparison.json\)"):
        make_figures([bare], tmp_path / "out", compare_dir=tmp_path)


def test_cli_figures_draws_every_figure(run_dir, compare_dir, tmp_path, capsys):
    out = tmp_path / "figs"
    argv = ["figures", str(run_dir), "--compare", str(compare_dir), "--baselines", str(PUBLISHED)]
    code = main([*argv, "--resamples", str(RESAMPLES), "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    # The fixture run has no corrective clicks: tests/test_clicks_tables.py draws that figure.
    assert [line for line in printed.splitlines() if line.startswith("skipped")] == [
        "skipped dice_vs_clicks: the runs have no round column (no corrective clicks: zeroshot eval --clicks)"
    ]
    for name in (n for n in FIGURES if n != "dice_vs_clicks"):
        for suffix in ("pdf", "png"):
            path = out / f"{name}.{suffix}"
            assert str(path) in printed and path.stat().st_size > 1000


def test_importing_one_figure_module_leaves_the_comparison_layer_unloaded() -> None:
    import subprocess
    import sys

    code = "import sys, zeroshot.figures.style; print(sorted(m for m in sys.modules if m.startswith('zeroshot.')))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert (
        "zeroshot.figures.style" in loaded
        and "zeroshot.compare" not in loaded
        and "zeroshot.figures.report" not in loaded
    )


def test_the_figures_face_exports_each_name_from_its_home() -> None:
    import zeroshot.figures as figures
    from zeroshot.figures.report import make_figures

    assert figures.make_figures is make_figures and set(figures.__all__) <= set(dir(figures))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        figures.nope  # noqa: B018
