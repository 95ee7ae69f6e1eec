"""nnInteractive (Isensee et al. 2025, arXiv 2503.08373) as a segmenter, on the ``nninteractive`` package.

nnInteractive is a 3D interactive model: one network sees the image together with every interaction so far
(boxes, points, an initial segmentation, ...) and writes a 3D mask; there is no per-slice encoder and no
propagation through slices. This module runs it the way its authors do (nninteractive 2.6.0, its README and
``inference_session.py``):

- **Model**: one ``nnInteractiveInferenceSession`` loads the trained-model folder (``plans.json``,
  ``dataset.json``, session metadata, ``fold_N/checkpoint_final.pth``) through
  ``initialize_from_trained_model_folder``, once per segmenter; it serves every volume the segmenter prepares.
- **Image**: the raw intensities as a ``(1, Z, Y, X)`` float32 array, no windowing or normalisation on our side
  ("DO NOT preprocess the image in any way", README). nnInteractive z-scores the image with the mean and standard
  deviation of its non-zero region and works in voxel space, without resampling; its own AutoZoom widens the
  window around a prompt. The spacing is passed as ``image_properties={"spacing": spacing_mm}``, the form the
  package accepts; version 2.6.0 ignores it ("nnInteractive operates purely in voxel space").
- **Prompts** (:mod:`zeroshot.segmenters.nninteractive_interactions`): a mask prompt becomes the initial
  segmentation, a box a 2D box on its slice (``add_bbox_interaction``; the published weights take 2D boxes only
  and the package refuses a 3D one), a point a 3D click (``add_point_interaction``). Every interaction runs its
  prediction (``run_prediction=True``), as in the authors' viewers: afterwards the target buffer holds the 3D mask.
- **Corrective clicks**: a call whose interactions extend the previous call's adds only the new ones to the same
  nnInteractive session; the image is never set again and earlier interactions are not replayed. Any other call
  resets the interactions (``reset_interactions``) and adds all of its own.
- **Determinism**: nnInteractive's refinement planner draws from NumPy's global generator; it is seeded with
  ``seed`` before each interaction and the caller's generator state is restored afterwards. Same image, same
  interactions, same mask.

``Segmentation.info["encoder_slices_total"]`` counts the slices of the images given to ``set_image`` in this
session (the volume's depth, once); nnInteractive has no separate image encoder, so the runner's "encoder once
per volume" check reads "the image was set once per volume". ``probabilities`` is ``None``: nnInteractive returns
the argmax mask only.

The package unpickles checkpoints (``torch.load(weights_only=False)``): load only folders you trust. Entries of
the checkpoint list are verified against their SHA-256 before they are loaded.
"""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zeroshot.errors import PromptError, SegmenterError
from zeroshot.prompts.types import VolumePrompts
from zeroshot.segmenters.base import Segmentation
from zeroshot.segmenters.nninteractive_interactions import (
    BoxInteraction,
    InitialSegmentation,
    Interaction,
    plan_interactions,
)
from zeroshot.segmenters.nninteractive_tiny import RANDOM_WEIGHTS_MARKER
from zeroshot.segmenters.runtime import resolve_device
from zeroshot.volume import Volume

__all__ = ["NnInteractiveSegmenter", "NnInteractiveSession"]

#: Files every nnInteractive trained-model folder has (besides ``fold_N/``).
MODEL_FILES = ("plans.json", "dataset.json")
#: Prompt kind -> (nnInteractive capability, what to use instead when the checkpoint lacks it).
_CAPABILITIES = {
    "box": ("bbox2d", "a points strategy instead"),
    "point": ("points", "a box strategy (e.g. box-mid) and no clicks instead"),
    "initial_segmentation": ("initial_label", "a box or points strategy instead"),
}


@dataclass(eq=False)
class _Engine:
    """The loaded nnInteractive session and the options every prepared volume shares.

    ``owner`` is the session whose volume nnInteractive holds now (it holds one image at a time).
    """

    inference: Any
    name: str
    model_folder: Path
    device: torch.device
    seed: int
    do_autozoom: bool
    verbose: bool
    owner: NnInteractiveSession | None = None

    @contextlib.contextmanager
    def quiet(self) -> Iterator[None]:
        """Silence the package's progress prints unless ``verbose``."""
        if self.verbose:
            yield
            return
        with contextlib.redirect_stdout(io.StringIO()):
            yield


