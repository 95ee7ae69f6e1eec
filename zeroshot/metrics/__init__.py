"""Per-case segmentation metrics from one surface-distance computation, and the edge-case penalties for aggregates.

Surface metrics follow the semantics of DeepMind's ``surface-distance`` (Nikolov et al., 2021), the convention of
MedSAM, the CVPR24 challenge and TotalSegmentator:

- the surface of a mask is made of *surfels*: the corners of the voxel grid (the grid shifted by half a voxel)
  whose 2×2×2 neighbourhood holds both foreground and background voxels;
- each surfel carries the area in mm² of the marching-cubes surface inside its 2×2×2 cell (see
  :func:`surfel_area_table`), so percentiles, means and overlaps are area-weighted;
- the distance from a surfel to the other surface is the Euclidean distance in mm to the nearest surfel of the
  other mask (a distance transform on the corner grid, spacing-aware);
- NSD at tolerance τ counts a surfel whose distance is at most τ·(1 + 1e-6): surfels exactly at τ (common on a
  regular grid, e.g. sqrt(1.6² + 1.2²) = 2 mm on a 0.8 × 1.2 mm grid) count as within, whether the spacing came
  as float32 (a NIfTI header) or float64 (:mod:`zeroshot.distance_ties`). Elsewhere this is DeepMind's rule;
  HD95 and HD need no such tolerance (their threshold is an area fraction, not a distance).

Only the bounding box of the union of the two masks, plus one voxel, is ever processed: time and memory grow with
the region around the masks, not with the image.

Edge cases are decided explicitly, never left to ``0 / 0``:

========================================  ==============  ==========  ===============  ==================
situation                                 flags           dice / nsd  distances (raw)  aggregates
========================================  ==============  ==========  ===============  ==================
both non-empty                            —               formula     formula          same
ground truth non-empty, prediction empty  ``empty_pred``  0           inf              0 / D_max
ground truth empty, prediction non-empty  ``empty_gt``    0           inf              0 / D_max, counted
both empty                                both            NaN         NaN              excluded, counted
case failed (:mod:`zeroshot.scoring`)     ``failed``      NaN         NaN              0 / D_max
========================================  ==============  ==========  ===============  ==================

:func:`score_case` gives the raw values of one case; :func:`apply_penalties` turns a results table into the values
aggregates use. D_max is the physical diagonal of the ground-truth image in mm.
"""

from zeroshot.metrics._case import (
    DEFAULT_TOLERANCES_MM,
    DISTANCE_COLUMNS,
    CaseMetrics,
    metric_columns,
    nsd_column,
    score_case,
)
from zeroshot.metrics._penalties import OUTCOMES, OutcomeCounts, PenalisedResults, apply_penalties
from zeroshot.metrics._surface import DirectedSurfaceDistances, SurfaceDistances, surface_distances, surfel_area_table

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
