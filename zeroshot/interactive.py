"""Simulated corrective clicks: how many corrections a segmenter needs on each sequence.

A simulated user starts from any strategy's initial prompts. Each round it compares the current 3D prediction
with the ground truth, picks a slice (the one with the largest error, by default), and clicks: a positive click at
the interior point farthest from the boundary of the largest false-negative region of that slice, or a negative
click at that point of the largest false-positive region — whichever region is larger (one click per round, the
common protocol of micro-sam, SAM-Med3D and VISTA3D), or one of each. The segmenter then re-propagates from the
prompts plus every click so far, on its existing session: the image encoder runs once per volume.

Every click ``(round, z, x, y, label)`` is recorded, so a Dice-vs-clicks curve can be replayed exactly, and a run
killed mid-curve resumes at the round where it stopped: the recorded clicks rebuild the prompts of that round.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from zeroshot.errors import ConfigError, plain
from zeroshot.prompts import NEGATIVE, POSITIVE, SlicePrompt, VolumePrompts
from zeroshot.prompts.points import farthest_interior_point
from zeroshot.prompts.regions import largest_component
from zeroshot.segmenters.base import Segmentation, Session

__all__ = [
    "Click",
    "ClickSettings",
    "Round",
    "add_clicks",
    "choose_clicks",
    "clicks_from_records",
    "replay",
    "simulate",
]


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


@dataclass(frozen=True)
class ClickSettings:
    """How the simulated user corrects.

    Attributes
    ----------
    rounds : int
        Number of correction rounds (clicks budget for ``per_round="one"``), default 8.
    slice_rule : {"largest-error", "key-slice"}
        Click on the slice with the most misclassified area (in mm²), or only on the prompted key slices (the one
        of them with the largest error). With ``"key-slice"`` clicks never add conditioning slices.
    per_round : {"one", "both"}
        One click on the larger of the two error regions, or a positive and a negative click (where each exists).
    feed_mask : bool
        Also give the previous round's mask of each clicked slice as a mask prompt on that slice, so the model
        refines its own answer instead of starting over from the points.
    """

    rounds: int = 8
    slice_rule: Literal["largest-error", "key-slice"] = "largest-error"
    per_round: Literal["one", "both"] = "one"
    feed_mask: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.rounds, int) or self.rounds < 0:
            raise ConfigError(f"clicks: rounds must be a whole number >= 0, got {plain(self.rounds)}")
        if self.slice_rule not in ("largest-error", "key-slice"):
            raise ConfigError(f"clicks: slice_rule must be 'largest-error' or 'key-slice', got {self.slice_rule!r}")
        if self.per_round not in ("one", "both"):
            raise ConfigError(f"clicks: per_round must be 'one' or 'both', got {self.per_round!r}")

    def to_dict(self) -> dict[str, Any]:
        """The settings as recorded in a run's configuration."""
        return dataclasses.asdict(self)


@dataclass(frozen=True, eq=False)
class Round:
    """The state after ``round`` rounds of clicks (round 0: the initial prompts alone)."""

    round: int
    prompts: VolumePrompts
    segmentation: Segmentation
    clicks: tuple[Click, ...]


def choose_clicks(
    gt: np.ndarray,
    pred: np.ndarray,
    spacing_mm: Sequence[float],
    *,
    settings: ClickSettings,
    round_index: int,
    key_slices: Sequence[int] = (),
) -> tuple[Click, ...]:
    """The clicks a simulated user makes in one round, given the ground truth and the current prediction.

    Parameters
    ----------
    gt, pred : (Z, Y, X) bool arrays
    spacing_mm : (z, y, x) voxel size in mm; error areas and click depths are measured in mm.
    settings : ClickSettings
    round_index : int
        The round these clicks belong to (1-based), recorded on each click.
    key_slices : sequence of int
        The prompted slices; with ``slice_rule="key-slice"`` clicks go only there.

    Returns
    -------
    tuple of Click
        Empty when the prediction is already perfect (on the slices the rule may click on).

    Notes
    -----
    Ties are broken deterministically: the lowest slice index among equally wrong slices, the positive click when
    the false-negative and false-positive regions are equally large.
    """
    gt = np.asarray(gt, dtype=bool)
    pred = np.asarray(pred, dtype=bool)
    if gt.shape != pred.shape or gt.ndim != 3:
        raise ConfigError(f"clicks: ground truth {gt.shape} and prediction {pred.shape} must be equal 3D shapes")
    false_neg = gt & ~pred
    false_pos = pred & ~gt
    error_area = (false_neg | false_pos).sum(axis=(1, 2))
    if settings.slice_rule == "key-slice":
        candidates = np.zeros_like(error_area)
        keys = [z for z in key_slices if 0 <= z < gt.shape[0]]
        candidates[keys] = error_area[keys]
        error_area = candidates
    if not error_area.any():
        return ()
    z = int(np.argmax(error_area))
    spacing_yx = (float(spacing_mm[1]), float(spacing_mm[2]))
    regions = {POSITIVE: largest_component(false_neg[z]), NEGATIVE: largest_component(false_pos[z])}
    sizes = {label: int(region.sum()) for label, region in regions.items()}
    if settings.per_round == "one":
        labels = [POSITIVE if sizes[POSITIVE] >= sizes[NEGATIVE] else NEGATIVE]
    else:
        labels = [label for label in (POSITIVE, NEGATIVE) if sizes[label] > 0]
    clicks = []
    for label in labels:
        x, y = farthest_interior_point(regions[label], spacing_yx)
        clicks.append(Click(round=round_index, z=z, x=x, y=y, label=label))
    return tuple(clicks)


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


