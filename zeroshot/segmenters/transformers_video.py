"""SAM2.x (and the SAM3 tracker) as video predictors through 3D volumes, on Hugging Face ``transformers``.

A second backend behind the same interface as :mod:`zeroshot.segmenters.sam2_video`, so that a result can be
checked against an independent implementation of the same model, and so that models published only in the
``transformers`` format (``Sam2VideoModel``, ``Sam3TrackerVideoModel``) can be evaluated. It makes the same
choices, from the same code where they are the toolkit's own:

- the pass plan, the propagation policy, the union of the passes and the finished ``Segmentation`` are the shared
  video core's (:mod:`zeroshot.segmenters.video_core`); this module supplies only :class:`TransformersBackend`;
- preprocessing: :mod:`zeroshot.segmenters.preprocessing`, fed directly as pixel values (``transformers``' own
  video processor, and torchvision, are not used): the authors' 8-bit path for SAM2, SAM 3's processor
  arithmetic (bilinear, mean and std 0.5) for SAM 3 (:data:`DEFAULT_PREPROCESSING`);
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
- masks: logits (``S/4`` resolution) resized bilinearly to the input slice, ``> logit_threshold`` (both on the
  compute device), optional CPU post-processing (:func:`~zeroshot.segmenters.postprocess.postprocess_mask`);
  bfloat16 autocast on CUDA.

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
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from zeroshot.errors import SegmenterError, plain
from zeroshot.prompts.types import POSITIVE, SlicePrompt, VolumePrompts
from zeroshot.segmenters.hole_filling import OFFICIAL_FILL_HOLE_AREA, fill_small_holes
from zeroshot.segmenters.preprocessing import Preprocessing, SliceStack
from zeroshot.segmenters.prompt_coords import box_to_model, points_to_model
from zeroshot.segmenters.runtime import encoder_counter
from zeroshot.segmenters.video_core import OBJ_ID, VideoSegmenterBase, VideoSession
from zeroshot.segmenters.video_options import VideoOptions, video_options
from zeroshot.volume import Volume

__all__ = [
    "TransformersBackend",
    "TransformersVideoSegmenter",
    "TransformersVideoSession",
    "load_video_model",
    "resize_video_config",
    "tiny_sam2_video_model",
    "tiny_sam3_tracker_video_model",
]

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
#: Each model family's input pipeline by default. SAM2: the authors' 8-bit path with ImageNet statistics. SAM 3:
#: its processor (``Sam3ImageProcessor``: bilinear resize of the 8-bit frame, rescale by 1/255, normalise with
#: ``IMAGENET_STANDARD_MEAN`` / ``_STD``, which are 0.5), after the same intensity window and uint8 truncation.
DEFAULT_PREPROCESSING = {
    "sam2_video": Preprocessing(pipeline="sam2"),
    "sam3_tracker_video": Preprocessing(
        pipeline="float", resize="bilinear", quantize_uint8=True, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)
    ),
}
#: Config types whose checkpoints hold a video model this backend runs as part of a larger model.
TRACKER_OF = {"sam3_video": "sam3_tracker_video"}
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
    config = Sam2VideoConfig(
        vision_config={
            "model_type": "sam2_vision_model",
            "backbone_config": {
                "model_type": "sam2_hiera_det_model",
                "hidden_size": 16,
                "blocks_per_stage": [1, 2, 2, 1],
                "embed_dim_per_stage": [16, 32, 64, 128],
                "num_attention_heads_per_stage": [1, 1, 1, 1],
                "window_size_per_stage": [8, 4, 4, 2],
                "global_attention_blocks": [2, 4],
            },
            "backbone_channel_list": [128, 64, 32, 16],
            "fpn_hidden_size": 256,
        },
        mask_decoder_config={"mlp_dim": 256},
        memory_attention_num_layers=1,
        memory_attention_feed_forward_hidden_size=256,
        memory_fuser_intermediate_dim=256,
    )
    # The sizes that follow the input size (backbone, prompt encoder, feature maps, rotary) have one home.
    resize_video_config(config, size, what="tiny_sam2_video_model")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = Sam2VideoModel(config)
    return model.eval()


def tiny_sam3_tracker_video_model(*, image_size: int = 56, seed: int = 0) -> torch.nn.Module:
    """A small randomly initialised ``Sam3TrackerVideoModel`` (about 6 M parameters), built offline from a config.

    SAM 3's tracker (``Sam3TrackerVideoConfig``) with its ViT backbone shrunk to two narrow layers (patch 14, as
    SAM 3), one memory-attention layer and narrow feed-forward layers; the FPN and memory widths stay SAM 3's
    (256 and 64, which ``transformers`` ties to other sizes). Random weights test machinery, never accuracy.

    Parameters
    ----------
    image_size : int
        Model input size S, a positive multiple of 28 (patches of 14, and an FPN level at half their grid).
    seed : int
        Seed of the random initialisation (drawn on the CPU from a private generator state).

    Raises
    ------
    SegmenterError
        If ``image_size`` is not a positive multiple of 28.
    """
    if int(image_size) != image_size or image_size < 28 or image_size % 28:
        raise SegmenterError(f"image_size must be a positive multiple of 28 for SAM 3, got {plain(image_size)}")
    from transformers import Sam3TrackerVideoConfig, Sam3TrackerVideoModel

    size, patch = int(image_size), 14
    grid = size // patch
    config = Sam3TrackerVideoConfig(
        vision_config={
            "model_type": "sam3_vision_model",
            "backbone_config": {
                "model_type": "sam3_vit_model",
                "hidden_size": 32,
                "intermediate_size": 64,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "image_size": size,
                "patch_size": patch,
                "window_size": 2,
                "global_attn_indexes": [1],
                "pretrain_image_size": size,
            },
            "fpn_hidden_size": 256,
            "backbone_feature_sizes": [[4 * grid, 4 * grid], [2 * grid, 2 * grid], [grid, grid]],
        },
        prompt_encoder_config={"image_size": size},
        mask_decoder_config={"mlp_dim": 256},
        image_size=size,
        memory_attention_num_layers=1,
        memory_attention_feed_forward_hidden_size=256,
        memory_fuser_intermediate_dim=256,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = Sam3TrackerVideoModel(config)
    return model.eval()


class TransformersVideoSegmenter(VideoSegmenterBase):
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
    preprocessing : Preprocessing or {"sam2", "medsam2", "float"} or None
        See :mod:`zeroshot.segmenters.preprocessing`. ``None``: the model family's own input
        (:data:`DEFAULT_PREPROCESSING`): for SAM2 the authors' 8-bit path (``"sam2"``); for SAM 3 what its
        ``transformers`` processor does to 8-bit frames (bilinear resize, ``/ 255``, mean and std 0.5), after the
        same MR window.
    encoder_batch_size : int
        Slices per image-encoder batch in :meth:`prepare`.
    offload_state_to_cpu : bool
        Keep the cached image features and the per-slice memories in host memory (``transformers``'
        ``inference_state_device``); each is moved to the device when used. One switch for both:
        ``options.offload_video_to_cpu`` follows it.
    probabilities : bool
        Also return foreground probabilities (sigmoid of the union logits, before post-processing).
    image_size : int or None
        Run a model loaded from ``model_id_or_path`` at this input size instead of its config's (see
        :func:`load_video_model`; the registry's ``NAME@SIZE``). ``None`` keeps the config's.
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
        preprocessing: Preprocessing | str | None = None,
        encoder_batch_size: int = 8,
        offload_state_to_cpu: bool = False,
        probabilities: bool = True,
        image_size: int | None = None,
        name: str | None = None,
    ) -> None:
        if model is None and model_id_or_path is None:
            raise SegmenterError("give model_id_or_path (a folder or Hugging Face id) or a built model")
        if model is not None and image_size is not None:
            raise SegmenterError(
                "image_size applies to a model loaded from model_id_or_path; a built model has its own"
            )
        # Options are checked before the (slow) load; the image size is the model's.
        options = video_options(
            name=name or "",
            device=device,
            precision=precision,
            image_size=0,
            propagation=propagation,
            coords=coords,
            logit_threshold=logit_threshold,
            largest_component=largest_component,
            fill_hole_area=fill_hole_area,
            fill_enclosed_holes=fill_enclosed_holes,
            preprocessing="sam2" if preprocessing is None else preprocessing,
            encoder_batch_size=encoder_batch_size,
            offload_video_to_cpu=offload_state_to_cpu,
            offload_state_to_cpu=offload_state_to_cpu,
            probabilities=probabilities,
        )
        self.model_id_or_path = None if model is not None else str(model_id_or_path)
        self.model = model if model is not None else load_video_model(str(model_id_or_path), image_size=image_size)
        model_type = getattr(self.model.config, "model_type", None)
        if model_type not in MODEL_TYPES:
            raise SegmenterError(
                f"model type {model_type!r} is not a video model this backend runs; known: {', '.join(MODEL_TYPES)}"
            )
        self.model_type: str = model_type
        self.weights_sha256 = _weights_sha256(self.model_id_or_path)
        self.model.to(options.device).eval()
        self.options = replace(
            options,
            preprocessing=DEFAULT_PREPROCESSING[model_type] if preprocessing is None else options.preprocessing,
            image_size=_square_size(self.model.config.image_size),
            name=name or (Path(self.model_id_or_path).name if self.model_id_or_path else model_type),
        )
        encoder_counter(self.model.vision_encoder)

    def _encoder(self) -> torch.nn.Module:
        return self.model.vision_encoder

    def prepare(self, volume: Volume) -> TransformersVideoSession:
        """Preprocess ``volume`` and encode all its slices once; see :class:`TransformersVideoSession`."""
        return TransformersVideoSession(self.model, self.options, volume)

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
            "parameters": int(sum(p.numel() for p in self.model.parameters())),
            **self.options.describe(),
            "hole_filling": (
                f"zeroshot.segmenters.hole_filling on {self.device.type}, where SAM2's predictor fills holes "
                "(transformers' predictor has no hole filling)"
                if self.fill_hole_area
                else "off (as transformers' predictor)"
            ),
        }


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


class TransformersBackend:
    """The ``transformers`` part of a video session: slice encoding into the session's cache, prompts, one pass.

    Parameters
    ----------
    model : Sam2VideoModel or Sam3TrackerVideoModel
    options : VideoOptions
    volume : Volume
    """

    name = "transformers"
    engine = None

    def __init__(self, model: torch.nn.Module, options: VideoOptions, volume: Volume) -> None:
        self.model = model
        self.options = options
        self.volume = volume
        self.session: Any = None

    def encode_slices(self) -> None:
        """Build the inference session (its feature cache sized to hold every slice) and encode each slice once."""
        options = self.options
        depth, height, width = self.volume.shape
        slices = SliceStack(
            self.volume.array, image_size=options.image_size, preprocessing=options.preprocessing, device=options.device
        )
        self.intensity_window = slices.window
        session_class = _session_class(self.model.config.model_type)
        self.session = session_class(
            video=None,
            video_height=height,
            video_width=width,
            inference_device=options.device,
            inference_state_device=options.storage_device,
            video_storage_device=options.device,
            dtype=torch.float32,
            max_vision_features_cache_size=depth,
        )
        self.session.processed_frames = _LazyFrames(slices)
        self._encode_all(slices)

    def check_prompts(self, prompts: VolumePrompts) -> None:
        """Refuse a slice prompt holding a mask together with a box or points (``transformers`` takes one or the other).

        Raises
        ------
        SegmenterError
            Naming the case and the slice.
        """
        for slice_prompt in prompts.slices:
            if slice_prompt.mask is not None and (slice_prompt.box is not None or slice_prompt.points):
                raise SegmenterError(
                    f"case {prompts.case_id}, slice {slice_prompt.z}: the transformers backend takes a mask or a "
                    "box/points on one slice, not both (use the sam2 backend for a mask with clicks)"
                )

    def running(self) -> contextlib.AbstractContextManager:
        """The numerics, with SAM2's small-hole filling wrapped around the model while propagation runs."""
        stack = contextlib.ExitStack()
        stack.enter_context(self.options.numerics())
        stack.enter_context(
            fill_holes_where_sam2_does(self.model, self.options.fill_hole_area, image_size=self.options.image_size)
        )
        return stack

    def reset(self) -> None:
        """Clear prompts and memories (``reset_tracking_data``); the cached features stay."""
        self.session.reset_tracking_data()

    def add_prompt(self, slice_prompt: SlicePrompt) -> None:
        """Add a key slice's prompt and run it as a conditioning slice (SAM2's order: prompts first)."""
        session, model, sp = self.session, self.model, slice_prompt
        shape_yx = self.volume.shape[1:]
        size, coords = self.options.image_size, self.options.coords
        obj_idx = session.obj_id_to_idx(OBJ_ID)
        if sp.mask is not None:
            mask = torch.from_numpy(np.asarray(sp.mask, dtype=np.float32))[None, None].to(self.options.device)
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
        session.obj_with_new_inputs = [OBJ_ID]
        model(inference_session=session, frame_idx=sp.z)

    def step_pass(self, start: int, *, reverse: bool) -> tuple[list[int], torch.Tensor]:
        """Run one pass from ``start``; return its slices and their float32 logits on the input grid (on the device)."""
        frames, low_res = [], []
        for out in self.model.propagate_in_video_iterator(self.session, start_frame_idx=start, reverse=reverse):
            frames.append(int(out.frame_idx))
            low_res.append(out.pred_masks[:1, :1].float())
        if not frames:
            return [], torch.empty((0, *self.volume.shape[1:]))
        height, width = self.volume.shape[1:]
        stacked = torch.cat(low_res, dim=0)
        upsampled = F.interpolate(stacked, size=(height, width), mode="bilinear", align_corners=False)
        return frames, upsampled[:, 0]

    def close(self) -> None:
        """Drop the inference session and its cached features."""
        self.session = None

    def _encode_all(self, slices: SliceStack) -> None:
        """Encode every slice in batches into the session's feature cache (the only image-encoder calls)."""
        options, model = self.options, self.model
        cache = self.session.cache
        shared_positions: list[torch.Tensor] | None = None
        with torch.inference_mode(), options.numerics():
            for start in range(0, len(slices), options.encoder_batch_size):
                pixels = slices.batch(start, start + options.encoder_batch_size)
                out = model.get_image_features(pixels, return_dict=True)
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


