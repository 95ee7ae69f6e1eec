"""Make one case's prompts under a strategy and seed: source, key slices, then a box, points or mask per slice.

Pure: arrays in, a :class:`~zeroshot.prompts.types.VolumePrompts` out. Every random draw comes from a stream
seeded by ``(seed, case id, purpose, slice)``, so the same inputs give the same prompts byte for byte, cases
get independent draws under one seed, and strategies that differ only in a magnitude (jitter 5 % vs 10 %) or
in their other slices draw the same numbers on a shared slice (common random numbers for ablations).
"""

from __future__ import annotations

import dataclasses
import zlib
from typing import Any

import numpy as np

from zeroshot.errors import PromptError, plain
from zeroshot.prompts.boxes import jitter_box
from zeroshot.prompts.keyslices import choose_key_slices
from zeroshot.prompts.points import place_points
from zeroshot.prompts.regions import bounding_slices, count_components, largest_component, tight_box
from zeroshot.prompts.settings import Strategy
from zeroshot.prompts.sources import CaseMasks, degrade_mask, mask_volume_ml
from zeroshot.prompts.types import SlicePrompt, VolumePrompts
from zeroshot.volume import Volume

__all__ = ["LOW_BOX_COVERAGE", "ORACLE_FLAGS", "case_prompts", "make_prompts", "prompt_rng"]

#: A box covering less than this fraction of its slice's structure no longer describes it (a jitter or shift too
#: large for the structure): ``zeroshot eval`` and ``zeroshot prompts`` warn with the number of such prompts.
LOW_BOX_COVERAGE = 0.5

#: The oracle flags every :class:`VolumePrompts` carries (the runner writes them as ``oracle_<flag>`` columns).
#: ``gt_prompt``: a prompt (key slice, box, point or mask) was derived from the ground truth, degraded or not.
#: ``gt_z_range``: prompts sit on every slice holding the ground-truth structure, or carry its z-extent
#: (``z_extent: true``), so they reveal its z-range.
ORACLE_FLAGS = ("gt_prompt", "gt_z_range")

#: Purposes that separate the random streams of one case and seed.
_SOURCE, _BOX, _POINTS = 0, 1, 2
_RNG_RECIPE = "numpy PCG64 from SeedSequence([seed, crc32(case_id), purpose (0 source, 1 box, 2 points), z])"


def prompt_rng(seed: int, case_id: str, purpose: int, z: int = 0) -> np.random.Generator:
    """The random stream for one purpose on one slice of one case (see the module docstring)."""
    entropy = [seed, zlib.crc32(case_id.encode("utf-8")), purpose, z]
    return np.random.default_rng(np.random.SeedSequence(entropy))


