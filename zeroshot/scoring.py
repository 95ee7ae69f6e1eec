"""Score a folder of predicted masks against a folder of labels, case by case, in worker processes.

Files are matched by case id, the file name without ``.nii.gz`` / ``.nii`` (an nnU-Net output folder
``case.nii.gz`` against ``labelsTs/case.nii.gz``). Every label makes one row. A case whose prediction is missing,
is not on its label's grid, or is not binary becomes a *failed* row with the reason in ``error``; every other case
is scored. The table is written as ``results.csv`` and ``results.parquet`` (atomically), with ``score.json``
recording what produced it.

Grid check: a prediction must lie on its label's voxel grid: the same voxels in space, to
:data:`zeroshot.volume.AFFINE_TOLERANCE` mm (the rule :func:`zeroshot.volume.read_label` applies to a label against
its image). Both files are read in the canonical orientation (:func:`zeroshot.volume.read_volume` only permutes and
flips axes), so a prediction stored in another orientation of the same grid (RAS vs LPS, a permuted axis order) is
scored as it is, losslessly. A prediction that would need resampling (another voxel size, shape, origin or
rotation) is never resampled, because it is a pipeline error to fix, not a case to score; the failed row says
which of these differs.

D_max of a failed row (the distance penalty aggregates give it) is the physical diagonal of the label's grid, read
from the label file's header, else from the prediction's header when the label cannot be read; when neither header
can be read it is left NaN, and :func:`zeroshot.compare.prepare_rows` applies its documented fallback.
"""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from zeroshot import __version__
from zeroshot.atomic import write_atomic
from zeroshot.errors import ConfigError, DatasetError, MetricsError, ZeroshotError
from zeroshot.metrics import DEFAULT_TOLERANCES_MM, CaseMetrics, metric_columns, score_case
from zeroshot.structure import check_label_value
from zeroshot.volume import Volume, grid_difference, label_mask, read_header, read_volume

__all__ = [
    "RESULT_COLUMNS",
    "FolderScores",
    "ScoringCase",
    "failed_row",
    "header_d_max_mm",
    "match_cases",
    "score_files",
    "score_folder",
]

_NIFTI_SUFFIXES = (".nii.gz", ".nii")
#: Columns of the table besides the metric columns: identity first, outcome last.
RESULT_COLUMNS = ("case_id", "failed", "error")


@dataclass(frozen=True)
class ScoringCase:
    """A label file and the prediction found for it (``None`` when the prediction folder has none)."""

    case_id: str
    gt: Path
    pred: Path | None


@dataclass(frozen=True, eq=False)
class FolderScores:
    """What :func:`score_folder` produced.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per label, sorted by ``case_id``: ``case_id``, the metric columns, ``failed``, ``error``.
    files : tuple of Path
        The files written (``results.csv``, ``results.parquet``, ``score.json``).
    unmatched_predictions : tuple of str
        Case ids of predictions without a label (not scored).
    """

    table: pd.DataFrame
    files: tuple[Path, ...]
    unmatched_predictions: tuple[str, ...]

    @property
    def n_failed(self) -> int:
        """Number of cases that could not be scored."""
        return int(self.table["failed"].sum())


def match_cases(pred_dir: str | Path, gt_dir: str | Path) -> tuple[list[ScoringCase], list[str]]:
    """Pair each label in ``gt_dir`` with the prediction of the same case id in ``pred_dir``.

    Returns
    -------
    cases : list of ScoringCase
        One per label, sorted by case id; ``pred`` is ``None`` where no prediction exists.
    unmatched : list of str
        Case ids of predictions that have no label.

    Raises
    ------
    DatasetError
        A folder that does not exist, a label folder without NIfTI files, or a case id with two files
        (``case.nii`` and ``case.nii.gz``).
    """
    labels = _nifti_by_case(Path(gt_dir), "--gt")
    predictions = _nifti_by_case(Path(pred_dir), "--pred")
    if not labels:
        raise DatasetError(f"--gt {gt_dir}: no .nii.gz or .nii label files")
    cases = [ScoringCase(case_id, path, predictions.get(case_id)) for case_id, path in sorted(labels.items())]
    return cases, sorted(set(predictions) - set(labels))


