"""The ``grabcut`` baseline: OpenCV's GrabCut in the key slice's box, propagated slice by slice.

A weight-free classical method that uses the image and the prompt, and nothing learned: the question a reviewer
asks of a foundation model is how much it adds over this.

On a key slice GrabCut starts from the prompt:

- a box: outside the box is background (``GC_BGD``), inside is probable foreground (``GC_PR_FGD``);
- a mask prompt: the mask is probable foreground, the rest of its region of interest probable background;
- points: each positive point fixes a disk of ``seed_radius_mm`` as foreground (``GC_FGD``), each negative point
  a disk as background (``GC_BGD``). Points alone (no box, no mask) get a box around the positive points grown
  by ``points_margin_mm``.

From each key slice the mask is propagated in both directions: the next slice's box is the bounding box of the
previous slice's mask grown by ``margin_mm`` (in-plane mm, so the same physical margin at every resolution), and
GrabCut starts with the previous mask as probable foreground and the rest of the box as probable background.
Propagation stops where the mask vanishes, at the volume's end, or at the next key slice (whose own prompt takes
over there). The result is the union of all propagations.

A slice whose prompt has only negative points (a corrective click that removes a leak, :mod:`zeroshot.interactive`)
is no key slice: nothing there says where the structure is. Propagation passes through it with those points'
disks fixed as background.

GrabCut sees the slice as 8-bit intensities windowed exactly like the model input (the volume's percentile
window, :func:`~zeroshot.segmenters.preprocessing.intensity_window`), repeated to three channels. It runs on the
box plus ``context_mm`` of surroundings, resampled so that the box's longer side is ``working_size_px``:
OpenCV fixes the weight of GrabCut's smoothness term per pixel link (gamma = 50, tuned for photographs whose
objects span hundreds of pixels), and on a pancreas box of 10–60 pixels that weight wins over the colour models
and GrabCut returns an empty mask on most slices (measured on the phantom). A fixed working size makes the balance
the one GrabCut was designed for, and the result independent of the scan's in-plane resolution. Every call is
seeded (``cv2.setRNGSeed``), so results are deterministic.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import cv2
import numpy as np

from zeroshot.errors import ConfigError, SegmenterError, plain
from zeroshot.prompts.types import POSITIVE, SlicePrompt, VolumePrompts
from zeroshot.segmenters.base import Segmentation
from zeroshot.segmenters.boxfill import bounding_box, disk_mask
from zeroshot.segmenters.preprocessing import intensity_window, window_to_uint8
from zeroshot.volume import Volume

__all__ = ["GrabCutSegmenter", "GrabCutSession", "grabcut_slice", "to_uint8"]

Box = tuple[int, int, int, int]


def to_uint8(array: np.ndarray, *, percentiles: tuple[float, float] = (0.5, 99.5)) -> np.ndarray:
    """Window a volume as the model preprocessing does and quantise it to 8 bits.

    Parameters
    ----------
    array : (Z, Y, X) float array
    percentiles : (low, high)
        Percentiles of the positive voxels that bound the window (0–100).

    Returns
    -------
    (Z, Y, X) uint8 array
        The model's 8-bit levels (:func:`~zeroshot.segmenters.preprocessing.window_to_uint8`: MedSAM2's window
        and ``uint8`` cast); voxels that were 0 stay 0.
    """
    return window_to_uint8(array, intensity_window(array, percentiles=percentiles))


def grabcut_slice(
    image: np.ndarray,
    init: np.ndarray,
    roi: Box,
    *,
    working_size_px: int,
    box_size_px: int,
    iterations: int,
    seed: int,
) -> np.ndarray:
    """Run GrabCut on one slice's region of interest and return the foreground on the slice grid.

    Parameters
    ----------
    image : (Y, X) uint8 array
        The slice.
    init : (Y, X) uint8 array
        OpenCV GrabCut labels (``cv2.GC_BGD``, ``GC_FGD``, ``GC_PR_BGD``, ``GC_PR_FGD``); only ``roi`` is read.
    roi : (x0, y0, x1, y1)
        Inclusive region GrabCut sees; pixels outside it are background in the result.
    working_size_px : int
        The region is resampled by ``working_size_px / box_size_px`` before GrabCut (cubic for the image,
        nearest for the labels) and the result back by area averaging (foreground where at least half).
    box_size_px : int
        Longer side of the prompt box in slice pixels.
    iterations : int
        GrabCut iterations.
    seed : int
        Seed of OpenCV's random generator (GrabCut's k-means initialisation).

    Returns
    -------
    (Y, X) bool array
        Empty if the region has no (probable) foreground; the (probable) foreground unchanged if the region has
        no background sample to model (a box filling the whole slice).
    """
    x0, y0, x1, y1 = roi
    crop = np.ascontiguousarray(image[y0 : y1 + 1, x0 : x1 + 1])
    labels = np.ascontiguousarray(init[y0 : y1 + 1, x0 : x1 + 1])
    height, width = crop.shape
    scale = working_size_px / max(box_size_px, 1)
    size_wh = (max(1, round(width * scale)), max(1, round(height * scale)))
    if size_wh != (width, height):
        crop = cv2.resize(crop, size_wh, interpolation=cv2.INTER_CUBIC)
        labels = cv2.resize(labels, size_wh, interpolation=cv2.INTER_NEAREST)
    out = np.zeros(image.shape, dtype=bool)
    foreground = (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)
    if not foreground.any():
        return out
    if foreground.all():
        # No background sample to model (the box fills the whole slice): the prompt is all there is.
        out[y0 : y1 + 1, x0 : x1 + 1] = (init[y0 : y1 + 1, x0 : x1 + 1] == cv2.GC_FGD) | (
            init[y0 : y1 + 1, x0 : x1 + 1] == cv2.GC_PR_FGD
        )
        return out
    rgb = np.ascontiguousarray(np.repeat(crop[..., None], 3, axis=2))
    background_model = np.zeros((1, 65), dtype=np.float64)
    foreground_model = np.zeros((1, 65), dtype=np.float64)
    cv2.setRNGSeed(int(seed))
    cv2.grabCut(rgb, labels, None, background_model, foreground_model, int(iterations), cv2.GC_INIT_WITH_MASK)
    result = ((labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)).astype(np.float32)
    if size_wh != (width, height):
        result = cv2.resize(result, (width, height), interpolation=cv2.INTER_AREA)
    out[y0 : y1 + 1, x0 : x1 + 1] = result >= 0.5
    return out


@dataclass(frozen=True)
class GrabCutSegmenter:
    """GrabCut from the key-slice prompts, propagated through the volume (see the module docstring).

    All parameters are keyword-only options with defaults, so that ``build_segmenter("grabcut")`` needs none.

    Parameters
    ----------
    margin_mm : float
        In-plane growth of the previous slice's mask box that makes the next slice's box.
    context_mm : float
        Surroundings beyond the box that GrabCut sees (its background colour model comes from them).
    seed_radius_mm : float
        Radius of the disk each point fixes as foreground (positive) or background (negative).
    points_margin_mm : float
        Growth of the positive points' bounding box that makes the box of a points-only prompt.
    working_size_px : int
        Longer side of the box after resampling, in pixels (see the module docstring).
    iterations : int
        GrabCut iterations per slice.
    percentiles : (low, high)
        Intensity window (percentiles of positive voxels), as the model preprocessing.
    seed : int
        Seed of every GrabCut call.
    """

    margin_mm: float = 5.0
    context_mm: float = 5.0
    seed_radius_mm: float = 2.0
    points_margin_mm: float = 15.0
    working_size_px: int = 256
    iterations: int = 3
    percentiles: tuple[float, float] = (0.5, 99.5)
    seed: int = 0
    name: ClassVar[str] = "grabcut"

    def __post_init__(self) -> None:
        for option in ("margin_mm", "context_mm", "seed_radius_mm", "points_margin_mm"):
            value = getattr(self, option)
            if not (np.isfinite(value) and value >= 0):
                raise ConfigError(f"grabcut: {option} must be a non-negative number of mm, got {plain(value)}")
        if int(self.working_size_px) != self.working_size_px or self.working_size_px < 16:
            raise ConfigError(
                f"grabcut: working_size_px must be an integer of at least 16, got {plain(self.working_size_px)}"
            )
        if int(self.iterations) != self.iterations or self.iterations < 1:
            raise ConfigError(f"grabcut: iterations must be a positive integer, got {plain(self.iterations)}")
        low, high = self.percentiles
        if not 0.0 <= low < high <= 100.0:
            raise ConfigError(
                f"grabcut: percentiles must satisfy 0 <= low < high <= 100, got {plain(self.percentiles)}"
            )

    def prepare(self, volume: Volume) -> GrabCutSession:
        """Window and quantise ``volume`` once; see :class:`GrabCutSession`."""
        return GrabCutSession(volume=volume, segmenter=self, image=to_uint8(volume.array, percentiles=self.percentiles))

    def describe(self) -> Mapping[str, Any]:
        """The resolved configuration."""
        return {
            "name": self.name,
            "model": None,
            "opencv_version": cv2.__version__,
            "margin_mm": self.margin_mm,
            "context_mm": self.context_mm,
            "seed_radius_mm": self.seed_radius_mm,
            "points_margin_mm": self.points_margin_mm,
            "working_size_px": self.working_size_px,
            "iterations": self.iterations,
            "percentiles": list(self.percentiles),
            "seed": self.seed,
        }


@dataclass
class GrabCutSession:
    """A volume windowed to 8 bits for :class:`GrabCutSegmenter`; segment it under any number of prompt sets."""

    volume: Volume
    segmenter: GrabCutSegmenter
    image: np.ndarray

    def segment(self, prompts: VolumePrompts) -> Segmentation:
        """Segment the key slices from their prompts and propagate; see the module docstring.

        Raises
        ------
        PromptError
            If a prompt does not fit the volume.
        SegmenterError
            If every prompted slice has only negative points (nothing says where the structure is).
        """
        shape = self.volume.shape
        for prompt in prompts.slices:
            prompt.validate_for(shape)
        anchored = [p for p in prompts.slices if _says_where(p)]
        if not anchored:
            raise SegmenterError(
                f"case {prompts.case_id}: grabcut needs a box, a mask or a positive point on some slice; the prompts "
                f"have only negative points (slices {', '.join(str(p.z) for p in prompts.slices)})"
            )
        background = {p.z: p for p in prompts.slices if not _says_where(p)}
        mask = np.zeros(shape, dtype=bool)
        keys = [p.z for p in anchored]
        calls = 0
        reach: dict[str, list[int]] = {}
        for index, prompt in enumerate(anchored):
            key_mask = self._segment_key_slice(prompt)
            calls += 1
            mask[prompt.z] |= key_mask
            lower = keys[index - 1] if index > 0 else -1
            upper = keys[index + 1] if index + 1 < len(keys) else shape[0]
            last = {}
            for step, stop in ((1, upper), (-1, lower)):
                previous, z = key_mask, prompt.z
                while previous.any() and z + step != stop:
                    z += step
                    previous = self._propagate(z, previous, background.get(z))
                    calls += 1
                    mask[z] |= previous
                last["up" if step == 1 else "down"] = z
            reach[str(prompt.z)] = [last["down"], last["up"]]
        info = {
            "method": "grabcut",
            "key_slices": list(keys),
            "background_seed_slices": sorted(background),
            "reach": reach,
            "grabcut_calls": calls,
            "propagation": "both directions from each key slice until the mask vanishes or the next key slice",
        }
        return Segmentation(mask=mask, probabilities=None, info=info)

    def close(self) -> None:
        """Nothing to release beyond the 8-bit copy, which goes with the session."""

    def _segment_key_slice(self, prompt: SlicePrompt) -> np.ndarray:
        options = self.segmenter
        height, width = self.volume.shape[1:]
        spacing_yx = (self.volume.spacing_mm[1], self.volume.spacing_mm[2])
        init = np.full((height, width), cv2.GC_PR_BGD, dtype=np.uint8)
        positives = [(y, x) for (x, y), label in zip(prompt.points, prompt.labels, strict=True) if label == POSITIVE]
        if prompt.box is not None:
            box = prompt.box
        elif prompt.mask is not None:
            mask_box = bounding_box(prompt.mask)
            if mask_box is None and not positives:
                return np.zeros((height, width), dtype=bool)
            if mask_box is not None:
                box = self._grow(mask_box, options.margin_mm)
            else:
                box = self._grow(_points_box(positives), options.points_margin_mm)
        else:
            box = self._grow(_points_box(positives), options.points_margin_mm)
        x0, y0, x1, y1 = box
        init[:] = cv2.GC_BGD
        if prompt.mask is not None:
            init[y0 : y1 + 1, x0 : x1 + 1] = cv2.GC_PR_BGD
            init[np.asarray(prompt.mask, dtype=bool) & _box_mask((height, width), box)] = cv2.GC_PR_FGD
        else:
            init[y0 : y1 + 1, x0 : x1 + 1] = cv2.GC_PR_FGD
        for (x, y), label in zip(prompt.points, prompt.labels, strict=True):
            disk = disk_mask((height, width), (y, x), radius_mm=options.seed_radius_mm, spacing_yx_mm=spacing_yx)
            init[disk] = cv2.GC_FGD if label == POSITIVE else cv2.GC_BGD
        return self._grabcut(prompt.z, init, box)

    def _propagate(self, z: int, previous: np.ndarray, background: SlicePrompt | None = None) -> np.ndarray:
        box = bounding_box(previous)
        assert box is not None  # the caller stops at an empty mask
        box = self._grow(box, self.segmenter.margin_mm)
        init = np.full(previous.shape, cv2.GC_BGD, dtype=np.uint8)
        x0, y0, x1, y1 = box
        init[y0 : y1 + 1, x0 : x1 + 1] = cv2.GC_PR_BGD
        init[previous] = cv2.GC_PR_FGD
        if background is not None:  # negative points only (see the module docstring)
            spacing_yx = (self.volume.spacing_mm[1], self.volume.spacing_mm[2])
            radius_mm = self.segmenter.seed_radius_mm
            for x, y in background.points:
                init[disk_mask(previous.shape, (y, x), radius_mm=radius_mm, spacing_yx_mm=spacing_yx)] = cv2.GC_BGD
        return self._grabcut(z, init, box)

    def _grabcut(self, z: int, init: np.ndarray, box: Box) -> np.ndarray:
        options = self.segmenter
        roi = self._grow(box, options.context_mm)
        box_size = max(box[2] - box[0] + 1, box[3] - box[1] + 1)
        return grabcut_slice(
            self.image[z],
            init,
            roi,
            working_size_px=options.working_size_px,
            box_size_px=box_size,
            iterations=options.iterations,
            seed=options.seed,
        )

    def _grow(self, box: Box, margin_mm: float) -> Box:
        """Grow an inclusive box by ``margin_mm`` in-plane (whole pixels, rounded up), clipped to the slice."""
        height, width = self.volume.shape[1:]
        grow_y = int(np.ceil(margin_mm / self.volume.spacing_mm[1] - 1e-9))
        grow_x = int(np.ceil(margin_mm / self.volume.spacing_mm[2] - 1e-9))
        x0, y0, x1, y1 = box
        return max(0, x0 - grow_x), max(0, y0 - grow_y), min(width - 1, x1 + grow_x), min(height - 1, y1 + grow_y)


def _says_where(prompt: SlicePrompt) -> bool:
    """Whether a slice prompt says where the structure is (a box, a mask or a positive point): a key slice."""
    return prompt.box is not None or prompt.mask is not None or POSITIVE in prompt.labels


def _points_box(points_yx: list[tuple[int, int]]) -> Box:
    ys = [y for y, _ in points_yx]
    xs = [x for _, x in points_yx]
    return min(xs), min(ys), max(xs), max(ys)


def _box_mask(shape_yx: tuple[int, int], box: Box) -> np.ndarray:
    x0, y0, x1, y1 = box
    inside = np.zeros(shape_yx, dtype=bool)
    inside[y0 : y1 + 1, x0 : x1 + 1] = True
    return inside
