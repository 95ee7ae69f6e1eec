"""The segmenter interface: a model prepares a volume once, then segments it under any number of prompt sets.

A :class:`Segmenter` owns a model (or none, for weight-free baselines). ``prepare(volume)`` returns a
:class:`Session` that holds everything computed from the image alone (preprocessed slices, image-encoder
features), so that an ablation over K prompt strategies and seeds, or a round of corrective clicks, pays for the
image encoder once per volume. Segmenters never read files: they take a :class:`~zeroshot.volume.Volume` and
:class:`~zeroshot.prompts.VolumePrompts` and return a :class:`Segmentation` on the input grid.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from zeroshot.prompts.types import VolumePrompts
from zeroshot.volume import Volume

__all__ = ["Segmentation", "Segmenter", "Session"]


@dataclass(frozen=True, eq=False)
class Segmentation:
    """A segmenter's answer for one volume and one prompt set.

    Attributes
    ----------
    mask : (Z, Y, X) bool array
        The predicted structure on the input grid.
    probabilities : (Z, Y, X) float32 array or None
        Foreground probabilities in [0, 1], where the segmenter produces them.
    info : mapping
        JSON-serialisable facts about how it was made (propagation policy, post-processing, timings, the number
        of image-encoder calls), recorded with the run.
    """

    mask: np.ndarray
    probabilities: np.ndarray | None = None
    info: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class Session(Protocol):
    """A volume prepared for segmentation; reusable for many prompt sets until closed."""

    volume: Volume

    def segment(self, prompts: VolumePrompts) -> Segmentation:
        """Segment the prepared volume under ``prompts``; independent of earlier calls on this session."""
        ...

    def close(self) -> None:
        """Release cached features and device memory."""
        ...


@runtime_checkable
class Segmenter(Protocol):
    """A model (or a weight-free method) that segments volumes from prompts."""

    name: str

    def prepare(self, volume: Volume) -> Session:
        """Preprocess ``volume`` (and, for models, encode its slices) once."""
        ...

    def describe(self) -> Mapping[str, Any]:
        """The resolved configuration (model, checkpoint SHA-256, image size, device, dtype, options)."""
        ...