class NnInteractiveSegmenter:
    """nnInteractive from a trained-model folder; segments 3D volumes from boxes, points and mask prompts.

    All arguments are keyword-only.

    Parameters
    ----------
    model_folder : path-like
        An nnInteractive trained-model folder (``plans.json``, ``dataset.json``, ``fold_N/checkpoint_final.pth``),
        e.g. ``nnInteractive_v1.0`` from the Hugging Face Hub (``zeroshot checkpoints download nninteractive``).
    device : {"auto", "cpu", "cuda", "cuda:N"}
        Where the network runs; nnInteractive keeps the image and interactions in host memory and moves crops.
    fold : int, "all" or None
        The ``fold_N`` folder to load; ``None`` takes the only one there is (as the package does).
    do_autozoom : bool
        nnInteractive's AutoZoom (widen the window while the prediction touches its border), on by default as in
        the authors' examples.
    use_torch_compile : bool
        Compile the network (CUDA only: the package turns it off on a CPU, so asking for it there is an error).
        Off by default, as in the README.
    seed : int
        Seed of NumPy's global generator before each interaction (see the module docstring).
    verbose : bool
        Show nnInteractive's own progress messages (suppressed by default).
    name : str or None
        Name recorded in results; default the folder's name.

    Raises
    ------
    SegmenterError
        For a folder that is not an nnInteractive trained-model folder, a model the package cannot load, an
        unusable device, ``use_torch_compile`` without CUDA, or nnInteractive not installed.
    """

    def __init__(
        self,
        *,
        model_folder: str | Path,
        device: str = "auto",
        fold: int | str | None = None,
        do_autozoom: bool = True,
        use_torch_compile: bool = False,
        seed: int = 0,
        verbose: bool = False,
        name: str | None = None,
    ) -> None:
        if int(seed) != seed:
            raise SegmenterError(f"seed must be an integer, got {seed!r}")
        folder = Path(model_folder).expanduser()
        missing = [f for f in MODEL_FILES if not (folder / f).is_file()]
        if not folder.is_dir() or missing or not any(folder.glob("fold_*")):
            found = "no such folder" if not folder.is_dir() else f"missing {', '.join(missing) or 'fold_*/'}"
            raise SegmenterError(
                f"{folder} is not an nnInteractive trained-model folder ({found}); give the folder that holds "
                "plans.json, dataset.json and fold_0/checkpoint_final.pth, e.g. the one "
                "`zeroshot checkpoints path nninteractive` prints"
            )
        self.model_folder = folder.resolve()
        self.device = resolve_device(device)
        self.fold = fold
        self.do_autozoom = bool(do_autozoom)
        if use_torch_compile and self.device.type != "cuda":
            raise SegmenterError(
                f"use_torch_compile=True needs a CUDA device (nnInteractive does not compile on {self.device.type}); "
                "drop it or use device='cuda'"
            )
        self.use_torch_compile = bool(use_torch_compile)
        self.seed = int(seed)
        self.verbose = bool(verbose)
        self.name = name or folder.name
        from zeroshot.checkpoints import sha256_of

        self.checkpoint_sha256 = sha256_of(self.model_folder)
        self._engine = _Engine(
            inference=None,
            name=self.name,
            model_folder=self.model_folder,
            device=self.device,
            seed=self.seed,
            do_autozoom=self.do_autozoom,
            verbose=self.verbose,
        )
        self._engine.inference = self._load()

    @property
    def inference(self) -> Any:
        """The package's ``nnInteractiveInferenceSession`` (the loaded network), shared by every prepared volume."""
        return self._engine.inference

    def prepare(self, volume: Volume) -> NnInteractiveSession:
        """Give ``volume`` to nnInteractive (``set_image``); the session it returns takes any number of prompt sets.

        nnInteractive holds one image at a time: preparing another volume ends the previous session.
        """
        return NnInteractiveSession(self._engine, volume)

    def describe(self) -> dict[str, Any]:
        """The resolved configuration, JSON-serialisable, recorded with every run."""
        import importlib.metadata

        inference = self._engine.inference
        marker = self.model_folder / RANDOM_WEIGHTS_MARKER
        weights = (
            "random weights (zeroshot.segmenters.nninteractive_tiny): machinery only, never accuracy"
            if marker.is_file()
            else f"trained-model folder {self.model_folder.name}"
        )
        return {
            "name": self.name,
            "backend": "nninteractive",
            "nninteractive_version": importlib.metadata.version("nninteractive"),
            "torch_version": torch.__version__,
            "checkpoint_path": str(self.model_folder),
            "checkpoint_sha256": self.checkpoint_sha256,
            "weights": weights,
            "licence": inference.license,
            "fold": self.fold,
            "trainer": inference.trainer_name,
            "network_class": inference.configuration_manager.network_arch_class_name,
            "patch_size": [int(p) for p in inference.configuration_manager.patch_size],
            "parameters": int(sum(p.numel() for p in inference.network.parameters())),
            "supported_interactions": dict(inference.supported_interactions),
            "supports_initial_label": bool(inference.supports_initial_label),
            "interaction_decay": inference.interaction_decay,
            "device": str(self.device),
            "precision": "float16 autocast (nnInteractive's own)" if self.device.type == "cuda" else "float32",
            "do_autozoom": self.do_autozoom,
            "use_torch_compile": self.use_torch_compile,
            "seed": self.seed,
            "input": "raw intensities (1, z, y, x); nnInteractive z-scores them, voxel space, no resampling",
            "interaction_order": "initial segmentation, boxes, points, recorded clicks in click order",
            "run_prediction": "after every interaction",
        }

    def _load(self) -> Any:
        """Build the package's inference session and load the folder's network (once per segmenter)."""
        try:
            from nnInteractive.inference.inference_session import nnInteractiveInferenceSession
        except ImportError as exc:
            raise SegmenterError(
                f"nnInteractive is not installed ({exc}); install it with `pip install 'zeroshot[nninteractive]'`"
            ) from exc
        with self._engine.quiet():
            inference = nnInteractiveInferenceSession(
                device=self.device,
                use_torch_compile=self.use_torch_compile,
                verbose=self.verbose,
                # The package sets torch's global thread count from this; keep the process's own.
                torch_n_threads=torch.get_num_threads(),
                do_autozoom=self.do_autozoom,
                # Undo keeps a compressed copy of every region each interaction overwrites; never used here.
                enable_undo=False,
            )
            try:
                inference.initialize_from_trained_model_folder(str(self.model_folder), use_fold=self.fold)
            except Exception as exc:  # the package raises assertions, KeyError, RuntimeError, torch errors
                raise SegmenterError(
                    f"nnInteractive could not load {self.model_folder}: {type(exc).__name__}: {exc}"
                ) from exc
        return inference


