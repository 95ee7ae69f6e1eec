"""One look for every figure: Okabe–Ito colours, 7 pt text for two-column papers, deterministic PDF/PNG files.

Widths follow two-column journals and proceedings: :data:`SINGLE_COLUMN_IN` (3.5 in) and :data:`DOUBLE_COLUMN_IN`
(7.16 in). Files are reproducible: PDFs carry no creation date, SVG ids use a fixed salt, PNGs are rendered at a
fixed DPI, so the same tables give the same bytes.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import matplotlib as mpl
from matplotlib.figure import Figure

__all__ = [
    "DOUBLE_COLUMN_IN",
    "OKABE_ITO",
    "SINGLE_COLUMN_IN",
    "SUPERVISED_COLOR",
    "model_colors",
    "new_figure",
    "paper_style",
    "save_figure",
    "styled",
]

SINGLE_COLUMN_IN = 3.5
DOUBLE_COLUMN_IN = 7.16
#: Okabe & Ito (2008) colour-blind-safe palette, black left out (kept for supervised baselines and text).
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442")
SUPERVISED_COLOR = "#000000"
GT_COLOR = "#009E73"
PRED_COLOR = "#E69F00"
PROMPT_COLOR = "#56B4E9"
PNG_DPI = 300

_RC = {
    "font.family": "DejaVu Sans",
    "font.size": 7,
    "axes.titlesize": 7,
    "axes.labelsize": 7,
    "xtick.labelsize": 6,
    "ytick.labelsize": 6,
    "legend.fontsize": 6,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.linewidth": 0.6,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "lines.linewidth": 1.0,
    "lines.markersize": 3,
    "grid.linewidth": 0.4,
    "grid.alpha": 0.4,
    "pdf.fonttype": 42,  # TrueType: text stays text (editable, searchable) in the PDF
    "ps.fonttype": 42,
    "svg.hashsalt": "zeroshot",
    "savefig.dpi": PNG_DPI,
    "figure.dpi": 100,
}


@contextlib.contextmanager
def paper_style() -> Iterator[None]:
    """Apply the figure style inside a ``with`` block (the caller's rcParams are restored after)."""
    with mpl.rc_context(_RC):
        yield


def styled(plot: Callable[..., Figure]) -> Callable[..., Figure]:
    """Run a plotting function inside :func:`paper_style`: artists take their sizes from rcParams when created."""

    @functools.wraps(plot)
    def wrapper(*args, **kwargs) -> Figure:
        with paper_style():
            return plot(*args, **kwargs)

    return wrapper


def new_figure(width_in: float, height_in: float, nrows: int = 1, ncols: int = 1, **kwargs) -> tuple[Figure, object]:
    """A figure with a grid of axes in the paper style (constrained layout), detached from pyplot's state."""
    with paper_style():
        figure = Figure(figsize=(width_in, height_in), layout="constrained")
        axes = figure.subplots(nrows, ncols, squeeze=False, **kwargs)
    return figure, axes


def model_colors(models: Sequence[str]) -> dict[str, str]:
    """A stable colour per model name (sorted names get the palette in order; cycles after seven)."""
    return {name: OKABE_ITO[i % len(OKABE_ITO)] for i, name in enumerate(sorted(dict.fromkeys(models)))}


def save_figure(figure: Figure, out: Path, stem: str) -> tuple[Path, Path]:
    """Write ``stem.pdf`` (vector) and ``stem.png`` into ``out`` reproducibly; return both paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = (out / f"{stem}.pdf", out / f"{stem}.png")
    with paper_style():
        for path, metadata in zip(paths, ({"CreationDate": None, "Producer": None}, {"Software": None}), strict=True):
            temporary = path.with_name(f".{path.name}.tmp")
            figure.savefig(temporary, format=path.suffix[1:], metadata=metadata)
            os.replace(temporary, path)
    return paths


def legend_below(figure: Figure, source: object) -> None:
    """One legend for the whole figure, below the panels, built from ``source``'s artists (it never hides data)."""
    handles, labels = source.get_legend_handles_labels()
    if handles:
        figure.legend(handles, labels, loc="outside lower center", ncols=len(labels))
