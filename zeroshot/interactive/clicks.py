"""Clicks as values: what a simulated user did, how it joins a case's prompts, and its recorded form."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from zeroshot.errors import ConfigError
from zeroshot.prompts import SlicePrompt, VolumePrompts

__all__ = ["Click", "add_clicks", "clicks_from_records"]


@dataclass(frozen=True)
class Click:
    """One simulated click: made in ``round`` (1-based) on slice ``z`` at pixel ``(x, y)``; label 1 adds, 0 removes."""

    round: int
    z: int
    x: int
    y: int
    label: int

    def as_record(self) -> dict[str, int]:
        """A JSON-serialisable record."""
        return dataclasses.asdict(self)


def add_clicks(
    prompts: VolumePrompts,
    clicks: Sequence[Click],
    *,
    previous_mask: np.ndarray | None = None,
) -> VolumePrompts:
    """The initial prompts with ``clicks`` added as points on their slices.

    A click on a prompted slice joins that slice's points; a click elsewhere makes the slice a new (points-only)
    conditioning slice. With ``previous_mask`` (the last prediction, ``(Z, Y, X)``), every clicked slice also gets
    that mask as a mask prompt, replacing any earlier mask prompt there.
    """
    by_z: dict[int, SlicePrompt] = {sp.z: sp for sp in prompts.slices}
    for click in clicks:
        current = by_z.get(click.z)
        points = (*current.points, (click.x, click.y)) if current else ((click.x, click.y),)
        labels = (*current.labels, click.label) if current else (click.label,)
        by_z[click.z] = SlicePrompt(
            z=click.z,
            box=current.box if current else None,
            points=points,
            labels=labels,
            mask=current.mask if current else None,
        )
    if previous_mask is not None:
        for z in {c.z for c in clicks}:
            by_z[z] = dataclasses.replace(by_z[z], mask=np.asarray(previous_mask[z], dtype=bool))
    details = dict(prompts.details)
    details["clicks"] = [c.as_record() for c in clicks]
    return dataclasses.replace(prompts, slices=tuple(by_z[z] for z in sorted(by_z)), details=details)


def clicks_from_records(records: Sequence[dict[str, Any]]) -> tuple[Click, ...]:
    """Rebuild clicks from their recorded form (``Click.as_record``), in recorded order."""
    try:
        return tuple(Click(**{k: int(record[k]) for k in ("round", "z", "x", "y", "label")}) for record in records)
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"recorded clicks are malformed ({exc}); expected round, z, x, y, label") from exc
