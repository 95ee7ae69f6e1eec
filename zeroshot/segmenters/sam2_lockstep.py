"""Lockstep propagation: several independent SAM2 memory streams through one volume, batched step by step.

Under the ``reset`` policy the forward and the reverse pass of a prompt set are independent: each starts from
the same conditioning frames (the key slices) and attends only to its own memories. So are the passes of
different prompt sets on the same volume. A *stream* is one such pass. At step ``i`` every stream processes the
``i``-th slice of its order; streams whose memory bank has the same shape at that step (the same number of
spatial memories and of object pointers) run memory attention, the mask decoder and the memory encoder as one
batch. The forward and the reverse pass of one key slice stay in the same batch until one runs out of slices,
so a volume takes about half as many sequential steps as running the passes one after the other, and K prompt
sets cost about as many steps as one.

This module is the device loop. Three modules share the work:

- :mod:`zeroshot.segmenters.sam2_lockstep_plan`: the host-side schedule (which memories each stream attends
  to at each step, from slice indices only), computed before propagation and sent to the device in one
  transfer, so the loop never waits for the device;
- :mod:`zeroshot.segmenters.sam2_lean_step`: SAM2's tracking step restated on batch-first tensors;
- here: the memory banks and the loop over the schedule's steps.

The conditioning (key) slices and the pass plan come from :class:`~zeroshot.segmenters.sam2_session.Sam2Session`,
which plugs this engine into the shared video core (:mod:`zeroshot.segmenters.video_core`).

Memories live in per-slot banks (slot = ``stream * num_slices + slice``): memory features in bfloat16 (as SAM2's
predictor stores them), object pointers and low-resolution logits in float32.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from zeroshot.segmenters.sam2_lean_step import LeanStep
from zeroshot.segmenters.sam2_lockstep_plan import LockstepGroup, MemoryRules, Stream, plan_lockstep

__all__ = ["run_lockstep"]


@dataclass(frozen=True)
class _GroupIndices:
    """A group's index tensors on the compute device, the state's storage device and (slices) the host."""

    size: int
    memories: int
    pointers: int
    slices: torch.Tensor
    slices_host: torch.Tensor
    out_slots: torch.Tensor
    out_slots_storage: torch.Tensor
    memory_slots: torch.Tensor
    memory_tpos: torch.Tensor
    pointer_slots: torch.Tensor
    pointer_distance: torch.Tensor


def _upload(plan: list[list[LockstepGroup]], num_slices: int, *, device: torch.device, storage: torch.device):
    """All index tensors of the plan, sent to the device in one transfer and cut into per-group views."""
    flat: list[int] = []
    starts = []
    for groups in plan:
        for g in groups:
            starts.append(len(flat))
            flat += g.slices
            flat += [s * num_slices + z for s, z in zip(g.streams, g.slices, strict=True)]
            for rows in (g.memory_slots, g.memory_tpos, g.pointer_slots, g.pointer_distance):
                flat += [v for row in rows for v in row]
    host = torch.tensor(flat, dtype=torch.long)
    on_device = host.to(device, non_blocking=False)
    on_storage = host if storage.type == "cpu" else (on_device if storage == device else host.to(storage))
    out: list[list[_GroupIndices]] = []
    cursor = 0
    for groups in plan:
        step_groups = []
        for g in groups:
            start = starts[cursor]
            cursor += 1
            b, m, p = len(g.streams), len(g.memory_slots[0]), len(g.pointer_slots[0])
            # the order written above: slices, output slots, memory slots, memory tpos, pointer slots, distances
            sizes = (b, b, b * m, b * m, b * p, b * p)
            offsets = [start]
            for size in sizes:
                offsets.append(offsets[-1] + size)
            step_groups.append(
                _GroupIndices(
                    size=b,
                    memories=m,
                    pointers=p,
                    slices=on_device[offsets[0] : offsets[1]],
                    slices_host=host[offsets[0] : offsets[1]],
                    out_slots=on_device[offsets[1] : offsets[2]],
                    out_slots_storage=on_storage[offsets[1] : offsets[2]],
                    memory_slots=on_storage[offsets[2] : offsets[3]],
                    memory_tpos=on_device[offsets[3] : offsets[4]],
                    pointer_slots=on_device[offsets[4] : offsets[5]],
                    pointer_distance=on_device[offsets[5] : offsets[6]],
                )
            )
        out.append(step_groups)
    return out


def run_lockstep(
    model: Any,
    cache: Any,
    streams: Sequence[Stream],
    cond_outputs: Sequence[Mapping[int, Mapping[str, Any]]],
    *,
    num_slices: int,
    device: torch.device,
    storage_device: torch.device,
) -> torch.Tensor:
    """Propagate ``streams`` through the volume in lockstep; return their low-resolution logits.

    Parameters
    ----------
    model : SAM2Base
        In evaluation mode; called under the caller's ``inference_mode`` and autocast.
    cache : FeatureCache
        Complete image features of the volume.
    streams : sequence of Stream
    cond_outputs : sequence of mappings
        For each stream, SAM2's outputs of its conditioning slices (``output_dict["cond_frame_outputs"]`` after
        ``propagate_in_video_preflight``): ``maskmem_features``, ``maskmem_pos_enc``, ``obj_ptr``,
        ``pred_masks``.
    num_slices : int
    device, storage_device : torch.device
        Compute device, and where the memory banks live (host memory when offloading the state).

    Returns
    -------
    (len(streams) * num_slices, S/4, S/4) float32 tensor on ``storage_device``
        Row ``s * num_slices + z`` holds stream ``s``'s logits of slice ``z`` (rows of slices a stream did
        not visit are undefined).
    """
    rules = MemoryRules.of(model)
    plan = plan_lockstep(streams, num_slices, rules)
    indices = _upload(plan, num_slices, device=device, storage=storage_device)

    first = next(iter(cond_outputs[0].values()))
    mem_dim = int(first["maskmem_features"].shape[1])
    height, width = (int(v) for v in first["maskmem_features"].shape[-2:])
    logit_size = tuple(int(v) for v in first["pred_masks"].shape[-2:])
    hidden = int(model.hidden_dim)
    slots = len(streams) * num_slices
    memory_bank = torch.empty((slots, height * width, mem_dim), dtype=torch.bfloat16, device=storage_device)
    pointer_bank = torch.empty((slots, hidden), dtype=torch.float32, device=device)
    logits = torch.empty((slots, *logit_size), dtype=torch.float32, device=storage_device)
    for number, outputs in enumerate(cond_outputs):
        for z, out in outputs.items():
            slot = number * num_slices + z
            feats = out["maskmem_features"].to(torch.bfloat16)
            memory_bank[slot].copy_(feats[0].flatten(1).transpose(0, 1))
            pointer_bank[slot].copy_(out["obj_ptr"][0])
            logits[slot].copy_(out["pred_masks"][0, 0])

    # Spatial positional encoding of a memory plus its temporal encoding, one row per temporal position.
    spatial_pos = first["maskmem_pos_enc"][-1][0].to(device).flatten(1).transpose(0, 1)  # (HW, mem_dim)
    memory_pos_table = spatial_pos[None] + model.maskmem_tpos_enc.reshape(rules.num_maskmem, 1, mem_dim)
    pointer_pos_table, distance_offset = _pointer_pos_table(model, num_slices, rules, hidden, mem_dim, device)
    split = hidden // mem_dim if mem_dim < hidden else 1

    feature_levels = int(model.num_feature_levels)
    lean = LeanStep(model, cache.pos_enc[-1]) if LeanStep.supports(model) else None
    pos_enc = cache.pos_enc[-1].flatten(2).permute(2, 0, 1)  # (HW, 1, C), for SAM2's own modules
    # Object pointers split into `split` tokens of mem_dim each; their temporal encodings repeated to match.
    pointer_pos_table = pointer_pos_table.repeat_interleave(split, dim=0).reshape(-1, split * mem_dim)
    for step_groups in indices:
        for g in step_groups:
            b, m, p = g.size, g.memories, g.pointers
            levels = cache.gather(g.slices if cache.storage_device.type == device.type else g.slices_host)[
                -feature_levels:
            ]
            # batch first: (B, M * HW + P * split, mem_dim)
            memory = memory_bank.index_select(0, g.memory_slots).to(device, non_blocking=True)
            memory = memory.reshape(b, m * height * width, mem_dim)
            memory_pos = memory_pos_table.index_select(0, g.memory_tpos).reshape(b, m * height * width, mem_dim)
            if p:
                pointers = pointer_bank.index_select(0, g.pointer_slots).reshape(b, p * split, mem_dim)
                pointer_pos = pointer_pos_table.index_select(0, g.pointer_distance + distance_offset)
                memory = torch.cat([memory, pointers], dim=1)  # float32, as SAM2's concatenation makes it
                memory_pos = torch.cat([memory_pos, pointer_pos.reshape(b, p * split, mem_dim)], dim=1)
            else:
                memory = memory.float()
            if lean is not None:
                curr = levels[-1].flatten(2).transpose(1, 2)  # (B, HW, C)
                conditioned = lean.memory_attention(curr, memory, memory_pos, m * height * width)
                conditioned = conditioned.transpose(1, 2).reshape(b, hidden, height, width)
                low_res, high_res, obj_ptr, object_score = lean.heads(conditioned, levels[:-1])
                new_memory = lean.encode_memory(levels[-1], high_res, object_score)
            else:
                low_res, obj_ptr, new_memory = _sam2_step(model, levels, memory, memory_pos, pos_enc, p * split)
            new_memory = new_memory.to(torch.bfloat16).flatten(2).transpose(1, 2)
            memory_bank.index_copy_(0, g.out_slots_storage, new_memory.to(storage_device, non_blocking=True))
            pointer_bank.index_copy_(0, g.out_slots, obj_ptr.float())
            logits.index_copy_(0, g.out_slots_storage, low_res[:, 0].float().to(storage_device, non_blocking=True))
    return logits


def _sam2_step(
    model: Any,
    levels: Sequence[torch.Tensor],
    memory: torch.Tensor,
    memory_pos: torch.Tensor,
    pos_enc: torch.Tensor,
    pointer_tokens: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One tracking step of a group through SAM2's own modules (models :class:`LeanStep` does not support).

    ``levels`` are the group's image features (batch first), ``memory``/``memory_pos`` its batch-first memories
    with ``pointer_tokens`` object-pointer tokens at the end, ``pos_enc`` the ``(HW, 1, C)`` image positional
    encoding. Returns the low-resolution logits, object pointers and new memory features.
    """
    batch, hidden, height, width = levels[-1].shape
    top = levels[-1].flatten(2).permute(2, 0, 1)  # (HW, B, C)
    conditioned = model.memory_attention(
        curr=[top],
        curr_pos=[pos_enc.expand(-1, batch, -1)],
        memory=memory.transpose(0, 1),
        memory_pos=memory_pos.transpose(0, 1),
        num_obj_ptr_tokens=pointer_tokens,
    )
    conditioned = conditioned.permute(1, 2, 0).reshape(batch, hidden, height, width)
    _, _, _, low_res, high_res, obj_ptr, object_score = model._forward_sam_heads(
        backbone_features=conditioned,
        point_inputs=None,
        mask_inputs=None,
        high_res_features=levels[:-1] or None,
        multimask_output=model._use_multimask(False, None),
    )
    new_memory, _ = model._encode_new_memory(
        current_vision_feats=[top],
        feat_sizes=[(height, width)],
        pred_masks_high_res=high_res,
        object_score_logits=object_score,
        is_mask_from_pts=False,
    )
    return low_res, obj_ptr, new_memory


def _pointer_pos_table(
    model: Any, num_slices: int, rules: MemoryRules, hidden: int, mem_dim: int, device: torch.device
) -> tuple[torch.Tensor, int]:
    """Temporal encodings of object pointers for every distance ``-(N-1) .. N-1`` and the offset of distance 0."""
    from sam2.modeling.sam2_utils import get_1d_sine_pe

    offset = num_slices - 1
    distances = torch.arange(-offset, offset + 1, device=device)
    if not model.add_tpos_enc_to_obj_ptrs:
        return torch.zeros((distances.numel(), mem_dim), device=device), offset
    t_diff_max = max(min(num_slices, rules.max_obj_ptrs) - 1, 1)  # a one-slice volume never reads it
    dim = hidden if model.proj_tpos_enc_in_obj_ptrs else mem_dim
    return model.obj_ptr_tpos_proj(get_1d_sine_pe(distances / t_diff_max, dim=dim)), offset