class TransformersVideoSession(VideoSession):
    """One volume prepared for a ``transformers`` video model; segment it under any number of prompt sets.

    The shared :class:`~zeroshot.segmenters.video_core.VideoSession` with :class:`TransformersBackend`: each
    :meth:`segment` call starts from a clean tracking state, so calls are independent and repeatable; the image
    features stay cached until :meth:`close`. A slice prompt with both a mask and a box or points is refused.

    Parameters
    ----------
    model : Sam2VideoModel or Sam3TrackerVideoModel
    options : VideoOptions
    volume : Volume
    """

    def __init__(self, model: torch.nn.Module, options: VideoOptions, volume: Volume) -> None:
        self.model = model
        self._transformers = TransformersBackend(model, options, volume)
        super().__init__(self._transformers, options, volume, encoder_counter(model.vision_encoder))

    @property
    def _session(self) -> Any:
        """The ``transformers`` inference session (``None`` once closed)."""
        return self._transformers.session if self._backend is not None else None


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


def load_video_model(model_id_or_path: str, *, image_size: int | None = None) -> torch.nn.Module:
    """Load a video model this backend runs from a local folder or a Hub id, by its config's ``model_type``.

    A full SAM3 video checkpoint (``sam3_video``: detector and tracker, as ``facebook/sam3`` ships) loads its
    tracker only (``Sam3TrackerVideoModel``; the detector's weights are ignored, as ``transformers`` does).

    ``image_size`` runs the model at another input size (:func:`resize_video_config`): no weight depends on it
    (SAM2's Hiera interpolates its position embeddings, SAM 3's ViT tiles them; the rotary and feature-map sizes
    follow the size), as SAM2's own code runs MedSAM2 at 512.

    Raises
    ------
    SegmenterError
        For a folder or id without a readable config, a model type this backend does not run, or weights that
        do not load; the message names the folder or id.
    """
    import importlib

    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(model_id_or_path)
    except Exception as exc:  # transformers raises OSError, ValueError, HTTP errors for a missing or bad model
        raise SegmenterError(f"cannot read a transformers model config from {model_id_or_path!r}: {exc}") from exc
    model_type = getattr(config, "model_type", None)
    model_type = TRACKER_OF.get(model_type, model_type)
    if model_type not in MODEL_TYPES:
        raise SegmenterError(
            f"{model_id_or_path!r} is a {model_type!r} model; this backend runs {', '.join(MODEL_TYPES)}"
        )
    class_name, module, _session = MODEL_TYPES[model_type]
    model_class = getattr(importlib.import_module(module), class_name)
    if image_size is not None:
        resize_video_config(config, image_size, what=repr(model_id_or_path))
    try:
        return model_class.from_pretrained(model_id_or_path, config=config)
    except Exception as exc:  # as above
        raise SegmenterError(f"cannot load {class_name} from {model_id_or_path!r}: {exc}") from exc


