"""Key-slice rules: which slices of a volume carry the prompt, chosen from the source mask alone."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from zeroshot.errors import PromptError
from zeroshot.prompts.regions import bounding_slices
from zeroshot.prompts.settings import KeySliceSettings

__all__ = ["choose_key_slices", "nearest_slice_with_structure"]


def choose_key_slices(mask: np.ndarray, settings: KeySliceSettings) -> tuple[tuple[int, ...], dict[str, Any]]:
    """Pick the key slices of a ``(Z, Y, X)`` source mask under a rule.

    Parameters
    ----------
    mask : (Z, Y, X) bool array
        The source mask; must hold at least one true voxel.
    settings : KeySliceSettings
        The rule (see :class:`~zeroshot.prompts.strategy.KeySliceSettings` for each rule's definition).

    Returns
    -------
    slices : tuple of int
        Unique slice indices, ascending; each holds part of the structure.
    info : dict
        ``rule``, the source's ``z_extent`` ``[z_min, z_max]`` and the ``targets`` the rule aimed at before a
        target without structure moved to the nearest slice that has some (JSON-ready).

    Raises
    ------
    PromptError
        If ``mask`` is empty, or an explicit index lies outside the volume or on a slice without structure.

    Examples
    --------
    >>> m = np.zeros((10, 4, 4), bool)
    >>> m[2:8, 1:3, 1:3] = True
    >>> choose_key_slices(m, KeySliceSettings(rule="middle"))[0]
    (4,)
    >>> choose_key_slices(m, KeySliceSettings(rule="spread", count=3))[0]
    (2, 4, 6)
    """
    block = bounding_slices(mask)
    if block is None:
        raise PromptError("the source mask is empty: no slice to prompt")
    # Areas counted inside the structure's in-plane bounding box only: the same numbers, a fraction of the work.
    in_plane = mask[:, block[1], block[2]]
    areas = np.count_nonzero(in_plane.reshape(mask.shape[0], -1), axis=1)
    present = np.flatnonzero(areas)
    z_min, z_max = int(present[0]), int(present[-1])
    rule = settings.rule
    if rule == "middle":
        targets = [(z_min + z_max) // 2]
    elif rule == "occupied-median":
        targets = [int(present[len(present) // 2])]
    elif rule == "largest":
        targets = [int(np.argmax(areas))]
    elif rule == "centroid":
        centre = float(np.dot(np.arange(areas.size), areas) / areas.sum())
        targets = [_round_half_down(centre)]
    elif rule == "spread":
        length = z_max - z_min + 1
        targets = [_round_half_down(z_min + (i + 0.5) * length / settings.count - 0.5) for i in range(settings.count)]
    elif rule == "every":
        targets = present.tolist()
    elif rule == "index":
        for z in settings.index:
            if z >= mask.shape[0]:
                raise PromptError(f"key slice {z} is outside the volume's {mask.shape[0]} slices")
            if areas[z] == 0:
                raise PromptError(
                    f"key slice {z} holds no structure in the source mask (it spans slices {z_min}-{z_max})"
                )
        targets = list(settings.index)
    else:  # pragma: no cover - the strategy parser admits only the rules above
        raise PromptError(f"unknown key-slice rule {rule!r}")
    chosen = sorted({nearest_slice_with_structure(present, z) for z in targets})
    info = {"rule": rule, "z_extent": [z_min, z_max], "targets": [int(z) for z in targets]}
    return tuple(chosen), info


def nearest_slice_with_structure(present: np.ndarray, z: int) -> int:
    """The entry of the sorted index array ``present`` nearest to ``z`` (the lower one on ties)."""
    position = int(np.searchsorted(present, z))
    candidates = present[max(position - 1, 0) : position + 1]
    return int(candidates[np.argmin(np.abs(candidates - z))])


def _round_half_down(value: float) -> int:
    """Round to the nearest integer, halves downwards, so that one slice of a ``spread`` rule is ``middle``."""
    return math.ceil(value - 0.5)
