"""A volume's prompts as nnInteractive interactions, in the order they are given to its session.

nnInteractive is stateful: each interaction is added to the interactions before it and refines the current
segmentation, and later interactions weigh more (its ``interaction_decay``). The order is therefore part of the
input. This module turns :class:`~zeroshot.prompts.VolumePrompts` into one ordered tuple of interactions:

1. every mask prompt, as one :class:`InitialSegmentation` (nnInteractive's initial segmentation is a whole volume
   and resets the interactions before it, so it comes first);
2. every box, by slice (:class:`BoxInteraction`: a 2D box on its slice);
3. every point that is not a recorded corrective click, by slice and in the slice's order
   (:class:`PointInteraction`, positive or negative);
4. the corrective clicks, in the order they were made: the records of ``prompts.details["clicks"]`` (written by
   :func:`zeroshot.interactive.add_clicks`, whose points follow each slice's own points). When the records do
   not match the points of their slices, every point is ordered as in 3.

Because a round of clicks appends to this tuple, the interactions of one round are a prefix of the next round's:
the session adds only the new ones, and a session that starts from a later round (a resumed curve) adds the same
interactions in the same order.

Coordinates are converted to nnInteractive's voxel order, which is the array's: ``(z, y, x)``, the order in which
its authors pass SimpleITK arrays (README) and ``(D, H, W)`` arrays (their CVPR 2025 challenge baseline).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from zeroshot.prompts.types import POSITIVE, VolumePrompts

__all__ = ["BoxInteraction", "InitialSegmentation", "Interaction", "PointInteraction", "plan_interactions"]


@dataclass(frozen=True)
class InitialSegmentation:
    """The mask prompts of a volume as nnInteractive's initial segmentation (zero off the masked slices).

    Attributes
    ----------
    slices : tuple of int
        The slices that carry a mask prompt, ascending.
    digest : str
        SHA-256 of the masks, so that two plans compare without comparing arrays.
    masks : tuple of (Y, X) bool arrays
        One per slice (not compared).
    """

    slices: tuple[int, ...]
    digest: str
    masks: tuple[np.ndarray, ...] = field(compare=False, repr=False)

    kind: ClassVar[str] = "initial_segmentation"

    def volume(self, shape_zyx: tuple[int, int, int]) -> np.ndarray:
        """The ``(Z, Y, X)`` uint8 volume nnInteractive takes: each mask on its slice, zero elsewhere."""
        volume = np.zeros(shape_zyx, dtype=np.uint8)
        for z, mask in zip(self.slices, self.masks, strict=True):
            volume[z] = mask
        return volume

    def record(self) -> dict[str, object]:
        """A JSON-serialisable description for ``Segmentation.info``."""
        return {"kind": self.kind, "slices": list(self.slices)}


@dataclass(frozen=True)
class BoxInteraction:
    """A 2D box on slice ``z``: the toolkit's inclusive ``(x0, y0, x1, y1)``."""

    z: int
    box: tuple[int, int, int, int]

    kind: ClassVar[str] = "box"

    def bbox_zyx(self) -> list[list[int]]:
        """The box as nnInteractive takes it: half-open ``[[z0, z1], [y0, y1], [x0, x1]]``, one slice thick."""
        x0, y0, x1, y1 = self.box
        return [[self.z, self.z + 1], [y0, y1 + 1], [x0, x1 + 1]]

    def record(self) -> dict[str, object]:
        """A JSON-serialisable description for ``Segmentation.info``."""
        return {"kind": self.kind, "z": self.z, "box": list(self.box)}


@dataclass(frozen=True)
class PointInteraction:
    """A click at pixel ``(x, y)`` of slice ``z``; ``positive`` adds, otherwise it removes."""

    z: int
    x: int
    y: int
    positive: bool

    kind: ClassVar[str] = "point"

    def zyx(self) -> tuple[int, int, int]:
        """The click as nnInteractive takes it: voxel ``(z, y, x)``."""
        return (self.z, self.y, self.x)

    def record(self) -> dict[str, object]:
        """A JSON-serialisable description for ``Segmentation.info``."""
        return {"kind": self.kind, "z": self.z, "x": self.x, "y": self.y, "positive": self.positive}


Interaction = InitialSegmentation | BoxInteraction | PointInteraction


def plan_interactions(prompts: VolumePrompts) -> tuple[Interaction, ...]:
    """The interactions of ``prompts`` in the order described in the module docstring.

    Parameters
    ----------
    prompts : VolumePrompts
        Already validated against the volume.

    Returns
    -------
    tuple of Interaction
        Equal prompts give equal tuples; prompts with clicks appended give this tuple with the new clicks appended.
    """
    interactions: list[Interaction] = []
    masked = [sp for sp in prompts.slices if sp.mask is not None]
    if masked:
        masks = tuple(np.asarray(sp.mask, dtype=bool) for sp in masked)
        digest = hashlib.sha256()
        for sp, mask in zip(masked, masks, strict=True):
            digest.update(f"{sp.z}:{mask.shape}".encode())
            digest.update(np.packbits(mask).tobytes())
        interactions.append(InitialSegmentation(tuple(sp.z for sp in masked), digest.hexdigest(), masks))
    interactions.extend(
        BoxInteraction(sp.z, tuple(int(v) for v in sp.box)) for sp in prompts.slices if sp.box is not None
    )
    points = {
        sp.z: [
            PointInteraction(sp.z, int(x), int(y), label == POSITIVE)
            for (x, y), label in zip(sp.points, sp.labels, strict=True)
        ]
        for sp in prompts.slices
    }
    clicks = _recorded_clicks(prompts, points)
    clicked = Counter(click.z for click in clicks)
    for z, slice_points in points.items():
        interactions.extend(slice_points[: len(slice_points) - clicked[z]])
    interactions.extend(clicks)
    return tuple(interactions)


def _recorded_clicks(prompts: VolumePrompts, points: dict[int, list[PointInteraction]]) -> list[PointInteraction]:
    """The points that ``prompts.details["clicks"]`` records as clicks, in click order; [] if they do not match."""
    records = prompts.details.get("clicks") if isinstance(prompts.details, Mapping) else None
    if not records:
        return []
    try:
        clicks = [PointInteraction(int(r["z"]), int(r["x"]), int(r["y"]), int(r["label"]) == POSITIVE) for r in records]
    except (KeyError, TypeError, ValueError):
        return []
    per_slice: dict[int, list[PointInteraction]] = {}
    for click in clicks:
        per_slice.setdefault(click.z, []).append(click)
    for z, slice_clicks in per_slice.items():
        own = points.get(z, [])
        if len(slice_clicks) > len(own) or own[len(own) - len(slice_clicks) :] != slice_clicks:
            return []
    return clicks
