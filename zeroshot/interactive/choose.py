"""One round's clicks under any protocol: the dispatch from :class:`ClickSettings.protocol` to its module."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from zeroshot.errors import ConfigError
from zeroshot.interactive import cvpr25, microsam, radioactive, worst_slice
from zeroshot.interactive.clicks import Click
from zeroshot.interactive.settings import ClickSettings, click_rng

__all__ = ["RULES", "choose_clicks"]

#: Each protocol's rule: ``rule(gt, pred, spacing_mm, *, settings, round_index, key_slices, rng) -> clicks``.
RULES: dict[str, Callable[..., tuple[Click, ...]]] = {
    "zeroshot": worst_slice.choose,
    "cvpr25": cvpr25.choose,
    "microsam": microsam.choose,
    "radioactive": radioactive.choose,
}


def choose_clicks(
    gt: np.ndarray,
    pred: np.ndarray,
    spacing_mm: Sequence[float],
    *,
    settings: ClickSettings,
    round_index: int,
    key_slices: Sequence[int] = (),
    rng: np.random.Generator | None = None,
) -> tuple[Click, ...]:
    """The clicks a simulated user makes in one round, given the ground truth and the current prediction.

    Parameters
    ----------
    gt, pred : (Z, Y, X) bool arrays
    spacing_mm : (z, y, x) voxel size in mm (the ``zeroshot`` protocol measures areas and depths in mm).
    settings : ClickSettings
        Its ``protocol`` picks the rule (:data:`RULES`).
    round_index : int
        The round these clicks belong to (1-based), recorded on each click.
    key_slices : sequence of int
        The prompted slices (``zeroshot`` with ``slice_rule="key-slice"`` clicks only there).
    rng : numpy.random.Generator or None
        The round's random stream (:func:`~zeroshot.interactive.settings.click_rng`); ``None`` uses that of seed
        0, case ``""``. Protocols that draw (``microsam``, ``radioactive``'s sign) draw from it only.

    Returns
    -------
    tuple of Click
        Empty when the protocol has nothing to correct (then the curve stays flat).

    Raises
    ------
    ConfigError
        If ``gt`` and ``pred`` are not 3D arrays of one shape.
    """
    gt = np.asarray(gt, dtype=bool)
    pred = np.asarray(pred, dtype=bool)
    if gt.shape != pred.shape or gt.ndim != 3:
        raise ConfigError(f"clicks: ground truth {gt.shape} and prediction {pred.shape} must be equal 3D shapes")
    rule = RULES[settings.protocol]
    return rule(
        gt,
        pred,
        spacing_mm,
        settings=settings,
        round_index=round_index,
        key_slices=tuple(key_slices),
        rng=rng if rng is not None else click_rng(0, "", round_index),
    )