def _nifti_by_case(folder: Path, option: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise DatasetError(f"{option} {folder}: no such folder")
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        suffix = next((s for s in _NIFTI_SUFFIXES if path.name.endswith(s)), None)
        if suffix is None or path.name.startswith(".") or not path.is_file():
            continue
        case_id = path.name[: -len(suffix)]
        if case_id in files:
            raise DatasetError(
                f"{option} {folder}: case {case_id!r} has two files ({files[case_id].name}, {path.name})"
            )
        files[case_id] = path
    return files


def score_files(
    gt_path: str | Path,
    pred_path: str | Path,
    *,
    tolerances_mm: Sequence[float] = DEFAULT_TOLERANCES_MM,
    label: int,
) -> CaseMetrics:
    """Score one prediction file against its label file, on the label's grid.

    Parameters
    ----------
    gt_path : path
        Label NIfTI; the structure is the voxels equal to ``label`` (others, e.g. a tumour label, are background).
    pred_path : path
        Binary prediction NIfTI (0 and 1 only) on the label's voxel grid, in any orientation of it.
    tolerances_mm : sequence of float
        NSD tolerances in mm.
    label : int
        Label value of the structure in the ground truth (the run's; no default).

    Raises
    ------
    VolumeError
        Either file is missing or unreadable (see :func:`zeroshot.volume.read_volume`); the label file is not a
        label map, or holds other structures but not ``label`` (see :func:`zeroshot.volume.label_mask`).
    MetricsError
        The prediction is not on the label's grid (the message says what differs), or holds values other than 0
        and 1.
    """
    gt_volume = read_volume(gt_path)
    pred_volume = read_volume(pred_path)
    _check_same_grid(pred_volume, gt_volume)
    values = pred_volume.array
    if not np.all((values == 0) | (values == 1)):
        found = np.unique(values)
        shown = ", ".join(f"{v:g}" for v in found[:8]) + (", ..." if found.size > 8 else "")
        raise MetricsError(f"{pred_path}: not a binary mask: values {shown} (expected only 0 and 1)")
    gt = label_mask(gt_volume.array, label, gt_path, require_label=False)
    return score_case(gt, values == 1, gt_volume.spacing_mm, tolerances_mm=tolerances_mm)


def _check_same_grid(pred: Volume, gt: Volume) -> None:
    """Refuse a prediction that is not on the label's voxel grid, saying what differs (both read canonically)."""
    problem = grid_difference(pred, gt)
    if problem is not None:
        raise MetricsError(
            f"{pred.source}: not on its label's voxel grid ({gt.source}): {problem}; predictions must be on the "
            "label's grid (another orientation of the same grid is fine; this one would need resampling)"
        )


def header_d_max_mm(*paths: Path | None) -> float:
    """D_max (the physical diagonal in mm) from the first of ``paths`` whose NIfTI header can be read; else NaN."""
    for path in paths:
        if path is None:
            continue
        try:
            shape, spacing = read_header(path)
        except ZeroshotError:
            continue
        return float(np.linalg.norm(np.asarray(shape) * np.asarray(spacing)))
    return float("nan")


def failed_row(tolerances_mm: Sequence[float], *, d_max_mm: float = float("nan")) -> dict[str, Any]:
    """Metric columns of a case that could not be scored: metrics NaN, flags false, ``d_max_mm`` if known."""
    row: dict[str, Any] = dict.fromkeys(metric_columns(tolerances_mm), float("nan"))
    row.update(d_max_mm=d_max_mm, empty_gt=False, empty_pred=False)
    return row


def _score_row(case: ScoringCase, tolerances_mm: tuple[float, ...], label: int) -> dict[str, Any]:
    """One result row; an error the user can act on becomes a failed row (runs in a worker process)."""
    try:
        if case.pred is None:
            raise MetricsError(f"no prediction file {case.case_id}.nii.gz (or .nii) for label {case.gt}")
        metrics = score_files(case.gt, case.pred, tolerances_mm=tolerances_mm, label=label)
    except ZeroshotError as exc:
        # D_max lets aggregates penalise the failure: from the label's header, else the prediction's
        failed = failed_row(tolerances_mm, d_max_mm=header_d_max_mm(case.gt, case.pred))
        return {"case_id": case.case_id, **failed, "failed": True, "error": str(exc)}
    return {"case_id": case.case_id, **metrics.as_row(), "failed": False, "error": ""}


def score_folder(
    pred_dir: str | Path,
    gt_dir: str | Path,
    out_dir: str | Path,
    *,
    tolerances_mm: Sequence[float] = DEFAULT_TOLERANCES_MM,
    workers: int = 1,
    label: int,
    progress: bool | None = None,
) -> FolderScores:
    """Score every label in ``gt_dir`` against the prediction of the same case id in ``pred_dir``.

    Parameters
    ----------
    pred_dir, gt_dir : path
        Folders of ``<case_id>.nii.gz`` (or ``.nii``) files.
    out_dir : path
        Where ``results.csv``, ``results.parquet`` and ``score.json`` are written (created if needed).
    tolerances_mm : sequence of float
        NSD tolerances in mm, one ``nsd_<t>mm`` column each.
    workers : int
        Worker processes (1 scores in this process).
    label : int
        Label value of the structure in the ground truth (no default: say which structure is scored).
    progress : bool or None
        Show a progress bar; ``None`` shows it only on a terminal.

    Returns
    -------
    FolderScores

    Raises
    ------
    DatasetError
        See :func:`match_cases`.
    ConfigError
        ``workers`` below 1.
    MetricsError
        Invalid ``tolerances_mm``.
    """
    if workers < 1:
        raise ConfigError(f"--workers: expected at least 1, got {workers}")
    check_label_value(label, "--label")
    tolerances = tuple(float(t) for t in tolerances_mm)
    columns = ("case_id", *metric_columns(tolerances), "failed", "error")  # also validates the tolerances
    cases, unmatched = match_cases(pred_dir, gt_dir)

    rows = []
    bar = tqdm(total=len(cases), desc="scoring", unit="case", disable=None if progress is None else not progress)
    with bar:
        if workers == 1 or len(cases) == 1:
            for case in cases:
                rows.append(_score_row(case, tolerances, label))
                bar.update()
        else:
            # spawn, not fork: the parent may hold torch or BLAS threads that a forked child would inherit broken.
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=min(workers, len(cases)), mp_context=context) as pool:
                futures = [pool.submit(_score_row, case, tolerances, label) for case in cases]
                for future in as_completed(futures):
                    rows.append(future.result())
                    bar.update()

    table = pd.DataFrame(rows, columns=list(columns)).sort_values("case_id", ignore_index=True)
    for flag in ("empty_gt", "empty_pred", "failed"):
        table[flag] = table[flag].astype(bool)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "pred_dir": str(Path(pred_dir).resolve()),
        "gt_dir": str(Path(gt_dir).resolve()),
        "tolerances_mm": list(tolerances),
        "label": label,
        "n_cases": len(table),
        "n_failed": int(table["failed"].sum()),
        "unmatched_predictions": unmatched,
        "zeroshot": __version__,
    }
    files = (
        write_atomic(out / "results.csv", table.to_csv(index=False).encode()),
        write_atomic(out / "results.parquet", table.to_parquet(index=False)),
        write_atomic(out / "score.json", (json.dumps(record, indent=2) + "\n").encode()),
    )
    return FolderScores(table=table, files=files, unmatched_predictions=tuple(unmatched))
