"""How a z-extent prompt reaches a model that takes 2D prompts: its prediction is cleared outside the extent.

A strategy with ``prompt.z_extent: true`` (the CVPR 2025 challenge's box: a 2D box on one slice plus the
structure's ``[z_min, z_max]``) records the extent in ``VolumePrompts.details["z_extent"]``. SAM2-style video
models take boxes and points per slice only, so the runner wraps every session in :class:`ZExtentSession`: each
segmentation is cleared outside the extent (mask and probabilities), before it is scored or clicked on, and the
cleared slab is recorded in its ``info``. From the ground truth the extent is an oracle (``oracle_gt_z_range``). A
model that takes 3D boxes would read the same ``details["z_extent"]`` itself; clearing afterwards then changes
nothing it predicted inside the extent. A segmentation whose post-processing is deferred (``zeroshot eval`` runs
it in its scoring workers) is cleared when that runs, after it, as it would have been here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from zeroshot.errors import PromptError
from zeroshot.prompts import VolumePrompts
from zeroshot.segmenters.base import Segmentation
from zeroshot.segmenters.postprocess import PostProcessing, clear_outside_z_extent

__all__ = ["ZExtentSession", "within_z_extent"]


def within_z_extent(segmentation: Segmentation, prompts: VolumePrompts) -> Segmentation:
    """``segmentation`` with every slice outside ``prompts.details["z_extent"]`` cleared (unchanged without one).

    Probabilities are cleared at once. The mask too, unless its post-processing is pending
    (``segmentation.postprocessing``, a session that defers it): clearing then joins the pending steps, after
    them, so that the largest component is still chosen in the whole volume, as when nothing is deferred, and
    ``info["z_extent_voxels_cleared"]`` is counted when the steps run (:meth:`Segmentation.finished`).

    Raises
    ------
    PromptError
        If the recorded extent is not ``[z_min, z_max]`` with ``0 <= z_min <= z_max`` inside the volume.
    """
    extent = prompts.details.get("z_extent")
    if extent is None:
        return segmentation
    depth = segmentation.mask.shape[0]
    if (
        not isinstance(extent, (list, tuple))
        or len(extent) != 2
        or not all(isinstance(z, (int, np.integer)) for z in extent)
        or not 0 <= extent[0] <= extent[1] < depth
    ):
        raise PromptError(
            f"case {prompts.case_id}: z_extent {extent!r} is not [z_min, z_max] within the volume's {depth} slices"
        )
    z_min, z_max = int(extent[0]), int(extent[1])
    probabilities = segmentation.probabilities
    if probabilities is not None:
        probabilities, _ = clear_outside_z_extent(probabilities, z_min, z_max)
    info = {**segmentation.info, "z_extent": [z_min, z_max]}
    pending = segmentation.postprocessing
    cut = dataclasses.replace(
        segmentation,
        probabilities=probabilities,
        info=info,
        postprocessing=(pending or PostProcessing()).within(z_min, z_max),
    )
    return cut if pending is not None else cut.finished()


class ZExtentSession:
    """A session whose segmentations are cleared outside the z-extent their prompts carry (see the module doc)."""

    def __init__(self, session: Any) -> None:
        self.session = session
        if callable(getattr(session, "segment_many", None)):  # batching only where the wrapped session batches
            self.segment_many = self._segment_many

    def __getattr__(self, name: str) -> Any:
        """Anything else (``volume``, a backend's own attributes) is the wrapped session's."""
        return getattr(self.session, name)

    def segment(self, prompts: VolumePrompts) -> Segmentation:
        """The wrapped session's segmentation of ``prompts``, within their z-extent."""
        return within_z_extent(self.session.segment(prompts), prompts)

    def _segment_many(self, prompt_sets: Sequence[VolumePrompts]) -> list[Segmentation]:
        """The wrapped session's ``segment_many`` of ``prompt_sets``, each within its prompts' z-extent."""
        results = self.session.segment_many(prompt_sets)
        return [within_z_extent(result, prompts) for result, prompts in zip(results, prompt_sets, strict=True)]

    def close(self) -> None:
        """Close the wrapped session."""
        self.session.close()
