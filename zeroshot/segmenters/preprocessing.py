"""Slice preprocessing for SAM2-family models: MRI intensities in, normalised ``(3, S, S)`` model inputs out.

Three pipelines (``Preprocessing.pipeline``; the segmenters' ``preprocessing`` option). All start with MedSAM2's
MRI intensity step (``examples/infer_CT_LUNA25.py`` lines 92-101 of bowang-lab/MedSAM2 332f30d):

1. intensity window = the 0.5th and 99.5th percentiles of the volume's positive voxels (once per volume);
2. clip to the window and scale linearly to 0-255; voxels that were exactly 0 stay 0.

``"medsam2"`` and ``"sam2"``: the authors' 8-bit path, byte for byte
    3. truncate to ``uint8`` (computed in float64 as MedSAM2 does: :func:`window_to_uint8`);
    4. resize each slice to ``S x S`` with Pillow, ``Image.fromarray(u8).convert("RGB").resize((S, S))``: 8-bit
       bicubic, aspect not kept, rounding to 8 bits between its two passes (:func:`resize_uint8`; Pillow itself);
    5. divide by 255 and normalise with the ImageNet mean and standard deviation, three identical channels, as
       a 256-entry table per channel (:func:`normalisation_table`). The two pipelines differ only here, in the
       last bit of float32: ``"medsam2"`` computes in float64 and rounds once (``medsam2_infer_3D_CT.py`` lines
       245-253: a float64 array minus float32 statistics), ``"sam2"`` rounds to float32 first and normalises in
       float32 (SAM2's frame loader, ``sam2/utils/misc.py`` ``_load_img_as_tensor`` and
       ``load_video_frames_from_jpg_images``, less the JPEG encoding of its frames).
``"float"``: zeroshot's own, in float precision throughout
    3. scale to [0, 1] without rounding (``quantize_uint8=True`` truncates like step 3 above, to isolate its
       effect);
    4. resize with torch on the compute device (bicubic with antialiasing, or bilinear), clamped to [0, 1];
    5. ImageNet normalisation in float32.

Slices are prepared lazily (:class:`SliceStack`), so a volume is never held as an ``(N, 3, S, S)`` float tensor
(12.6 MB per slice at S = 1024).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from zeroshot.errors import SegmenterError, plain

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "PIPELINES",
    "IntensityWindow",
    "Preprocessing",
    "SliceStack",
    "intensity_window",
    "normalisation_table",
    "prepare_slices",
    "resize_uint8",
    "scale_to_unit",
    "to_preprocessing",
    "window_to_uint8",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: The pipelines, the authors' first: MedSAM2's 8-bit path, SAM2's (the same but for float32 rounding), ours.
PIPELINES = ("medsam2", "sam2", "float")
#: Pipelines that go through 8 bits and Pillow.
UINT8_PIPELINES = ("medsam2", "sam2")


@dataclass(frozen=True)
class Preprocessing:
    """How a volume's intensities become model inputs (the model's image size is the segmenter's business).

    Attributes
    ----------
    pipeline : {"medsam2", "sam2", "float"}
        See the module docstring: the authors' 8-bit path with MedSAM2's or SAM2's float arithmetic, or
        zeroshot's float path.
    percentiles : (low, high) floats
        Percentiles (0–100) of the positive voxels that bound the intensity window.
    resize : {"bicubic", "bilinear"}
        In-plane interpolation to the model's square input. The 8-bit pipelines use Pillow's bicubic (only
        ``"bicubic"`` is accepted there); the float pipeline resizes with torch, with antialiasing.
    quantize_uint8 : bool
        Float pipeline only: truncate the 0–255 scaled intensities to integers before resizing, as MedSAM2's
        ``uint8`` cast does (the 8-bit pipelines always do).
    mean, std : 3 floats each
        Per-channel normalisation applied to the [0, 1] image (ImageNet statistics, as SAM2 was trained with).
    """

    pipeline: Literal["medsam2", "sam2", "float"] = "sam2"
    percentiles: tuple[float, float] = (0.5, 99.5)
    resize: Literal["bicubic", "bilinear"] = "bicubic"
    quantize_uint8: bool = False
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        if self.pipeline not in PIPELINES:
            raise SegmenterError(f"pipeline must be one of {', '.join(map(repr, PIPELINES))}; got {self.pipeline!r}")
        low, high = self.percentiles
        if not 0.0 <= low < high <= 100.0:
            raise SegmenterError(f"percentiles must satisfy 0 <= low < high <= 100, got {plain(self.percentiles)}")
        if self.resize not in ("bicubic", "bilinear"):
            raise SegmenterError(f"resize must be 'bicubic' or 'bilinear', got {self.resize!r}")
        if self.pipeline != "float" and (self.resize != "bicubic" or self.quantize_uint8):
            raise SegmenterError(
                f"the {self.pipeline!r} pipeline resizes with Pillow's bicubic and always truncates to uint8; "
                f"resize={self.resize!r} and quantize_uint8={self.quantize_uint8} apply to pipeline='float' only"
            )
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise SegmenterError(
                f"mean and std need three values each, std positive; got {plain(self.mean)}, {plain(self.std)}"
            )

    def describe(self) -> dict[str, Any]:
        """JSON-serialisable record of the settings."""
        return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}


def to_preprocessing(preprocessing: Preprocessing | str) -> Preprocessing:
    """A :class:`Preprocessing` from itself or from a pipeline name (``"medsam2"``, ``"sam2"``, ``"float"``).

    Raises
    ------
    SegmenterError
        For an unknown pipeline name or another type.
    """
    if isinstance(preprocessing, Preprocessing):
        return preprocessing
    if isinstance(preprocessing, str):
        return Preprocessing(pipeline=preprocessing)  # type: ignore[arg-type]
    raise SegmenterError(
        f"preprocessing must be a Preprocessing or one of {', '.join(map(repr, PIPELINES))}; got {preprocessing!r}"
    )


@dataclass(frozen=True)
class IntensityWindow:
    """The intensity range mapped onto [0, 1] for one volume (input units, e.g. scanner values)."""

    low: float
    high: float


def intensity_window(array: np.ndarray, *, percentiles: tuple[float, float] = (0.5, 99.5)) -> IntensityWindow:
    """Percentile window of a volume's positive voxels, as MedSAM2 computes it for MRI.

    Parameters
    ----------
    array : (Z, Y, X) float array
        The volume's intensities.
    percentiles : (low, high)
        Percentiles in 0–100 (linear interpolation between order statistics, NumPy's default).

    Returns
    -------
    IntensityWindow
        Taken over the voxels ``> 0``; over all voxels if none is positive (e.g. a volume shifted to negative
        values), so that every volume gets a window.

    Examples
    --------
    >>> intensity_window(np.array([[[0.0, 1.0, 2.0, 3.0]]]), percentiles=(0.0, 100.0))
    IntensityWindow(low=1.0, high=3.0)
    """
    values = array[array > 0]
    if values.size == 0:
        values = np.asarray(array).ravel()
    low, high = np.percentile(values.astype(np.float64), percentiles)
    return IntensityWindow(low=float(low), high=float(high))


def scale_to_unit(slices: torch.Tensor, window: IntensityWindow, *, quantize_uint8: bool = False) -> torch.Tensor:
    """Clip to ``window`` and scale linearly to [0, 1]; voxels that were exactly 0 stay 0.

    A degenerate window (``high <= low``, e.g. a two-valued image) is the limit of a shrinking window: voxels
    ``>= high`` become 1, the others 0.

    Parameters
    ----------
    slices : (..., Y, X) float tensor
    window : IntensityWindow
    quantize_uint8 : bool
        Truncate ``255 * value`` to an integer (MedSAM2's ``uint8`` cast) before dividing by 255 again.

    Returns
    -------
    (..., Y, X) float32 tensor in [0, 1]
    """
    slices = slices.to(torch.float32)
    if window.high > window.low:
        unit = (slices.clamp(window.low, window.high) - window.low) / (window.high - window.low)
    else:
        unit = (slices >= window.high).to(torch.float32)
    unit = torch.where(slices == 0, torch.zeros_like(unit), unit)
    if quantize_uint8:
        unit = torch.floor(unit * 255.0) / 255.0
    return unit


def window_to_uint8(slices: np.ndarray, window: IntensityWindow) -> np.ndarray:
    """MedSAM2's MRI intensity step and ``uint8`` cast: clip, scale to 0-255 in float64, zeros stay 0, truncate.

    Computed as ``(clip(x, low, high) - low) / (high - low) * 255.0`` in float64, then ``x == 0`` set to 0 and
    cast to ``uint8`` (truncation), in the order of ``examples/infer_CT_LUNA25.py`` lines 92-101 and
    ``medsam2_infer_3D_CT.py`` line 150 (bowang-lab/MedSAM2 332f30d). The clipped volume's minimum and maximum
    that MedSAM2 scales with are the window's ends: its low end is at least one positive voxel and its high end
    at most one. For an integer-typed scan (the usual MR storage, exactly representable in float32) this is
    MedSAM2's arithmetic bit for bit; MedSAM2 on a float32-stored scan would compute in float32.

    A degenerate window (``high <= low``, where MedSAM2 divides by zero) maps voxels ``>= high`` to 255 and the
    others to 0.

    Parameters
    ----------
    slices : (..., Y, X) float array
        Raw intensities.
    window : IntensityWindow

    Returns
    -------
    (..., Y, X) uint8 array

    Examples
    --------
    >>> window_to_uint8(np.array([0.0, 10.0, 14.9, 15.0, 20.0, 99.0]), IntensityWindow(10.0, 20.0)).tolist()
    [0, 0, 124, 127, 255, 255]
    """
    values = np.asarray(slices, dtype=np.float64)
    if window.high > window.low:
        scaled = (np.clip(values, window.low, window.high) - window.low) / (window.high - window.low) * 255.0
    else:
        scaled = np.where(values >= window.high, 255.0, 0.0)
    scaled[values == 0] = 0
    return scaled.astype(np.uint8)


def resize_uint8(slices: np.ndarray, image_size: int) -> np.ndarray:
    """Resize 8-bit slices to ``S x S`` with Pillow's 8-bit bicubic, as MedSAM2 and SAM2's frame loader do.

    The same bytes as ``Image.fromarray(u8).convert("RGB").resize((S, S))`` in each of the three (identical)
    channels, computed on the grey image (a third of the work). Slices are resized in parallel threads (Pillow
    releases the interpreter lock while resampling).

    Parameters
    ----------
    slices : (B, Y, X) uint8 array
    image_size : int

    Returns
    -------
    (B, S, S) uint8 array
    """
    from PIL import Image

    size = (int(image_size), int(image_size))

    def one(index: int) -> np.ndarray:
        return np.asarray(Image.fromarray(slices[index]).resize(size, Image.Resampling.BICUBIC))

    out = np.empty((slices.shape[0], *size), dtype=np.uint8)
    workers = min(slices.shape[0], os.cpu_count() or 1)
    if workers <= 1:
        for index in range(slices.shape[0]):
            out[index] = one(index)
        return out
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for index, resized in enumerate(pool.map(one, range(slices.shape[0]))):
            out[index] = resized
    return out


def normalisation_table(preprocessing: Preprocessing) -> torch.Tensor:
    """The model input of each grey level: ``(level / 255 - mean) / std`` per channel, as a ``(3, 256)`` table.

    ``"medsam2"``: a float64 division by 255, minus the float32 statistics in float64, rounded once to float32
    (MedSAM2's 3D inference keeps the volume in float64 until SAM2 reads a slice as float32). ``"sam2"``: the
    division rounded to float32, then subtraction and division in float32 (SAM2's frame loader).

    Raises
    ------
    SegmenterError
        For the float pipeline, which has no 8-bit levels.
    """
    if preprocessing.pipeline not in UINT8_PIPELINES:
        raise SegmenterError(f"the {preprocessing.pipeline!r} pipeline has no 8-bit normalisation table")
    levels = torch.from_numpy(np.arange(256, dtype=np.uint8) / 255.0).expand(3, 256)  # float64, as NumPy divides
    mean = torch.tensor(preprocessing.mean, dtype=torch.float32)[:, None]
    std = torch.tensor(preprocessing.std, dtype=torch.float32)[:, None]
    if preprocessing.pipeline == "medsam2":
        return ((levels - mean.double()) / std.double()).float()
    return (levels.float() - mean) / std


def prepare_slices(
    slices: torch.Tensor, window: IntensityWindow, *, image_size: int, preprocessing: Preprocessing
) -> torch.Tensor:
    """Turn raw slices into normalised model inputs.

    Parameters
    ----------
    slices : (B, Y, X) float tensor
        Raw intensities. The float pipeline computes on their device; the 8-bit pipelines window and resize on
        the CPU (Pillow) and normalise on their device.
    window : IntensityWindow
        The volume's window (:func:`intensity_window`).
    image_size : int
        The model's square input size S.
    preprocessing : Preprocessing

    Returns
    -------
    (B, 3, S, S) float32 tensor
        On the device of ``slices``.
    """
    if preprocessing.pipeline in UINT8_PIPELINES:
        levels = resize_uint8(window_to_uint8(slices.cpu().numpy(), window), image_size)
        table = normalisation_table(preprocessing).to(slices.device)
        return _lookup(torch.from_numpy(levels).to(slices.device), table)
    unit = scale_to_unit(slices, window, quantize_uint8=preprocessing.quantize_uint8)[:, None]
    if unit.shape[-2:] != (image_size, image_size):
        # The three channels are identical, so resizing one and broadcasting is the same as resizing three.
        unit = F.interpolate(
            unit, size=(image_size, image_size), mode=preprocessing.resize, align_corners=False, antialias=True
        ).clamp_(0.0, 1.0)
    mean = torch.tensor(preprocessing.mean, dtype=torch.float32, device=unit.device).view(1, 3, 1, 1)
    std = torch.tensor(preprocessing.std, dtype=torch.float32, device=unit.device).view(1, 3, 1, 1)
    return (unit - mean) / std


def _lookup(levels: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """``(B, S, S)`` uint8 levels through a ``(3, 256)`` table: ``(B, 3, S, S)`` float32, on the levels' device."""
    return F.embedding(levels.long(), table.t()).permute(0, 3, 1, 2).contiguous()


class SliceStack(Sequence[torch.Tensor]):
    """A volume's slices as model inputs, prepared on demand.

    ``len(stack)`` is the number of slices and ``stack[i]`` the ``(3, S, S)`` input of slice ``i``: exactly what
    SAM2's video predictor reads from its ``images`` entry, so no JPEG round trip or temporary file is involved.
    :meth:`batch` prepares several slices at once for batched encoding.

    Parameters
    ----------
    array : (Z, Y, X) float array
        The volume's intensities (kept by reference, not copied).
    image_size : int
        The model's square input size S.
    preprocessing : Preprocessing
    device : torch.device
        Where the tensors are returned (and the float pipeline computes).
    """

    def __init__(
        self, array: np.ndarray, *, image_size: int, preprocessing: Preprocessing, device: torch.device
    ) -> None:
        if array.ndim != 3:
            raise SegmenterError(f"expected a (z, y, x) volume, got an array of shape {array.shape}")
        self.array = array
        self.image_size = int(image_size)
        self.preprocessing = preprocessing
        self.device = torch.device(device)
        self.window = intensity_window(array, percentiles=preprocessing.percentiles)
        self._table = (
            normalisation_table(preprocessing).to(self.device) if preprocessing.pipeline in UINT8_PIPELINES else None
        )

    def __len__(self) -> int:
        return int(self.array.shape[0])

    def __getitem__(self, index: int) -> torch.Tensor:  # type: ignore[override]
        if not -len(self) <= index < len(self):
            raise IndexError(f"slice {index} is outside the volume's {len(self)} slices")
        index %= len(self)
        return self.batch(index, index + 1)[0]

    def batch(self, start: int, stop: int) -> torch.Tensor:
        """Prepare slices ``start`` to ``stop - 1`` as a ``(B, 3, S, S)`` float32 tensor."""
        if self._table is not None:  # 8 bits on the CPU; only the uint8 slices travel to the device
            levels = resize_uint8(window_to_uint8(self.array[start:stop], self.window), self.image_size)
            return _lookup(torch.from_numpy(levels).to(self.device), self._table)
        raw = torch.from_numpy(np.ascontiguousarray(self.array[start:stop], dtype=np.float32)).to(self.device)
        return prepare_slices(raw, self.window, image_size=self.image_size, preprocessing=self.preprocessing)
