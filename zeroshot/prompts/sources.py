"""Prompt sources: the ground truth, a coarse mask from elsewhere, or a deliberately degraded ground truth.

:func:`degrade_mask` is pure (arrays in, arrays out, seeded). :func:`read_coarse_mask` and
:func:`read_source_mask` are the only functions of :mod:`zeroshot.prompts` that read files.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from zeroshot.datasets import Case
from zeroshot.distance_ties import nearest_voxels
from zeroshot.errors import ConfigError, PromptError, ZeroshotError
from zeroshot.prompts.regions import (
    bounding_slices,
    distance_from_region_mm,
    distance_to_boundary_mm,
    largest_component,
)
from zeroshot.prompts.settings import Strategy
from zeroshot.volume import Volume, read_label, read_label_values

__all__ = [
    "CaseMasks",
    "check_source_label",
    "degrade_mask",
    "find_coarse_file",
    "mask_volume_ml",
    "read_coarse_mask",
    "read_gt_mask",
    "read_source_mask",
]

_NIFTI = (".nii.gz", ".nii")


def mask_volume_ml(mask: np.ndarray, spacing_mm: tuple[float, float, float]) -> float:
    """Volume of a ``(Z, Y, X)`` mask in ml (1 ml = 1000 mm³)."""
    block = bounding_slices(mask)
    voxels = 0 if block is None else np.count_nonzero(mask[block])
    return float(voxels) * math.prod(spacing_mm) / 1000.0


def degrade_mask(
    mask: np.ndarray,
    spacing_mm: tuple[float, float, float],
    *,
    margin_mm: float = 0.0,
    shift_mm: tuple[float, float, float] = (0.0, 0.0, 0.0),
    drop_fraction: float = 0.0,
    largest_component_only: bool = False,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Degrade a ``(Z, Y, X)`` mask the way an imperfect coarse segmentation would be, in this order.

    1. Grow (``margin_mm > 0``) by every voxel within ``margin_mm`` of the mask, or shrink (``< 0``) to the voxels
       deeper than ``-margin_mm`` (distances between voxel centres, in mm, on the anisotropic grid; the volume's
       edge counts as background).
    2. Shift by ``shift_mm`` along ``(z, y, x)``, rounded to the nearest whole voxels (halves away from zero,
       :func:`zeroshot.distance_ties.nearest_voxels`); what leaves the volume is lost.
    3. Empty ``round(drop_fraction * n)`` of the ``n`` slices that hold the structure, chosen with ``rng``.
    4. Keep only the largest 3D connected component (26-connectivity) if ``largest_component_only``.

    Parameters
    ----------
    mask : (Z, Y, X) bool array
    spacing_mm : (float, float, float)
        Voxel size in ``(z, y, x)`` order.
    margin_mm, shift_mm, drop_fraction, largest_component_only
        As above.
    rng : numpy.random.Generator or None
        Needed when ``drop_fraction > 0``.

    Returns
    -------
    mask : (Z, Y, X) bool array
        The degraded mask (possibly empty).
    info : dict
        ``margin_mm``, ``shift_voxels``, ``dropped_slices`` and the ``voxels`` before and after, JSON-ready.

    Raises
    ------
    PromptError
        If ``drop_fraction`` is outside ``[0, 1]``, or positive without ``rng``.
    """
    if not 0.0 <= drop_fraction <= 1.0:
        raise PromptError(f"drop_fraction must be within [0, 1], got {drop_fraction}")
    if drop_fraction > 0 and rng is None:
        raise PromptError("drop_fraction > 0 needs a random generator (rng) to choose the slices")
    before = int(np.count_nonzero(mask))
    out = _grow_or_shrink(mask, spacing_mm, margin_mm)
    shift_voxels = [nearest_voxels(s, d) for s, d in zip(shift_mm, spacing_mm, strict=True)]
    if any(shift_voxels):
        out = _shift(out, shift_voxels)
    dropped: list[int] = []
    if drop_fraction > 0:
        present = np.flatnonzero(out.reshape(out.shape[0], -1).any(axis=1))
        count = math.floor(drop_fraction * present.size + 0.5)
        dropped = sorted(int(z) for z in rng.choice(present, size=count, replace=False))  # type: ignore[union-attr]
        out[dropped] = False
    if largest_component_only:
        out = largest_component(out)
    info = {
        "margin_mm": float(margin_mm),
        "shift_voxels": shift_voxels,
        "dropped_slices": dropped,
        "largest_component": bool(largest_component_only),
        "voxels_before": before,
        "voxels_after": int(np.count_nonzero(out)),
    }
    return out, info


