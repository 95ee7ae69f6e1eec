"""Slice preprocessing for SAM2-family models: MRI intensities in, normalised ``(3, S, S)`` model inputs out.

The default is MedSAM2's MRI recipe, kept in float precision:

1. intensity window = the 0.5th and 99.5th percentiles of the volume's positive voxels (computed once per volume);
2. clip to the window and scale linearly to [0, 1] (MedSAM2 scales to 0–255 and later divides by 255; the
   result is the same number without the 8-bit rounding); voxels that were exactly 0 stay 0;
3. resize each slice to ``S x S`` without keeping the aspect ratio (bicubic with antialiasing by default, like
   Pillow's resize that MedSAM2 and SAM2's JPEG loader use), clamped to [0, 1] as an 8-bit image would be;
4. repeat to three channels and normalise with the ImageNet mean and standard deviation.

MedSAM2 casts to ``uint8`` after step 2 (truncating); ``Preprocessing(quantize_uint8=True)`` reproduces that for
parity studies. Slices are prepared lazily (:class:`SliceStack`), so a volume is never held as an
``(N, 3, S, S)`` float tensor (12.6 MB per slice at S = 1024).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from zeroshot.errors import SegmenterError, plain

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IntensityWindow",
    "Preprocessing",
    "SliceStack",
    "intensity_window",
    "prepare_slices",
    "scale_to_unit",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocessing:
    """How a volume's intensities become model inputs (the model's image size is the segmenter's business).

    Attributes
    ----------
    percentiles : (low, high) floats
        Percentiles (0–100) of the positive voxels that bound the intensity window.
    resize : {"bicubic", "bilinear"}
        In-plane interpolation to the model's square input, with antialiasing (matters when shrinking).
    quantize_uint8 : bool
        Truncate the 0–255 scaled intensities to integers before resizing, as MedSAM2's ``uint8`` cast does.
        Off by default: the model sees the full float precision.
    mean, std : 3 floats each
        Per-channel normalisation applied to the [0, 1] image (ImageNet statistics, as SAM2 was trained with).
    """

    percentiles: tuple[float, float] = (0.5, 99.5)
    resize: Literal["bicubic", "bilinear"] = "bicubic"
    quantize_uint8: bool = False
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        low, high = self.percentiles
        if not 0.0 <= low < high <= 100.0:
            raise SegmenterError(f"percentiles must satisfy 0 <= low < high <= 100, got {plain(self.percentiles)}")
        if self.resize not in ("bicubic", "bilinear"):
            raise SegmenterError(f"resize must be 'bicubic' or 'bilinear', got {self.resize!r}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise SegmenterError(
                f"mean and std need three values each, std positive; got {plain(self.mean)}, {plain(self.std)}"
            )

    def describe(self) -> dict[str, Any]:
        """JSON-serialisable record of the settings."""
        return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}


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


def prepare_slices(
    slices: torch.Tensor, window: IntensityWindow, *, image_size: int, preprocessing: Preprocessing
) -> torch.Tensor:
    """Turn raw slices into normalised model inputs.

    Parameters
    ----------
    slices : (B, Y, X) float tensor
        Raw intensities, on the device that should do the work.
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
    unit = scale_to_unit(slices, window, quantize_uint8=preprocessing.quantize_uint8)[:, None]
    if unit.shape[-2:] != (image_size, image_size):
        # The three channels are identical, so resizing one and broadcasting is the same as resizing three.
        unit = F.interpolate(
            unit, size=(image_size, image_size), mode=preprocessing.resize, align_corners=False, antialias=True
        ).clamp_(0.0, 1.0)
    mean = torch.tensor(preprocessing.mean, dtype=torch.float32, device=unit.device).view(1, 3, 1, 1)
    std = torch.tensor(preprocessing.std, dtype=torch.float32, device=unit.device).view(1, 3, 1, 1)
    return (unit - mean) / std


class SliceStack(Sequence[torch.Tensor]):
    """A volume's slices as model inputs, prepared on demand.

    ``len(stack)`` is the number of slices and ``stack[i]`` the ``(3, S, S)`` input of slice ``i``: exactly what
    SAM2's video predictor reads from its ``images`` entry, so no JPEG round trip, temporary file or 8-bit
    rounding is involved. :meth:`batch` prepares several slices at once for batched encoding.

    Parameters
    ----------
    array : (Z, Y, X) float array
        The volume's intensities (kept by reference, not copied).
    image_size : int
        The model's square input size S.
    preprocessing : Preprocessing
    device : torch.device
        Where the preprocessing runs and the tensors are returned.
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

    def __len__(self) -> int:
        return int(self.array.shape[0])

    def __getitem__(self, index: int) -> torch.Tensor:  # type: ignore[override]
        if not -len(self) <= index < len(self):
            raise IndexError(f"slice {index} is outside the volume's {len(self)} slices")
        index %= len(self)
        return self.batch(index, index + 1)[0]

    def batch(self, start: int, stop: int) -> torch.Tensor:
        """Prepare slices ``start`` to ``stop - 1`` as a ``(B, 3, S, S)`` float32 tensor."""
        raw = torch.from_numpy(np.ascontiguousarray(self.array[start:stop], dtype=np.float32)).to(self.device)
        return prepare_slices(raw, self.window, image_size=self.image_size, preprocessing=self.preprocessing)
