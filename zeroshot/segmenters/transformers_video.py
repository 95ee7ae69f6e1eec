"""SAM2.x (and the SAM3 tracker) as video predictors through 3D volumes, on Hugging Face ``transformers``.

A second backend behind the same interface as :mod:`zeroshot.segmenters.sam2_video`, so that a result can be
checked against an independent implementation of the same model, and so that models published only in the
``transformers`` format (``Sam2VideoModel``, ``Sam3TrackerVideoModel``) can be evaluated. It makes the same
choices, from the same code where they are the toolkit's own:

- preprocessing: :mod:`zeroshot.segmenters.preprocessing` (the authors' 8-bit path by default), fed directly as
  pixel values; ``transformers``' own video processor (and torchvision) is not used;
- prompts: the key slices' boxes and points are mapped to model pixels with
  :func:`~zeroshot.segmenters.prompt_coords.box_to_model` and
  :func:`~zeroshot.segmenters.prompt_coords.points_to_model` (``coords="official"``: ``x * S / X``, as SAM2's
  predictor does);
  a box becomes the two corner points with labels 2 and 3 followed by any clicks, as in SAM2; a mask prompt is
  resized to ``S x S`` (bilinear with antialiasing, ``>= 0.5``) as the ``transformers`` processor does;
- propagation policy: ``"reset"`` (default): every key slice is a conditioning slice; forward from the first key
  slice to the last slice; reset, prompt again, reverse from the last key slice to slice 0; union (maximum of the
  logits). The reverse pass is skipped when the only key slice is slice 0 (it would yield nothing), so a key slice
  at either end is handled. ``"continuous"`` omits the reset;
- hole filling: ``transformers``' predictor has none; with ``fill_hole_area`` (8 by default, as SAM2's builders
  set) :func:`fill_holes_where_sam2_does` adds SAM2's small-hole filling where SAM2's predictor applies it, with
  :mod:`~zeroshot.segmenters.hole_filling`;
- masks: logits (``S/4`` resolution) resized bilinearly to the input slice, ``> logit_threshold``, optional CPU
  post-processing (:func:`~zeroshot.segmenters.postprocess.postprocess_mask`); bfloat16 autocast on CUDA.

The image encoder runs once per slice per volume: :meth:`TransformersVideoSegmenter.prepare` encodes all slices
in batches into the inference session's feature cache (sized to hold every slice), and each ``segment`` call
only resets the tracking state. ``Segmentation.info["encoder_slices_total"]`` counts the encoder's slices.

A slice prompt with both a mask and a box or points is refused: ``transformers`` does not feed a mask and
points to the decoder together (the ``sam2`` backend does).

:func:`tiny_sam2_video_model` builds a small randomly initialised ``Sam2VideoModel`` offline; random weights
test the machinery (shapes, directions, caching, determinism), never accuracy.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from zeroshot.errors import SegmenterError, plain
from zeroshot.prompts.types import POSITIVE, SlicePrompt, VolumePrompts
from zeroshot.segmenters.base import Segmentation
from zeroshot.segmenters.hole_filling import OFFICIAL_FILL_HOLE_AREA, check_fill_hole_area, fill_small_holes
from zeroshot.segmenters.postprocess import postprocess_mask
from zeroshot.segmenters.preprocessing import Preprocessing, SliceStack, to_preprocessing
from zeroshot.segmenters.prompt_coords import box_to_model, check_coords, points_to_model
from zeroshot.segmenters.runtime import (
    count_encoded_slices,
    numerics_for,
    resolve_device,
    resolve_precision,
    uses_tf32,
)
from zeroshot.volume import Volume

__all__ = ["TransformersVideoSegmenter", "TransformersVideoSession", "tiny_sam2_video_model"]

Propagation = Literal["reset", "continuous"]
Precision = Literal["auto", "bfloat16", "float32"]

#: ``config.model_type`` values this backend runs, with the model class and its inference-session class.
MODEL_TYPES = {
    "sam2_video": ("Sam2VideoModel", "transformers.models.sam2_video.modeling_sam2_video", "Sam2VideoInferenceSession"),
    "sam3_tracker_video": (
        "Sam3TrackerVideoModel",
        "transformers.models.sam3_tracker_video.modeling_sam3_tracker_video",
        "Sam3TrackerVideoInferenceSession",
    ),
}
#: Object id of the single structure segmented per volume.
_OBJ_ID = 1
#: Logit of slices a pass did not reach (SAM2's ``NO_OBJ_SCORE``).
_NO_SCORE = -1024.0
#: SAM2's point labels for the two corners of a box.
_BOX_LABELS = (2, 3)


def tiny_sam2_video_model(*, image_size: int = 128, seed: int = 0) -> torch.nn.Module:
    """A small randomly initialised ``Sam2VideoModel`` (about 4 M parameters), built offline from a config.

    The Hiera backbone, FPN and memory modules are shrunk (one memory-attention layer, narrow feed-forward
    layers); the memory dimension stays 64, which ``transformers`` hard-codes in the memory cross-attention.
    Random weights test machinery, never accuracy.

    Parameters
    ----------
    image_size : int
        Model input size S, a multiple of 64 (the backbone downsamples by 32 and the prompt encoder by 16).
    seed : int
        Seed of the random initialisation (drawn on the CPU from a private generator state).

    Raises
    ------
    SegmenterError
        If ``image_size`` is not a positive multiple of 64.
    """
    if int(image_size) != image_size or image_size < 64 or image_size % 64:
        raise SegmenterError(f"image_size must be a positive multiple of 64, got {plain(image_size)}")
    from transformers import Sam2VideoConfig, Sam2VideoModel

    size = int(image_size)
    stride4 = size // 4
    config = Sam2VideoConfig(
        vision_config={
            "model_type": "sam2_vision_model",
            "backbone_config": {
                "model_type": "sam2_hiera_det_model",
                "hidden_size": 16,
                "image_size": [size, size],
                "blocks_per_stage": [1, 2, 2, 1],
                "embed_dim_per_stage": [16, 32, 64, 128],
                "num_attention_heads_per_stage": [1, 1, 1, 1],
                "window_size_per_stage": [8, 4, 4, 2],
                "global_attention_blocks": [2, 4],
            },
            "backbone_channel_list": [128, 64, 32, 16],
            "backbone_feature_sizes": [[stride4, stride4], [stride4 // 2, stride4 // 2], [stride4 // 4, stride4 // 4]],
            "fpn_hidden_size": 256,
        },
        prompt_encoder_config={"image_size": size},
        mask_decoder_config={"mlp_dim": 256},
        image_size=size,
        memory_attention_num_layers=1,
        memory_attention_feed_forward_hidden_size=256,
        memory_attention_rope_feat_sizes=[size // 16, size // 16],
        memory_fuser_intermediate_dim=256,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = Sam2VideoModel(config)
    return model.eval()


class TransformersVideoSegmenter:
    """A ``transformers`` SAM2-family video model that segments 3D volumes from key-slice prompts.

    All arguments are keyword-only.

    Parameters
    ----------
    model_id_or_path : str or path or None
        A local folder or Hugging Face model id loadable with ``from_pretrained`` (``config.model_type``
        ``sam2_video`` or ``sam3_tracker_video``). Ignored when ``model`` is given.
    model : torch.nn.Module or None
        An already built model (e.g. :func:`tiny_sam2_video_model`); takes precedence over ``model_id_or_path``.
    device : {"auto", "cpu", "cuda", "cuda:N"}
    precision : {"auto", "bfloat16", "float32"}
        ``auto``: bfloat16 autocast with TF32 matrix products on CUDA (the authors' setting), float32 on the CPU.
        The weights stay float32; float32 on CUDA turns TF32 off.
    propagation : {"reset", "continuous"}
        See the module docstring.
    coords : {"official", "area"}
        How box and point prompts map onto the model input (:mod:`zeroshot.segmenters.prompt_coords`).
    logit_threshold : float
        A voxel is foreground where the union logit exceeds this (0, as SAM2).
    largest_component : bool
        Keep the largest 26-connected 3D component (MedSAM2's post-processing).
    fill_hole_area : int
        SAM2's small-hole filling in low-resolution pixels (8, as SAM2's builders set; 0 turns it off): see
        :func:`fill_holes_where_sam2_does`.
    fill_enclosed_holes : bool
        Also fill every enclosed hole of each slice of the final mask, whatever its size (on the CPU).
    preprocessing : Preprocessing or {"sam2", "medsam2", "float"}
        See :mod:`zeroshot.segmenters.preprocessing`; ``"sam2"`` (default) is the authors' 8-bit path.
    encoder_batch_size : int
        Slices per image-encoder batch in :meth:`prepare`.
    offload_state_to_cpu : bool
        Keep the cached image features and the per-slice memories in host memory (``transformers``'
        ``inference_state_device``); each is moved to the device when used.
    probabilities : bool
        Also return foreground probabilities (sigmoid of the union logits, before post-processing).
    name : str or None
        Name recorded in results; default: the model id's last part, or the model type.

    Raises
    ------
    SegmenterError
        For an invalid option, an unusable device, neither ``model`` nor ``model_id_or_path``, a model that
        cannot be loaded, or a model type this backend does not run.
    """

    def __init__(
        self,
        *,
        model_id_or_path: str | Path | None = None,
        model: torch.nn.Module | None = None,
        device: str = "auto",
        precision: Precision = "auto",
        propagation: Propagation = "reset",
        coords: str = "official",
        logit_threshold: float = 0.0,
        largest_component: bool = False,
        fill_hole_area: int = OFFICIAL_FILL_HOLE_AREA,
        fill_enclosed_holes: bool = False,
        preprocessing: Preprocessing | str = "sam2",
        encoder_batch_size: int = 8,
        offload_state_to_cpu: bool = False,
        probabilities: bool = True,
        name: str | None = None,
    ) -> None:
        if propagation not in ("reset", "continuous"):
            raise SegmenterError(f"propagation must be 'reset' or 'continuous', got {propagation!r}")
        if int(encoder_batch_size) != encoder_batch_size or encoder_batch_size < 1:
            raise SegmenterError(f"encoder_batch_size must be a positive integer, got {plain(encoder_batch_size)}")
        if not np.isfinite(logit_threshold):
            raise SegmenterError(f"logit_threshold must be finite, got {plain(logit_threshold)}")
        if model is None and model_id_or_path is None:
            raise SegmenterError("give model_id_or_path (a folder or Hugging Face id) or a built model")
        self.device = resolve_device(device)
        self.precision: str = resolve_precision(precision, self.device)
        self.propagation: str = propagation
        self.coords = check_coords(coords)
        self.logit_threshold = float(logit_threshold)
        self.largest_component = bool(largest_component)
        self.fill_hole_area = check_fill_hole_area(fill_hole_area)
        self.fill_enclosed_holes = bool(fill_enclosed_holes)
        self.preprocessing = to_preprocessing(preprocessing)
        self.encoder_batch_size = int(encoder_batch_size)
        self.offload_state_to_cpu = bool(offload_state_to_cpu)
        self.return_probabilities = bool(probabilities)
        self.model_id_or_path = None if model is not None else str(model_id_or_path)
        self.model = model if model is not None else _load_model(str(model_id_or_path))
        model_type = getattr(self.model.config, "model_type", None)
        if model_type not in MODEL_TYPES:
            raise SegmenterError(
                f"model type {model_type!r} is not a video model this backend runs; known: {', '.join(MODEL_TYPES)}"
            )
        self.model_type: str = model_type
        self.weights_sha256 = _weights_sha256(self.model_id_or_path)
        self.model.to(self.device).eval()
        self.image_size = _square_size(self.model.config.image_size)
        self.name = name or (Path(self.model_id_or_path).name if self.model_id_or_path else model_type)
        count_encoded_slices(self, self.model.vision_encoder)

    def prepare(self, volume: Volume) -> TransformersVideoSession:
        """Preprocess ``volume`` and encode all its slices once; see :class:`TransformersVideoSession`."""
        return TransformersVideoSession(self, volume)

    def describe(self) -> dict[str, Any]:
        """The resolved configuration, JSON-serialisable, recorded with every run."""
        import transformers

        weights = (
            f"from_pretrained({self.model_id_or_path!r})"
            if self.model_id_or_path is not None
            else "a model object passed in (random weights unless its maker loaded some): see model_config"
        )
        return {
            "name": self.name,
            "backend": "transformers",
            "transformers_version": transformers.__version__,
            "torch_version": torch.__version__,
            "model_class": type(self.model).__name__,
            "model_type": self.model_type,
            "model_id_or_path": self.model_id_or_path,
            "weights": weights,
            "weights_sha256": self.weights_sha256,
            "model_config": self.model.config.to_dict(),
            "image_size": self.image_size,
            "parameters": int(sum(p.numel() for p in self.model.parameters())),
            "device": str(self.device),
            "precision": self.precision,
            "tf32": uses_tf32(self.device, self.precision),
            "propagation": self.propagation,
            "coords": self.coords,
            "logit_threshold": self.logit_threshold,
            "largest_component": self.largest_component,
            "fill_hole_area": self.fill_hole_area,
            "hole_filling": (
                f"zeroshot.segmenters.hole_filling on {self.device.type}, where SAM2's predictor fills holes "
                "(transformers' predictor has no hole filling)"
                if self.fill_hole_area
                else "off (as transformers' predictor)"
            ),
            "fill_enclosed_holes": self.fill_enclosed_holes,
            "preprocessing": self.preprocessing.describe(),
            "encoder_batch_size": self.encoder_batch_size,
            "offload_state_to_cpu": self.offload_state_to_cpu,
        }

    def numerics(self) -> contextlib.AbstractContextManager:
        """The numerics the model runs under (:func:`~zeroshot.segmenters.runtime.numerics_for`).

        On CUDA bfloat16 autocast with TF32, as the authors run, unless float32 was asked; float32 on the CPU.
        """
        return numerics_for(self.device, self.precision)


class _LazyFrames(Mapping[int, torch.Tensor]):
    """The session's frames as a mapping that prepares a slice only if the model asks for its pixels.

    ``transformers`` needs ``len(frames)`` (the number of slices); the pixels are read only for a slice whose
    features are not cached, which does not happen after :meth:`TransformersVideoSession.__init__` encoded them.
    """

    def __init__(self, slices: SliceStack) -> None:
        self._slices = slices

    def __len__(self) -> int:
        return len(self._slices)

    def __iter__(self) -> Iterator[int]:
        return iter(range(len(self._slices)))

    def __getitem__(self, index: int) -> torch.Tensor:
        return self._slices[index]


class TransformersVideoSession:
    """One volume prepared for a :class:`TransformersVideoSegmenter`; segment it under any number of prompt sets.

    Each :meth:`segment` call starts from a clean tracking state, so calls are independent and repeatable; the
    image features stay cached until :meth:`close`.
    """

    def __init__(self, segmenter: TransformersVideoSegmenter, volume: Volume) -> None:
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
        self.intensity_window = slices.window
        session_class = _session_class(segmenter.model_type)
        self._session = session_class(
            video=None,
            video_height=height,
            video_width=width,
            inference_device=device,
            inference_state_device=storage,
            video_storage_device=device,
            dtype=torch.float32,
            max_vision_features_cache_size=depth,
        )
        self._session.processed_frames = _LazyFrames(slices)
        self._encode_all(slices)
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
            One or more key slices, each with a box and/or points (positive and negative), or a mask.

        Returns
        -------
        Segmentation
            ``mask`` (Z, Y, X) bool on the input grid, ``probabilities`` (Z, Y, X) float32 (if enabled) and
            ``info`` (policy, passes, post-processing, timings, encoder counts).

        Raises
        ------
        PromptError
            If a prompt does not fit the volume.
        SegmenterError
            If the session was closed, or a slice prompt has a mask together with a box or points.
        """
        if self._session is None:
            raise SegmenterError("this transformers session was closed; prepare the volume again")
        for slice_prompt in prompts.slices:
            slice_prompt.validate_for(self.volume.shape)
            if slice_prompt.mask is not None and (slice_prompt.box is not None or slice_prompt.points):
                raise SegmenterError(
                    f"case {prompts.case_id}, slice {slice_prompt.z}: the transformers backend takes a mask or a "
                    "box/points on one slice, not both (use the sam2 backend for a mask with clicks)"
                )
        seg = self._segmenter
        started = time.perf_counter()
        encoded_before = seg.encoded_slices
        key_slices = prompts.key_slices
        plan = [("forward", key_slices[0])]
        if key_slices[-1] > 0:
            plan.append(("reverse", key_slices[-1]))
        logits = torch.full(self.volume.shape, _NO_SCORE, dtype=torch.float32)
        passes = []
        filling = fill_holes_where_sam2_does(seg.model, seg.fill_hole_area, image_size=seg.image_size)
        with torch.inference_mode(), seg.numerics(), filling:
            for number, (direction, start) in enumerate(plan):
                if number == 0 or seg.propagation == "reset":
                    self._session.reset_tracking_data()
                    self._add_prompts(prompts.slices)
                frames, pass_logits = self._propagate(start, reverse=direction == "reverse")
                logits[frames] = torch.maximum(logits[frames], pass_logits)
                passes.append({"direction": direction, "start": start, "slices": len(frames)})
            self._session.reset_tracking_data()
        propagated_s = time.perf_counter() - started
        raw = logits.numpy() > seg.logit_threshold
        mask = postprocess_mask(
            raw, fill_enclosed_holes=seg.fill_enclosed_holes, largest_component=seg.largest_component
        )
        probabilities = torch.sigmoid(logits).numpy() if seg.return_probabilities else None
        frames_run = sum(p["slices"] for p in passes)
        info = {
            "model": seg.name,
            "backend": "transformers",
            "propagation": seg.propagation,
            "coords": seg.coords,
            "key_slices": list(key_slices),
            "passes": passes,
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
            "encoder_slices_segment": seg.encoded_slices - encoded_before,
            "prepare_s": round(self.prepare_s, 4),
            "propagate_s": round(propagated_s, 4),
            "slices_per_s": round(frames_run / propagated_s, 3) if propagated_s > 0 else None,
        }
        return Segmentation(mask=mask, probabilities=probabilities, info=info)

    def close(self) -> None:
        """Drop the inference session and its cached features (device memory is freed with them)."""
        self._session = None

    def __enter__(self) -> TransformersVideoSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _encode_all(self, slices: SliceStack) -> None:
        """Encode every slice in batches into the session's feature cache (the only image-encoder calls)."""
        seg = self._segmenter
        cache = self._session.cache
        shared_positions: list[torch.Tensor] | None = None
        with torch.inference_mode(), seg.numerics():
            for start in range(0, len(slices), seg.encoder_batch_size):
                pixels = slices.batch(start, start + seg.encoder_batch_size)
                out = seg.model.get_image_features(pixels, return_dict=True)
                # Features are (H*W, batch, C) per level; one slice's is a contiguous (H*W, 1, C) copy.
                features, positions = out.fpn_hidden_states, out.fpn_position_encoding
                if shared_positions is None:
                    shared_positions = [p[:, :1].contiguous() for p in positions]
                # Sine position encodings depend on the feature-map size only: where every slice's equal the
                # first's (checked, not assumed), all slices share one copy instead of holding one each.
                shared = all(torch.equal(p, s.expand_as(p)) for p, s in zip(positions, shared_positions, strict=True))
                for offset in range(pixels.shape[0]):
                    own = [f[:, offset : offset + 1].contiguous() for f in features]
                    pos = shared_positions if shared else [p[:, offset : offset + 1].contiguous() for p in positions]
                    cache.cache_vision_features(start + offset, {"vision_feats": own, "vision_pos_embeds": pos})

    def _add_prompts(self, slice_prompts: tuple[SlicePrompt, ...]) -> None:
        """Add each key slice's prompt and run it as a conditioning slice (SAM2's order: prompts first)."""
        session, model = self._session, self._segmenter.model
        shape_yx = self.volume.shape[1:]
        size, coords = self._segmenter.image_size, self._segmenter.coords
        device = self._segmenter.device
        obj_idx = session.obj_id_to_idx(_OBJ_ID)
        for sp in slice_prompts:
            if sp.mask is not None:
                mask = torch.from_numpy(np.asarray(sp.mask, dtype=np.float32))[None, None].to(device)
                if mask.shape[-2:] != (size, size):
                    mask = F.interpolate(mask, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
                    mask = (mask >= 0.5).to(torch.float32)
                session.add_mask_inputs(obj_idx, sp.z, mask)
            else:
                xy, labels = [], []
                if sp.box is not None:
                    xy.append(box_to_model(sp.box, shape_yx=shape_yx, image_size=size, coords=coords).reshape(2, 2))
                    labels.extend(_BOX_LABELS)
                if sp.points:
                    xy.append(points_to_model(sp.points, shape_yx=shape_yx, image_size=size, coords=coords))
                    labels.extend(1 if label == POSITIVE else 0 for label in sp.labels)
                point_coords = torch.as_tensor(np.concatenate(xy), dtype=torch.float32)[None, None]
                point_labels = torch.as_tensor(labels, dtype=torch.int32)[None, None]
                session.add_point_inputs(obj_idx, sp.z, {"point_coords": point_coords, "point_labels": point_labels})
            session.obj_with_new_inputs = [_OBJ_ID]
            model(inference_session=session, frame_idx=sp.z)

    def _propagate(self, start: int, *, reverse: bool) -> tuple[list[int], torch.Tensor]:
        """Run one pass from ``start``; return its slices and their logits on the input grid (CPU float32)."""
        frames, low_res = [], []
        for out in self._segmenter.model.propagate_in_video_iterator(
            self._session, start_frame_idx=start, reverse=reverse
        ):
            frames.append(int(out.frame_idx))
            low_res.append(out.pred_masks[:1, :1].float())
        if not frames:
            return [], torch.empty((0, *self.volume.shape[1:]))
        height, width = self.volume.shape[1:]
        stacked = torch.cat(low_res, dim=0)
        upsampled = F.interpolate(stacked, size=(height, width), mode="bilinear", align_corners=False)
        return frames, upsampled[:, 0].cpu()


@contextlib.contextmanager
def fill_holes_where_sam2_does(model: torch.nn.Module, area: int, *, image_size: int) -> Iterator[None]:
    """While the block runs, give a ``transformers`` SAM2-family video model SAM2's small-hole filling.

    ``transformers``' ``_run_single_frame_inference`` returns a slice's low-resolution logits (``pred_masks``,
    stored and output) and the high-resolution ones its memory is encoded from (``high_res_masks``). Inside the
    block that one method of this model object is wrapped so that, as in SAM2's predictor:

    - every slice's ``pred_masks`` are filled (:func:`~zeroshot.segmenters.hole_filling.fill_small_holes`);
    - on a prompted slice (points, box or mask) the memory is encoded from the filled logits upsampled to
      ``S x S`` (bilinear, as SAM2's ``propagate_in_video_preflight`` does), not from the decoder's own
      high-resolution logits;
    - on a propagated slice the memory keeps the unfilled logits (SAM2 encodes it before filling).

    The model may be the caller's own object, shared by segmenters with other settings: the wrapping is undone
    when the block ends.

    Parameters
    ----------
    model : Sam2VideoModel or Sam3TrackerVideoModel
    area : int
        ``fill_hole_area`` in low-resolution pixels; 0 leaves the model as it is.
    image_size : int
        Model input size S.
    """
    if area == 0:
        yield
        return
    run = model._run_single_frame_inference

    def run_and_fill_holes(*args: Any, **kwargs: Any) -> dict[str, Any]:
        out = run(*args, **kwargs)
        filled = fill_small_holes(out["pred_masks"], area)
        out["pred_masks"] = filled
        if kwargs.get("point_inputs") is not None or kwargs.get("mask_inputs") is not None:
            high_res = F.interpolate(
                filled.float(), size=(image_size, image_size), mode="bilinear", align_corners=False
            )
            out["high_res_masks"] = high_res.to(out["high_res_masks"].dtype)
        return out

    previous = model.__dict__.get("_run_single_frame_inference")
    model._run_single_frame_inference = run_and_fill_holes
    try:
        yield
    finally:
        if previous is None:
            del model._run_single_frame_inference
        else:
            model._run_single_frame_inference = previous


def _load_model(model_id_or_path: str) -> torch.nn.Module:
    import importlib

    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(model_id_or_path)
    except Exception as exc:  # transformers raises OSError, ValueError, HTTP errors for a missing or bad model
        raise SegmenterError(f"cannot read a transformers model config from {model_id_or_path!r}: {exc}") from exc
    model_type = getattr(config, "model_type", None)
    if model_type not in MODEL_TYPES:
        raise SegmenterError(
            f"{model_id_or_path!r} is a {model_type!r} model; this backend runs {', '.join(MODEL_TYPES)}"
        )
    class_name, module, _session = MODEL_TYPES[model_type]
    model_class = getattr(importlib.import_module(module), class_name)
    try:
        return model_class.from_pretrained(model_id_or_path)
    except Exception as exc:  # as above
        raise SegmenterError(f"cannot load {class_name} from {model_id_or_path!r}: {exc}") from exc


def _session_class(model_type: str) -> type:
    import importlib

    _class_name, module, session_name = MODEL_TYPES[model_type]
    return getattr(importlib.import_module(module), session_name)


def _square_size(image_size: int | list[int] | tuple[int, int]) -> int:
    sizes = [int(image_size)] if isinstance(image_size, int) else [int(s) for s in image_size]
    if len(set(sizes)) != 1:
        raise SegmenterError(f"the model's image size {image_size} is not square; SAM2 models are")
    return sizes[0]


def _weights_sha256(model_id_or_path: str | None) -> str | None:
    """SHA-256 of a local model folder's file manifest; ``None`` for a hub id or a model object."""
    if model_id_or_path is None or not Path(model_id_or_path).is_dir():
        return None
    from zeroshot.checkpoints import sha256_of

    return sha256_of(Path(model_id_or_path))