def find_coarse_file(folder: str | Path, case: Case) -> Path:
    """Find the coarse mask file of ``case`` in ``folder``.

    ``<folder>/<sequence>/<case_id>.nii[.gz]`` if present, else ``<folder>/<case_id>.nii[.gz]`` (the way nnU-Net
    and most tools name predictions).

    Raises
    ------
    PromptError
        If the folder does not exist or holds no file for the case (the message lists the names tried), or
        holds both ``<case_id>.nii`` and ``<case_id>.nii.gz``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise PromptError(f"{folder}: coarse mask folder not found")
    tried = []
    for base in (folder / case.sequence, folder):
        found = [base / f"{case.case_id}{ext}" for ext in _NIFTI if (base / f"{case.case_id}{ext}").is_file()]
        if len(found) > 1:
            raise PromptError(
                f"case {case.key}: {base} holds two coarse masks ({found[0].name}, {found[1].name}); keep one"
            )
        if found:
            return found[0]
        tried += [base / f"{case.case_id}{ext}" for ext in _NIFTI]
    names = ", ".join(str(p) for p in tried)
    raise PromptError(f"case {case.key}: no coarse mask found (tried {names})")


def read_coarse_mask(folder: str | Path, case: Case, volume: Volume, *, label: int) -> np.ndarray:
    """Read the coarse mask of ``case`` from ``folder`` as a ``(Z, Y, X)`` bool array on ``volume``'s grid.

    ``label`` is the structure's value in the coarse file (the run's label). A *binary* file (one foreground
    value, as a supervised model's 0/1 prediction is) is that structure's mask whatever its value, since it holds
    nothing else; a multi-label file is read at ``label``, and one that lacks ``label`` is an error naming the
    values it holds. A file holding only background is returned empty, and the strategy's ``on_empty`` policy
    decides what happens to it.

    Raises
    ------
    PromptError
        If no file is found (see :func:`find_coarse_file`).
    VolumeError
        If the file is unreadable, not on the image's grid, not a label map, or lacks ``label`` among others.
    """
    path = find_coarse_file(folder, case)
    foreground = [value for value in read_label_values(path) if value != 0]
    value = foreground[0] if len(foreground) == 1 else label
    return read_label(path, volume, label=value, require_label=False)


def check_source_label(strategy: Strategy, label: int) -> None:
    """Refuse a strategy whose own ``source.label`` names another structure than the run's ``label``.

    Raises
    ------
    ConfigError
        ``strategy.source.label`` is set and differs from ``label``.
    """
    own = strategy.source.label
    if own is not None and own != label:
        raise ConfigError(
            f"strategy {strategy.name!r}: source.label {own} differs from the run's label {label}; the structure is "
            "chosen once per run (--label): remove source.label from the strategy, or run with --label "
            f"{own}"
        )


def read_source_mask(
    strategy: Strategy, case: Case, volume: Volume, *, label: int, coarse_dir: str | Path | None = None
) -> np.ndarray:
    """Read the mask a strategy prompts from: the case's label (``gt``, ``degraded``) or its coarse mask.

    ``label`` is the run's structure: its value in the label files and in the coarse files alike.

    Raises
    ------
    ConfigError
        If the strategy's own ``source.label`` differs from ``label`` (:func:`check_source_label`).
    PromptError
        If the case has no label, or a coarse strategy is given no ``coarse_dir`` or finds no file there.
    VolumeError
        If the file cannot be read on the image's grid, or lacks ``label`` (see :func:`read_coarse_mask`).
    """
    check_source_label(strategy, label)
    if strategy.source.kind == "coarse":
        if coarse_dir is None:
            raise PromptError(
                f"strategy {strategy.name!r} prompts from coarse masks: give their folder (coarse_dir, --coarse)"
            )
        return read_coarse_mask(coarse_dir, case, volume, label=label)
    return read_gt_mask(case, volume, label=label)


def read_gt_mask(case: Case, volume: Volume, *, label: int) -> np.ndarray:
    """Read the case's label file as a ``(Z, Y, X)`` bool mask of value ``label`` (empty for a background-only file).

    Raises
    ------
    PromptError
        If the case has no label file.
    VolumeError
        If the file lacks ``label`` among other structures (see :func:`zeroshot.volume.read_label`).
    """
    if case.label is None:
        raise PromptError(f"case {case.key}: has no label file, so prompts cannot come from the ground truth")
    return read_label(case.label, volume, label=label, require_label=False)


def _grow_or_shrink(mask: np.ndarray, spacing_mm: tuple[float, float, float], margin_mm: float) -> np.ndarray:
    if margin_mm == 0 or not mask.any():
        return mask.copy()
    out = np.zeros_like(mask)
    if margin_mm > 0:
        reach = tuple(int(np.ceil(margin_mm / s)) + 1 for s in spacing_mm)
        block = bounding_slices(mask, margin=reach)
        out[block] = distance_from_region_mm(mask[block], spacing_mm) <= margin_mm
    else:
        block = bounding_slices(mask)
        out[block] = distance_to_boundary_mm(mask[block], spacing_mm) > -margin_mm
    return out


def _shift(mask: np.ndarray, shift_voxels: list[int]) -> np.ndarray:
    out = np.zeros_like(mask)
    source, target = [], []
    for offset, size in zip(shift_voxels, mask.shape, strict=True):
        if abs(offset) >= size:
            return out
        source.append(slice(max(-offset, 0), size - max(offset, 0)))
        target.append(slice(max(offset, 0), size - max(-offset, 0)))
    out[tuple(target)] = mask[tuple(source)]
    return out


class CaseMasks:
    """The masks one case's prompts come from, each read once: its ground truth and its coarse mask.

    Every strategy and seed of the case shares them; a mask that cannot be read raises its error again for every
    prompt set that needs it, and a prompt set that needs neither never reads them.

    Parameters
    ----------
    case : Case
    volume : Volume
        The case's image (the masks must lie on its grid).
    label : int
        The run's structure: its value in the label and coarse files.
    coarse_dir : path, optional
        The folder of coarse masks (strategies whose source is ``coarse``).
    gt : (Z, Y, X) bool array, optional
        The ground truth when the caller has read it already.
    """

    def __init__(
        self,
        case: Case,
        volume: Volume,
        *,
        label: int,
        coarse_dir: str | Path | None = None,
        gt: np.ndarray | None = None,
    ) -> None:
        self.case, self.volume, self.label, self.coarse_dir = case, volume, label, coarse_dir
        self._read: dict[str, np.ndarray | Exception] = {} if gt is None else {"gt": gt}

    def gt(self) -> np.ndarray:
        """The ground truth (:func:`read_gt_mask`)."""
        return self._once("gt", lambda: read_gt_mask(self.case, self.volume, label=self.label))

    def source(self, strategy: Strategy) -> np.ndarray:
        """The mask ``strategy`` prompts from: the coarse mask for a ``coarse`` source, else the ground truth."""
        if strategy.source.kind != "coarse":
            return self.gt()
        return self._once(
            "coarse",
            lambda: read_source_mask(strategy, self.case, self.volume, label=self.label, coarse_dir=self.coarse_dir),
        )

    def _once(self, name: str, read: Callable[[], np.ndarray]) -> np.ndarray:
        if name not in self._read:
            try:
                self._read[name] = read()
            except ZeroshotError as exc:
                self._read[name] = exc
        found = self._read[name]
        if isinstance(found, Exception):
            raise found
        return found