class NnInteractiveSession:
    """One volume given to nnInteractive; segment it under any number of prompt sets until closed.

    A prompt set whose interactions extend those of the previous call adds only the new interactions; any other
    resets the interactions first. Either way the result is that of adding the set's interactions, in order, to the
    freshly prepared volume (see :mod:`zeroshot.segmenters.nninteractive_interactions`).
    """

    def __init__(self, engine: _Engine, volume: Volume) -> None:
        started = time.perf_counter()
        self.volume = volume
        self._engine = engine
        inference = engine.inference
        if not np.any(volume.array):
            raise SegmenterError(
                f"nnInteractive cannot take the volume {volume.source}: it is entirely zero (nnInteractive "
                "normalises with the statistics of the non-zero voxels)"
            )
        image = np.asarray(volume.array, dtype=np.float32)[None]  # nnInteractive copies it before normalising
        engine.owner = None  # set_image replaces whatever image nnInteractive held
        with engine.quiet():
            inference.set_image(image, {"spacing": [float(s) for s in volume.spacing_mm]})
            try:
                inference.preprocess_future.result()  # nnInteractive normalises in a background thread
            except BaseException:
                inference.preprocess_future = None  # else the package raises it again when it is collected
                raise
        self._target = torch.zeros(volume.shape, dtype=torch.uint8)
        inference.set_target_buffer(self._target)
        engine.owner = self
        #: The interactions nnInteractive holds now; ``None`` after a failure left them unknown.
        self._applied: tuple[Interaction, ...] | None = ()
        self._closed = False
        self.images_set = 1
        self.prepare_s = time.perf_counter() - started

    @property
    def encoder_slices_total(self) -> int:
        """Slices of the images given to nnInteractive in this session (its depth per ``set_image``)."""
        return self.images_set * self.volume.num_slices

    def segment(self, prompts: VolumePrompts) -> Segmentation:
        """Segment the volume under ``prompts``.

        Parameters
        ----------
        prompts : VolumePrompts
            Key slices with boxes, positive/negative points and/or mask prompts.

        Returns
        -------
        Segmentation
            ``mask`` (Z, Y, X) bool on the input grid, ``probabilities`` None, ``info`` (interactions added, whether
            earlier ones were reset, device, timings).

        Raises
        ------
        PromptError
            If a prompt does not fit the volume, or is of a kind the checkpoint does not take (the message names
            the kind and what to use instead).
        SegmenterError
            If the session was closed or another volume was prepared since, or nnInteractive refuses an interaction.
        """
        self._check_open()
        for slice_prompt in prompts.slices:
            slice_prompt.validate_for(self.volume.shape)
        plan = plan_interactions(prompts)
        self._check_supported(plan, prompts.case_id)
        applied = self._applied
        extends = applied is not None and plan[: len(applied)] == applied
        kept = len(applied) if extends else 0
        started = time.perf_counter()
        self._applied = None
        engine = self._engine
        with engine.quiet():
            if not extends:
                engine.inference.reset_interactions()
            for interaction in plan[kept:]:
                self._add(interaction, prompts.case_id)
        self._applied = plan
        seconds = time.perf_counter() - started
        info = {
            "model": engine.name,
            "backend": "nninteractive",
            "key_slices": list(prompts.key_slices),
            "interactions_total": len(plan),
            "interactions_kept": kept,
            "interactions_reset": not extends,
            "interactions_added": [interaction.record() for interaction in plan[kept:]],
            "images_set": self.images_set,
            "spacing_mm": [float(s) for s in self.volume.spacing_mm],
            "device": str(engine.device),
            "do_autozoom": engine.do_autozoom,
            "seed": engine.seed,
            "encoder_slices_total": self.encoder_slices_total,
            "encoder_slices_segment": 0,
            "prepare_s": round(self.prepare_s, 4),
            "segment_s": round(seconds, 4),
        }
        return Segmentation(mask=self._target.numpy().astype(bool), probabilities=None, info=info)

    def close(self) -> None:
        """Drop the image, interactions and mask from nnInteractive (the network stays loaded)."""
        if self._closed:
            return
        self._closed = True
        if self._engine.owner is self:
            self._engine.owner = None
            # nninteractive 2.6.0 has no public call that drops an image; its set_image starts with this one.
            self._engine.inference._reset_session()

    def __enter__(self) -> NnInteractiveSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise SegmenterError("this nnInteractive session was closed; prepare the volume again")
        if self._engine.owner is not self:
            raise SegmenterError(
                f"nnInteractive holds one image at a time, and another volume was prepared after {self.volume.source}; "
                "prepare this volume again"
            )

    def _check_supported(self, plan: tuple[Interaction, ...], case_id: str) -> None:
        inference = self._engine.inference
        supported = {**inference.supported_interactions, "initial_label": inference.supports_initial_label}
        for interaction in plan:
            capability, instead = _CAPABILITIES[interaction.kind]
            if not supported.get(capability, False):
                where = (
                    f"slices {list(interaction.slices)}"
                    if isinstance(interaction, InitialSegmentation)
                    else f"slice {interaction.z}"
                )
                kind = "mask" if isinstance(interaction, InitialSegmentation) else interaction.kind
                raise PromptError(
                    f"case {case_id}, {where}: the nnInteractive checkpoint {self._engine.model_folder} does not "
                    f"take {kind} prompts (its capability {capability!r} is off); use {instead}"
                )

    def _add(self, interaction: Interaction, case_id: str) -> None:
        """Add one interaction and run its prediction, NumPy's global generator seeded (and restored after)."""
        inference = self._engine.inference
        # The package's refinement planner draws from NumPy's legacy global generator: that one must be seeded.
        state = np.random.get_state()  # noqa: NPY002
        np.random.seed(self._engine.seed)  # noqa: NPY002
        try:
            if isinstance(interaction, InitialSegmentation):
                inference.add_initial_seg_interaction(interaction.volume(self.volume.shape), run_prediction=True)
            elif isinstance(interaction, BoxInteraction):
                inference.add_bbox_interaction(interaction.bbox_zyx(), include_interaction=True)
            else:
                inference.add_point_interaction(interaction.zyx(), include_interaction=interaction.positive)
        except ValueError as exc:
            raise SegmenterError(f"case {case_id}: nnInteractive refused {interaction.record()}: {exc}") from exc
        finally:
            np.random.set_state(state)  # noqa: NPY002
