"""SAM2.x and MedSAM2 as video predictors through 3D volumes (backend: Meta's ``sam2`` package).

The volume's axial slices are the video frames. Prompts on one or several key slices become conditioning frames,
and SAM2's memory carries the mask through the volume in both directions. A :class:`Sam2Segmenter` owns one
model; ``prepare(volume)`` gives a :class:`Sam2Session` that can be segmented under any number of prompt sets
(ablations, corrective-click rounds) without running the image encoder again.

Engines (``fast``, ``fast-serial``, ``reference``) and propagation policies (``reset``, ``continuous``) are described in
:mod:`zeroshot.segmenters.sam2_session`.

By default a model runs its authors' recipe (``docs/recipes.md``): prompts scaled ``x * S / X``
(:mod:`~zeroshot.segmenters.prompt_coords`), and SAM2's small-hole filling (``fill_hole_area=8``) applied where
SAM2's predictor applies it, with :mod:`~zeroshot.segmenters.hole_filling` instead of SAM2's CUDA extension, so
CPU and GPU runs agree. Masks are ``logits > logit_threshold`` at the input slice size (SAM2 resizes its ``S/4``
logits bilinearly), optionally post-processed on the CPU (:mod:`zeroshot.segmenters.postprocess`). On CUDA the
model runs under bfloat16 autocast, on the CPU in float32.

Random weights (``checkpoint=None``) make a model built from the real configuration, reproducible from
``seed``: it tests the machinery and measures speed, never accuracy.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import torch

from zeroshot.checkpoints import load_checkpoint, sha256_of
from zeroshot.errors import SegmenterError, plain
from zeroshot.segmenters.hole_filling import OFFICIAL_FILL_HOLE_AREA, fill_small_holes
from zeroshot.segmenters.preprocessing import Preprocessing
from zeroshot.segmenters.runtime import encoder_counter, resolve_device
from zeroshot.segmenters.sam2_session import ENGINES, Sam2Session
from zeroshot.segmenters.video_core import VideoSegmenterBase
from zeroshot.segmenters.video_options import video_options
from zeroshot.volume import Volume

__all__ = ["Sam2Segmenter", "fill_holes_where_sam2_does", "resolve_config", "resolve_device"]

Engine = Literal["fast", "fast-serial", "reference"]
Propagation = Literal["reset", "continuous"]
Precision = Literal["auto", "bfloat16", "float32"]

#: Hydra config folders inside the ``sam2`` package searched for a short config name, newest first.
CONFIG_DIRS = ("configs/sam2.1", "configs/sam2")

#: Builder overrides equivalent to ``build_sam2_video_predictor(apply_postprocessing=True)`` minus its hole filling
#: (``fill_hole_area=8``), which needs SAM2's CUDA extension: :func:`fill_holes_where_sam2_does` does it instead.
PREDICTOR_OVERRIDES = (
    "++model._target_=sam2.sam2_video_predictor.SAM2VideoPredictor",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta=0.05",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh=0.98",
    "++model.binarize_mask_from_pts_for_mem_enc=true",
    "++model.fill_hole_area=0",
)


def resolve_config(config: str) -> str:
    """Return the Hydra name of a SAM2 config shipped with the ``sam2`` package.

    Parameters
    ----------
    config : str
        A short name (``"sam2.1_hiera_t"``, ``"sam2.1_hiera_b+"``, ``"sam2_hiera_l"``) or a Hydra name relative
        to the package (``"configs/sam2.1/sam2.1_hiera_t.yaml"``). File-system paths are not accepted (SAM2
        composes configs through Hydra's package search path).

    Raises
    ------
    SegmenterError
        If no such config exists; the message lists the known short names.
    """
    root = _sam2_root()
    candidates = [config] if config.endswith(".yaml") else [f"{d}/{config}.yaml" for d in CONFIG_DIRS]
    for candidate in candidates:
        if (root / candidate).is_file():
            return candidate
    known = sorted(p.stem for d in CONFIG_DIRS for p in (root / d).glob("*.yaml"))
    raise SegmenterError(f"unknown SAM2 config {config!r}; known names: {', '.join(known)}")


class Sam2Segmenter(VideoSegmenterBase):
    """A SAM2.x / MedSAM2 video predictor that segments 3D volumes slice by slice from key-slice prompts.

    All arguments are keyword-only.

    Parameters
    ----------
    config : str
        SAM2 config: short name (``"sam2.1_hiera_t"``, ``"sam2.1_hiera_s"``, ``"sam2.1_hiera_b+"``,
        ``"sam2.1_hiera_l"``) or Hydra name (``"configs/sam2.1/sam2.1_hiera_t.yaml"``).
    checkpoint : path or None
        A SAM2-format checkpoint (``{"model": state_dict}``; SAM2.1 or MedSAM2 ``.pt``). ``None`` builds random
        weights from ``seed`` (for tests and speed measurements only; :meth:`describe` says so).
    image_size : int or None
        Model input size S (a multiple of 32, at least 64); ``None`` keeps the config's (1024 for SAM2.1).
        MedSAM2 uses 512. The memory-attention RoPE sizes are set to ``S / 16`` to match.
    device : {"auto", "cpu", "cuda", "cuda:N"}
    precision : {"auto", "bfloat16", "float32"}
        ``auto``: bfloat16 autocast with TF32 matrix products on CUDA (the authors' setting), float32 on the CPU.
        bfloat16 requires CUDA; float32 on CUDA turns TF32 off.
    engine : {"fast", "fast-serial", "reference"}
        See :mod:`zeroshot.segmenters.sam2_session`. All give the same masks up to floating-point noise.
    propagation : {"reset", "continuous"}
        See the module docstring.
    coords : {"official", "area"}
        How box and point prompts map onto the model input (:mod:`zeroshot.segmenters.prompt_coords`):
        ``official`` scales ``x * S / X`` as SAM2's predictor and MedSAM2 do.
    logit_threshold : float
        A voxel is foreground where the (union) logit exceeds this (SAM2 and MedSAM2 use 0).
    largest_component : bool
        Keep only the largest 26-connected 3D component (MedSAM2 does).
    fill_hole_area : int
        SAM2's small-hole filling: background components of at most this many low-resolution (``S/4``) pixels get
        logit 0.1, on every slice's output and on prompted slices before their memory is encoded, as SAM2's
        predictor does (8, as its builders set; 0 turns it off). Computed on the model's device without SAM2's
        CUDA extension (:mod:`zeroshot.segmenters.hole_filling`).
    fill_enclosed_holes : bool
        Also fill every enclosed hole of each slice of the final mask, whatever its size (on the CPU; not part
        of any author's recipe).
    preprocessing : Preprocessing or {"sam2", "medsam2", "float"}
        Intensity window, resize and normalisation, or a pipeline's name with the default window (see
        :mod:`zeroshot.segmenters.preprocessing`): ``"sam2"`` is the authors' 8-bit path (MedSAM2's MRI window,
        ``uint8``, Pillow's resize) with SAM2's frame-loader arithmetic; the ``medsam2`` entries of the checkpoint
        list use ``"medsam2"`` (MedSAM2's float64 normalisation); ``"float"`` is zeroshot's float path.
    encoder_batch_size : int or None
        Slices per image-encoder batch (fast engines). ``None``: as many slices as hold the pixels of 8 slices at
        1024 px, at most 32 (32 at 512 px, 8 at 1024): fewer, larger batches at the same activation memory.
    offload_video_to_cpu : bool
        Keep the slices' image features in host memory (fast engines) and move each to the device when needed.
        Slices themselves are never stored: they are prepared on demand.
    offload_state_to_cpu : bool
        Keep per-slice memories in host memory (SAM2's option of the same name).
    probabilities : bool
        Also return foreground probabilities (sigmoid of the union logits, before post-processing).
    seed : int
        Seed of the random initialisation when ``checkpoint`` is ``None``.
    name : str or None
        Name recorded in results; default: the config's short name.

    Raises
    ------
    SegmenterError
        For an unknown config, an invalid option, an unusable device, or a checkpoint that does not fit the
        config (missing, unexpected or differently shaped weights, or no state dict at all).
    CheckpointError
        For a checkpoint file that is missing, truncated or not loadable with ``torch.load(weights_only=True)``.
    """

    def __init__(
        self,
        *,
        config: str = "sam2.1_hiera_t",
        checkpoint: str | Path | None = None,
        image_size: int | None = None,
        device: str = "auto",
        precision: Precision = "auto",
        engine: Engine = "fast",
        propagation: Propagation = "reset",
        coords: str = "official",
        logit_threshold: float = 0.0,
        largest_component: bool = False,
        fill_hole_area: int = OFFICIAL_FILL_HOLE_AREA,
        fill_enclosed_holes: bool = False,
        preprocessing: Preprocessing | str = "sam2",
        encoder_batch_size: int | None = None,
        offload_video_to_cpu: bool = False,
        offload_state_to_cpu: bool = False,
        probabilities: bool = True,
        seed: int = 0,
        name: str | None = None,
    ) -> None:
        if engine not in ENGINES:
            raise SegmenterError(f"engine must be one of {', '.join(map(repr, ENGINES))}; got {engine!r}")
        if image_size is not None and (int(image_size) != image_size or image_size < 64 or image_size % 32):
            raise SegmenterError(f"image_size must be a multiple of 32 and at least 64, got {plain(image_size)}")
        self.config = resolve_config(config)
        self.engine: str = engine
        self.seed = int(seed)
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.overrides = list(PREDICTOR_OVERRIDES)
        if image_size is not None:
            feat = int(image_size) // 16
            self.overrides += [
                f"++model.image_size={int(image_size)}",
                f"++model.memory_attention.layer.self_attention.feat_sizes=[{feat},{feat}]",
                f"++model.memory_attention.layer.cross_attention.feat_sizes=[{feat},{feat}]",
            ]
        # Options are checked before the (slow) build; the image size (and the default batch) are the built model's.
        options = video_options(
            name=name or Path(self.config).stem,
            device=device,
            precision=precision,
            image_size=0,
            propagation=propagation,
            coords=coords,
            logit_threshold=logit_threshold,
            largest_component=largest_component,
            fill_hole_area=fill_hole_area,
            fill_enclosed_holes=fill_enclosed_holes,
            preprocessing=preprocessing,
            encoder_batch_size=1 if encoder_batch_size is None else encoder_batch_size,
            offload_video_to_cpu=offload_video_to_cpu,
            offload_state_to_cpu=offload_state_to_cpu,
            probabilities=probabilities,
        )
        self.model, self._resolved_config = self._build()
        fill_holes_where_sam2_does(self.model, options.fill_hole_area)
        self.checkpoint_sha256 = self._load_checkpoint() if self.checkpoint is not None else None
        self.model.to(options.device).eval()
        size = int(self.model.image_size)
        if encoder_batch_size is None:
            encoder_batch_size = min(32, max(1, (8 * 1024 * 1024) // (size * size)))
        self.options = replace(options, image_size=size, encoder_batch_size=int(encoder_batch_size))
        encoder_counter(self.model.image_encoder)

    def _encoder(self) -> torch.nn.Module:
        return self.model.image_encoder

    def prepare(self, volume: Volume) -> Sam2Session:
        """Preprocess ``volume`` and (fast engines) encode all its slices; see :class:`Sam2Session`."""
        return Sam2Session(self.model, self.options, volume, engine=self.engine)

    def describe(self) -> dict[str, Any]:
        """The resolved configuration, JSON-serialisable, recorded with every run."""
        weights = (
            f"checkpoint {self.checkpoint}"
            if self.checkpoint is not None
            else f"random initialisation (seed {self.seed}): tests machinery and speed, never accuracy"
        )
        return {
            "name": self.name,
            "backend": "sam2",
            "sam2_version": _version("sam2"),
            "torch_version": torch.__version__,
            "config": self.config,
            "hydra_overrides": list(self.overrides),
            "resolved_config": self._resolved_config,
            "weights": weights,
            "checkpoint": str(self.checkpoint) if self.checkpoint is not None else None,
            "checkpoint_sha256": self.checkpoint_sha256,
            "parameters": int(sum(p.numel() for p in self.model.parameters())),
            "engine": self.engine,
            **self.options.describe(),
            "hole_filling": (
                f"zeroshot.segmenters.hole_filling on {self.device.type} (SAM2's fill_hole_area rule without its "
                "CUDA extension; the model's own fill_hole_area stays 0)"
                if self.fill_hole_area
                else "off"
            ),
        }

    def _build(self) -> tuple[torch.nn.Module, dict[str, Any]]:
        import sam2  # noqa: F401  (initialises Hydra's search path on the sam2 package)
        from hydra import compose
        from hydra.utils import instantiate
        from omegaconf import OmegaConf

        try:
            cfg = compose(config_name=self.config, overrides=self.overrides)
            OmegaConf.resolve(cfg)
            # Random weights are drawn on the CPU from a private generator state, so that they are the same on
            # every device and the caller's random state is untouched.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                model = instantiate(cfg.model, _recursive_=True)
        except Exception as exc:  # Hydra and model constructors raise many types for a bad configuration
            raise SegmenterError(f"cannot build SAM2 from {self.config} with {self.overrides}: {exc}") from exc
        return model, OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]

    def _load_checkpoint(self) -> str:
        path = self.checkpoint
        assert path is not None
        loaded = load_checkpoint(path)
        state = loaded.get("model", loaded)
        if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise SegmenterError(f"checkpoint {path} holds no state dict of tensors (expected {{'model': state_dict}})")
        expected = self.model.state_dict()
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        mismatched = [
            f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}"
            for k in sorted(set(state) & set(expected))
            if state[k].shape != expected[k].shape
        ]
        if missing or unexpected or mismatched:
            problems = [
                f"{label} ({len(items)}): {', '.join(items[:5])}{' ...' if len(items) > 5 else ''}"
                for label, items in (("missing", missing), ("unexpected", unexpected), ("shape", mismatched))
                if items
            ]
            raise SegmenterError(f"checkpoint {path} does not fit config {self.config}: {'; '.join(problems)}")
        self.model.load_state_dict(state, strict=True)
        return sha256_of(path)


def fill_holes_where_sam2_does(model: torch.nn.Module, area: int) -> None:
    """Make ``model`` (a ``SAM2VideoPredictor``) fill small holes exactly where SAM2's predictor does.

    SAM2 fills holes at the end of ``_run_single_frame_inference`` (``sam2/sam2_video_predictor.py`` lines
    784-789 in sam2 1.1.0), after the frame's memory was encoded from the unfilled mask (``track_step``), on the
    low-resolution logits it returns and stores. Every path goes through it: a prompt (``add_new_points_or_box``,
    ``add_new_mask``: the stored, filled logits are upsampled and encoded as that slice's memory in
    ``propagate_in_video_preflight``), and each propagated slice. This wraps that one method of this model object
    (no module of ``sam2`` is patched): the method runs as before with the model's own ``fill_hole_area`` of 0,
    then the low-resolution logits it returns and stores are filled on their device with
    :func:`~zeroshot.segmenters.hole_filling.fill_small_holes`. The lockstep engine, which runs SAM2's tracking
    step itself, fills its outputs with the same function (the filled logits of a propagated slice are output
    only; SAM2 encodes its memory before filling).

    Parameters
    ----------
    model : SAM2VideoPredictor
    area : int
        ``fill_hole_area`` in low-resolution pixels; 0 leaves the model as it is.
    """
    if area == 0:
        return
    run = model._run_single_frame_inference

    def run_and_fill_holes(*args: Any, **kwargs: Any) -> tuple[dict[str, Any], torch.Tensor]:
        compact, pred_masks = run(*args, **kwargs)
        filled = fill_small_holes(pred_masks, area)
        compact["pred_masks"] = filled.to(compact["pred_masks"].device, non_blocking=True)
        return compact, filled

    model._run_single_frame_inference = run_and_fill_holes


def _sam2_root() -> Path:
    spec = importlib.util.find_spec("sam2")
    if spec is None or not spec.submodule_search_locations:
        raise SegmenterError("the 'sam2' package is not installed (SAM2_BUILD_CUDA=0 pip install sam2==1.1.0)")
    return Path(next(iter(spec.submodule_search_locations)))


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None
