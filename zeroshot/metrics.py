"""Per-case segmentation metrics from one surface-distance computation, and the edge-case penalties for aggregates.

Surface metrics follow the semantics of DeepMind's ``surface-distance`` (Nikolov et al., 2021), the convention of
MedSAM, the CVPR24 challenge and TotalSegmentator:

- the surface of a mask is made of *surfels*: the corners of the voxel grid (the grid shifted by half a voxel)
  whose 2×2×2 neighbourhood holds both foreground and background voxels;
- each surfel carries the area in mm² of the marching-cubes surface inside its 2×2×2 cell (see
  :func:`surfel_area_table`), so percentiles, means and overlaps are area-weighted;
- the distance from a surfel to the other surface is the Euclidean distance in mm to the nearest surfel of the
  other mask (a distance transform on the corner grid, spacing-aware).

Only the bounding box of the union of the two masks, plus one voxel, is ever processed: time and memory grow with
the region around the masks, not with the image.

Edge cases are decided explicitly, never left to ``0 / 0``:

=======================================  =================  ============  ====================  ============
situation                                flags              dice / nsd    distances (raw)       aggregates
=======================================  =================  ============  ====================  ============
both non-empty                           —                  formula       formula               same
ground truth non-empty, prediction empty ``empty_pred``     0             inf                   D_max
ground truth empty, prediction non-empty ``empty_gt``       0             inf                   D_max
both empty                               both               NaN           NaN                   excluded
case failed (:mod:`zeroshot.scoring`)    ``failed``         NaN           NaN                   0 / D_max
=======================================  =================  ============  ====================  ============

:func:`score_case` gives the raw values of one case; :func:`apply_penalties` turns a results table into the values
aggregates use. D_max is the physical diagonal of the ground-truth image in mm.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.spatial import cKDTree

from zeroshot.errors import MetricsError

__all__ = [
    "DEFAULT_TOLERANCES_MM",
    "DISTANCE_COLUMNS",
    "OUTCOMES",
    "CaseMetrics",
    "DirectedSurfaceDistances",
    "OutcomeCounts",
    "PenalisedResults",
    "SurfaceDistances",
    "apply_penalties",
    "metric_columns",
    "nsd_column",
    "score_case",
    "surface_distances",
    "surfel_area_table",
]

#: NSD tolerance used when none is asked for (MedSAM, CVPR24).
DEFAULT_TOLERANCES_MM = (2.0,)
#: Percentile of the robust Hausdorff distance.
HD_PERCENTILE = 95.0
#: Above this many crop corners per surfel, nearest surfels are found with a k-d tree instead of a distance
#: transform over the crop (measured on 2 CPU cores: the transform costs about 0.1 us per corner, the tree about
#: 1.5 us per surfel). Compact organs use the transform; a distant false positive, which stretches the crop, the tree.
TREE_CROSSOVER = 16
#: Columns holding distances in mm (inf for a missed organ in rows, D_max in aggregates).
DISTANCE_COLUMNS = ("hd95_mm", "hd_mm", "assd_mm", "masd_mm")
#: What happened to a case, as :func:`apply_penalties` classifies it (column ``outcome``).
OUTCOMES = ("scored", "missed", "false_positive", "both_empty", "failed")

_NSD_COLUMN = re.compile(r"^nsd_.+mm$")
# Bit of each voxel of a 2x2x2 cell in a neighbour code: offset (a, b, c) along (z, y, x) -> bit 7 - (4a + 2b + c).
_CELL_OFFSETS = tuple((a, b, c) for a in (0, 1) for b in (0, 1) for c in (0, 1))
_CELL_BITS = np.array([[[128, 64], [32, 16]], [[8, 4], [2, 1]]], dtype=np.uint8)


# ------------------------------------------------------------------------------------------------ surface distances
@dataclass(frozen=True, eq=False)
class DirectedSurfaceDistances:
    """Distances from the surfels of one mask to the surface of the other, sorted ascending.

    Attributes
    ----------
    distances_mm : (N,) float array
        Distance of each surfel to the other surface, ascending (``inf`` everywhere if the other mask is empty).
    areas_mm2 : (N,) float array
        Area of each surfel, in the same order (ties in distance ordered by area).
    """

    distances_mm: np.ndarray
    areas_mm2: np.ndarray

    @property
    def total_area_mm2(self) -> float:
        """Surface area of the mask in mm² (0 for an empty mask)."""
        return float(np.sum(self.areas_mm2))

    def percentile_mm(self, percent: float) -> float:
        """Area-weighted percentile: the smallest distance whose cumulative area fraction reaches ``percent``/100.

        No interpolation (a distance that occurs), as DeepMind's ``compute_robust_hausdorff``; ``inf`` without
        surfels.
        """
        if self.distances_mm.size == 0:
            return math.inf
        fraction = np.cumsum(self.areas_mm2) / np.sum(self.areas_mm2)
        index = int(np.searchsorted(fraction, percent / 100.0))
        return float(self.distances_mm[min(index, self.distances_mm.size - 1)])

    def weighted_sum_mm3(self) -> float:
        """Σ distance × area over the surfels (mm³), the numerator of the mean surface distances."""
        return float(np.sum(self.distances_mm * self.areas_mm2))

    def area_within_mm2(self, tolerance_mm: float) -> float:
        """Area of the surfels at most ``tolerance_mm`` away from the other surface."""
        count = int(np.searchsorted(self.distances_mm, tolerance_mm, side="right"))
        return float(np.sum(self.areas_mm2[:count]))


@dataclass(frozen=True, eq=False)
class SurfaceDistances:
    """The two directed surface-distance sets of a case, from which every surface metric is reduced."""

    gt_to_pred: DirectedSurfaceDistances
    pred_to_gt: DirectedSurfaceDistances


def surfel_area_table(spacing_mm: Sequence[float]) -> np.ndarray:
    """Area in mm² of the surface inside a 2×2×2 cell, for each of the 256 neighbour codes.

    The surface is the marching-cubes surface at level 0.5 with vertices at edge midpoints (the Lorensen & Cline
    case table as implemented by scikit-image), each triangle's area vector scaled by the voxel size. A code and its
    complement bound the same surface (inside and outside swapped); for the ambiguous configurations the classic
    table triangulates one of the two as a tunnel joining diagonal voxels, so the smaller of the two, the surface
    that keeps diagonal voxels apart, is used for both. This reproduces DeepMind's lookup table to rounding.

    Parameters
    ----------
    spacing_mm : sequence of 3 floats
        Voxel size in mm, ``(z, y, x)`` (array-axis order).

    Returns
    -------
    (256,) float array
        ``table[code]``; 0 for codes 0 and 255 (no surface).
    """
    return _surfel_area_table(tuple(float(s) for s in _check_spacing(spacing_mm)))


@functools.lru_cache(maxsize=64)
def _surfel_area_table(spacing_mm: tuple[float, float, float]) -> np.ndarray:
    codes, area_vectors = _unit_cell_triangles()
    s0, s1, s2 = spacing_mm
    # An area vector (a normal whose length is the area) scales with the product of the two other voxel sizes.
    scaled = area_vectors * np.array([s1 * s2, s0 * s2, s0 * s1])
    table = np.bincount(codes, weights=np.linalg.norm(scaled, axis=1), minlength=256)
    table = np.minimum(table, table[::-1])
    table.setflags(write=False)
    return table


@functools.cache
def _unit_cell_triangles() -> tuple[np.ndarray, np.ndarray]:
    """Marching-cubes triangles of every neighbour code on a unit grid: (code of each triangle, area vectors)."""
    from skimage.measure import marching_cubes  # only needed once per process, to build the table

    codes, vectors = [], []
    for code in range(1, 255):
        cell = ((code & _CELL_BITS) > 0).astype(np.float64)
        verts, faces, _normals, _values = marching_cubes(cell, level=0.5, method="lorensen")
        triangles = verts[faces]
        vectors.append(0.5 * np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0]))
        codes.append(np.full(len(faces), code))
    return np.concatenate(codes), np.concatenate(vectors)


def surface_distances(gt: np.ndarray, pred: np.ndarray, spacing_mm: Sequence[float]) -> SurfaceDistances:
    """Surfels of both masks with their areas and their distances to the other surface.

    Parameters
    ----------
    gt, pred : (Z, Y, X) bool arrays
        Ground truth and prediction on the same grid (0/1 integer arrays are accepted).
    spacing_mm : sequence of 3 floats
        Voxel size in mm in array-axis order ``(z, y, x)``.

    Returns
    -------
    SurfaceDistances
        An empty mask has no surfels; the other mask's distances are then all ``inf``.
    """
    gt, pred, spacing = _check_masks(gt, pred, spacing_mm)
    return _surface_distances(gt, pred, spacing)


def _surface_distances(gt: np.ndarray, pred: np.ndarray, spacing: tuple[float, float, float]) -> SurfaceDistances:
    box = _union_box(gt, pred)
    if box is None:
        empty = DirectedSurfaceDistances(np.zeros(0), np.zeros(0))
        return SurfaceDistances(empty, empty)
    codes_gt, codes_pred = _neighbour_codes(gt, box), _neighbour_codes(pred, box)
    table = _surfel_area_table(spacing)
    surface_gt = (codes_gt != 0) & (codes_gt != 255)
    surface_pred = (codes_pred != 0) & (codes_pred != 255)
    points_gt, points_pred = np.argwhere(surface_gt), np.argwhere(surface_pred)
    # Both searches are exact and give identical distances; pick the cheaper one for this crop.
    search = (
        _nearest_by_tree if codes_gt.size > TREE_CROSSOVER * (len(points_gt) + len(points_pred)) else _nearest_by_edt
    )
    return SurfaceDistances(
        gt_to_pred=_directed(points_gt, table[codes_gt[surface_gt]], surface_pred, points_pred, spacing, search),
        pred_to_gt=_directed(points_pred, table[codes_pred[surface_pred]], surface_gt, points_gt, spacing, search),
    )


def _directed(
    points: np.ndarray,
    areas: np.ndarray,
    other: np.ndarray,
    other_points: np.ndarray,
    spacing: tuple[float, float, float],
    search: Callable[..., np.ndarray],
) -> DirectedSurfaceDistances:
    if len(other_points) == 0:
        distances = np.full(len(points), np.inf)
    else:
        nearest = search(points, other, other_points, spacing)
        # (dz sz)^2 + (dy sy)^2 + (dx sx)^2 in this order, as scipy's distance transform sums it: same rounding.
        delta = (nearest - points).astype(np.float64) * np.asarray(spacing)
        delta *= delta
        distances = np.sqrt(delta[:, 0] + delta[:, 1] + delta[:, 2])
    # Distance first, area second: the order DeepMind's sort gives, so cumulative areas round the same way.
    order = np.lexsort((areas, distances))
    return DirectedSurfaceDistances(distances_mm=distances[order], areas_mm2=areas[order])


def _nearest_by_edt(
    points: np.ndarray, other: np.ndarray, other_points: np.ndarray, spacing: tuple[float, float, float]
) -> np.ndarray:
    """Nearest surfel of ``other`` to each point, from a feature transform over the crop: cost grows with the crop."""
    features = ndimage.distance_transform_edt(~other, sampling=spacing, return_distances=False, return_indices=True)
    return features[:, points[:, 0], points[:, 1], points[:, 2]].T


def _nearest_by_tree(
    points: np.ndarray, other: np.ndarray, other_points: np.ndarray, spacing: tuple[float, float, float]
) -> np.ndarray:
    """Nearest surfel of ``other`` to each point, from a k-d tree: cost grows with the surfaces, not the crop."""
    scale = np.asarray(spacing)
    tree = cKDTree(other_points * scale, balanced_tree=False, compact_nodes=False)
    _distance, index = tree.query(points * scale)
    return other_points[index]


def _bounding_box(mask: np.ndarray) -> tuple[tuple[int, int], ...] | None:
    """Inclusive-exclusive index ranges of the foreground along each axis, or ``None`` for an empty mask."""
    z = np.flatnonzero(mask.any(axis=(1, 2)))
    if z.size == 0:
        return None
    slab = mask[z[0] : z[-1] + 1]  # the other two projections only need the slices that hold foreground
    y = np.flatnonzero(slab.any(axis=(0, 2)))
    x = np.flatnonzero(slab.any(axis=(0, 1)))
    return (int(z[0]), int(z[-1]) + 1), (int(y[0]), int(y[-1]) + 1), (int(x[0]), int(x[-1]) + 1)


def _union_box(gt: np.ndarray, pred: np.ndarray) -> tuple[slice, ...] | None:
    boxes = [b for b in (_bounding_box(gt), _bounding_box(pred)) if b is not None]
    if not boxes:
        return None
    return tuple(slice(min(b[axis][0] for b in boxes), max(b[axis][1] for b in boxes)) for axis in range(gt.ndim))


def _neighbour_codes(mask: np.ndarray, box: tuple[slice, ...]) -> np.ndarray:
    """8-bit code of the 2×2×2 neighbourhood of every voxel corner of the box (one more corner than voxels per axis).

    Voxels outside the image count as background, so an object touching the image border is closed there.
    """
    crop = mask[box]
    padded = np.zeros(tuple(n + 2 for n in crop.shape), dtype=np.uint8)
    padded[1:-1, 1:-1, 1:-1] = crop
    n0, n1, n2 = (n + 1 for n in crop.shape)
    codes = np.zeros((n0, n1, n2), dtype=np.uint8)
    for a, b, c in _CELL_OFFSETS:
        codes |= padded[a : a + n0, b : b + n1, c : c + n2] << np.uint8(7 - (4 * a + 2 * b + c))
    return codes


# ----------------------------------------------------------------------------------------------------- case metrics
@dataclass(frozen=True)
class CaseMetrics:
    """Every metric of one case, raw (edge cases as the module docstring's table says, no penalties).

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
        Normalised surface distance (surface Dice) at each tolerance: the area fraction of both surfaces within
        the tolerance of the other.
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
        raise MetricsError(f"tolerance_mm: {tolerance_mm} mm was not computed (have {list(self.tolerances_mm)})")

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
        NSD tolerances in mm (default 2 mm); each gives a column ``nsd_<t>mm``.

    Returns
    -------
    CaseMetrics
        Raw values; empty masks follow the module docstring's table (0 for dice/nsd and ``inf`` distances when
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


def _check_masks(
    gt: np.ndarray, pred: np.ndarray, spacing_mm: Sequence[float]
) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    gt, pred = _as_mask(gt, "gt"), _as_mask(pred, "pred")
    if gt.shape != pred.shape:
        raise MetricsError(f"pred: shape {pred.shape} differs from gt's {gt.shape}; score on the ground-truth grid")
    return gt, pred, _check_spacing(spacing_mm)


def _as_mask(array: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 3:
        raise MetricsError(f"{name}: expected a 3D (z, y, x) mask, got shape {array.shape}")
    if array.dtype == np.bool_:
        return array
    if array.dtype.kind not in "iuf" or not np.all((array == 0) | (array == 1)):
        values = np.unique(array)[:10].tolist() if array.dtype.kind in "iufb" else array.dtype
        raise MetricsError(f"{name}: expected a binary mask (bool, or only 0 and 1), found values {values}")
    return array == 1


def _check_spacing(spacing_mm: Sequence[float]) -> tuple[float, float, float]:
    try:
        spacing = tuple(float(s) for s in spacing_mm)
    except (TypeError, ValueError):
        raise MetricsError(f"spacing_mm: expected three mm values in (z, y, x) order, got {spacing_mm!r}") from None
    if len(spacing) != 3 or not all(math.isfinite(s) and s > 0 for s in spacing):
        raise MetricsError(f"spacing_mm: expected three positive mm values in (z, y, x) order, got {spacing_mm!r}")
    return spacing  # type: ignore[return-value]


def _check_tolerances(tolerances_mm: Sequence[float]) -> tuple[float, ...]:
    tolerances = tuple(float(t) for t in tolerances_mm)
    if not tolerances or not all(math.isfinite(t) and t > 0 for t in tolerances):
        raise MetricsError(f"tolerances_mm: expected one or more positive mm values, got {list(tolerances_mm)}")
    names = [nsd_column(t) for t in tolerances]
    if len(set(names)) != len(names):
        raise MetricsError(f"tolerances_mm: {list(tolerances_mm)} name the same NSD column twice ({names})")
    return tolerances


# -------------------------------------------------------------------------------------------------------- penalties
@dataclass(frozen=True)
class OutcomeCounts:
    """How many cases of a results table fell in each row of the edge-case table."""

    n_scored: int
    n_missed: int
    n_false_positive: int
    n_both_empty: int
    n_failed: int
    n_included: int

    @property
    def n_total(self) -> int:
        """All cases."""
        return self.n_scored + self.n_missed + self.n_false_positive + self.n_both_empty + self.n_failed


@dataclass(frozen=True, eq=False)
class PenalisedResults:
    """A results table with penalties applied, and the counts a report must show beside its means.

    Attributes
    ----------
    table : pandas.DataFrame
        A copy of the input with penalised metric values and three more columns: ``outcome`` (one of
        :data:`OUTCOMES`), ``included`` (whether the case enters aggregates; false only for both-empty cases
        under the default policy) and ``penalised`` (whether a raw value was replaced). Group it and count
        ``outcome`` for per-group counts; aggregate only ``table[table.included]``.
    counts : OutcomeCounts
        Counts over the whole table.
    """

    table: pd.DataFrame
    counts: OutcomeCounts


def apply_penalties(
    results: pd.DataFrame, *, both_empty_as_perfect: bool = False, d_max_mm: float | None = None
) -> PenalisedResults:
    """Replace raw edge-case values by the values aggregates use, so no caller re-implements the policy.

    ============================  ======================================================  ===============
    outcome                       dice, iou, nsd_* / distances / rel_vol_err              included
    ============================  ======================================================  ===============
    ``scored`` (both non-empty)   unchanged                                               yes
    ``missed`` (``empty_pred``)   0 / D_max / -1                                          yes
    ``false_positive``            0 / D_max / NaN (undefined without a GT volume)         yes
    ``both_empty``                NaN, or with ``both_empty_as_perfect`` 1 / 0 / 0        no, or yes
    ``failed``                    0 / D_max / -1 (as an empty prediction)                 yes
    ============================  ======================================================  ===============

    Volumes are left as they are.

    Parameters
    ----------
    results : pandas.DataFrame
        One row per case with the columns of :meth:`CaseMetrics.as_row` (any ``nsd_<t>mm`` columns); an optional
        boolean ``failed`` column marks cases that could not be scored, whose metrics and flags may be NaN.
        Other columns (identity, oracle flags) are kept.
    both_empty_as_perfect : bool
        Count a case with both masks empty as perfect (dice, nsd 1; distances 0) instead of excluding it.
    d_max_mm : float or None
        D_max for rows whose ``d_max_mm`` is missing (a failed case whose ground truth could not be read).

    Returns
    -------
    PenalisedResults

    Raises
    ------
    MetricsError
        A table without the flag columns, rows that are neither failed nor flagged, or a row needing D_max that has
        none (pass ``d_max_mm``).
    """
    table = results.copy()
    missing = [c for c in ("empty_gt", "empty_pred", "dice") if c not in table.columns]
    if missing:
        raise MetricsError(f"results: missing column(s) {missing}; expected rows from zeroshot.metrics.score_case")
    failed = _flag(table, "failed") if "failed" in table.columns else pd.Series(False, index=table.index)
    unflagged = ~failed & (table["empty_gt"].isna() | table["empty_pred"].isna())
    if unflagged.any():
        raise MetricsError(
            f"results: {int(unflagged.sum())} row(s) are not failed but lack empty_gt/empty_pred flags "
            f"(rows {list(table.index[unflagged][:5])})"
        )
    empty_gt, empty_pred = _flag(table, "empty_gt") & ~failed, _flag(table, "empty_pred") & ~failed
    outcome = pd.Series("scored", index=table.index, dtype=object)
    outcome[empty_pred & ~empty_gt] = "missed"
    outcome[empty_gt & ~empty_pred] = "false_positive"
    outcome[empty_gt & empty_pred] = "both_empty"
    outcome[failed] = "failed"

    overlap = [
        "dice",
        *(c for c in ("iou",) if c in table.columns),
        *(c for c in table.columns if _NSD_COLUMN.match(c)),
    ]
    distances = [c for c in DISTANCE_COLUMNS if c in table.columns]
    has_rel = "rel_vol_err" in table.columns
    worst = outcome.isin(("missed", "false_positive", "failed"))
    if worst.any() and distances:
        d_max = table["d_max_mm"] if "d_max_mm" in table.columns else pd.Series(np.nan, index=table.index)
        d_max = pd.to_numeric(d_max, errors="coerce").astype(float)
        if d_max_mm is not None:
            d_max = d_max.fillna(float(d_max_mm))
        lacking = worst & ~(np.isfinite(d_max) & (d_max > 0))
        if lacking.any():
            raise MetricsError(
                f"results: {int(lacking.sum())} missed/failed row(s) have no d_max_mm to penalise distances with "
                f"(rows {list(table.index[lacking][:5])}); pass d_max_mm"
            )
        table.loc[worst, "d_max_mm"] = d_max[worst]
        for column in distances:
            table[column] = table[column].astype(float)
            table.loc[worst, column] = d_max[worst]
    for column in overlap:
        table[column] = table[column].astype(float)
        table.loc[worst, column] = 0.0
    if has_rel:
        table["rel_vol_err"] = table["rel_vol_err"].astype(float)
        table.loc[outcome.isin(("missed", "failed")), "rel_vol_err"] = -1.0
        table.loc[outcome == "false_positive", "rel_vol_err"] = np.nan

    both_empty = outcome == "both_empty"
    if both_empty_as_perfect:
        table.loc[both_empty, overlap] = 1.0
        table.loc[both_empty, distances] = 0.0
        if has_rel:
            table.loc[both_empty, "rel_vol_err"] = 0.0
    included = ~both_empty if not both_empty_as_perfect else pd.Series(True, index=table.index)
    table["outcome"] = outcome
    table["included"] = included.astype(bool)
    table["penalised"] = (worst | (both_empty & both_empty_as_perfect)).astype(bool)
    counts = OutcomeCounts(
        n_scored=int((outcome == "scored").sum()),
        n_missed=int((outcome == "missed").sum()),
        n_false_positive=int((outcome == "false_positive").sum()),
        n_both_empty=int(both_empty.sum()),
        n_failed=int(failed.sum()),
        n_included=int(table["included"].sum()),
    )
    return PenalisedResults(table=table, counts=counts)


def _flag(table: pd.DataFrame, column: str) -> pd.Series:
    """A boolean flag column as plain bools (NaN, as CSV gives it for unknown flags, is false)."""
    values = table[column]
    if values.dtype == object:
        values = values.map(lambda v: v in (True, 1, "True", "true", "1") if not pd.isna(v) else False)
    return values.fillna(False).astype(bool)