def simulate(
    session: Session,
    gt: np.ndarray,
    initial: VolumePrompts,
    *,
    settings: ClickSettings,
    start: Round | None = None,
    on_round: Callable[[Round], None] | None = None,
) -> Iterator[Round]:
    """Run the click rounds on a prepared session, yielding round 0 (initial prompts) and each round after it.

    Parameters
    ----------
    session : Session
        The segmenter's session for this volume (its image features are reused every round).
    gt : (Z, Y, X) bool array
        Ground truth on the session's volume grid.
    initial : VolumePrompts
        The strategy's prompts (round 0).
    settings : ClickSettings
    start : Round or None
        Resume after this round (e.g. rebuilt with :func:`clicks_from_records`); earlier rounds are not yielded.
    on_round : callable or None
        Called with each round as soon as it is computed (e.g. to write its row atomically).

    Notes
    -----
    When a round finds nothing to correct the prediction is final: later rounds repeat it (the curve stays flat)
    without calling the segmenter again.
    """
    spacing = session.volume.spacing_mm
    if start is None:
        current = Round(0, initial, session.segment(initial), ())
        yield from _emit(current, on_round)
    else:
        current = start
    while current.round < settings.rounds:
        index = current.round + 1
        new = choose_clicks(
            gt,
            current.segmentation.mask,
            spacing,
            settings=settings,
            round_index=index,
            key_slices=initial.key_slices,
        )
        if not new:
            current = Round(index, current.prompts, current.segmentation, current.clicks)
        else:
            clicks = (*current.clicks, *new)
            previous = current.segmentation.mask if settings.feed_mask else None
            prompts = add_clicks(initial, clicks, previous_mask=previous)
            current = Round(index, prompts, session.segment(prompts), clicks)
        yield from _emit(current, on_round)


def replay(
    session: Session,
    initial: VolumePrompts,
    clicks: Sequence[Click],
    *,
    settings: ClickSettings,
    round_index: int,
) -> Round:
    """Rebuild the state after ``round_index`` rounds from recorded clicks, to resume a curve where it stopped.

    Without ``feed_mask`` one segmentation reproduces that round. With it, each round's prompts hold the previous
    round's mask, so the rounds that added clicks are re-run in order (decoder and memory only: the session keeps
    the image features). Segmentation is deterministic, so the rebuilt state equals the original.
    """
    clicks = tuple(c for c in clicks if c.round <= round_index)
    if not settings.feed_mask:
        prompts = add_clicks(initial, clicks) if clicks else initial
        return Round(round_index, prompts, session.segment(prompts), clicks)
    current = Round(0, initial, session.segment(initial), ())
    for index in sorted({c.round for c in clicks}):
        so_far = tuple(c for c in clicks if c.round <= index)
        prompts = add_clicks(initial, so_far, previous_mask=current.segmentation.mask)
        current = Round(index, prompts, session.segment(prompts), so_far)
    return Round(round_index, current.prompts, current.segmentation, current.clicks)


def clicks_from_records(records: Sequence[dict[str, Any]]) -> tuple[Click, ...]:
    """Rebuild clicks from their recorded form (``Click.as_record``), in recorded order."""
    try:
        return tuple(Click(**{k: int(record[k]) for k in ("round", "z", "x", "y", "label")}) for record in records)
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"recorded clicks are malformed ({exc}); expected round, z, x, y, label") from exc


def _emit(current: Round, on_round: Callable[[Round], None] | None) -> Iterator[Round]:
    if on_round is not None:
        on_round(current)
    yield current
