"""Lockstep propagation: several independent SAM2 memory streams through one volume, batched step by step.

Under the ``reset`` policy the forward and the reverse pass of a prompt set are independent: each starts from
the same conditioning frames (the key slices) and attends only to its own memories. So are the passes of
different prompt sets on the same volume. A *stream* is one such pass. At step ``i`` every stream processes the
``i``-th slice of its order; streams whose memory bank has the same shape at that step (the same number of
spatial memories and of object pointers) run memory attention, the mask decoder and the memory encoder as one
batch. The forward and the reverse pass of one key slice stay in the same batch until one runs out of slices,
so a volume takes about half as many sequential steps as running the passes one after the other, and K prompt
sets cost about as many steps as one.

Which memories a stream attends to at a slice depends only on slice indices, never on the data, so the whole
schedule (:func:`plan_lockstep`) is computed on the host before propagation and sent to the device in one
transfer; the loop then never waits for the device. The memory selection is SAM2's (``SAM2Base.
_prepare_memory_conditioned_features`` in evaluation mode), restated over slice indices:

- every selected conditioning frame, temporal position 0 (``select_closest_cond_frames``);
- up to ``num_maskmem - 1`` earlier slices of the stream (``memory_temporal_stride_for_eval`` apart beyond
  the previous slice), temporal position ``num_maskmem - t_rel``; a slice the stream has not produced is skipped;
- object pointers of the selected conditioning frames in the past of the slice, at signed distance, then of up
  to ``max_obj_ptrs_in_encoder - 1`` previous slices of the stream, at distance ``t_diff``.

Each step is SAM2's tracking step restated on batch-first tensors (:class:`_LeanStep`): constants (prompt
embeddings of a slice without prompts, decoder tokens, positional and rotary encodings) are computed once per
call, the cross-attention keys and values of all memory-attention layers come from one projection each, and
only the chosen mask is upsampled, so a step issues about 40 % fewer operations than SAM2's modules (on the
GPU a step is bound by operation launches). Models whose layout it does not restate run SAM2's modules.

Memories live in per-slot banks (slot = ``stream * num_slices + slice``): memory features in bfloat16 (as SAM2's
predictor stores them), object pointers and low-resolution logits in float32.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["LockstepGroup", "MemoryRules", "Stream", "plan_lockstep", "run_lockstep"]

#: SAM2's ``NO_OBJ_SCORE``: the logit of every pixel of a slice where the object is judged absent.
_NO_OBJ_SCORE = -1024.0


@dataclass(frozen=True)
class Stream:
    """One propagation pass: the slices in processing order and the conditioning (key) slices.

    Attributes
    ----------
    order : tuple of int
        Slices in the order the pass visits them (ascending forward, descending in reverse).
    cond_slices : tuple of int
        The key slices, in the order SAM2 stored their outputs (it matters only for summation order).
    reverse : bool
    """

    order: tuple[int, ...]
    cond_slices: tuple[int, ...]
    reverse: bool


@dataclass(frozen=True)
class MemoryRules:
    """The model settings that decide which memories a slice attends to (read from a ``SAM2Base``).

    Attributes
    ----------
    num_maskmem : int
        Memory window (conditioning frames plus ``num_maskmem - 1`` previous slices).
    stride : int
        ``memory_temporal_stride_for_eval``.
    max_cond_frames : int
        ``max_cond_frames_in_attn`` (``-1``: all).
    use_obj_ptrs : bool
    max_obj_ptrs : int
        ``max_obj_ptrs_in_encoder``.
    only_past_ptrs : bool
        ``only_obj_ptrs_in_the_past_for_eval``.
    signed_ptr_pos : bool
        ``use_signed_tpos_enc_to_obj_ptrs``.
    """

    num_maskmem: int
    stride: int
    max_cond_frames: int
    use_obj_ptrs: bool
    max_obj_ptrs: int
    only_past_ptrs: bool
    signed_ptr_pos: bool

    @classmethod
    def of(cls, model: Any) -> MemoryRules:
        """Read the rules from a SAM2 model in evaluation mode."""
        return cls(
            num_maskmem=int(model.num_maskmem),
            stride=int(model.memory_temporal_stride_for_eval),
            max_cond_frames=int(model.max_cond_frames_in_attn),
            use_obj_ptrs=bool(model.use_obj_ptrs_in_encoder),
            max_obj_ptrs=int(model.max_obj_ptrs_in_encoder),
            only_past_ptrs=bool(model.only_obj_ptrs_in_the_past_for_eval),
            signed_ptr_pos=bool(model.use_signed_tpos_enc_to_obj_ptrs),
        )


@dataclass(frozen=True)
class LockstepGroup:
    """Streams that run as one batch at one step, with the bank slots they read and write.

    Attributes
    ----------
    streams : tuple of int
        Stream numbers (B of them).
    slices : tuple of int
        The slice each stream processes.
    memory_slots : tuple of B tuples of M ints
        Bank slots of the spatial memories, in SAM2's order (conditioning frames, then ``t_pos`` ascending).
    memory_tpos : tuple of B tuples of M ints
        Row of ``maskmem_tpos_enc`` for each memory (``num_maskmem - t_pos - 1``).
    pointer_slots : tuple of B tuples of P ints
        Bank slots of the object pointers.
    pointer_distance : tuple of B tuples of P ints
        Temporal distance of each pointer (signed or absolute, as the model was trained).
    """

    streams: tuple[int, ...]
    slices: tuple[int, ...]
    memory_slots: tuple[tuple[int, ...], ...]
    memory_tpos: tuple[tuple[int, ...], ...]
    pointer_slots: tuple[tuple[int, ...], ...]
    pointer_distance: tuple[tuple[int, ...], ...]


def plan_lockstep(streams: Sequence[Stream], num_slices: int, rules: MemoryRules) -> list[list[LockstepGroup]]:
    """Schedule streams in lockstep: for each step, the groups of streams that can share a batch.

    Conditioning slices produce no work (their outputs come from the prompts), so a stream sitting on one at a
    step is absent from that step's groups. Streams are grouped by (number of spatial memories, number of
    object pointers), in stream order.

    Parameters
    ----------
    streams : sequence of Stream
    num_slices : int
        Slices of the volume (N); stream ``s`` keeps slice ``z`` in bank slot ``s * N + z``.
    rules : MemoryRules

    Returns
    -------
    list (one per step) of lists of LockstepGroup
    """
    from sam2.modeling.sam2_utils import select_closest_cond_frames

    steps = max((len(s.order) for s in streams), default=0)
    produced: list[set[int]] = [set() for _ in streams]
    plan: list[list[LockstepGroup]] = []
    for step in range(steps):
        by_shape: dict[tuple[int, int], list[tuple[int, int, list[int], list[int], list[int], list[int]]]] = {}
        for number, stream in enumerate(streams):
            if step >= len(stream.order) or stream.order[step] in stream.cond_slices:
                continue
            z = stream.order[step]
            base = number * num_slices
            cond = dict.fromkeys(stream.cond_slices)
            selected, unselected = select_closest_cond_frames(z, cond, rules.max_cond_frames)
            mem_slots = [base + t for t in selected]
            mem_tpos = [rules.num_maskmem - 1] * len(selected)
            for t_pos in range(1, rules.num_maskmem):
                prev = _previous_memory_slice(z, rules.num_maskmem - t_pos, rules.stride, reverse=stream.reverse)
                if prev in produced[number] or prev in unselected:
                    mem_slots.append(base + prev)
                    mem_tpos.append(rules.num_maskmem - t_pos - 1)
            ptr_slots: list[int] = []
            ptr_dist: list[int] = []
            if rules.use_obj_ptrs:
                sign = -1 if stream.reverse else 1
                for t in selected:
                    if rules.only_past_ptrs and (t < z if stream.reverse else t > z):
                        continue
                    ptr_slots.append(base + t)
                    ptr_dist.append((z - t) * sign if rules.signed_ptr_pos else abs(z - t))
                for t_diff in range(1, min(num_slices, rules.max_obj_ptrs)):
                    t = z + t_diff if stream.reverse else z - t_diff
                    if t < 0 or t >= num_slices:
                        break
                    if t in produced[number] or t in unselected:
                        ptr_slots.append(base + t)
                        ptr_dist.append(t_diff)
            by_shape.setdefault((len(mem_slots), len(ptr_slots)), []).append(
                (number, z, mem_slots, mem_tpos, ptr_slots, ptr_dist)
            )
        for number, stream in enumerate(streams):
            if step < len(stream.order) and stream.order[step] not in stream.cond_slices:
                produced[number].add(stream.order[step])
        plan.append(
            [
                LockstepGroup(
                    streams=tuple(m[0] for m in members),
                    slices=tuple(m[1] for m in members),
                    memory_slots=tuple(tuple(m[2]) for m in members),
                    memory_tpos=tuple(tuple(m[3]) for m in members),
                    pointer_slots=tuple(tuple(m[4]) for m in members),
                    pointer_distance=tuple(tuple(m[5]) for m in members),
                )
                for members in by_shape.values()
            ]
        )
    return plan


def _previous_memory_slice(z: int, t_rel: int, stride: int, *, reverse: bool) -> int:
    """The slice SAM2 takes as the memory ``t_rel`` steps back from ``z`` (the previous slice for ``t_rel = 1``)."""
    if t_rel == 1:
        return z + 1 if reverse else z - 1
    if reverse:
        return -(-(z + 2) // stride) * stride + (t_rel - 2) * stride
    return ((z - 2) // stride) * stride - (t_rel - 2) * stride


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
    lean = _LeanStep(model, cache.pos_enc[-1]) if _LeanStep.supports(model) else None
    pos_enc = cache.pos_enc[-1].flatten(2).permute(2, 0, 1)  # (HW, 1, C), for SAM2's own modules
    multimask = model._use_multimask(False, None)
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
                top = levels[-1].flatten(2).permute(2, 0, 1)  # (HW, B, C)
                conditioned = model.memory_attention(
                    curr=[top],
                    curr_pos=[pos_enc.expand(-1, b, -1)],
                    memory=memory.transpose(0, 1),
                    memory_pos=memory_pos.transpose(0, 1),
                    num_obj_ptr_tokens=p * split,
                )
                conditioned = conditioned.permute(1, 2, 0).reshape(b, hidden, height, width)
                _, _, _, low_res, high_res, obj_ptr, object_score = model._forward_sam_heads(
                    backbone_features=conditioned,
                    point_inputs=None,
                    mask_inputs=None,
                    high_res_features=levels[:-1] or None,
                    multimask_output=multimask,
                )
                new_memory, _ = model._encode_new_memory(
                    current_vision_feats=[top],
                    feat_sizes=[(height, width)],
                    pred_masks_high_res=high_res,
                    object_score_logits=object_score,
                    is_mask_from_pts=False,
                )
            new_memory = new_memory.to(torch.bfloat16).flatten(2).transpose(1, 2)
            memory_bank.index_copy_(0, g.out_slots_storage, new_memory.to(storage_device, non_blocking=True))
            pointer_bank.index_copy_(0, g.out_slots, obj_ptr.float())
            logits.index_copy_(0, g.out_slots_storage, low_res[:, 0].float().to(storage_device, non_blocking=True))
    return logits


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


class _LeanStep:
    """SAM2's per-slice tracking step for a batch, with every step-independent quantity computed once.

    Same arithmetic as ``SAM2Base.track_step`` on a non-conditioning frame (memory attention, the mask decoder
    with multimask output, the memory encoder), restated on batch-first tensors so that a step issues about
    half as many operations: the prompt embeddings of a frame without prompts, the decoder's output tokens and
    dense positional encoding, the rotary encodings and the scaled image positional encoding are constants;
    the cross-attention keys and values of all memory-attention layers come from one projection each (their
    inputs are the same in every layer); dropout (a no-op in evaluation) is skipped; only the chosen mask is
    upsampled; the memory encoder's positional encoding (constant, and kept from the conditioning frames) is
    not recomputed. Only SAM2's standard layout is restated (:meth:`supports`); other models take SAM2's own
    modules step by step.

    Parameters
    ----------
    model : SAM2Base
        In evaluation mode; build under the caller's autocast (the constants take its precision).
    pos_enc : (1, C, H, W) tensor
        Positional encoding of the top feature level.
    """

    def __init__(self, model: Any, pos_enc: torch.Tensor) -> None:
        from sam2.modeling.sam2_utils import LayerNorm2d

        self.model = model
        attention = model.memory_attention
        self.layers = list(attention.layers)
        first = self.layers[0]
        height, width = (int(v) for v in pos_enc.shape[-2:])
        # (HW, 1, C/2) complex: broadcasts over (B, HW, heads-or-parts, C/2)
        freqs = first.self_attn.compute_cis(end_x=width, end_y=height).to(pos_enc.device)
        self.freqs = freqs[:, None]
        self.curr_pos = (0.1 * pos_enc.flatten(2).transpose(1, 2)) if attention.pos_enc_at_input else None
        self.qkv_weight = [
            torch.cat([la.self_attn.q_proj.weight, la.self_attn.k_proj.weight, la.self_attn.v_proj.weight])
            for la in self.layers
        ]
        self.qkv_bias = [
            torch.cat([la.self_attn.q_proj.bias, la.self_attn.k_proj.bias, la.self_attn.v_proj.bias])
            for la in self.layers
        ]
        self.k_weight = torch.cat([la.cross_attn_image.k_proj.weight for la in self.layers])
        self.k_bias = torch.cat([la.cross_attn_image.k_proj.bias for la in self.layers])
        self.v_weight = torch.cat([la.cross_attn_image.v_proj.weight for la in self.layers])
        self.v_bias = torch.cat([la.cross_attn_image.v_proj.bias for la in self.layers])
        self.dim = int(first.cross_attn_image.internal_dim)

        decoder = model.sam_mask_decoder
        device = pos_enc.device
        sparse, dense = model.sam_prompt_encoder(
            points=(torch.zeros(1, 1, 2, device=device), -torch.ones(1, 1, dtype=torch.int32, device=device)),
            boxes=None,
            masks=None,
        )
        output_tokens = torch.cat(
            [decoder.obj_score_token.weight, decoder.iou_token.weight, decoder.mask_tokens.weight]
        )
        self.tokens = torch.cat([output_tokens[None].to(sparse.dtype), sparse], dim=1)
        self.dense = dense
        self.image_pe = model.sam_prompt_encoder.get_dense_pe()
        self.mask_tokens = int(decoder.num_mask_tokens)
        self._repeated: dict[int, torch.Tensor] = {}
        self.downsampler = [
            (module, isinstance(module, LayerNorm2d)) for module in model.memory_encoder.mask_downsampler.encoder
        ]
        self._arange: dict[int, torch.Tensor] = {}

    @staticmethod
    def supports(model: Any) -> bool:
        """Whether the model has the layout this step restates (SAM2 and SAM2.1 configs, MedSAM2 do)."""
        from sam2.modeling.memory_encoder import CXBlock
        from sam2.modeling.sam.transformer import RoPEAttention
        from sam2.modeling.sam2_utils import LayerNorm2d

        attention, decoder = model.memory_attention, model.sam_mask_decoder
        layers = list(attention.layers)
        layer_ok = all(
            isinstance(la.self_attn, RoPEAttention)
            and isinstance(la.cross_attn_image, RoPEAttention)
            and la.self_attn.num_heads == 1
            and la.cross_attn_image.num_heads == 1
            and la.cross_attn_image.rope_k_repeat
            and la.self_attn.compute_cis.keywords == layers[0].self_attn.compute_cis.keywords
            and la.cross_attn_image.compute_cis.keywords == layers[0].self_attn.compute_cis.keywords
            and not la.pos_enc_at_attn
            and la.pos_enc_at_cross_attn_keys
            and not la.pos_enc_at_cross_attn_queries
            and la.activation_str == "relu"
            for la in layers
        )
        return (
            layer_ok
            and bool(layers)
            and attention.batch_first
            and model._use_multimask(False, None)
            and model.pred_obj_scores
            and decoder.pred_obj_scores
            and decoder.use_high_res_features
            and decoder.use_multimask_token_for_obj_ptr
            and not model.non_overlap_masks_for_mem_enc
            and isinstance(decoder.output_upscaling[1], LayerNorm2d)
            and all(isinstance(block, CXBlock) for block in model.memory_encoder.fuser.layers)
        )

    def memory_attention(
        self, curr: torch.Tensor, memory: torch.Tensor, memory_pos: torch.Tensor, rope_tokens: int
    ) -> torch.Tensor:
        """``MemoryAttention`` on batch-first ``(B, HW, C)`` slices and ``(B, L, C_mem)`` memories.

        ``rope_tokens`` leading memory tokens (the spatial memories) get the rotary encoding; the rest (object
        pointers) do not.
        """
        dim = self.dim
        x = curr + self.curr_pos if self.curr_pos is not None else curr
        keys = F.linear(memory + memory_pos, self.k_weight, self.k_bias)  # (B, L, layers * C)
        values = F.linear(memory, self.v_weight, self.v_bias)
        if rope_tokens:
            rotated = _rotate(keys[:, :rope_tokens].unflatten(-1, (len(self.layers), dim)), self._repeat(rope_tokens))
            rotated = rotated.flatten(2)
            keys = rotated if rope_tokens == keys.shape[1] else torch.cat([rotated, keys[:, rope_tokens:]], dim=1)
        for number, layer in enumerate(self.layers):
            normed = F.layer_norm(x, (dim,), layer.norm1.weight, layer.norm1.bias, layer.norm1.eps)
            qkv = F.linear(normed, self.qkv_weight[number], self.qkv_bias[number])
            qk = _rotate(qkv[..., : 2 * dim].unflatten(-1, (2, dim)), self.freqs)
            attended = F.scaled_dot_product_attention(qk[:, None, :, 0], qk[:, None, :, 1], qkv[:, None, :, 2 * dim :])
            x = x + F.linear(attended[:, 0], layer.self_attn.out_proj.weight, layer.self_attn.out_proj.bias)
            normed = F.layer_norm(x, (dim,), layer.norm2.weight, layer.norm2.bias, layer.norm2.eps)
            cross = layer.cross_attn_image
            query = _rotate(F.linear(normed, cross.q_proj.weight, cross.q_proj.bias), self.freqs[:, 0])
            part = slice(number * dim, (number + 1) * dim)
            attended = F.scaled_dot_product_attention(query[:, None], keys[:, None, :, part], values[:, None, :, part])
            x = x + F.linear(attended[:, 0], cross.out_proj.weight, cross.out_proj.bias)
            normed = F.layer_norm(x, (dim,), layer.norm3.weight, layer.norm3.bias, layer.norm3.eps)
            hidden = F.relu(F.linear(normed, layer.linear1.weight, layer.linear1.bias))
            x = x + F.linear(hidden, layer.linear2.weight, layer.linear2.bias)
        final = self.model.memory_attention.norm
        return F.layer_norm(x, (dim,), final.weight, final.bias, final.eps)

    def _repeat(self, tokens: int) -> torch.Tensor:
        """Rotary encodings of ``tokens`` memory tokens: the slice's encodings once per spatial memory."""
        if tokens not in self._repeated:
            self._repeated[tokens] = self.freqs.repeat(tokens // self.freqs.shape[0], 1, 1)
        return self._repeated[tokens]

    def heads(
        self, conditioned: torch.Tensor, high_res_features: list[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``SAM2Base._forward_sam_heads`` without prompts, multimask output (the tracking setting).

        Returns
        -------
        low_res : (B, 1, S/4, S/4) float32
        high_res : (B, 1, S, S) float32
        obj_ptr : (B, C)
        object_score : (B, 1)
        """
        model, decoder = self.model, self.model.sam_mask_decoder
        batch = conditioned.shape[0]
        hs, src = decoder.transformer(
            conditioned + self.dense, self.image_pe.expand(batch, -1, -1, -1), self.tokens.expand(batch, -1, -1)
        )
        src = src.transpose(1, 2).reshape(conditioned.shape)
        dc1, ln1, act1, dc2, act2 = decoder.output_upscaling
        feat_s0, feat_s1 = high_res_features
        upscaled = act2(dc2(act1(_layer_norm_2d(dc1(src) + feat_s1, ln1))) + feat_s0)
        # token 0 scores the object, 1 the mask quality, 2 the single mask, 3.. the multimask outputs
        multimask_tokens = hs[:, 3 : 2 + self.mask_tokens]
        hyper_in = torch.stack(
            [decoder.output_hypernetworks_mlps[i + 1](multimask_tokens[:, i]) for i in range(self.mask_tokens - 1)],
            dim=1,
        )
        ious = decoder.iou_prediction_head(hs[:, 1])[:, 1:]
        object_score = decoder.pred_obj_score_head(hs[:, 0])
        best = torch.argmax(ious, dim=-1)
        rows = self._rows(batch, conditioned.device)
        channels, height, width = upscaled.shape[1:]
        low_res = (hyper_in[rows, best][:, None] @ upscaled.view(batch, channels, height * width)).view(
            batch, 1, height, width
        )
        appearing = object_score > 0
        low_res = torch.where(appearing[:, None, None], low_res, _NO_OBJ_SCORE).float()
        high_res = F.interpolate(
            low_res, size=(model.image_size, model.image_size), mode="bilinear", align_corners=False
        )
        obj_ptr = model.obj_ptr_proj(multimask_tokens[rows, best])
        weight = object_score.sigmoid() if model.soft_no_obj_ptr else appearing.float()
        if model.fixed_no_obj_ptr:
            obj_ptr = weight * obj_ptr
        obj_ptr = obj_ptr + (1 - weight) * model.no_obj_ptr
        return low_res, high_res, obj_ptr, object_score

    def encode_memory(self, features: torch.Tensor, high_res: torch.Tensor, object_score: torch.Tensor) -> torch.Tensor:
        """``SAM2Base._encode_new_memory`` of predicted (not prompted) masks, without the positional encoding."""
        model, encoder = self.model, self.model.memory_encoder
        mask = torch.sigmoid(high_res)
        if model.sigmoid_scale_for_mem_enc != 1.0:
            mask = mask * model.sigmoid_scale_for_mem_enc
        if model.sigmoid_bias_for_mem_enc != 0.0:
            mask = mask + model.sigmoid_bias_for_mem_enc
        for module, is_norm in self.downsampler:
            mask = _layer_norm_2d(mask, module) if is_norm else module(mask)
        x = encoder.fuser.proj(encoder.pix_feat_proj(features) + mask)
        for block in encoder.fuser.layers:
            # ConvNeXt block: depthwise conv, channel LayerNorm, MLP, layer scale, residual
            y = block.dwconv(x).permute(0, 2, 3, 1)
            y = F.layer_norm(y, y.shape[-1:], block.norm.weight, block.norm.bias, block.norm.eps)
            y = block.pwconv2(block.act(block.pwconv1(y)))
            if block.gamma is not None:
                y = block.gamma * y
            x = x + y.permute(0, 3, 1, 2)
        memory = encoder.out_proj(x)
        if model.no_obj_embed_spatial is not None:
            absent = 1 - (object_score > 0).float()
            memory = memory + absent[..., None, None] * model.no_obj_embed_spatial[..., None, None]
        return memory

    def _rows(self, batch: int, device: torch.device) -> torch.Tensor:
        if batch not in self._arange:
            self._arange[batch] = torch.arange(batch, device=device)
        return self._arange[batch]


def _layer_norm_2d(x: torch.Tensor, norm: Any) -> torch.Tensor:
    """SAM2's ``LayerNorm2d`` (over the channels of ``(B, C, H, W)``) as one ``layer_norm`` on channels last."""
    normed = F.layer_norm(x.permute(0, 2, 3, 1), x.shape[1:2], norm.weight, norm.bias, norm.eps)
    return normed.permute(0, 3, 1, 2)


def _rotate(x: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """SAM2's rotary encoding (``apply_rotary_enc``): channel pairs as complex numbers times ``freqs``."""
    pairs = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    return torch.view_as_real(pairs * freqs).flatten(-2).type_as(x)
