"""The case browser's entries: one per case x model x strategy x seed (x click round), with its slice images.

Each entry shows its metrics, a few slices as images (:mod:`zeroshot.report.images`) and the per-slice Dice along
z. The slices shown, at most :data:`SLICES_PER_ENTRY`, in this order of preference: the prompted key slices (the
first and the last: in a click round the last is the slice clicked), the slice of the structure where the
prediction does worst (lowest per-slice Dice), and the slices a quarter and three quarters through the
structure's z-extent; they are shown in z order. An entry without a saved prediction, or whose row failed, says so
instead of showing images.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from zeroshot.compare.tables import sequence_order
from zeroshot.report.images import dice_along_z_svg, entry_crop, intensity_window, slice_png
from zeroshot.report.sources import CaseReader, PromptMarks, ReportSources, optional_round, read_prompt_marks

__all__ = ["METRIC_COLUMNS", "SLICES_PER_ENTRY", "CaseEntry", "SliceView", "case_entries", "choose_slices"]

#: Metric columns the browser shows (those a run has), in this order; ``nsd_<t>mm`` columns follow ``dice``.
METRIC_COLUMNS = (
    "dice",
    "iou",
    "hd95_mm",
    "hd_mm",
    "assd_mm",
    "masd_mm",
    "rel_vol_err",
    "vol_gt_ml",
    "vol_pred_ml",
    "box_coverage",
)
SLICES_PER_ENTRY = 4
#: The page shows each slice image at least this large (longer side, CSS pixels).
DISPLAY_SIDE_PX = 256
#: Where each entry's images are written, below the report folder.
IMAGE_FOLDER = "cases"
NOT_SAVED = "prediction not saved: no slice images (zeroshot eval --save-pred saves predictions)"


@dataclass(frozen=True)
class SliceView:
    """One slice image of an entry: ``file`` is relative to the report folder; size in display pixels."""

    z: int
    file: str
    width: int
    height: int
    slice_dice: float
    key: bool


@dataclass(frozen=True)
class CaseEntry:
    """One row of the case browser.

    Attributes
    ----------
    entry_id : str
        ``e0001``...: the HTML anchor and the stem of its image files.
    run : int
        Index of its run.
    sequence, center, case_id, model, strategy : str
    seed : int
    round : int or None
        The click round (interactive runs), else ``None``.
    metrics : tuple of (str, float or int)
        Raw values of the row (``inf`` for a missed organ, NaN where undefined).
    flags : tuple of str
        ``failed``, ``empty_pred``, ``empty_gt`` and the oracle flags set on the row.
    error : str
        Why the row failed ("" otherwise).
    slices : tuple of SliceView
    dice_svg : str
        The per-slice Dice along z (inline SVG; "" without a per-slice table).
    note : str
        Why there are no images ("" when there are).
    """

    entry_id: str
    run: int
    sequence: str
    center: str
    case_id: str
    model: str
    strategy: str
    seed: int
    round: int | None
    metrics: tuple[tuple[str, float | int], ...]
    flags: tuple[str, ...]
    error: str
    slices: tuple[SliceView, ...]
    dice_svg: str
    note: str


def metric_columns(results: pd.DataFrame) -> list[str]:
    """The metric columns of ``results`` the browser shows, in :data:`METRIC_COLUMNS` order (NSD after Dice)."""
    nsd = sorted((c for c in results.columns if c.startswith("nsd_") and c.endswith("mm")), key=_tolerance)
    ordered = ["dice", *nsd, *METRIC_COLUMNS[1:]]
    if "n_clicks" in results.columns:
        ordered.append("n_clicks")
    return [c for c in ordered if c in results.columns]


def _tolerance(column: str) -> float:
    try:
        return float(column[4:-2])
    except ValueError:
        return math.inf


def _identity(row: Any) -> tuple:
    return (int(row.run), str(row.sequence), str(row.case_id), str(row.model), str(row.strategy), int(row.seed),
            optional_round(getattr(row, "round", None)))  # fmt: skip


def _slice_dice(slices: pd.DataFrame | None) -> dict[tuple, pd.DataFrame]:
    """The per-slice rows of every result row, by its identity."""
    if slices is None or slices.empty:
        return {}
    frame = slices.copy()
    if "round" not in frame.columns:
        frame["round"] = None
    groups = {}
    keys = ["run", "sequence", "case_id", "model", "strategy", "seed", "round"]
    for key, group in frame.groupby(keys, sort=False, dropna=False):
        run, sequence, case_id, model, strategy, seed, round_index = key
        identity = (int(run), str(sequence), str(case_id), str(model), str(strategy), int(seed))
        groups[(*identity, optional_round(round_index))] = group
    return groups


def _key_slices(row: Any, marks: Sequence[PromptMarks]) -> list[int]:
    text = getattr(row, "key_slices", None)
    if isinstance(text, str) and text.strip():
        return [int(z) for z in text.split()]
    return list(dict.fromkeys(mark.z for mark in marks))


def choose_slices(
    key_slices: Sequence[int], gt: np.ndarray, slice_dice: Mapping[int, float], *, limit: int = SLICES_PER_ENTRY
) -> list[int]:
    """The slices an entry shows, in z order (see the module docstring for the rule).

    Parameters
    ----------
    key_slices : sequence of int
        The prompted slices, in the order the row lists them.
    gt : (Z, Y, X) bool array
    slice_dice : mapping of int to float
        Per-slice Dice (NaN where undefined).
    limit : int
        At most this many slices.
    """
    depth = gt.shape[0]
    wanted: list[int] = []
    if key_slices:
        wanted += [key_slices[0], key_slices[-1]]
    with_gt = np.nonzero(gt.any(axis=(1, 2)))[0]
    gt_slices = set(with_gt.tolist())
    scored = [(value, z) for z, value in slice_dice.items() if z in gt_slices and math.isfinite(value)]
    if scored:
        wanted.append(min(scored)[1])
    if with_gt.size:
        first, last = int(with_gt[0]), int(with_gt[-1])
        wanted += [first + (last - first) // 4, first + 3 * (last - first) // 4, (first + last) // 2]
    elif not wanted:
        wanted.append(depth // 2)
    chosen = list(dict.fromkeys(z for z in wanted if 0 <= z < depth))[:limit]
    return sorted(chosen)


def _flags(row: Any) -> tuple[str, ...]:
    names = ["failed", "empty_pred", "empty_gt"]
    names += [c for c in row._fields if c.startswith("oracle_")]
    return tuple(name for name in names if isinstance(value := getattr(row, name, False), (bool, np.bool_)) and value)


def _number(value: Any) -> float | int:
    """A metric cell as a number: counts (``n_clicks``) stay integers; NaN where a table holds none (``pd.NA``)."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return int(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def case_entries(
    sources: ReportSources, out: Path, *, progress: bool | None = None
) -> tuple[tuple[CaseEntry, ...], list[str]]:
    """Build every entry and write its slice images under ``out / cases``.

    Returns
    -------
    entries : tuple of CaseEntry
        In table order: sequence (T1, T2, OOP, others), case, model, strategy, seed, round, run.
    metrics : list of str
        The metric columns shown.
    """
    results = sources.runs.results.copy()
    results["_order"] = sequence_order(results["sequence"])
    by = ["_order", "case_id", "model", "strategy", "seed", *(["round"] if "round" in results else []), "run"]
    results = results.sort_values(by, kind="stable").reset_index(drop=True)
    metrics = metric_columns(results)
    per_slice = _slice_dice(sources.runs.slices)
    reader = CaseReader(sources)
    folder = out / IMAGE_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    windows: dict[tuple, tuple[float, float]] = {}  # per case: the percentiles of a large volume take a while
    rows: Iterable[Any] = results.itertuples(index=False)
    bar = tqdm(
        rows, total=len(results), desc="report", unit="entry", disable=None if progress is None else not progress
    )
    for number, row in enumerate(bar, start=1):
        entries.append(_entry(f"e{number:04d}", row, sources, reader, per_slice, folder, metrics, windows))
    return tuple(entries), metrics


