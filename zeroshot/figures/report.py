"""``make_figures``: every figure a run's tables support, drawn and saved as PDF and PNG (``zeroshot figures``).

It reads the runs, adds supervised rows scored by ``zeroshot compare`` when given its output folder, draws each
figure in :data:`FIGURES` order and saves it; a figure the tables cannot support (no centers, no saved predictions,
no ablation axis) is skipped with its reason. For interactive runs every figure but ``dice_vs_clicks`` shows the
initial prompts (round 0).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from zeroshot.compare import BASELINE_RESULTS, COMPARISON_JSON, comparison_rows, load_runs, read_published
from zeroshot.compare.clicks import NOC_THRESHOLDS, check_noc_thresholds, click_curves, initial_rows, is_interactive
from zeroshot.compare.runs import RunError
from zeroshot.compare.tables import BootstrapOptions, cross_sequence_table, summary_table
from zeroshot.figures.ablation import plot_ablation
from zeroshot.figures.clicks import plot_dice_vs_clicks
from zeroshot.figures.comparison import plot_cross_sequence_heatmap, plot_zero_shot_vs_supervised
from zeroshot.figures.data import FigureSkipped, main_strategy, strategy_settings
from zeroshot.figures.decay import plot_decay
from zeroshot.figures.distributions import plot_centers, plot_distributions
from zeroshot.figures.overlays import plot_overlays, select_overlay_cases
from zeroshot.figures.style import save_figure

__all__ = ["FIGURES", "FigureReport", "make_figures"]

#: File stems of the figures, in the order they are drawn.
FIGURES = (
    "distributions",
    "zero_shot_vs_supervised",
    "cross_sequence_heatmap",
    "ablation",
    "centers",
    "propagation_decay",
    "overlays",
    "dice_vs_clicks",
)


@dataclass(frozen=True)
class FigureReport:
    """What :func:`make_figures` did.

    Attributes
    ----------
    files : tuple of Path
        PDF and PNG of every figure drawn.
    skipped : tuple of (str, str)
        Figure name and the reason it was not drawn.
    """

    files: tuple[Path, ...]
    skipped: tuple[tuple[str, str], ...]


def make_figures(
    run_dirs: Sequence[str | Path],
    out: str | Path,
    *,
    compare_dir: str | Path | None = None,
    published: str | Path | None = None,
    n_resamples: int = 2_000,
    seed: int = 0,
    noc_thresholds: Sequence[float] = NOC_THRESHOLDS,
) -> FigureReport:
    """Draw and save every figure the runs support.

    Parameters
    ----------
    run_dirs : sequence of path
    out : path
        Output folder (created).
    compare_dir : path, optional
        A ``zeroshot compare`` output folder: its ``baseline_results.parquet`` (written with ``--baseline-preds``)
        adds the supervised models, and the published numbers it was given (``--baselines``) are drawn unless
        ``published`` names others. A comparison without scored baselines adds no supervised rows.
    published : path, optional
        Published numbers CSV, drawn in their own panel of the zero-shot vs supervised figure.
    n_resamples, seed : int
        Bootstrap settings of every CI drawn.
    noc_thresholds : sequence of float
        Dice values marked in the Dice-vs-clicks figure (interactive runs).

    Raises
    ------
    RunError
        Unreadable runs, or a ``compare_dir`` that is not a ``zeroshot compare`` output.
    """
    out = Path(out)
    noc_thresholds = check_noc_thresholds(noc_thresholds)
    runs = load_runs(run_dirs)
    baseline_rows = None
    if compare_dir is not None:
        baseline_rows, recorded = _comparison(Path(compare_dir))
        published = published if published is not None else recorded
    published_table = read_published(published) if published is not None else None
    all_rows = comparison_rows(runs, baseline_rows)
    curves = click_curves(all_rows) if is_interactive(all_rows) else None
    rows = initial_rows(all_rows)
    slices = runs.slices
    if slices is not None and "round" in slices.columns:
        slices = slices.loc[slices["round"].isna() | (slices["round"] == 0)]
    options = BootstrapOptions(n_resamples=n_resamples, seed=seed)
    strategy = main_strategy(rows)
    summary = summary_table(rows, metrics=["dice"], options=options)
    settings = strategy_settings(runs.infos, sorted(rows["strategy"].unique()))

    def decay() -> Figure:
        if slices is None:
            raise FigureSkipped("the runs have no slices.parquet")
        return plot_decay(slices, strategy=strategy, n_resamples=n_resamples, seed=seed)

    drawers: dict[str, Callable[[], Figure]] = {
        "distributions": lambda: plot_distributions(rows, strategy=strategy),
        "zero_shot_vs_supervised": lambda: plot_zero_shot_vs_supervised(summary, published=published_table),
        "cross_sequence_heatmap": lambda: plot_cross_sequence_heatmap(cross_sequence_table(summary)),
        "ablation": lambda: plot_ablation(rows, settings, n_resamples=n_resamples, seed=seed),
        "centers": lambda: plot_centers(rows, strategy=strategy, n_resamples=n_resamples, seed=seed),
        "propagation_decay": decay,
        "overlays": lambda: plot_overlays(select_overlay_cases(runs, rows, strategy=strategy)),
        "dice_vs_clicks": lambda: plot_dice_vs_clicks(
            curves, thresholds=noc_thresholds, n_resamples=n_resamples, seed=seed
        ),
    }
    files: list[Path] = []
    skipped: list[tuple[str, str]] = []
    for name in FIGURES:
        try:
            figure = drawers[name]()
        except FigureSkipped as reason:
            skipped.append((name, str(reason)))
            continue
        files.extend(save_figure(figure, out, name))
    return FigureReport(tuple(files), tuple(skipped))


def _comparison(folder: Path) -> tuple[pd.DataFrame | None, Path | None]:
    """The scored supervised rows of a ``zeroshot compare`` output (``None`` without any) and its published CSV."""
    settings_path = folder / COMPARISON_JSON
    if not settings_path.is_file():
        raise RunError(
            f"--compare {folder}: not a zeroshot compare output (no {COMPARISON_JSON}); give the --out folder of "
            "`zeroshot compare`"
        )
    try:
        settings = json.loads(settings_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RunError(f"{settings_path}: not readable as JSON: {exc}") from exc
    path = folder / BASELINE_RESULTS
    baseline_rows = pd.read_parquet(path) if path.is_file() else None
    published = settings.get("published") if isinstance(settings, dict) else None
    return baseline_rows, Path(published) if isinstance(published, str) and Path(published).is_file() else None
