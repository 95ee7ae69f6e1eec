"""A volume prepared for a SAM2 video predictor: prompts in, masks propagated through the slices out.

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
``logits > logit_threshold`` at the input slice size (SAM2 resizes its ``S/4`` logits bilinearly), then optionally
post-processed on the CPU (:mod:`zeroshot.segmenters.postprocess`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from zeroshot.errors import SegmenterError
from zeroshot.prompts.types import POSITIVE, SlicePrompt, VolumePrompts
from zeroshot.segmenters.base import Segmentation
from zeroshot.segmenters.hole_filling import fill_small_holes
from zeroshot.segmenters.postprocess import postprocess_mask
from zeroshot.segmenters.preprocessing import SliceStack
from zeroshot.segmenters.prompt_coords import box_to_unit, points_to_unit
from zeroshot.segmenters.sam2_lockstep import Stream, run_lockstep
from zeroshot.segmenters.sam2_state import FeatureCache, Sam2InferenceState
from zeroshot.volume import Volume

if TYPE_CHECKING:
    from zeroshot.segmenters.sam2_video import Sam2Segmenter

__all__ = ["Sam2Session"]

#: Object id used for the single structure segmented per volume.
_OBJ_ID = 1
#: Score of slices a pass did not reach (SAM2's ``NO_OBJ_SCORE``): finite, so resizing keeps it exact.
_NO_SCORE = -1024.0


@dataclass(frozen=True)
class _Pass:
    """One propagation pass: direction, first slice and how many slices it produced."""

    direction: Literal["forward", "reverse"]
    start: int
    slices: int


class Sam2Session:
    """One volume prepared for a :class:`Sam2Segmenter`; segment it under any number of prompt sets.

    Each :meth:`segment` call starts from a clean predictor state (prompts and memories of earlier calls are
    discarded), so calls are independent and repeatable; the image features computed by the fast engine are
    kept until :meth:`close`. ``Segmentation.info["encoder_slices_total"]`` counts every slice the image
    encoder has processed for this session, so a test can assert that it stays at the number of slices.
    """

    def __init__(self, segmenter: Sam2Segmenter, volume: Volume) -> None:
        started = time.perf_counter()
        self.volume = volume
        self._segmenter = segmenter
        self._encoded_before = segmenter.encoded_slices
        depth, height, width = volume.shape
        device = segmenter.device
        storage = torch.device("cpu") if segmenter.offload_state_to_cpu else device
        slices = SliceStack(
            volume.array, image_size=segmenter.image_size, preprocessing=segmenter.preprocessing, device=device
        )
        if segmenter.engine != "reference":
            feature_storage = torch.device("cpu") if segmenter.offload_video_to_cpu else device
            cache: Any = FeatureCache(depth, compute_device=device, storage_device=feature_storage)
        else:
            cache = {}
        self._state: Sam2InferenceState | None = Sam2InferenceState(
            images=slices,
            num_frames=depth,
            video_height=height,
            video_width=width,
            device=device,
            storage_device=storage,
            offload_video_to_cpu=segmenter.offload_video_to_cpu,
            offload_state_to_cpu=segmenter.offload_state_to_cpu,
            cached_features=cache,
        )
        self.intensity_window = slices.window
        if isinstance(cache, FeatureCache):
            batch = segmenter.encoder_batch_size
            with torch.inference_mode(), segmenter.numerics():
                for start in range(0, depth, batch):
                    cache.add_batch(start, segmenter.model.forward_image(slices.batch(start, start + batch)))
        self.prepare_s = time.perf_counter() - started

    @property
    def encoder_slices_total(self) -> int:
        """Slices the image encoder has processed for this session so far."""
        return self._segmenter.encoded_slices - self._encoded_before

    def segment(self, prompts: VolumePrompts) -> Segmentation:
        """Segment the volume under ``prompts`` (independent of earlier calls on this session).

        Parameters
        ----------
        prompts : VolumePrompts
            One or more key slices, each with a box, points (positive and negative), a mask, or a mask with
            points / box (the mask then seeds SAM's decoder as a previous-round prediction, as in an
            interactive correction). Every key slice is a conditioning frame before propagation starts.

        Returns
        -------
        Segmentation
            ``mask`` (Z, Y, X) bool on the input grid, ``probabilities`` (Z, Y, X) float32 (if enabled) and
            ``info`` (engine, policy, passes, post-processing, timings, encoder counts).

        Raises
        ------
        PromptError
            If a prompt does not fit the volume (slice index, box, point or mask shape).
        SegmenterError
            If the session was closed.
        """
        return self.segment_many([prompts])[0]

    def segment_many(self, prompt_sets: Sequence[VolumePrompts]) -> list[Segmentation]:
        """Segment the volume under several prompt sets at once; the same results as one :meth:`segment` each.

        With the ``fast`` engine and the ``reset`` policy every pass of every prompt set propagates in one
        lockstep batch (:mod:`zeroshot.segmenters.sam2_lockstep`), so K prompt sets take about as many
        sequential steps as one. Otherwise the prompt sets run one after the other. ``info["propagate_s"]`` and
        ``info["slices_per_s"]`` then describe the whole call (``info["prompt_sets_in_call"]`` says how many).

        Raises
        ------
        PromptError
            If a prompt does not fit the volume (nothing is segmented then).
        SegmenterError
            If the session was closed.
        """
        if self._state is None:
            raise SegmenterError("this SAM2 session was closed; prepare the volume again")
        prompt_sets = list(prompt_sets)
        for prompts in prompt_sets:
            for slice_prompt in prompts.slices:
                slice_prompt.validate_for(self.volume.shape)
        if not prompt_sets:
            return []
        seg = self._segmenter
        started = time.perf_counter()
        encoded_before = seg.encoded_slices
        fallback = self._lockstep_fallback()
        with torch.inference_mode(), seg.numerics():
            if fallback is None:
                runs = self._propagate_lockstep(prompt_sets)
            else:
                runs = [self._propagate_serial(prompts) for prompts in prompt_sets]
            seg.model.reset_state(self._state)
        propagated_s = time.perf_counter() - started
        frames_run = sum(p.slices for _, passes in runs for p in passes)
        shared = {
            "lockstep": fallback is None,
            "prompt_sets_in_call": len(prompt_sets),
            "encoder_slices_segment": seg.encoded_slices - encoded_before,
            "propagate_s": round(propagated_s, 4),
            "slices_per_s": round(frames_run / propagated_s, 3) if propagated_s > 0 else None,
        }
        if fallback is not None and seg.engine == "fast":
            shared["lockstep_fallback"] = fallback
        return [
            self._finish(prompts, logits, passes, shared, started)
            for prompts, (logits, passes) in zip(prompt_sets, runs, strict=True)
        ]

    def _lockstep_fallback(self) -> str | None:
        """Why the lockstep engine cannot run (``None`` when it can)."""
        seg = self._segmenter
        if seg.engine != "fast":
            return f"engine {seg.engine!r}"
        if seg.propagation != "reset":
            return "continuous policy: the reverse pass attends to the forward pass's memories, so passes run in turn"
        if seg.model.num_maskmem == 0 or seg.model.non_overlap_masks_for_mem_enc:
            return "model without memory, or with non-overlapping memory masks across the batch"
        return None

    def _plan(self, prompts: VolumePrompts) -> list[tuple[Literal["forward", "reverse"], int]]:
        """The passes of a prompt set: forward from the first key slice, reverse from the last (unless slice 0)."""
        key_slices = prompts.key_slices
        plan: list[tuple[Literal["forward", "reverse"], int]] = [("forward", key_slices[0])]
        if key_slices[-1] > 0:
            plan.append(("reverse", key_slices[-1]))
        return plan

    def _propagate_serial(self, prompts: VolumePrompts) -> tuple[torch.Tensor, list[_Pass]]:
        """One prompt set, pass after pass, with SAM2's per-slice loop (``fast-serial``, ``reference``)."""
        seg = self._segmenter
        logits = torch.full(self.volume.shape, _NO_SCORE, dtype=torch.float32)
        passes = []
        for number, (direction, start) in enumerate(self._plan(prompts)):
            if number == 0 or seg.propagation == "reset":
                seg.model.reset_state(self._state)
                self._add_prompts(prompts.slices)
            reverse = direction == "reverse"
            if seg.engine == "reference":
                frames, pass_logits = self._propagate_reference(start, reverse=reverse)
            else:
                frames, pass_logits = self._propagate_fast(start, reverse=reverse)
            logits[frames] = torch.maximum(logits[frames], pass_logits)
            passes.append(_Pass(direction, start, len(frames)))
        return logits, passes

    def _propagate_lockstep(self, prompt_sets: list[VolumePrompts]) -> list[tuple[torch.Tensor, list[_Pass]]]:
        """Every pass of every prompt set as one lockstep batch; the conditioning slices come from SAM2 itself."""
        model, state = self._segmenter.model, self._state
        assert state is not None
        depth = self.volume.num_slices
        streams: list[Stream] = []
        cond_outputs = []
        owners: list[tuple[int, _Pass]] = []
        for number, prompts in enumerate(prompt_sets):
            model.reset_state(state)
            self._add_prompts(prompts.slices)
            model.propagate_in_video_preflight(state)
            cond = dict(state.output_dict_per_obj[state.obj_id_to_idx[_OBJ_ID]]["cond_frame_outputs"])
            for direction, start in self._plan(prompts):
                order = tuple(self._order(start, reverse=direction == "reverse"))
                streams.append(Stream(order=order, cond_slices=tuple(cond), reverse=direction == "reverse"))
                cond_outputs.append(cond)
                owners.append((number, _Pass(direction, start, len(order))))
        low_res = run_lockstep(
            model,
            state.cached_features,
            streams,
            cond_outputs,
            num_slices=depth,
            device=state.device,
            storage_device=state.storage_device,
        )
        runs = [(torch.full(self.volume.shape, _NO_SCORE, dtype=torch.float32), []) for _ in prompt_sets]
        for stream_number, (stream, (owner, done)) in enumerate(zip(streams, owners, strict=True)):
            rows = torch.tensor(stream.order, device=low_res.device) + stream_number * depth
            logits, passes = runs[owner]
            frames = list(stream.order)
            # SAM2 fills holes in each slice's output after encoding its memory (the lockstep step did that on the
            # unfilled logits); the conditioning slices come from SAM2's own code, already filled (and filling
            # twice changes nothing: a filled hole is foreground).
            pass_low_res = fill_small_holes(low_res.index_select(0, rows)[:, None], self._segmenter.fill_hole_area)
            pass_logits = self._to_input_grid(pass_low_res)
            logits[frames] = torch.maximum(logits[frames], pass_logits)
            passes.append(done)
        return runs

    def _finish(
        self,
        prompts: VolumePrompts,
        logits: torch.Tensor,
        passes: list[_Pass],
        shared: dict[str, Any],
        started: float,
    ) -> Segmentation:
        """Threshold, post-process and describe one prompt set's union logits ``(Z, Y, X)`` (on the CPU)."""
        seg = self._segmenter
        raw = logits.numpy() > seg.logit_threshold
        mask = postprocess_mask(
            raw, fill_enclosed_holes=seg.fill_enclosed_holes, largest_component=seg.largest_component
        )
        probabilities = torch.sigmoid(logits).numpy() if seg.return_probabilities else None
        info = {
            "model": seg.name,
            "engine": seg.engine,
            "propagation": seg.propagation,
            "coords": seg.coords,
            "key_slices": list(prompts.key_slices),
            "passes": [{"direction": p.direction, "start": p.start, "slices": p.slices} for p in passes],
            "logit_threshold": seg.logit_threshold,
            "fill_hole_area": seg.fill_hole_area,
            "fill_enclosed_holes": seg.fill_enclosed_holes,
            "largest_component": seg.largest_component,
            "voxels_before_postprocess": int(raw.sum()),
            "device": str(seg.device),
            "precision": seg.precision,
            "image_size": seg.image_size,
            "intensity_window": [self.intensity_window.low, self.intensity_window.high],
            "encoder_slices_total": self.encoder_slices_total,
            "prepare_s": round(self.prepare_s, 4),
            **shared,
            "segment_s": round(time.perf_counter() - started, 4),
        }
        return Segmentation(mask=mask, probabilities=probabilities, info=info)

    def close(self) -> None:
        """Drop the predictor state and cached features (device memory is freed with them)."""
        self._state = None

    def __enter__(self) -> Sam2Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _add_prompts(self, slice_prompts: tuple[SlicePrompt, ...]) -> None:
        model, state = self._segmenter.model, self._state
        shape_yx = self.volume.shape[1:]
        size, coords = self._segmenter.image_size, self._segmenter.coords
        for sp in slice_prompts:
            if sp.mask is not None:
                model.add_new_mask(state, frame_idx=sp.z, obj_id=_OBJ_ID, mask=torch.from_numpy(sp.mask.astype(bool)))
            if sp.box is None and not sp.points:
                continue
            # Fractions of the model input: SAM2 multiplies them by S itself (normalize_coords=False), so the
            # official mapping gives exactly the model pixels of normalize_coords=True on pixel coordinates.
            box = None if sp.box is None else box_to_unit(sp.box, shape_yx=shape_yx, image_size=size, coords=coords)
            points = labels = None
            if sp.points:
                points = points_to_unit(sp.points, shape_yx=shape_yx, image_size=size, coords=coords)
                labels = np.asarray([1 if label == POSITIVE else 0 for label in sp.labels], dtype=np.int32)
            model.add_new_points_or_box(
                state,
                frame_idx=sp.z,
                obj_id=_OBJ_ID,
                points=None if points is None else torch.from_numpy(points),
                labels=None if labels is None else torch.as_tensor(labels),
                box=None if box is None else torch.from_numpy(box),
                normalize_coords=False,
            )

    def _order(self, start: int, *, reverse: bool) -> range:
        return range(start, -1, -1) if reverse else range(start, self.volume.num_slices)

    def _propagate_fast(self, start: int, *, reverse: bool) -> tuple[list[int], torch.Tensor]:
        """Propagate from ``start`` with cached features; return the slices and their logits (on the CPU)."""
        model, state = self._segmenter.model, self._state
        assert state is not None
        model.propagate_in_video_preflight(state)
        obj_idx = state.obj_id_to_idx[_OBJ_ID]
        outputs = state.output_dict_per_obj[obj_idx]
        tracked = state.frames_tracked_per_obj[obj_idx]
        frames = list(self._order(start, reverse=reverse))
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
        return frames, self._to_input_grid(torch.cat(low_res, dim=0))

    def _propagate_reference(self, start: int, *, reverse: bool) -> tuple[list[int], torch.Tensor]:
        """Propagate with SAM2's own ``propagate_in_video`` (per-slice encoding); same return as the fast path."""
        frames, logits = [], []
        for z, _obj_ids, video_res in self._segmenter.model.propagate_in_video(
            self._state, start_frame_idx=start, reverse=reverse
        ):
            frames.append(int(z))
            logits.append(video_res[0, 0].float().cpu())
        return frames, torch.stack(logits) if logits else torch.empty((0, *self.volume.shape[1:]))

    def _to_input_grid(self, low_res: torch.Tensor, chunk: int = 32) -> torch.Tensor:
        """Resize ``(N, 1, S/4, S/4)`` logits to ``(N, Y, X)`` on the CPU, as SAM2 resizes each slice."""
        height, width = self.volume.shape[1:]
        parts = [
            F.interpolate(low_res[i : i + chunk], size=(height, width), mode="bilinear", align_corners=False)[:, 0]
            .float()
            .cpu()
            for i in range(0, low_res.shape[0], chunk)
        ]
        return torch.cat(parts)
