"""A volume prepared for a SAM2 video predictor: the SAM2 backend of the shared video core.

:class:`Sam2Session` is a :class:`~zeroshot.segmenters.video_core.VideoSession` built from ``(model, options,
volume)``: the pass plan, the policy, the union and the finished ``Segmentation`` are the core's; this module
supplies SAM2's slice encoding, prompts and per-pass step (:class:`Sam2Backend`), and plugs the lockstep engine
into the core for ``segment_many``.

Three engines give the same masks (up to floating-point noise):

``"fast"`` (default)
    every slice is encoded up front in batches and its features kept
    (:class:`~zeroshot.segmenters.sam2_state.FeatureCache`); under the ``reset`` policy the forward and the
    reverse pass (and, in :meth:`Sam2Session.segment_many`, the passes of every prompt set) then propagate in
    lockstep as one batch (:mod:`zeroshot.segmenters.sam2_lockstep`): memory attention, the mask decoder and
    the memory encoder run once per step for all passes, from a schedule computed before the loop, with no
    host synchronisation inside it. The conditioning (key) slices go through SAM2's own code. Under the
    ``continuous`` policy the passes depend on each other, so ``fast`` runs them as ``fast-serial`` does and
    says so in ``info["lockstep_fallback"]``.
``"fast-serial"``
    the cached features, but SAM2's per-slice ``_run_single_frame_inference``, one pass after the other.
``"reference"``
    SAM2's own ``propagate_in_video``, which encodes each slice when it reaches it (again in every pass).

Propagation policies (recorded in ``Segmentation.info``):

``"reset"`` (default, MedSAM2's recipe)
    add every prompt, propagate forward from the first key slice to the last slice; reset the state, add the
    prompts again, propagate in reverse from the last key slice to slice 0; the result is the union of both
    passes (the maximum of their logits). The reverse pass is skipped when the only key slice is slice 0
    (SAM2 yields nothing there), so a key slice at either end of the volume is handled.
``"continuous"``
    the same passes without the reset: the reverse pass also attends to the memories of the forward pass
    (SAM2's interactive demo behaves like this; results depend on the order).

Every engine fills small holes where SAM2's predictor does (``fill_hole_area``: the reference and fast-serial
engines through SAM2's own per-slice step, which the segmenter makes fill holes; the lockstep engine on its
slices' outputs, with the same :func:`~zeroshot.segmenters.hole_filling.fill_small_holes`). Masks are
``logits > logit_threshold`` at the input slice size (SAM2 resizes its ``S/4`` logits bilinearly; resize, union
and threshold run on the compute device), then optionally post-processed on the CPU
(:mod:`zeroshot.segmenters.postprocess`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from zeroshot.prompts.types import POSITIVE, SlicePrompt, VolumePrompts
from zeroshot.segmenters.hole_filling import fill_small_holes
from zeroshot.segmenters.preprocessing import SliceStack
from zeroshot.segmenters.prompt_coords import box_to_unit, points_to_unit
from zeroshot.segmenters.runtime import encoder_counter
from zeroshot.segmenters.sam2_lockstep import run_lockstep
from zeroshot.segmenters.sam2_lockstep_plan import Stream
from zeroshot.segmenters.sam2_state import FeatureCache, Sam2InferenceState
from zeroshot.segmenters.video_core import (
    NO_SCORE,
    OBJ_ID,
    Pass,
    PropagationRun,
    VideoSession,
    pass_order,
    plan_passes,
    union_pass,
)
from zeroshot.segmenters.video_options import VideoOptions
from zeroshot.volume import Volume

__all__ = ["ENGINES", "Sam2Backend", "Sam2Session"]

#: The engines, the default first.
ENGINES = ("fast", "fast-serial", "reference")


class Sam2Backend:
    """SAM2's part of a video session: slice encoding, prompts on a frame, one pass (fast or SAM2's own loop).

    Parameters
    ----------
    model : SAM2VideoPredictor
    options : VideoOptions
    volume : Volume
    engine : {"fast", "fast-serial", "reference"}
    """

    name = "sam2"

    def __init__(self, model: Any, options: VideoOptions, volume: Volume, *, engine: str) -> None:
        self.model = model
        self.options = options
        self.volume = volume
        self.engine: str | None = engine
        self.state: Sam2InferenceState | None = None

    def encode_slices(self) -> None:
        """Build SAM2's inference state; the fast engines encode every slice into its feature cache now."""
        options, model = self.options, self.model
        depth, height, width = self.volume.shape
        device = options.device
        slices = SliceStack(
            self.volume.array, image_size=options.image_size, preprocessing=options.preprocessing, device=device
        )
        if self.engine != "reference":
            cache: Any = FeatureCache(depth, compute_device=device, storage_device=options.feature_device)
        else:
            cache = {}
        self.state = Sam2InferenceState(
            images=slices,
            num_frames=depth,
            video_height=height,
            video_width=width,
            device=device,
            storage_device=options.storage_device,
            offload_video_to_cpu=options.offload_video_to_cpu,
            offload_state_to_cpu=options.offload_state_to_cpu,
            cached_features=cache,
        )
        self.intensity_window = slices.window
        if isinstance(cache, FeatureCache):
            batch = options.encoder_batch_size
            with torch.inference_mode(), options.numerics():
                for start in range(0, depth, batch):
                    cache.add_batch(start, model.forward_image(slices.batch(start, start + batch)))

    def check_prompts(self, prompts: VolumePrompts) -> None:
        """SAM2 takes every prompt kind, a mask together with points or a box included."""

    def running(self) -> contextlib.AbstractContextManager:
        """SAM2's numerics (hole filling is part of the model object: see ``fill_holes_where_sam2_does``)."""
        return self.options.numerics()

    def reset(self) -> None:
        """Clear SAM2's prompts and memories (``reset_state``); the cached features stay."""
        self.model.reset_state(self.state)

    def add_prompt(self, slice_prompt: SlicePrompt) -> None:
        """Add a key slice's mask and/or box and points through SAM2's own predictor methods."""
        model, state, sp = self.model, self.state, slice_prompt
        shape_yx = self.volume.shape[1:]
        size, coords = self.options.image_size, self.options.coords
        if sp.mask is not None:
            model.add_new_mask(state, frame_idx=sp.z, obj_id=OBJ_ID, mask=torch.from_numpy(sp.mask.astype(bool)))
        if sp.box is None and not sp.points:
            return
        # Fractions of the model input: SAM2 multiplies them by S itself (normalize_coords=False), so the
        # official mapping gives exactly the model pixels of normalize_coords=True on pixel coordinates.
        box = None if sp.box is None else box_to_unit(sp.box, shape_yx=shape_yx, image_size=size, coords=coords)
        points = labels = None
        if sp.points:
            points = points_to_unit(sp.points, shape_yx=shape_yx, image_size=size, coords=coords)
            labels = torch.as_tensor([1 if label == POSITIVE else 0 for label in sp.labels], dtype=torch.int32)
        model.add_new_points_or_box(
            state,
            frame_idx=sp.z,
            obj_id=OBJ_ID,
            points=None if points is None else torch.from_numpy(points),
            labels=labels,
            box=None if box is None else torch.from_numpy(box),
            normalize_coords=False,
        )

    def step_pass(self, start: int, *, reverse: bool) -> tuple[list[int], torch.Tensor]:
        """One pass: SAM2's ``propagate_in_video`` (reference) or its per-slice step on cached features."""
        if self.engine == "reference":
            return self._propagate_reference(start, reverse=reverse)
        return self._propagate_fast(start, reverse=reverse)

    def close(self) -> None:
        """Drop the predictor state and cached features."""
        self.state = None

    def _propagate_fast(self, start: int, *, reverse: bool) -> tuple[list[int], torch.Tensor]:
        """Propagate from ``start`` with cached features; return the slices and their logits (on the device)."""
        model, state = self.model, self.state
        assert state is not None
        model.propagate_in_video_preflight(state)
        obj_idx = state.obj_id_to_idx[OBJ_ID]
        outputs = state.output_dict_per_obj[obj_idx]
        tracked = state.frames_tracked_per_obj[obj_idx]
        frames = list(pass_order(start, self.volume.num_slices, reverse=reverse))
        low_res = []
        for z in frames:
            if z in outputs["cond_frame_outputs"]:
                pred = outputs["cond_frame_outputs"][z]["pred_masks"].to(state.device, non_blocking=True)
            else:
                out, pred = model._run_single_frame_inference(
                    inference_state=state,
                    output_dict=outputs,
                    frame_idx=z,
                    batch_size=1,
                    is_init_cond_frame=False,
                    point_inputs=None,
                    mask_inputs=None,
                    reverse=reverse,
                    run_mem_encoder=True,
                )
                outputs["non_cond_frame_outputs"][z] = out
            tracked[z] = {"reverse": reverse}
            low_res.append(pred)
        return frames, self.to_input_grid(torch.cat(low_res, dim=0))

    def _propagate_reference(self, start: int, *, reverse: bool) -> tuple[list[int], torch.Tensor]:
        """Propagate with SAM2's own ``propagate_in_video`` (per-slice encoding); same return as the fast path."""
        frames, logits = [], []
        for z, _obj_ids, video_res in self.model.propagate_in_video(self.state, start_frame_idx=start, reverse=reverse):
            frames.append(int(z))
            logits.append(video_res[0, 0].float())
        return frames, torch.stack(logits) if logits else torch.empty((0, *self.volume.shape[1:]))

    def to_input_grid(self, low_res: torch.Tensor, chunk: int = 32) -> torch.Tensor:
        """Resize ``(N, 1, S/4, S/4)`` logits to ``(N, Y, X)`` float32 where they are, as SAM2 resizes each slice."""
        height, width = self.volume.shape[1:]
        parts = [
            F.interpolate(low_res[i : i + chunk], size=(height, width), mode="bilinear", align_corners=False)
            for i in range(0, low_res.shape[0], chunk)
        ]
        return torch.cat(parts)[:, 0].float()


