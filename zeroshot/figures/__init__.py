"""Paper figures from result tables: each figure is a small function returning a matplotlib Figure.

:func:`~zeroshot.figures.report.make_figures` (what ``zeroshot figures`` calls) draws every figure a run supports
and saves each as PDF and PNG. The plotting functions take tables, not files, so new figures compose from the
same pieces: :func:`~zeroshot.compare.case_values`, :func:`~zeroshot.figures.data.mean_ci` and the style in
:mod:`~zeroshot.figures.style`.

This package's names load on first use, so that importing one module (``zeroshot.figures.style``) does not pull in
the others or the comparison layer.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from zeroshot.figures.ablation import plot_ablation
    from zeroshot.figures.clicks import plot_dice_vs_clicks
    from zeroshot.figures.comparison import plot_cross_sequence_heatmap, plot_zero_shot_vs_supervised
    from zeroshot.figures.data import FigureSkipped
    from zeroshot.figures.decay import plot_decay
    from zeroshot.figures.distributions import plot_centers, plot_distributions
    from zeroshot.figures.overlays import plot_overlays
    from zeroshot.figures.report import FIGURES, FigureReport, make_figures

#: Where each public name lives.
_HOMES = {
    "FIGURES": "report",
    "FigureReport": "report",
    "FigureSkipped": "data",
    "make_figures": "report",
    "plot_ablation": "ablation",
    "plot_centers": "distributions",
    "plot_cross_sequence_heatmap": "comparison",
    "plot_decay": "decay",
    "plot_dice_vs_clicks": "clicks",
    "plot_distributions": "distributions",
    "plot_overlays": "overlays",
    "plot_zero_shot_vs_supervised": "comparison",
}

__all__ = [
    "FIGURES",
    "FigureReport",
    "FigureSkipped",
    "make_figures",
    "plot_ablation",
    "plot_centers",
    "plot_cross_sequence_heatmap",
    "plot_decay",
    "plot_dice_vs_clicks",
    "plot_distributions",
    "plot_overlays",
    "plot_zero_shot_vs_supervised",
]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})
