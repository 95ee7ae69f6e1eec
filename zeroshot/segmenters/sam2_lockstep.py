"""Lockstep propagation: several independent SAM2 memory streams through one or more volumes, batched step by step.

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

Streams of different volumes (same image size, any slice counts) share the steps the same way: each stream reads
its own volume's features (:class:`~zeroshot.segmenters.sam2_state.FeatureCache`, one per volume) and its own
memories, and its object pointers are encoded on its own volume's temporal scale, so its logits are those of its
volume propagated alone (:func:`~zeroshot.segmenters.sam2_session.segment_volumes` is the session-level entry).

Memories live in per-slot banks (stream ``s`` keeps slice ``z`` in slot ``slot_bases(streams)[s] + z``, i.e.
``s * num_slices + z`` for one volume): memory features in bfloat16 (as SAM2's predictor stores them), object
pointers and low-resolution logits in float32.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from zeroshot.segmenters.sam2_lean_step import LeanStep
from zeroshot.segmenters.sam2_lockstep_plan import LockstepGroup, MemoryRules, Stream, plan_lockstep, slot_bases

__all__ = ["run_lockstep"]


@dataclass(frozen=True)
class _GroupIndices:
    """A group's index tensors on the compute device, the state's storage device and (slices) the host.

    ``feature_runs`` cuts the group's members into runs of the same volume: ``(volume, slices on the compute
    device, slices on the host)`` each, in member order (one run when a single volume propagates).
    """

    size: int
    memories: int
    pointers: int
    feature_runs: tuple[tuple[int, torch.Tensor, torch.Tensor], ...]
    out_slots: torch.Tensor
    out_slots_storage: torch.Tensor
    memory_slots: torch.Tensor
    memory_tpos: torch.Tensor
    pointer_slots: torch.Tensor
    pointer_rows: torch.Tensor


def _upload(
    plan: list[list[LockstepGroup]],
    pointer_row: Callable[[int, int], int],
    *,
    device: torch.device,
    storage: torch.device,
) -> list[list[_GroupIndices]]:
    """All index tensors of the plan, sent to the device in one transfer and cut into per-group views.

    ``pointer_row(num_slices, distance)`` is the row of the pointer encoding table for a stream's volume.
    """
    flat: list[int] = []
    starts = []
    for groups in plan:
        for g in groups:
            starts.append(len(flat))
            flat += g.slices
            flat += g.out_slots
            for rows in (g.memory_slots, g.memory_tpos, g.pointer_slots):
                flat += [v for row in rows for v in row]
            flat += [pointer_row(n, d) for n, row in zip(g.num_slices, g.pointer_distance, strict=True) for d in row]
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
            # the order written above: slices, output slots, memory slots, memory tpos, pointer slots, table rows
            sizes = (b, b, b * m, b * m, b * p, b * p)
            offsets = [start]
            for size in sizes:
                offsets.append(offsets[-1] + size)
            runs = []
            first = 0
            for member in range(1, b + 1):
                if member == b or g.volumes[member] != g.volumes[first]:
                    lo, hi = offsets[0] + first, offsets[0] + member
                    runs.append((g.volumes[first], on_device[lo:hi], host[lo:hi]))
                    first = member
            step_groups.append(
                _GroupIndices(
                    size=b,
                    memories=m,
                    pointers=p,
                    feature_runs=tuple(runs),
                    out_slots=on_device[offsets[1] : offsets[2]],
                    out_slots_storage=on_storage[offsets[1] : offsets[2]],
                    memory_slots=on_storage[offsets[2] : offsets[3]],
                    memory_tpos=on_device[offsets[3] : offsets[4]],
                    pointer_slots=on_device[offsets[4] : offsets[5]],
                    pointer_rows=on_device[offsets[5] : offsets[6]],
                )
            )
        out.append(step_groups)
    return out


def run_lockstep(
    model: Any,
    caches: Sequence[Any],
    streams: Sequence[Stream],
    cond_outputs: Sequence[Mapping[int, Mapping[str, Any]]],
    *,
    device: torch.device,
    storage_device: torch.device,
) -> torch.Tensor:
    """Propagate ``streams`` through their volumes in lockstep; return their low-resolution logits.

    Parameters
    ----------
    model : SAM2Base
        In evaluation mode; called under the caller's ``inference_mode`` and autocast.
    caches : sequence of FeatureCache
        Complete image features of each volume (``Stream.volume`` indexes it), all at the same image size.
    streams : sequence of Stream
    cond_outputs : sequence of mappings
        For each stream, SAM2's outputs of its conditioning slices (``output_dict["cond_frame_outputs"]`` after
        ``propagate_in_video_preflight``): ``maskmem_features``, ``maskmem_pos_enc``, ``obj_ptr``,
        ``pred_masks``.
    device, storage_device : torch.device
        Compute device, and where the memory banks live (host memory when offloading the state).

    Returns
    -------
    (sum of the streams' ``num_slices``, S/4, S/4) float32 tensor on ``storage_device``
        Row ``slot_bases(streams)[s] + z`` holds stream ``s``'s logits of slice ``z`` (for the streams of one
        volume of N slices, ``s * N + z``; rows of slices a stream did not visit are undefined).
    """
    rules = MemoryRules.of(model)
    plan = plan_lockstep(streams, rules)

    first = next(iter(cond_outputs[0].values()))
    mem_dim = int(first["maskmem_features"].shape[1])
    height, width = (int(v) for v in first["maskmem_features"].shape[-2:])
    logit_size = tuple(int(v) for v in first["pred_masks"].shape[-2:])
    hidden = int(model.hidden_dim)
    pointer_pos_table, pointer_row = _pointer_pos_table(
        model, sorted({s.num_slices for s in streams}), rules, hidden, mem_dim, device
    )
    indices = _upload(plan, pointer_row, device=device, storage=storage_device)
    slots = sum(s.num_slices for s in streams)
    memory_bank = torch.empty((slots, height * width, mem_dim), dtype=torch.bfloat16, device=storage_device)
    pointer_bank = torch.empty((slots, hidden), dtype=torch.float32, device=device)
    logits = torch.empty((slots, *logit_size), dtype=torch.float32, device=storage_device)
    for base, outputs in zip(slot_bases(streams), cond_outputs, strict=True):
        for z, out in outputs.items():
            slot = base + z
            feats = out["maskmem_features"].to(torch.bfloat16)
            memory_bank[slot].copy_(feats[0].flatten(1).transpose(0, 1))
            pointer_bank[slot].copy_(out["obj_ptr"][0])
            logits[slot].copy_(out["pred_masks"][0, 0])

    # Spatial positional encoding of a memory plus its temporal encoding, one row per temporal position.
    spatial_pos = first["maskmem_pos_enc"][-1][0].to(device).flatten(1).transpose(0, 1)  # (HW, mem_dim)
    memory_pos_table = spatial_pos[None] + model.maskmem_tpos_enc.reshape(rules.num_maskmem, 1, mem_dim)
    split = hidden // mem_dim if mem_dim < hidden else 1

    feature_levels = int(model.num_feature_levels)
    # The positional encodings do not depend on the image: every volume's cache holds the same ones.
    image_pos = caches[0].pos_enc[-1]
    lean = LeanStep(model, image_pos) if LeanStep.supports(model) else None
    pos_enc = image_pos.flatten(2).permute(2, 0, 1)  # (HW, 1, C), for SAM2's own modules
    # Object pointers split into `split` tokens of mem_dim each; their temporal encodings repeated to match.
    pointer_pos_table = pointer_pos_table.repeat_interleave(split, dim=0).reshape(-1, split * mem_dim)
    for step_groups in indices:
        for g in step_groups:
            b, m, p = g.size, g.memories, g.pointers
            levels = _gather_features(caches, g.feature_runs, device)[-feature_levels:]
            # batch first: (B, M * HW + P * split, mem_dim)
            memory = memory_bank.index_select(0, g.memory_slots).to(device, non_blocking=True)
            memory = memory.reshape(b, m * height * width, mem_dim)
            memory_pos = memory_pos_table.index_select(0, g.memory_tpos).reshape(b, m * height * width, mem_dim)
            if p:
                pointers = pointer_bank.index_select(0, g.pointer_slots).reshape(b, p * split, mem_dim)
                pointer_pos = pointer_pos_table.index_select(0, g.pointer_rows)
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


def _gather_features(
    caches: Sequence[Any], runs: Sequence[tuple[int, torch.Tensor, torch.Tensor]], device: torch.device
) -> list[torch.Tensor]:
    """A group's image features, ``(B, C, H, W)`` per level: each run of members from its volume's cache."""
    parts = [
        caches[volume].gather(slices if caches[volume].storage_device.type == device.type else slices_host)
        for volume, slices, slices_host in runs
    ]
    if len(parts) == 1:
        return parts[0]
    return [torch.cat(level, dim=0) for level in zip(*parts, strict=True)]


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
    model: Any, depths: Sequence[int], rules: MemoryRules, hidden: int, mem_dim: int, device: torch.device
) -> tuple[torch.Tensor, Callable[[int, int], int]]:
    """Temporal encodings of object pointers, one block per volume slice count, and the row of a distance.

    SAM2 scales a pointer's distance by ``t_diff_max = min(N, max_obj_ptrs) - 1`` of its own volume (N slices),
    so volumes of different slice counts need their own rows. Each block covers the distances ``-(N-1) .. N-1``
    and is computed exactly as for that volume alone. Returns the table and ``row(N, distance)``.
    """
    from sam2.modeling.sam2_utils import get_1d_sine_pe

    blocks, starts, total = [], {}, 0
    for num_slices in depths:
        offset = num_slices - 1
        distances = torch.arange(-offset, offset + 1, device=device)
        if model.add_tpos_enc_to_obj_ptrs:
            t_diff_max = max(min(num_slices, rules.max_obj_ptrs) - 1, 1)  # a one-slice volume never reads it
            dim = hidden if model.proj_tpos_enc_in_obj_ptrs else mem_dim
            blocks.append(model.obj_ptr_tpos_proj(get_1d_sine_pe(distances / t_diff_max, dim=dim)))
        else:
            blocks.append(torch.zeros((distances.numel(), mem_dim), device=device))
        starts[num_slices] = total + offset
        total += distances.numel()
    table = blocks[0] if len(blocks) == 1 else torch.cat(blocks)
    return table, lambda num_slices, distance: starts[num_slices] + distance