def resize_video_config(config: Any, image_size: int, *, what: str) -> None:
    """Set a ``sam2_video`` / ``sam3_tracker_video`` / ``sam3_video`` config to run at ``image_size``, in place.

    SAM2 (Hiera, strides 4 to 32): a multiple of 32 of at least 64; the backbone, prompt-encoder and feature
    sizes and the memory-attention rotary sizes (``S / 16``) follow. SAM 3 (ViT, patch P, windows of W patches):
    a multiple of ``P * W`` (336 for SAM 3: 14-pixel patches, 24-patch windows), so that windows tile the grid;
    SAM 3's own config setter updates its feature and rotary sizes.

    Raises
    ------
    SegmenterError
        For a size the model's layout does not allow, naming the rule and ``what`` (the model).
    """
    if int(image_size) != image_size:
        raise SegmenterError(f"{what}: image size must be a whole number of pixels, got {plain(image_size)}")
    size = int(image_size)
    model_type = getattr(config, "model_type", None)
    if model_type in ("sam3_video", "sam3_tracker_video"):
        tracker = config.tracker_config if model_type == "sam3_video" else config
        backbone = tracker.vision_config.backbone_config
        step = int(backbone.patch_size) * int(backbone.window_size)
        if size < step or size % step:
            raise SegmenterError(
                f"{what}: SAM 3 runs at multiples of {step} pixels ({backbone.patch_size}-pixel patches in windows of "
                f"{backbone.window_size}), got {size}"
            )
        config.image_size = size
        return
    if size < 64 or size % 32:
        raise SegmenterError(f"{what}: SAM2 runs at multiples of 32 pixels of at least 64, got {size}")
    stride4 = size // 4
    config.image_size = size
    config.prompt_encoder_config.image_size = size
    config.vision_config.backbone_config.image_size = [size, size]
    config.vision_config.backbone_feature_sizes = [[stride4, stride4], [stride4 // 2, stride4 // 2], [stride4 // 4] * 2]
    config.memory_attention_rope_feat_sizes = [size // 16, size // 16]


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
