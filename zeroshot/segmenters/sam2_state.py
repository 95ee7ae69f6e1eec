"""The per-volume state that SAM2's video predictor reads and writes, as a typed object owned by a session.

``SAM2VideoPredictor.init_state`` returns an untyped dict of 18 keys and only accepts JPEG folders or mp4 files.
:class:`Sam2InferenceState` declares the same entries as fields (the predictor's methods still index it like a
dict, and an entry it does not declare is a ``KeyError``), takes the slices in memory, and is reset between
prompt sets with the predictor's own ``reset_state``. :class:`FeatureCache` holds the image-encoder output of
every slice, so that propagation never runs the image encoder again.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["FeatureCache", "Sam2InferenceState"]


class FeatureCache:
    """Image-encoder features of every slice of a volume, looked up by slice index.

    Implements the one method (``get``) that ``SAM2VideoPredictor._get_image_feature`` calls on its
    ``cached_features`` entry, and :meth:`gather` for the lockstep engine, which reads the features of several
    slices in one indexing operation. Each feature level is one ``(N, C, H, W)`` tensor on ``storage_device``
    (the compute device, or pinned host memory when offloading), allocated on the first batch; lookups move the
    rows to ``compute_device``. The positional encodings do not depend on the image, so one copy serves every
    slice.

    Parameters
    ----------
    num_slices : int
    compute_device, storage_device : torch.device
    """

    def __init__(self, num_slices: int, *, compute_device: torch.device, storage_device: torch.device) -> None:
        self.num_slices = int(num_slices)
        self.compute_device = torch.device(compute_device)
        self.storage_device = torch.device(storage_device)
        self._levels: list[torch.Tensor] = []
        self._filled = torch.zeros(self.num_slices, dtype=torch.bool)
        self._pos_enc: list[torch.Tensor] | None = None
        # The predictor expands the cached input image to the batch size and then discards it: an empty
        # placeholder saves holding a (3, S, S) image per slice.
        self._image = torch.empty((1, 3, 0, 0), device=self.compute_device)
        self.lookups = 0

    def __len__(self) -> int:
        return int(self._filled.sum())

    def __contains__(self, index: object) -> bool:
        return isinstance(index, int) and 0 <= index < self.num_slices and bool(self._filled[index])

    @property
    def complete(self) -> bool:
        """Whether every slice has its features."""
        return len(self) == self.num_slices

    @property
    def pos_enc(self) -> list[torch.Tensor]:
        """Positional encodings of the feature levels, ``(1, C, H, W)`` each, on the compute device."""
        return list(self._pos_enc or [])

    def add_batch(self, start: int, backbone_out: dict[str, list[torch.Tensor]]) -> None:
        """Store the output of ``SAM2Base.forward_image`` on a batch of consecutive slices from ``start``."""
        fpn = backbone_out["backbone_fpn"]
        if self._pos_enc is None:
            self._pos_enc = [p[:1].to(self.compute_device, copy=True) for p in backbone_out["vision_pos_enc"]]
        if not self._levels:
            pin = self.storage_device.type == "cpu" and self.compute_device.type == "cuda"
            for level in fpn:
                storage = torch.empty(
                    (self.num_slices, *level.shape[1:]), dtype=level.dtype, device=self.storage_device
                )
                self._levels.append(storage.pin_memory() if pin else storage)
        count = fpn[0].shape[0]
        for storage, level in zip(self._levels, fpn, strict=True):
            storage[start : start + count].copy_(level)
        self._filled[start : start + count] = True

    def get(self, index: int, default: Any = None) -> tuple[torch.Tensor, dict[str, list[torch.Tensor]]]:
        """Return ``(placeholder image, backbone_out)`` for slice ``index``, as the predictor expects.

        Raises
        ------
        KeyError
            If the slice was never encoded: the fast engines encode every slice up front, so a miss is a bug
            and must not silently fall back to per-slice encoding.
        """
        if index not in self:
            raise KeyError(f"slice {index} has no cached image features (cache holds {len(self)} slices)")
        self.lookups += 1
        fpn = [level[index : index + 1].to(self.compute_device, non_blocking=True) for level in self._levels]
        return self._image, {"backbone_fpn": fpn, "vision_pos_enc": self.pos_enc}

    def gather(self, indices: torch.Tensor) -> list[torch.Tensor]:
        """Features of the slices ``indices`` (a long tensor on the storage device), ``(B, C, H, W)`` per level.

        The caller guarantees that every slice was encoded (:attr:`complete`); no check here, as a check would
        read the indices back to the host on every propagation step.
        """
        self.lookups += int(indices.shape[0])
        return [level.index_select(0, indices).to(self.compute_device, non_blocking=True) for level in self._levels]

    def nbytes(self) -> int:
        """Bytes held by the cached features (positional encodings included)."""
        total = sum(t.numel() * t.element_size() for t in self._levels)
        return total + sum(t.numel() * t.element_size() for t in self._pos_enc or [])


def _obj_dict() -> OrderedDict:
    return OrderedDict()


@dataclass(eq=False)
class Sam2InferenceState:
    """What ``SAM2VideoPredictor`` keeps about one video (here: one volume), field for field.

    Attributes
    ----------
    images : sequence of (3, S, S) tensors
        The slices as model inputs (read only on a feature-cache miss).
    num_frames, video_height, video_width : int
        Number of slices and the input slice size (Y rows, X columns); outputs are resized to it.
    device, storage_device : torch.device
        Compute device, and where per-slice memories are kept (host memory when offloading the state).
    offload_video_to_cpu, offload_state_to_cpu : bool
        Recorded as the predictor records them.
    cached_features : FeatureCache or dict
        A :class:`FeatureCache` (fast engine) or the predictor's own one-slice dict (reference engine).
    constants, point_inputs_per_obj, mask_inputs_per_obj, obj_id_to_idx, obj_idx_to_id, obj_ids,
    output_dict_per_obj, temp_output_dict_per_obj, frames_tracked_per_obj
        Prompts, outputs and memories per object; cleared by ``predictor.reset_state(state)``.
    """

    images: Sequence[torch.Tensor]
    num_frames: int
    video_height: int
    video_width: int
    device: torch.device
    storage_device: torch.device
    offload_video_to_cpu: bool
    offload_state_to_cpu: bool
    cached_features: Any
    constants: dict[str, Any] = field(default_factory=dict)
    point_inputs_per_obj: dict[int, dict[int, Any]] = field(default_factory=dict)
    mask_inputs_per_obj: dict[int, dict[int, Any]] = field(default_factory=dict)
    obj_id_to_idx: dict[Any, int] = field(default_factory=_obj_dict)
    obj_idx_to_id: dict[int, Any] = field(default_factory=_obj_dict)
    obj_ids: list[Any] = field(default_factory=list)
    output_dict_per_obj: dict[int, dict[str, dict[int, Any]]] = field(default_factory=dict)
    temp_output_dict_per_obj: dict[int, dict[str, dict[int, Any]]] = field(default_factory=dict)
    frames_tracked_per_obj: dict[int, dict[int, Any]] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        if key not in _FIELDS:
            raise KeyError(f"SAM2 inference state has no entry {key!r}; declared: {sorted(_FIELDS)}")
        return getattr(self, key)

    def __setitem__(self, key: str, value: Any) -> None:
        if key not in _FIELDS:
            raise KeyError(f"SAM2 inference state has no entry {key!r}; declared: {sorted(_FIELDS)}")
        setattr(self, key, value)

    def __contains__(self, key: object) -> bool:
        return key in _FIELDS


_FIELDS = frozenset(f.name for f in dataclasses.fields(Sam2InferenceState))