def _entry(
    entry_id: str,
    row: Any,
    sources: ReportSources,
    reader: CaseReader,
    per_slice: Mapping[tuple, pd.DataFrame],
    folder: Path,
    metrics: Sequence[str],
    windows: dict[tuple, tuple[float, float]],
) -> CaseEntry:
    identity = _identity(row)
    slices = per_slice.get(identity)
    dice_by_z = (
        {int(z): float(v) for z, v in zip(slices["z"], slices["slice_dice"], strict=True)} if slices is not None else {}
    )
    failed = bool(row.failed)
    marks = read_prompt_marks(sources, row)
    key_slices = _key_slices(row, marks)
    views: list[SliceView] = []
    note, depth = "", len(slices) if slices is not None else 0
    if failed:
        note = "the row failed: no prediction"
    else:
        images = reader.images(row)
        if isinstance(images, str):
            note = images
        else:
            depth = images.gt.shape[0]
            if images.prediction is None:
                note = NOT_SAVED
            else:
                if identity[:3] not in windows:
                    windows.clear()  # rows of one case come together: one window at a time
                    windows[identity[:3]] = intensity_window(images.image)
                window = windows[identity[:3]]
                views = _write_slices(entry_id, images, marks, key_slices, dice_by_z, folder, window)
    svg = (
        dice_along_z_svg(sorted(dice_by_z.items()), depth=depth, key_slices=key_slices, shown=[v.z for v in views])
        if dice_by_z
        else ""
    )
    error = str(getattr(row, "error", "") or "")
    return CaseEntry(
        entry_id=entry_id,
        run=identity[0],
        sequence=identity[1],
        center=str(row.center),
        case_id=identity[2],
        model=identity[3],
        strategy=identity[4],
        seed=identity[5],
        round=identity[6],
        metrics=tuple((name, _number(getattr(row, name))) for name in metrics),
        flags=_flags(row),
        error=error if failed else "",
        slices=tuple(views),
        dice_svg=svg,
        note=note,
    )