def make_prompts(
    strategy: Strategy,
    *,
    case_id: str,
    volume: Volume,
    source_mask: np.ndarray,
    seed: int,
    gt_mask: np.ndarray | None = None,
) -> VolumePrompts:
    """Make the prompts of one case.

    Parameters
    ----------
    strategy : Strategy
        What to make (see :func:`~zeroshot.prompts.strategy.load_strategy`).
    case_id : str
        Recorded, and part of every random stream's seed.
    volume : Volume
        The image: its shape and ``spacing_mm`` (z, y, x) set the grid and every distance in mm.
    source_mask : (Z, Y, X) bool array
        The structure to prompt from: the label for ``gt`` and ``degraded`` sources (degraded here, seeded), the
        coarse mask for ``coarse`` ones.
    seed : int
        Non-negative seed of every random draw.
    gt_mask : (Z, Y, X) bool array or None
        The label, needed only when the strategy falls back to it (``source.on_empty: gt``).

    Returns
    -------
    VolumePrompts
        With ``oracle`` holding every flag of :data:`ORACLE_FLAGS`, and ``details`` recording the strategy's
        digest, the random-stream recipe, the source (volume in ml, degradation, fallback), the key-slice rule's
        targets and, per slice, the tight box, the jitter drawn, ``box_coverage`` (the fraction of the slice's
        structure inside the box used, after jitter; of the largest piece with ``components: largest``) and the
        number of pieces and points.

    Raises
    ------
    PromptError
        A bad seed or mask; a source mask that is empty or smaller than ``source.min_volume_ml`` under
        ``on_empty: fail`` (the message gives the reason); an explicit key slice outside the volume or without
        structure.

    Examples
    --------
    >>> from zeroshot.prompts import strategy_from_dict
    >>> from zeroshot.volume import volume_from_array
    >>> label = np.zeros((5, 6, 8), bool)
    >>> label[1:4, 2:4, 3:7] = True
    >>> box_mid = strategy_from_dict({"prompt": {"type": "box"}}, name="box-mid")
    >>> p = make_prompts(box_mid, case_id="c1", volume=volume_from_array(np.zeros((5, 6, 8))),
    ...                  source_mask=label, seed=0)
    >>> p.slices[0].z, p.slices[0].box, dict(p.oracle)
    (2, (3, 2, 6, 3), {'gt_prompt': True, 'gt_z_range': False})
    """
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise PromptError(f"case {case_id}: seed must be a non-negative integer, got {plain(seed)}")
    seed = int(seed)
    _check_mask(source_mask, volume, case_id, "source_mask")
    mask, used_gt, source = _usable_source(strategy, source_mask, volume, seed, case_id, gt_mask)
    base = {"case_id": case_id, "strategy": strategy.name, "seed": seed}
    details: dict[str, Any] = {"strategy_digest": strategy.digest(), "rng": _RNG_RECIPE, "source": source}
    if mask is None:  # the volume-middle-box fallback: nothing of any mask is used
        depth, height, width = volume.shape
        whole = SlicePrompt(z=depth // 2, box=(0, 0, width - 1, height - 1))
        oracle = dict.fromkeys(ORACLE_FLAGS, False)
        return VolumePrompts(**base, source="volume", slices=(whole,), oracle=oracle, details=details)

    key_slices, details["key_slices"] = choose_key_slices(mask, strategy.key_slices)
    spacing_yx = (volume.spacing_mm[1], volume.spacing_mm[2])
    slices, records = [], []
    for z in key_slices:
        prompt, record = _slice_prompt(strategy, mask[z], z, spacing_yx, seed, case_id)
        prompt.validate_for(volume.shape)
        slices.append(prompt)
        records.append(record)
    details["slices"] = records
    if strategy.z_extent:
        details["z_extent"] = list(details["key_slices"]["z_extent"])
    reveals_range = strategy.key_slices.rule == "every" or strategy.z_extent
    oracle = {"gt_prompt": used_gt, "gt_z_range": used_gt and reveals_range}
    kind = "gt" if used_gt and strategy.source.kind == "coarse" else strategy.source.kind
    return VolumePrompts(**base, source=kind, slices=tuple(slices), oracle=oracle, details=details)


def case_prompts(strategy: Strategy, masks: CaseMasks, seed: int) -> VolumePrompts:
    """The prompts of one case under ``strategy`` and ``seed``, from its masks: the one way they are made.

    ``zeroshot eval`` and ``zeroshot prompts`` both call it. The ground truth is passed only to a strategy that
    falls back to it (``source.on_empty: gt``), and the case's sequence is added to ``details`` (``sequence``),
    since case ids repeat across sequences.
    """
    source = masks.source(strategy)
    fallback = masks.gt() if strategy.source.on_empty == "gt" else None
    prompts = make_prompts(
        strategy, case_id=masks.case.case_id, volume=masks.volume, source_mask=source, seed=seed, gt_mask=fallback
    )
    return dataclasses.replace(prompts, details={**prompts.details, "sequence": masks.case.sequence})


def _usable_source(
    strategy: Strategy,
    source_mask: np.ndarray,
    volume: Volume,
    seed: int,
    case_id: str,
    gt_mask: np.ndarray | None,
) -> tuple[np.ndarray | None, bool, dict[str, Any]]:
    """The mask to prompt from (degraded if asked), after the empty/tiny policy; ``None`` for the whole-slice box.

    Returns the mask, whether it is ground truth, and the record of what happened.
    """
    settings = strategy.source
    spacing = volume.spacing_mm
    mask = source_mask
    record: dict[str, Any] = {"kind": settings.kind}
    if settings.kind == "degraded":
        mask, record["degradation"] = degrade_mask(
            source_mask,
            spacing,
            margin_mm=settings.margin_mm,
            shift_mm=settings.shift_mm,
            drop_fraction=settings.drop_fraction,
            largest_component_only=settings.largest_component,
            rng=prompt_rng(seed, case_id, _SOURCE),
        )
    volume_ml = mask_volume_ml(mask, spacing)
    record["volume_ml"] = round(volume_ml, 4)
    reason = _unusable(volume_ml, settings.min_volume_ml)
    if reason is None:
        return mask, settings.kind in ("gt", "degraded"), record
    record["fallback_reason"] = reason
    record["fallback"] = settings.on_empty
    if settings.on_empty == "fail":
        raise PromptError(
            f"case {case_id}: the {settings.kind} source mask {reason}; strategy {strategy.name!r} fails such "
            "cases (source.on_empty: fail)"
        )
    if settings.on_empty == "volume-middle-box":
        return None, False, record
    if gt_mask is None:
        raise PromptError(
            f"case {case_id}: strategy {strategy.name!r} falls back to the ground truth, but no gt_mask was given"
        )
    _check_mask(gt_mask, volume, case_id, "gt_mask")
    if not gt_mask.any():
        raise PromptError(f"case {case_id}: the ground truth it falls back to is empty too")
    return gt_mask, True, record


def _slice_prompt(
    strategy: Strategy,
    slice_mask: np.ndarray,
    z: int,
    spacing_yx: tuple[float, float],
    seed: int,
    case_id: str,
) -> tuple[SlicePrompt, dict[str, Any]]:
    # Pieces are counted and chosen inside the structure's bounding box: the same answer, far fewer pixels.
    block = bounding_slices(slice_mask)
    pieces = count_components(slice_mask[block])
    scope = slice_mask
    if strategy.components == "largest" and pieces > 1:
        scope = np.zeros_like(slice_mask)
        scope[block] = largest_component(slice_mask[block])
    record: dict[str, Any] = {"z": z, "pieces": pieces}
    box = None
    points: tuple[tuple[int, int], ...] = ()
    labels: tuple[int, ...] = ()
    if strategy.uses_box:
        tight = tight_box(scope)
        rng = prompt_rng(seed, case_id, _BOX, z)
        box, box_record = jitter_box(tight, slice_mask.shape, spacing_yx, strategy.box, rng)
        record.update(box_record)
        x0, y0, x1, y1 = box
        covered = np.count_nonzero(scope[y0 : y1 + 1, x0 : x1 + 1])
        record["box_coverage"] = round(covered / max(np.count_nonzero(scope), 1), 4)
    if strategy.uses_points:
        rng = prompt_rng(seed, case_id, _POINTS, z)
        points, labels, record["points"] = place_points(slice_mask, spacing_yx, strategy.points, rng, scope=scope)
    mask = scope.copy() if strategy.prompt_type == "mask" else None
    return SlicePrompt(z=z, box=box, points=points, labels=labels, mask=mask), record


def _unusable(volume_ml: float, min_volume_ml: float) -> str | None:
    if volume_ml == 0:
        return "is empty"
    if volume_ml < min_volume_ml:
        return f"holds {volume_ml:.4g} ml, less than source.min_volume_ml = {min_volume_ml:g} ml"
    return None


def _check_mask(mask: object, volume: Volume, case_id: str, name: str) -> None:
    if not isinstance(mask, np.ndarray) or mask.dtype != bool:
        dtype = getattr(mask, "dtype", type(mask).__name__)
        raise PromptError(f"case {case_id}: {name} must be a bool array, got {dtype}")
    if mask.shape != volume.shape:
        raise PromptError(f"case {case_id}: {name} has shape {mask.shape}, the volume has {volume.shape}")
