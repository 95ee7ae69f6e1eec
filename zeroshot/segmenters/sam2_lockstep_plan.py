"""The host-side schedule of lockstep propagation: which memories each stream attends to at each step.

Which memories a stream attends to at a slice depends only on slice indices, never on the data, so the whole
schedule is computed on the host before propagation (and sent to the device in one transfer by
:mod:`zeroshot.segmenters.sam2_lockstep`). The memory selection is SAM2's (``SAM2Base.
_prepare_memory_conditioned_features`` in evaluation mode), restated over slice indices:

- every selected conditioning frame, temporal position 0 (``select_closest_cond_frames``);
- up to ``num_maskmem - 1`` earlier slices of the stream (``memory_temporal_stride_for_eval`` apart beyond
  the previous slice), temporal position ``num_maskmem - t_rel``; a slice the stream has not produced is skipped;
- object pointers of the selected conditioning frames in the past of the slice, at signed distance, then of up
  to ``max_obj_ptrs_in_encoder - 1`` previous slices of the stream, at distance ``t_diff``.

Streams may come from different volumes (of any slice counts): each stream carries its volume's number and
slice count, and keeps its slices in its own run of bank slots (:func:`slot_bases`), so the streams of several
volumes propagate in the same steps exactly as they would alone.

Pure Python over integers: no tensors, no device.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["LockstepGroup", "MemoryRules", "Stream", "plan_lockstep", "slot_bases"]


@dataclass(frozen=True)
class Stream:
    """One propagation pass through one volume: the slices in processing order and the conditioning (key) slices.

    Attributes
    ----------
    order : tuple of int
        Slices in the order the pass visits them (ascending forward, descending in reverse).
    cond_slices : tuple of int
        The key slices, in the order SAM2 stored their outputs (it matters only for summation order).
    reverse : bool
    num_slices : int
        Slices of the stream's volume: it bounds the object pointers a slice reads and scales their temporal
        encoding (SAM2's ``t_diff_max``).
    volume : int
        Which volume (feature source) the stream propagates through, when several share the steps.
    """

    order: tuple[int, ...]
    cond_slices: tuple[int, ...]
    reverse: bool
    num_slices: int
    volume: int = 0


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
        The slice each stream processes (in its own volume).
    volumes : tuple of int
        The volume of each stream.
    num_slices : tuple of int
        The slice count of each stream's volume.
    out_slots : tuple of int
        The bank slot each stream writes its outputs to.
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
    volumes: tuple[int, ...]
    num_slices: tuple[int, ...]
    out_slots: tuple[int, ...]
    memory_slots: tuple[tuple[int, ...], ...]
    memory_tpos: tuple[tuple[int, ...], ...]
    pointer_slots: tuple[tuple[int, ...], ...]
    pointer_distance: tuple[tuple[int, ...], ...]


def slot_bases(streams: Sequence[Stream]) -> tuple[int, ...]:
    """The first bank slot of each stream: stream ``s`` keeps slice ``z`` in slot ``slot_bases(streams)[s] + z``.

    Streams take consecutive runs of their own volume's slice count, so the streams of one volume of ``N`` slices
    alone sit at ``s * N``.

    Examples
    --------
    >>> slot_bases([Stream((0,), (0,), False, 5), Stream((0,), (0,), False, 5), Stream((3,), (3,), True, 9)])
    (0, 5, 10)
    """
    bases, total = [], 0
    for stream in streams:
        bases.append(total)
        total += stream.num_slices
    return tuple(bases)


def plan_lockstep(streams: Sequence[Stream], rules: MemoryRules) -> list[list[LockstepGroup]]:
    """Schedule streams in lockstep: for each step, the groups of streams that can share a batch.

    Conditioning slices produce no work (their outputs come from the prompts), so a stream sitting on one at a
    step is absent from that step's groups. Streams are grouped by (number of spatial memories, number of
    object pointers), in stream order, whatever volume they run through.

    Parameters
    ----------
    streams : sequence of Stream
        Stream ``s`` keeps slice ``z`` in bank slot ``slot_bases(streams)[s] + z``.
    rules : MemoryRules

    Returns
    -------
    list (one per step) of lists of LockstepGroup

    Raises
    ------
    ValueError
        If a stream visits or conditions on a slice outside its volume.
    """
    from sam2.modeling.sam2_utils import select_closest_cond_frames

    for number, stream in enumerate(streams):
        if any(not 0 <= z < stream.num_slices for z in (*stream.order, *stream.cond_slices)):
            raise ValueError(f"stream {number} visits a slice outside its volume's {stream.num_slices} slices")
    bases = slot_bases(streams)
    steps = max((len(s.order) for s in streams), default=0)
    produced: list[set[int]] = [set() for _ in streams]
    plan: list[list[LockstepGroup]] = []
    for step in range(steps):
        by_shape: dict[tuple[int, int], list[tuple[int, Stream, int, list[int], list[int], list[int], list[int]]]] = {}
        for number, stream in enumerate(streams):
            if step >= len(stream.order) or stream.order[step] in stream.cond_slices:
                continue
            z = stream.order[step]
            base, num_slices = bases[number], stream.num_slices
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
                (number, stream, z, mem_slots, mem_tpos, ptr_slots, ptr_dist)
            )
            # A stream reads only its own earlier slices (never z itself), so z is produced from here on.
            produced[number].add(z)
        plan.append(
            [
                LockstepGroup(
                    streams=tuple(m[0] for m in members),
                    slices=tuple(m[2] for m in members),
                    volumes=tuple(m[1].volume for m in members),
                    num_slices=tuple(m[1].num_slices for m in members),
                    out_slots=tuple(bases[m[0]] + m[2] for m in members),
                    memory_slots=tuple(tuple(m[3]) for m in members),
                    memory_tpos=tuple(tuple(m[4]) for m in members),
                    pointer_slots=tuple(tuple(m[5]) for m in members),
                    pointer_distance=tuple(tuple(m[6]) for m in members),
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
