"""The segmenter interface: a model prepares a volume once, then segments it under any number of prompt sets.

A :class:`Segmenter` owns a model (or none, for weight-free baselines). ``prepare(volume)`` returns a
:class:`Session` that holds everything computed from the image alone (preprocessed slices, image-encoder
features), so that an ablation over K prompt strategies and seeds, or a round of corrective clicks, pays for the
image encoder once per volume. Segmenters never read files: they take a :class:`~zeroshot.volume.Volume` and
:class:`~zeroshot.prompts.VolumePrompts` and return a :class:`Segmentation` on the input grid.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from zeroshot.prompts.types import VolumePrompts
from zeroshot.volume import Volume

if TYPE_CHECKING:  # SciPy is imported by whoever makes a PostProcessing, not by every reader of this interface
    from zeroshot.segmenters.postprocess import PostProcessing

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
    postprocessing : PostProcessing or None
        Post-processing still to apply to ``mask`` (``None``: ``mask`` is final). Only a session asked to defer
        it returns one (``zeroshot eval`` does, to run it off the model's thread); :meth:`finished` applies it.
    """

    mask: np.ndarray
    probabilities: np.ndarray | None = None
    info: Mapping[str, Any] = field(default_factory=dict)
    postprocessing: PostProcessing | None = None

    def finished(self) -> Segmentation:
        """The segmentation with its pending post-processing applied (itself when there is none).

        The mask becomes the one the session would have returned without deferring; ``info`` gains the entries
        the steps record (``z_extent_voxels_cleared`` for a z-extent); probabilities are unchanged (they are
        taken before post-processing).
        """
        if self.postprocessing is None:
            return self
        done = self.postprocessing.apply(self.mask)
        extra = done.info()
        info = {**self.info, **extra} if extra else self.info
        return replace(self, mask=done.mask, info=info, postprocessing=None)


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
