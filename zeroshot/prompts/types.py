"""The prompt values every segmenter consumes: per key slice a box, points with labels and/or a mask.

Coordinates follow the toolkit's convention on the *input* grid of the canonical ``(z, y, x)`` volume: a box is
``(x0, y0, x1, y1)`` with inclusive pixel indices (x = column, y = row; ``x1`` is the last column holding the
structure), a point is ``(x, y)``. Converting to a model's own coordinates happens inside the segmenter only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from zeroshot.errors import PromptError, plain

__all__ = ["NEGATIVE", "POSITIVE", "SlicePrompt", "VolumePrompts"]

POSITIVE = 1
NEGATIVE = 0


@dataclass(frozen=True, eq=False)
class SlicePrompt:
    """The prompt on one key slice.

    Attributes
    ----------
    z : int
        Slice index along the volume's z axis.
    box : (x0, y0, x1, y1) ints or None
        Inclusive pixel box.
    points : tuple of (x, y) ints
        Click positions, column then row.
    labels : tuple of int
        One per point: 1 positive (foreground), 0 negative (background).
    mask : (Y, X) bool array or None
        A mask prompt for this slice.
    """

    z: int
    box: tuple[int, int, int, int] | None = None
    points: tuple[tuple[int, int], ...] = ()
    labels: tuple[int, ...] = ()
    mask: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if len(self.points) != len(self.labels):
            raise PromptError(f"slice {self.z}: {len(self.points)} points but {len(self.labels)} labels")
        if any(label not in (POSITIVE, NEGATIVE) for label in self.labels):
            raise PromptError(
                f"slice {self.z}: point labels must be 1 (positive) or 0 (negative), got {plain(self.labels)}"
            )
        if self.box is not None:
            x0, y0, x1, y1 = self.box
            if x1 < x0 or y1 < y0:
                raise PromptError(f"slice {self.z}: box {plain(self.box)} has x1 < x0 or y1 < y0")
        if self.box is None and not self.points and self.mask is None:
            raise PromptError(f"slice {self.z}: a prompt needs a box, points or a mask")

    def validate_for(self, shape_zyx: tuple[int, int, int]) -> None:
        """Raise :class:`PromptError` if the prompt does not fit a volume of shape ``(Z, Y, X)``."""
        depth, height, width = shape_zyx
        if not 0 <= self.z < depth:
            raise PromptError(f"key slice {self.z} is outside the volume's {depth} slices")
        if self.box is not None:
            x0, y0, x1, y1 = self.box
            if x0 < 0 or y0 < 0 or x1 >= width or y1 >= height:
                raise PromptError(f"slice {self.z}: box {plain(self.box)} leaves the {width}x{height} (x by y) slice")
        for x, y in self.points:
            if not (0 <= x < width and 0 <= y < height):
                raise PromptError(f"slice {self.z}: point {plain((x, y))} leaves the {width}x{height} (x by y) slice")
        if self.mask is not None and self.mask.shape != (height, width):
            raise PromptError(f"slice {self.z}: mask shape {self.mask.shape} is not the slice shape {(height, width)}")


@dataclass(frozen=True, eq=False)
class VolumePrompts:
    """All prompts for one case under one strategy and seed, with their provenance.

    Attributes
    ----------
    case_id : str
    strategy : str
        Name of the prompt strategy that made them (e.g. ``box-mid``).
    seed : int
        Seed of every random draw that made them.
    source : str
        What they were derived from: ``gt``, ``coarse`` or ``degraded``; ``volume`` when an unusable source fell
        back to a box over the whole middle slice (see ``details["source"]``).
    slices : tuple of SlicePrompt
        One per key slice, sorted by ``z``, at most one per ``z``.
    oracle : mapping of str to bool
        Which ground-truth information the prompts used (e.g. ``{"gt_prompt": True}``); recorded in every
        result row.
    details : mapping
        Everything else needed to replay them (rule, jitter actually drawn, ...), JSON-serialisable.
    """

    case_id: str
    strategy: str
    seed: int
    source: str
    slices: tuple[SlicePrompt, ...]
    oracle: Mapping[str, bool] = field(default_factory=dict)
    details: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        zs = [s.z for s in self.slices]
        if not zs:
            raise PromptError(f"case {self.case_id}: no key slice")
        if zs != sorted(set(zs)):
            raise PromptError(f"case {self.case_id}: key slices must be unique and sorted, got {plain(zs)}")

    @property
    def key_slices(self) -> tuple[int, ...]:
        """The prompted slice indices, ascending."""
        return tuple(s.z for s in self.slices)

    @property
    def box_coverage(self) -> float:
        """The smallest fraction of a slice's structure that its box covers (``details["slices"][i]["box_coverage"]``).

        NaN when no slice records one (no box, or prompts made before coverage was recorded).
        """
        records = self.details.get("slices", ()) if isinstance(self.details, Mapping) else ()
        values = [float(r["box_coverage"]) for r in records if isinstance(r, Mapping) and "box_coverage" in r]
        return min(values) if values else float("nan")
