"""The click loop: round 0 from a strategy's prompts, then rounds of simulated clicks, each re-segmented.

Each round compares the current 3D prediction with the ground truth, lets the protocol choose its clicks
(:func:`~zeroshot.interactive.choose.choose_clicks`) from the round's own seeded stream
(:func:`~zeroshot.interactive.settings.click_rng` of the prompts' seed and case), and re-segments from the initial
prompts plus every click so far, on the existing session: the image encoder runs once per volume.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from zeroshot.interactive.choose import choose_clicks
from zeroshot.interactive.clicks import Click, add_clicks
from zeroshot.interactive.settings import ClickSettings, click_rng
from zeroshot.prompts import VolumePrompts
from zeroshot.segmenters.base import Segmentation, Session

__all__ = ["Round", "next_round", "replay", "simulate"]


@dataclass(frozen=True, eq=False)
class Round:
    """The state after ``round`` rounds of clicks (round 0: the initial prompts alone)."""

    round: int
    prompts: VolumePrompts
    segmentation: Segmentation
    clicks: tuple[Click, ...]


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
        Resume after this round (e.g. rebuilt by :func:`replay` from recorded clicks); earlier rounds are not yielded.
    on_round : callable or None
        Called with each round as soon as it is computed (e.g. to write its row atomically).

    Notes
    -----
    Round r draws from ``click_rng(initial.seed, initial.case_id, r)`` whatever came before it, so a resumed curve
    chooses what the uninterrupted one chose. When a round finds nothing to correct the prediction is final: later
    rounds repeat it (the curve stays flat) without calling the segmenter again.
    """
    if start is None:
        current = Round(0, initial, session.segment(initial), ())
        yield from _emit(current, on_round)
    else:
        current = start
    while current.round < settings.rounds:
        following = next_round(current, gt, initial, session.volume.spacing_mm, settings=settings)
        if not isinstance(following, Round):
            index, prompts, clicks = following
            following = Round(index, prompts, session.segment(prompts), clicks)
        current = following
        yield from _emit(current, on_round)


def next_round(
    current: Round,
    gt: np.ndarray,
    initial: VolumePrompts,
    spacing: tuple[float, float, float],
    *,
    settings: ClickSettings,
) -> Round | tuple[int, VolumePrompts, tuple[Click, ...]]:
    """The round after ``current``: a finished :class:`Round`, or ``(round, prompts, clicks)`` still to segment.

    A round with nothing to correct repeats the prediction (no segmentation); one with clicks needs one.

    Both :func:`simulate` and a caller that segments the rounds of several curves in one call (the runner's
    batched prompt sets) step curves with it, so their clicks are the same.
    """
    index = current.round + 1
    new = choose_clicks(
        gt,
        current.segmentation.mask,
        spacing,
        settings=settings,
        round_index=index,
        key_slices=initial.key_slices,
        rng=click_rng(initial.seed, initial.case_id, index),
    )
    if not new:
        return Round(index, current.prompts, current.segmentation, current.clicks)
    clicks = (*current.clicks, *new)
    previous = current.segmentation.mask if settings.feed_mask else None
    return index, add_clicks(initial, clicks, previous_mask=previous), clicks


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


def _emit(current: Round, on_round: Callable[[Round], None] | None) -> Iterator[Round]:
    if on_round is not None:
        on_round(current)
    yield current