class Sam2Session(VideoSession):
    """One volume prepared for a SAM2 video predictor; segment it under any number of prompt sets.

    Each :meth:`segment` call starts from a clean predictor state (prompts and memories of earlier calls are
    discarded), so calls are independent and repeatable; the image features computed by the fast engine are
    kept until :meth:`close`. ``Segmentation.info["encoder_slices_total"]`` counts every slice the image
    encoder has processed for this session, so a test can assert that it stays at the number of slices.

    :meth:`segment_many`: with the ``fast`` engine and the ``reset`` policy every pass of every prompt set
    propagates in one lockstep batch (:mod:`zeroshot.segmenters.sam2_lockstep`), so K prompt sets take about as
    many sequential steps as one (``info["lockstep"]``; ``info["lockstep_fallback"]`` says why not otherwise).

    Parameters
    ----------
    model : SAM2VideoPredictor
    options : VideoOptions
    volume : Volume
    engine : {"fast", "fast-serial", "reference"}
    """

    def __init__(self, model: Any, options: VideoOptions, volume: Volume, *, engine: str = "fast") -> None:
        self.model = model
        self.engine = engine
        self._sam2 = Sam2Backend(model, options, volume, engine=engine)
        super().__init__(self._sam2, options, volume, encoder_counter(model.image_encoder))

    @property
    def _state(self) -> Sam2InferenceState | None:
        """SAM2's inference state (``None`` once closed)."""
        return self._sam2.state if self._backend is not None else None

    def _add_prompts(self, slice_prompts: Sequence[SlicePrompt]) -> None:
        for slice_prompt in slice_prompts:
            self._sam2.add_prompt(slice_prompt)

    def _propagate_all(self, prompt_sets: list[VolumePrompts]) -> tuple[list[PropagationRun], dict[str, Any]]:
        fallback = self._lockstep_fallback()
        if fallback is None:
            runs = self._propagate_lockstep(prompt_sets)
        else:
            runs = [self._propagate_serial(prompts) for prompts in prompt_sets]
        extra: dict[str, Any] = {"lockstep": fallback is None}
        if fallback is not None and self.engine == "fast":
            extra["lockstep_fallback"] = fallback
        return runs, extra

    def _lockstep_fallback(self) -> str | None:
        """Why the lockstep engine cannot run (``None`` when it can)."""
        if self.engine != "fast":
            return f"engine {self.engine!r}"
        if self.options.propagation != "reset":
            return "continuous policy: the reverse pass attends to the forward pass's memories, so passes run in turn"
        if self.model.num_maskmem == 0 or self.model.non_overlap_masks_for_mem_enc:
            return "model without memory, or with non-overlapping memory masks across the batch"
        return None

    def _joint_key(self) -> Hashable | None:
        """Sessions with equal keys propagate in one lockstep call (``video_core.segment_volumes``).

        The same weights and options (so the same image size, numerics and storage devices), in the lockstep
        engine; ``None`` where this session cannot run in lockstep.
        """
        if self._lockstep_fallback() is not None:
            return None
        return ("sam2-lockstep", id(self.model), self.options)

    def lockstep_bytes(self, prompt_sets: int) -> int:
        """Device bytes a lockstep call of ``prompt_sets`` prompt sets allocates for this volume (an upper bound).

        Its image features are held already (since :meth:`prepare`); the call adds, for two passes per prompt
        set and every slice, a memory-bank entry (bfloat16), an object pointer and low-resolution logits (float32)
        where the state lives on the device, and the union logits on the input grid (float32).
        """
        model, size = self.model, self.options.image_size
        slots = 2 * prompt_sets * self.volume.num_slices
        state = self._state
        on_device = state is not None and state.storage_device.type == state.device.type
        banks = slots * ((size // 16) ** 2 * int(model.mem_dim) * 2 + (size // 4) ** 2 * 4) if on_device else 0
        pointers = slots * int(model.hidden_dim) * 4
        union = prompt_sets * int(np.prod(self.volume.shape)) * 4
        return banks + pointers + union

    def _propagate_volumes(
        self, items: Sequence[tuple[VideoSession, list[VolumePrompts]]]
    ) -> list[tuple[list[PropagationRun], dict[str, Any]]]:
        """Every pass of every prompt set of every session (equal :meth:`_joint_key`) as one lockstep batch."""
        return [(runs, {"lockstep": True}) for runs in self._run_lockstep(items)]

    def _propagate_lockstep(self, prompt_sets: list[VolumePrompts]) -> list[PropagationRun]:
        """Every pass of every prompt set as one lockstep batch; the conditioning slices come from SAM2 itself."""
        return self._run_lockstep([(self, prompt_sets)])[0]

    def _run_lockstep(self, items: Sequence[tuple[VideoSession, list[VolumePrompts]]]) -> list[list[PropagationRun]]:
        """Each session's runs from one lockstep call over all their streams (one session, or a joint call).

        The one body behind :meth:`_propagate_lockstep` and :meth:`_propagate_volumes`, which stay two methods
        because the runner's tests make a joint call fail while a lone one succeeds.
        """
        sessions = [session for session, _ in items]
        assert all(isinstance(session, Sam2Session) for session in sessions)
        streams: list[Stream] = []
        cond_outputs: list[Any] = []
        per_session = []
        for volume, (session, prompt_sets) in enumerate(items):
            own = session._lockstep_streams(prompt_sets, volume=volume)  # type: ignore[attr-defined]
            per_session.append(own)
            streams += own[0]
            cond_outputs += own[1]
        state = self._state
        assert state is not None
        low_res = run_lockstep(
            self.model,
            [session._state.cached_features for session in sessions],  # type: ignore[attr-defined]
            streams,
            cond_outputs,
            device=state.device,
            storage_device=state.storage_device,
        )
        runs = []
        start = 0
        for (session, prompt_sets), (own_streams, _, owners) in zip(items, per_session, strict=True):
            rows = sum(stream.num_slices for stream in own_streams)
            own_rows = low_res.narrow(0, start, rows)  # this volume's rows, laid out as if it ran alone
            runs.append(session._lockstep_runs(prompt_sets, own_streams, owners, own_rows))  # type: ignore[attr-defined]
            start += rows
        return runs

    def _lockstep_streams(
        self, prompt_sets: list[VolumePrompts], *, volume: int = 0
    ) -> tuple[list[Stream], list[Any], list[tuple[int, Pass]]]:
        """The streams of every pass of every prompt set, their conditioning outputs (from SAM2) and owners.

        ``volume`` numbers this session's feature cache among those of a joint call. Each owner is the prompt
        set's number and the pass the stream makes.
        """
        model, state = self.model, self._state
        assert state is not None
        depth = self.volume.num_slices
        streams: list[Stream] = []
        cond_outputs = []
        owners: list[tuple[int, Pass]] = []
        for number, prompts in enumerate(prompt_sets):
            model.reset_state(state)
            self._add_prompts(prompts.slices)
            model.propagate_in_video_preflight(state)
            cond = dict(state.output_dict_per_obj[state.obj_id_to_idx[OBJ_ID]]["cond_frame_outputs"])
            for direction, start in plan_passes(prompts.key_slices):
                reverse = direction == "reverse"
                order = tuple(pass_order(start, depth, reverse=reverse))
                streams.append(Stream(order, tuple(cond), reverse, num_slices=depth, volume=volume))
                cond_outputs.append(cond)
                owners.append((number, Pass(direction, start, len(order))))
        return streams, cond_outputs, owners

    def _lockstep_runs(
        self,
        prompt_sets: list[VolumePrompts],
        streams: list[Stream],
        owners: list[tuple[int, Pass]],
        low_res: torch.Tensor,
    ) -> list[PropagationRun]:
        """Each prompt set's union of its streams' logits (``low_res`` row ``s * num_slices + z``: this volume's)."""
        depth = self.volume.num_slices
        union_device = self.options.union_device
        logits = [
            torch.full(self.volume.shape, NO_SCORE, dtype=torch.float32, device=union_device) for _ in prompt_sets
        ]
        passes: list[list[Pass]] = [[] for _ in prompt_sets]
        for stream_number, (stream, (owner, done)) in enumerate(zip(streams, owners, strict=True)):
            rows = torch.tensor(stream.order, device=low_res.device) + stream_number * depth
            # SAM2 fills holes in each slice's output after encoding its memory (the lockstep step did that on the
            # unfilled logits); the conditioning slices come from SAM2's own code, already filled (and filling
            # twice changes nothing: a filled hole is foreground).
            pass_low_res = fill_small_holes(low_res.index_select(0, rows)[:, None], self.options.fill_hole_area)
            union_pass(logits[owner], stream.order, self._sam2.to_input_grid(pass_low_res))
            passes[owner].append(done)
        return [PropagationRun(union, tuple(done)) for union, done in zip(logits, passes, strict=True)]
