"""The ``box-fill`` baseline: the prompt alone, painted as the mask — the floor a foundation model must clear.

Whatever Dice a model reaches, reviewers ask how much of it the prompt already gave. This segmenter answers that
with no image information at all: on each key slice the prompt region is filled, and (by default) nothing else.

The prompt region of one key slice, by priority:

1. a mask prompt: the mask itself (the most specific prompt wins);
2. otherwise a box: the box filled, inclusive of ``x1`` and ``y1``;
3. otherwise positive points: a disk of ``point_radius_mm`` (in-plane mm, spacing-aware) around each one.

Negative points never add foreground; under rule 3 they are ignored, because a "prompt alone" baseline has no
image to decide how much background a negative click should carve away. The number ignored is recorded in
``info``.

With ``interpolate_between_key_slices=True`` the slices strictly between two consecutive key slices also get a
filled box: the bounding boxes of the two key slices' prompt regions, interpolated linearly in z and rounded to
the nearest pixel. Slices outside the outermost key slices stay empty either way, so the baseline never claims
extent the prompt did not give.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from zeroshot.distance_ties import at_most_mm
from zeroshot.errors import ConfigError
from zeroshot.prompts.types import POSITIVE, SlicePrompt, VolumePrompts
from zeroshot.segmenters.base import Segmentation
from zeroshot.volume import Volume

__all__ = ["BoxFillSegmenter", "BoxFillSession", "prompt_region"]


def prompt_region(
    prompt: SlicePrompt,
    shape_yx: tuple[int, int],
    spacing_yx_mm: tuple[float, float],
    *,
    point_radius_mm: float,
) -> np.ndarray:
    """The foreground one slice prompt states by itself, as a ``(Y, X)`` bool array.

    Parameters
    ----------
    prompt : SlicePrompt
        Already validated against the slice shape.
    shape_yx : (int, int)
        Slice shape ``(Y, X)``.
    spacing_yx_mm : (float, float)
        In-plane pixel size in mm, ``(y, x)`` order.
    point_radius_mm : float
        Radius of the disk painted around each positive point when the slice has neither mask nor box.

    Returns
    -------
    (Y, X) bool array
        The mask prompt if there is one, else the filled box, else the union of disks around positive points
        (empty if every point is negative).

    Examples
    --------
    >>> p = SlicePrompt(z=0, box=(1, 2, 3, 2))
    >>> prompt_region(p, (4, 5), (1.0, 1.0), point_radius_mm=1.0).astype(int)
    array([[0, 0, 0, 0, 0],
           [0, 0, 0, 0, 0],
           [0, 1, 1, 1, 0],
           [0, 0, 0, 0, 0]])
    """
    if prompt.mask is not None:
        return np.asarray(prompt.mask, dtype=bool).copy()
    region = np.zeros(shape_yx, dtype=bool)
    if prompt.box is not None:
        x0, y0, x1, y1 = prompt.box
        region[y0 : y1 + 1, x0 : x1 + 1] = True
        return region
    positives = [point for point, label in zip(prompt.points, prompt.labels, strict=True) if label == POSITIVE]
    for x, y in positives:
        region |= disk_mask(shape_yx, (y, x), radius_mm=point_radius_mm, spacing_yx_mm=spacing_yx_mm)
    return region


def disk_mask(
    shape_yx: tuple[int, int],
    center_yx: tuple[int, int],
    *,
    radius_mm: float,
    spacing_yx_mm: tuple[float, float],
) -> np.ndarray:
    """Pixels whose centres lie within ``radius_mm`` of a centre pixel, in physical in-plane distance.

    The centre pixel is always included (also for a radius smaller than a pixel). With anisotropic pixels the
    disk is an ellipse in pixel units. A pixel exactly ``radius_mm`` away is inside (within a relative 1e-6, see
    :mod:`zeroshot.distance_ties`), whether the spacing came as float32 or float64.
    """
    height, width = shape_yx
    cy, cx = center_yx
    sy, sx = spacing_yx_mm
    ys = (np.arange(height) - cy) * sy
    xs = (np.arange(width) - cx) * sx
    disk = at_most_mm(np.hypot(ys[:, None], xs[None, :]), radius_mm)
    disk[cy, cx] = True
    return disk


def bounding_box(region: np.ndarray) -> tuple[int, int, int, int] | None:
    """Inclusive ``(x0, y0, x1, y1)`` box of a ``(Y, X)`` bool array, or ``None`` if it is empty."""
    rows = np.flatnonzero(region.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(region.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])


@dataclass(frozen=True)
class BoxFillSegmenter:
    """The prompt painted as the segmentation; no model, no image information.

    Parameters
    ----------
    interpolate_between_key_slices : bool
        If true, fill the slices between consecutive key slices with boxes interpolated from the key slices'
        prompt regions (see the module docstring). Default false: prompted slices only, the strict floor.
    point_radius_mm : float
        In-plane radius of the disk around each positive point of a points-only prompt (default 5 mm).

    Examples
    --------
    >>> from zeroshot.volume import volume_from_array
    >>> volume = volume_from_array(np.zeros((3, 6, 6)), (2.0, 1.0, 1.0))
    >>> prompts = VolumePrompts("c", "box-mid", 0, "gt", (SlicePrompt(z=1, box=(1, 1, 3, 2)),))
    >>> BoxFillSegmenter().prepare(volume).segment(prompts).mask.sum()
    np.int64(6)
    """

    interpolate_between_key_slices: bool = False
    point_radius_mm: float = 5.0
    name: ClassVar[str] = "box-fill"

    def __post_init__(self) -> None:
        if not (np.isfinite(self.point_radius_mm) and self.point_radius_mm > 0):
            raise ConfigError(f"box-fill: point_radius_mm must be a positive number of mm, got {self.point_radius_mm}")

    def prepare(self, volume: Volume) -> BoxFillSession:
        """Return a session for ``volume`` (nothing to precompute: the image is never looked at)."""
        return BoxFillSession(volume=volume, segmenter=self)

    def describe(self) -> Mapping[str, Any]:
        """The resolved configuration."""
        return {
            "name": self.name,
            "model": None,
            "interpolate_between_key_slices": self.interpolate_between_key_slices,
            "point_radius_mm": self.point_radius_mm,
        }


@dataclass
class BoxFillSession:
    """A volume prepared for :class:`BoxFillSegmenter` (it only remembers the grid and spacing)."""

    volume: Volume
    segmenter: BoxFillSegmenter

    def segment(self, prompts: VolumePrompts) -> Segmentation:
        """Paint the prompt regions (and, if configured, the interpolated boxes between key slices)."""
        shape = self.volume.shape
        for prompt in prompts.slices:
            prompt.validate_for(shape)
        options = self.segmenter
        spacing_yx = (self.volume.spacing_mm[1], self.volume.spacing_mm[2])
        mask = np.zeros(shape, dtype=bool)
        regions = {
            p.z: prompt_region(p, shape[1:], spacing_yx, point_radius_mm=options.point_radius_mm)
            for p in prompts.slices
        }
        for z, region in regions.items():
            mask[z] = region
        interpolated: list[int] = []
        if options.interpolate_between_key_slices:
            interpolated = _fill_between(mask, regions)
        ignored = sum(
            1 for p in prompts.slices if p.mask is None and p.box is None for label in p.labels if label != POSITIVE
        )
        info = {
            "method": "box-fill",
            "key_slices": list(prompts.key_slices),
            "interpolated_slices": interpolated,
            "negative_points_ignored": ignored,
            "empty_key_slices": [z for z, region in regions.items() if not region.any()],
        }
        return Segmentation(mask=mask, probabilities=None, info=info)

    def close(self) -> None:
        """Nothing to release."""


def _fill_between(mask: np.ndarray, regions: Mapping[int, np.ndarray]) -> list[int]:
    """Fill interpolated boxes strictly between consecutive key slices whose regions are non-empty."""
    filled: list[int] = []
    keys = sorted(regions)
    for z_a, z_b in itertools.pairwise(keys):
        box_a, box_b = bounding_box(regions[z_a]), bounding_box(regions[z_b])
        if box_a is None or box_b is None:
            continue
        a, b = np.asarray(box_a, dtype=float), np.asarray(box_b, dtype=float)
        for z in range(z_a + 1, z_b):
            t = (z - z_a) / (z_b - z_a)
            x0, y0, x1, y1 = (int(v) for v in np.rint((1 - t) * a + t * b))
            mask[z, y0 : y1 + 1, x0 : x1 + 1] = True
            filled.append(z)
    return filled
