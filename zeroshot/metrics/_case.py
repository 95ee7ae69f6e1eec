"""One case's metrics, raw: overlap and volumes from voxel counts, surface metrics from one surface computation."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from zeroshot.errors import MetricsError, plain
from zeroshot.metrics._surface import _check_masks, _surface_distances, _union_box

__all__ = ["DEFAULT_TOLERANCES_MM", "DISTANCE_COLUMNS", "CaseMetrics", "metric_columns", "nsd_column", "score_case"]

#: NSD tolerance used when none is asked for (MedSAM, CVPR24).
DEFAULT_TOLERANCES_MM = (2.0,)
#: Percentile of the robust Hausdorff distance.
HD_PERCENTILE = 95.0
#: Columns holding distances in mm (inf for a missed organ in rows, D_max in aggregates).
DISTANCE_COLUMNS = ("hd95_mm", "hd_mm", "assd_mm", "masd_mm")


@dataclass(frozen=True)
class CaseMetrics:
    """Every metric of one case, raw (edge cases as the table in :mod:`zeroshot.metrics` says, no penalties).

    Attributes
    ----------
    dice, iou : float
        Volumetric overlap; 0 if exactly one mask is empty, NaN if both are.
    vol_gt_ml, vol_pred_ml : float
        Mask volumes in mL.
    rel_vol_err : float
        ``(vol_pred - vol_gt) / vol_gt``: -1 for an empty prediction, ``inf`` for an empty ground truth with a
        non-empty prediction, NaN if both are empty.
    hd95_mm, hd_mm : float
        Robust (95th percentile) and maximum symmetric Hausdorff distance: the larger of the two directed
        area-weighted percentiles.
    assd_mm : float
        Average symmetric surface distance: area-weighted mean over the surfels of both masks pooled.
    masd_mm : float
        Mean average surface distance: mean of the two directed area-weighted means.
    tolerances_mm : tuple of float
        NSD tolerances, in the order asked.
    nsd : tuple of float
        Normalised surface distance (surface Dice) at each tolerance τ: the area fraction of both surfaces within
        τ of the other, a surfel at exactly τ included (distance ≤ τ·(1 + 1e-6), so that float32 spacing noise
        does not move surfels that lie exactly at τ out).
    empty_gt, empty_pred : bool
        Whether each mask is empty.
    d_max_mm : float
        Physical diagonal of the image in mm, the distance that penalises a missed organ in aggregates.
    """

    dice: float
    iou: float
    vol_gt_ml: float
    vol_pred_ml: float
    rel_vol_err: float
    hd95_mm: float
    hd_mm: float
    assd_mm: float
    masd_mm: float
    tolerances_mm: tuple[float, ...]
    nsd: tuple[float, ...]
    empty_gt: bool
    empty_pred: bool
    d_max_mm: float

    def nsd_at(self, tolerance_mm: float) -> float:
        """NSD at one of :attr:`tolerances_mm`."""
        for tolerance, value in zip(self.tolerances_mm, self.nsd, strict=True):
            if tolerance == tolerance_mm:
                return value
        raise MetricsError(f"tolerance_mm: {tolerance_mm} mm was not computed (have {plain(list(self.tolerances_mm))})")

    def as_row(self) -> dict[str, float | bool]:
        """The metrics as one results-table row: ``dice, iou, ..., nsd_<t>mm, d_max_mm, empty_gt, empty_pred``."""
        row: dict[str, float | bool] = {
            "dice": self.dice,
            "iou": self.iou,
            "vol_gt_ml": self.vol_gt_ml,
            "vol_pred_ml": self.vol_pred_ml,
            "rel_vol_err": self.rel_vol_err,
            "hd95_mm": self.hd95_mm,
            "hd_mm": self.hd_mm,
            "assd_mm": self.assd_mm,
            "masd_mm": self.masd_mm,
        }
        for tolerance, value in zip(self.tolerances_mm, self.nsd, strict=True):
            row[nsd_column(tolerance)] = value
        row.update(d_max_mm=self.d_max_mm, empty_gt=self.empty_gt, empty_pred=self.empty_pred)
        return row


def nsd_column(tolerance_mm: float) -> str:
    """Column name of the NSD at ``tolerance_mm``: ``nsd_2mm`` for 2.0, ``nsd_1.5mm`` for 1.5.

    Examples
    --------
    >>> nsd_column(2.0), nsd_column(1.5), nsd_column(0.25)
    ('nsd_2mm', 'nsd_1.5mm', 'nsd_0.25mm')
    """
    return f"nsd_{float(tolerance_mm):g}mm"


def metric_columns(tolerances_mm: Sequence[float] = DEFAULT_TOLERANCES_MM) -> tuple[str, ...]:
    """Names of the columns :meth:`CaseMetrics.as_row` gives, in order, for these tolerances."""
    return (
        "dice",
        "iou",
        "vol_gt_ml",
        "vol_pred_ml",
        "rel_vol_err",
        *DISTANCE_COLUMNS,
        *(nsd_column(t) for t in _check_tolerances(tolerances_mm)),
        "d_max_mm",
        "empty_gt",
        "empty_pred",
    )


def score_case(
    gt: np.ndarray,
    pred: np.ndarray,
    spacing_mm: Sequence[float],
    *,
    tolerances_mm: Sequence[float] = DEFAULT_TOLERANCES_MM,
) -> CaseMetrics:
    """Score a predicted mask against the ground truth: every metric from one surface-distance computation.

    Parameters
    ----------
    gt, pred : (Z, Y, X) bool arrays
        Ground truth and prediction on the same grid. Integer or float arrays holding only 0 and 1 are accepted;
        anything else is refused rather than thresholded.
    spacing_mm : sequence of 3 floats
        Voxel size in mm in array-axis order ``(z, y, x)``; required, never assumed to be 1 mm.
    tolerances_mm : sequence of float
        NSD tolerances in mm (default 2 mm); each gives a column ``nsd_<t>mm``. A surfel at distance d counts as
        within τ when d ≤ τ·(1 + 1e-6) (ties counted as within, robust to float32 spacing).

    Returns
    -------
    CaseMetrics
        Raw values; empty masks follow the table in :mod:`zeroshot.metrics` (0 for dice/nsd and ``inf`` distances when
        exactly one mask is empty; NaN everywhere when both are).

    Raises
    ------
    MetricsError
        Masks that are not 3D, not binary or of different shapes; a spacing that is not three positive mm values;
        tolerances that are not positive or name the same column twice.

    Examples
    --------
    Two boxes, the prediction one slice (5 mm) lower:

    >>> gt = np.zeros((12, 20, 20), bool)
    >>> gt[3:9, 5:15, 5:15] = True
    >>> pred = np.roll(gt, 1, axis=0)
    >>> m = score_case(gt, pred, (5.0, 1.5, 1.5))
    >>> round(m.dice, 4), m.hd_mm, m.hd95_mm, m.nsd_at(2.0) < 1
    (0.8333, 5.0, 5.0, True)
    """
    gt, pred, spacing = _check_masks(gt, pred, spacing_mm)
    tolerances = _check_tolerances(tolerances_mm)
    voxel_ml = float(np.prod(spacing)) / 1000.0
    d_max_mm = float(np.linalg.norm(np.asarray(gt.shape) * np.asarray(spacing)))
    n_gt, n_pred = int(np.count_nonzero(gt)), int(np.count_nonzero(pred))
    volumes = {"vol_gt_ml": n_gt * voxel_ml, "vol_pred_ml": n_pred * voxel_ml}
    flags = {"empty_gt": n_gt == 0, "empty_pred": n_pred == 0, "d_max_mm": d_max_mm}

    if n_gt == 0 or n_pred == 0:
        # Explicit branches: undefined when both are empty, worst raw values when exactly one is.
        both = n_gt == 0 and n_pred == 0
        overlap = math.nan if both else 0.0
        distance = math.nan if both else math.inf
        rel_vol_err = math.nan if both else (math.inf if n_gt == 0 else -1.0)
        return CaseMetrics(
            dice=overlap,
            iou=overlap,
            **volumes,
            rel_vol_err=rel_vol_err,
            hd95_mm=distance,
            hd_mm=distance,
            assd_mm=distance,
            masd_mm=distance,
            tolerances_mm=tolerances,
            nsd=tuple(overlap for _ in tolerances),
            **flags,
        )

    box = _union_box(gt, pred)
    n_both = int(np.count_nonzero(gt[box] & pred[box]))
    sd = _surface_distances(gt, pred, spacing)
    forward, backward = sd.gt_to_pred, sd.pred_to_gt
    area_gt, area_pred = forward.total_area_mm2, backward.total_area_mm2
    sum_gt, sum_pred = forward.weighted_sum_mm3(), backward.weighted_sum_mm3()
    return CaseMetrics(
        dice=2.0 * n_both / (n_gt + n_pred),
        iou=n_both / (n_gt + n_pred - n_both),
        **volumes,
        rel_vol_err=(n_pred - n_gt) / n_gt,
        hd95_mm=max(forward.percentile_mm(HD_PERCENTILE), backward.percentile_mm(HD_PERCENTILE)),
        hd_mm=float(max(forward.distances_mm[-1], backward.distances_mm[-1])),
        assd_mm=(sum_gt + sum_pred) / (area_gt + area_pred),
        masd_mm=0.5 * (sum_gt / area_gt + sum_pred / area_pred),
        tolerances_mm=tolerances,
        nsd=tuple(
            (forward.area_within_mm2(t) + backward.area_within_mm2(t)) / (area_gt + area_pred) for t in tolerances
        ),
        **flags,
    )


def _check_tolerances(tolerances_mm: Sequence[float]) -> tuple[float, ...]:
    tolerances = tuple(float(t) for t in tolerances_mm)
    if not tolerances or not all(math.isfinite(t) and t > 0 for t in tolerances):
        raise MetricsError(f"tolerances_mm: expected one or more positive mm values, got {plain(list(tolerances_mm))}")
    names = [nsd_column(t) for t in tolerances]
    if len(set(names)) != len(names):
        raise MetricsError(f"tolerances_mm: {plain(list(tolerances_mm))} name the same NSD column twice ({names})")
    return tolerances