def _write_slices(
    entry_id: str,
    images: Any,
    marks: Sequence[PromptMarks],
    key_slices: Sequence[int],
    dice_by_z: Mapping[int, float],
    folder: Path,
    window: tuple[float, float],
) -> list[SliceView]:
    chosen = choose_slices(key_slices, images.gt, dice_by_z)
    shown_marks = [mark for mark in marks if mark.z in chosen]
    crop = entry_crop(images.gt.shape[1:], [images.gt[chosen], images.prediction[chosen]], shown_marks)
    height, width = crop.display_shape
    # The page shows small crops larger (pixelated, at no cost in bytes) and anisotropic pixels at their physical
    # aspect ratio, rather than resampling them.
    zoom = max(1.0, DISPLAY_SIDE_PX / max(height, width))
    aspect = images.spacing_mm[1] / images.spacing_mm[2]
    views = []
    for z in chosen:
        here = [mark for mark in marks if mark.z == z]
        data = slice_png(images.image[z], images.gt[z], images.prediction[z], here, crop, window)
        name = f"{entry_id}-z{z:03d}.png"
        # Plain writes: the images are derived and rewritten on every report; index.html, written last and
        # atomically, is what makes the folder a report.
        (folder / name).write_bytes(data)
        views.append(
            SliceView(
                z=z,
                file=f"{IMAGE_FOLDER}/{name}",
                width=round(width * zoom),
                height=max(1, round(height * zoom * aspect)),
                slice_dice=float(dice_by_z.get(z, math.nan)),
                key=z in key_slices,
            )
        )
    return views
