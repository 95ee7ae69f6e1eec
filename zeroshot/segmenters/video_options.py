"""The settings every video backend shares (SAM2 native, transformers SAM2, the SAM3 tracker), validated once.

A video segmenter is a model plus one :class:`VideoOptions`; a session is built from ``(model, options, volume)``
and reads nothing else. Options are frozen: an offloading variant of a segmenter is the same model with
:meth:`VideoOptions.offloaded` options (``with_offload()``), never a mutated copy.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from zeroshot.errors import SegmenterError, plain
from zeroshot.segmenters.hole_filling import check_fill_hole_area
from zeroshot.segmenters.preprocessing import Preprocessing, to_preprocessing
from zeroshot.segmenters.prompt_coords import check_coords
from zeroshot.segmenters.runtime import numerics_for, resolve_device, resolve_precision, uses_tf32

__all__ = ["PROPAGATIONS", "VideoOptions", "video_options"]

#: Propagation policies: ``reset`` (MedSAM2's recipe: a fresh state for the reverse pass) and ``continuous``.
PROPAGATIONS = ("reset", "continuous")


@dataclass(frozen=True)
class VideoOptions:
    """What a video backend needs besides its model; see :func:`video_options` for each field's meaning.

    Attributes
    ----------
    name : str
        Name recorded in results.
    device : torch.device
    precision : {"bfloat16", "float32"}
        Resolved (never ``"auto"``).
    image_size : int
        Model input size S.
    propagation : {"reset", "continuous"}
    coords : {"official", "area"}
    logit_threshold : float
    largest_component, fill_enclosed_holes : bool
        CPU post-processing of the final mask.
    fill_hole_area : int
        SAM2's small-hole filling in low-resolution pixels (0: off).
    preprocessing : Preprocessing
    encoder_batch_size : int
        Slices per image-encoder batch.
    offload_video_to_cpu, offload_state_to_cpu : bool
        Keep image features / per-slice memories in host memory.
    probabilities : bool
        Also return foreground probabilities.
    """

    name: str
    device: torch.device
    precision: str
    image_size: int
    propagation: str
    coords: str
    logit_threshold: float
    largest_component: bool
    fill_hole_area: int
    fill_enclosed_holes: bool
    preprocessing: Preprocessing
    encoder_batch_size: int
    offload_video_to_cpu: bool
    offload_state_to_cpu: bool
    probabilities: bool

    @property
    def offloads_everything(self) -> bool:
        """Whether both image features and per-slice memories already live in host memory."""
        return self.offload_video_to_cpu and self.offload_state_to_cpu

    def offloaded(self) -> VideoOptions:
        """The same options with image features and per-slice memories kept in host memory."""
        return replace(self, offload_video_to_cpu=True, offload_state_to_cpu=True)

    def numerics(self) -> contextlib.AbstractContextManager:
        """The numerics the model runs under (:func:`~zeroshot.segmenters.runtime.numerics_for`)."""
        return numerics_for(self.device, self.precision)

    @property
    def storage_device(self) -> torch.device:
        """Where per-slice memories live: host memory when offloading the state, else the compute device."""
        return torch.device("cpu") if self.offload_state_to_cpu else self.device

    @property
    def union_device(self) -> torch.device:
        """Where a prompt set's union logits ``(Z, Y, X)`` float32 live: with the memories (host when offloading).

        On the compute device they are thresholded there and only a bool mask crosses to the host; an offloading
        variant (the retry after running out of GPU memory) keeps them in host memory, as it keeps the memories.
        """
        return self.storage_device

    @property
    def feature_device(self) -> torch.device:
        """Where cached image features live: host memory when offloading the video, else the compute device."""
        return torch.device("cpu") if self.offload_video_to_cpu else self.device

    def describe(self) -> dict[str, Any]:
        """The options as JSON-serialisable values, for ``Segmenter.describe()``."""
        return {
            "image_size": self.image_size,
            "device": str(self.device),
            "precision": self.precision,
            "tf32": uses_tf32(self.device, self.precision),
            "propagation": self.propagation,
            "coords": self.coords,
            "logit_threshold": self.logit_threshold,
            "largest_component": self.largest_component,
            "fill_hole_area": self.fill_hole_area,
            "fill_enclosed_holes": self.fill_enclosed_holes,
            "preprocessing": self.preprocessing.describe(),
            "encoder_batch_size": self.encoder_batch_size,
            "offload_video_to_cpu": self.offload_video_to_cpu,
            "offload_state_to_cpu": self.offload_state_to_cpu,
        }


def video_options(
    *,
    name: str,
    device: str | torch.device,
    precision: str,
    image_size: int,
    propagation: str,
    coords: str,
    logit_threshold: float,
    largest_component: bool,
    fill_hole_area: int,
    fill_enclosed_holes: bool,
    preprocessing: Preprocessing | str,
    encoder_batch_size: int,
    offload_video_to_cpu: bool,
    offload_state_to_cpu: bool,
    probabilities: bool,
) -> VideoOptions:
    """Validate the shared options of a video segmenter's constructor and resolve device and precision.

    Raises
    ------
    SegmenterError
        For an unknown propagation policy, coordinate mapping, precision or device, a non-finite threshold, a
        negative hole area, or an encoder batch that is not a positive integer; the message names the argument.
    """
    if propagation not in PROPAGATIONS:
        raise SegmenterError(f"propagation must be 'reset' or 'continuous', got {propagation!r}")
    if int(encoder_batch_size) != encoder_batch_size:
        raise SegmenterError(f"encoder_batch_size must be a positive integer, got {plain(encoder_batch_size)}")
    if encoder_batch_size < 1:
        raise SegmenterError(f"encoder_batch_size must be at least 1, got {plain(encoder_batch_size)}")
    if not np.isfinite(logit_threshold):
        raise SegmenterError(f"logit_threshold must be finite, got {plain(logit_threshold)}")
    resolved = device if isinstance(device, torch.device) else resolve_device(device)
    return VideoOptions(
        name=name,
        device=resolved,
        precision=resolve_precision(precision, resolved),
        image_size=int(image_size),
        propagation=propagation,
        coords=check_coords(coords),
        logit_threshold=float(logit_threshold),
        largest_component=bool(largest_component),
        fill_hole_area=check_fill_hole_area(fill_hole_area),
        fill_enclosed_holes=bool(fill_enclosed_holes),
        preprocessing=to_preprocessing(preprocessing),
        encoder_batch_size=int(encoder_batch_size),
        offload_video_to_cpu=bool(offload_video_to_cpu),
        offload_state_to_cpu=bool(offload_state_to_cpu),
        probabilities=bool(probabilities),
    )
