"""The propagation loop every video backend shares: plan the passes, union them, threshold, describe the result.

A video backend (SAM2 native, ``transformers`` SAM2, the SAM3 tracker) supplies only what differs between
models (:class:`VideoBackend`): encode the volume's slices once, add a key slice's prompt to a frame, run one
pass from a start slice, and reset its tracking state. :class:`VideoSession` does the rest, the same way for
every backend:

- the pass plan (:func:`plan_passes`): forward from the first key slice to the last slice, then reverse from
  the last key slice to slice 0, skipped when that slice is 0 (a reverse pass from slice 0 yields nothing), so
  a key slice at either end of the volume is handled and several key slices all condition both passes;
- the propagation policy: ``reset`` (MedSAM2's recipe) clears the state and adds the prompts again before the
  reverse pass; ``continuous`` lets the reverse pass attend to the forward pass's memories;
- the union of the passes: the maximum of their logits on the input grid, kept on the compute device (host memory
  under the offloading options: :attr:`~zeroshot.segmenters.video_options.VideoOptions.union_device`); slices no
  pass reached keep :data:`NO_SCORE` (SAM2's ``NO_OBJ_SCORE``, finite so that resizing keeps it exact);
- finishing a :class:`~zeroshot.segmenters.base.Segmentation`: ``logits > logit_threshold`` where the union is
  (a comparison, exact on any device) and one transfer of the bool mask; probabilities (sigmoid of the union
  logits, before post-processing) on the host, and only when asked for, because a device's sigmoid may differ
  from the CPU's in the last bit; the CPU post-processing
  (:class:`~zeroshot.segmenters.postprocess.PostProcessing`), or, for a session told to defer it
  (:attr:`VideoSession.defer_postprocess`), the mask before it and the steps still to apply; and a typed
  :class:`VideoInfo`.

Prompt coordinates are mapped by each backend with :mod:`zeroshot.segmenters.prompt_coords` (their one place).
A session is built from ``(model, options, volume)`` by its backend's module and never reads a segmenter.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, Literal, Protocol

import numpy as np
import torch

from zeroshot.errors import SegmenterError
from zeroshot.prompts.types import SlicePrompt, VolumePrompts
from zeroshot.segmenters.base import Segmentation
from zeroshot.segmenters.postprocess import PostProcessing
from zeroshot.segmenters.runtime import EncoderCounter, encoder_counter
from zeroshot.segmenters.video_options import VideoOptions
from zeroshot.volume import Volume

__all__ = [
    "NO_SCORE",
    "OBJ_ID",
    "Direction",
    "Pass",
    "PropagationRun",
    "VideoBackend",
    "VideoInfo",
    "VideoSegmenterBase",
    "VideoSession",
    "pass_order",
    "plan_passes",
    "segment_volumes",
]

#: Object id of the single structure segmented per volume.
OBJ_ID = 1
#: Logit of slices a pass did not reach, and of a slice where SAM2 judges the object absent (``NO_OBJ_SCORE``).
NO_SCORE = -1024.0

Direction = Literal["forward", "reverse"]


@dataclass(frozen=True)
class Pass:
    """One propagation pass: direction, first slice and how many slices it produced."""

    direction: Direction
    start: int
    slices: int

    def as_dict(self) -> dict[str, Any]:
        """The pass as recorded in ``info["passes"]``."""
        return {"direction": self.direction, "start": self.start, "slices": self.slices}


@dataclass(frozen=True, eq=False)
class PropagationRun:
    """One prompt set's union logits ``(Z, Y, X)`` float32 (on ``options.union_device``) and the passes made."""

    logits: torch.Tensor
    passes: tuple[Pass, ...]


def plan_passes(key_slices: Sequence[int]) -> tuple[tuple[Direction, int], ...]:
    """The passes of a prompt set: forward from the first key slice, reverse from the last (unless it is slice 0).

    Examples
    --------
    >>> plan_passes([3, 7])
    (('forward', 3), ('reverse', 7))
    >>> plan_passes([0])
    (('forward', 0),)
    """
    plan: list[tuple[Direction, int]] = [("forward", int(key_slices[0]))]
    if key_slices[-1] > 0:
        plan.append(("reverse", int(key_slices[-1])))
    return tuple(plan)


def pass_order(start: int, num_slices: int, *, reverse: bool) -> range:
    """The slices a pass visits, in order: ``start`` up to the last slice, or down to slice 0 in reverse."""
    return range(start, -1, -1) if reverse else range(start, num_slices)


@dataclass(frozen=True, eq=False)
class VideoInfo(dict):
    """How one video segmentation was made: typed fields that also read as the JSON mapping runs record.

    The attributes are typed (``info.passes`` is a tuple of :class:`Pass`); read as a mapping (``info["passes"]``,
    ``json.dumps(info)``, ``dict(info)``) it gives their JSON values (passes as dicts, tuples as lists) and leaves
    out the fields that do not apply (``None``): ``engine`` and ``lockstep`` exist for the SAM2 backend only,
    ``lockstep_fallback`` only when its ``fast`` engine could not run in lockstep. It is a read-only ``dict``
    underneath so that the JSON encoder and the run records take it as they take any info mapping; every
    mutating method raises.

    Attributes
    ----------
    model, backend : str
        The segmenter's name and backend (``sam2``, ``transformers``).
    engine : str or None
    propagation, coords : str
    key_slices : tuple of int
    passes : tuple of Pass
    logit_threshold : float
    fill_hole_area : int
    fill_enclosed_holes, largest_component : bool
    voxels_before_postprocess : int
    device, precision : str
    image_size : int
    intensity_window : (low, high)
    encoder_slices_total : int
        Slices the image encoder processed for this session so far (once per slice per volume).
    encoder_slices_segment : int
        Slices it processed during this call (0 once the volume is encoded).
    prepare_s, propagate_s, segment_s : float
        Seconds: preparing the session; propagating this call (all its prompt sets); this prompt set in all.
    slices_per_s : float or None
    prompt_sets_in_call : int
    lockstep : bool or None
    lockstep_fallback : str or None
    volumes_in_call : int or None
        Volumes that propagated in the same call (:func:`segment_volumes`); absent when the volume ran alone.
    """

    model: str
    backend: str
    engine: str | None
    propagation: str
    coords: str
    key_slices: tuple[int, ...]
    passes: tuple[Pass, ...]
    logit_threshold: float
    fill_hole_area: int
    fill_enclosed_holes: bool
    largest_component: bool
    voxels_before_postprocess: int
    device: str
    precision: str
    image_size: int
    intensity_window: tuple[float, float]
    encoder_slices_total: int
    encoder_slices_segment: int
    prepare_s: float
    propagate_s: float
    slices_per_s: float | None
    segment_s: float
    prompt_sets_in_call: int
    lockstep: bool | None = None
    lockstep_fallback: str | None = None
    volumes_in_call: int | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None and f.name in _OPTIONAL:
                continue
            if f.name == "passes":
                value = [p.as_dict() for p in value]
            elif isinstance(value, tuple):
                value = list(value)
            dict.__setitem__(self, f.name, value)

    def _read_only(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("VideoInfo is read-only; copy it with dict(info) to add entries")

    __setitem__ = __delitem__ = update = pop = popitem = clear = setdefault = __ior__ = _read_only  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"VideoInfo({dict.__repr__(self)})"

    def __reduce__(self) -> tuple[type, tuple[Any, ...]]:
        # Rebuilt from its fields (pickle and copy would otherwise refill the dict through the refused __setitem__).
        return type(self), tuple(getattr(self, f.name) for f in fields(self))


#: Fields of :class:`VideoInfo` left out of its mapping when ``None``.
_OPTIONAL = frozenset({"engine", "lockstep", "lockstep_fallback", "volumes_in_call"})


class VideoBackend(Protocol):
    """What one model family supplies to :class:`VideoSession` for one prepared volume.

    Attributes
    ----------
    name : str
        Recorded as ``info["backend"]``.
    engine : str or None
        Recorded as ``info["engine"]`` where the backend has several.
    intensity_window : IntensityWindow
        The window the slices were prepared with (set by :meth:`encode_slices`).
    """

    name: str
    engine: str | None

    def encode_slices(self) -> None:
        """Prepare the slices and run the image encoder on each once (or nothing, for per-pass encoding)."""
        ...

    def check_prompts(self, prompts: VolumePrompts) -> None:
        """Refuse, with a :class:`SegmenterError` naming the case and slice, a prompt kind the model cannot take."""
        ...

    def running(self) -> contextlib.AbstractContextManager:
        """The context propagation runs in (numerics, the model's hole filling)."""
        ...

    def reset(self) -> None:
        """Forget every prompt and memory; keep the encoded slices."""
        ...

    def add_prompt(self, slice_prompt: SlicePrompt) -> None:
        """Add one key slice's prompt to its frame (a conditioning frame for the passes that follow)."""
        ...

    def step_pass(self, start: int, *, reverse: bool) -> tuple[list[int], torch.Tensor]:
        """Propagate from ``start``; the slices visited and their float32 logits ``(N, Y, X)`` on the input grid.

        The logits may stay on the compute device: :func:`union_pass` moves them to the union's device.
        """
        ...

    def close(self) -> None:
        """Drop the tracking state and cached features."""
        ...


class VideoSession:
    """One volume prepared for a video backend; segment it under any number of prompt sets.

    Each :meth:`segment` call starts from a clean tracking state, so calls are independent and repeatable; the
    image features stay cached until :meth:`close`. ``Segmentation.info["encoder_slices_total"]`` counts every
    slice the image encoder has processed for this session, so a test can assert that it stays at the number of
    slices however many prompt sets and click rounds follow.

    Parameters
    ----------
    backend : VideoBackend
    options : VideoOptions
    volume : Volume
    counter : EncoderCounter
        The image encoder's counter (shared by every segmenter holding the same weights).

    Attributes
    ----------
    defer_postprocess : bool
        ``False`` (the default): masks are final. ``True``: each :class:`Segmentation` holds the thresholded mask
        and, in ``postprocessing``, the CPU steps still to apply (largest component, enclosed holes), so that
        the caller can run them elsewhere (``zeroshot eval`` runs them in its scoring workers); its
        ``finished()`` is then exactly the segmentation of a session that did not defer.
    """

    defer_postprocess: bool = False

    def __init__(self, backend: VideoBackend, options: VideoOptions, volume: Volume, counter: EncoderCounter) -> None:
        started = time.perf_counter()
        self.volume = volume
        self.options = options
        self._backend: VideoBackend | None = backend
        self._counter = counter
        before = counter.slices
        backend.encode_slices()
        # Counted around this session's own calls only: other sessions on the same weights (an offloading
        # variant, another volume prepared meanwhile) do not inflate it.
        self._encoded = counter.slices - before
        self.intensity_window = backend.intensity_window  # type: ignore[attr-defined]
        self.prepare_s = time.perf_counter() - started

    @property
    def encoder_slices_total(self) -> int:
        """Slices the image encoder has processed for this session so far."""
        return self._encoded

    def segment(self, prompts: VolumePrompts) -> Segmentation:
        """Segment the volume under ``prompts`` (independent of earlier calls on this session).

        Parameters
        ----------
        prompts : VolumePrompts
            One or more key slices, each with the prompt kinds the backend takes (box, points, mask).

        Returns
        -------
        Segmentation
            ``mask`` (Z, Y, X) bool on the input grid, ``probabilities`` (Z, Y, X) float32 (if enabled) and
            ``info`` (a :class:`VideoInfo`).

        Raises
        ------
        PromptError
            If a prompt does not fit the volume (slice index, box, point or mask shape).
        SegmenterError
            If the session was closed, or a prompt kind the backend does not take.
        """
        return self.segment_many([prompts])[0]

    def segment_many(self, prompt_sets: Sequence[VolumePrompts]) -> list[Segmentation]:
        """Segment the volume under several prompt sets; the same results as one :meth:`segment` each.

        ``info["propagate_s"]`` and ``info["slices_per_s"]`` describe the whole call
        (``info["prompt_sets_in_call"]`` says how many prompt sets it held).

        Raises
        ------
        PromptError
            If a prompt does not fit the volume (nothing is segmented then).
        SegmenterError
            If the session was closed, or a prompt kind the backend does not take.
        """
        return _segment_together([(self, list(prompt_sets))])[0]

    def _propagate_all(self, prompt_sets: list[VolumePrompts]) -> tuple[list[PropagationRun], dict[str, Any]]:
        """Every prompt set's run, and extra :class:`VideoInfo` fields for the call (a backend may batch them)."""
        return [self._propagate_serial(prompts) for prompts in prompt_sets], {}

    def _joint_key(self) -> Hashable | None:
        """Sessions with equal keys can propagate in one call (:func:`segment_volumes`); ``None``: this one cannot."""
        return None

    def _propagate_volumes(
        self, items: Sequence[tuple[VideoSession, list[VolumePrompts]]]
    ) -> list[tuple[list[PropagationRun], dict[str, Any]]]:
        """Each session's runs and extra info fields, from one call (sessions of equal :meth:`_joint_key`)."""
        return [session._propagate_all(prompt_sets) for session, prompt_sets in items]

    def _propagate_serial(self, prompts: VolumePrompts) -> PropagationRun:
        """One prompt set, pass after pass, under the propagation policy."""
        backend = self._live_backend()
        logits = torch.full(self.volume.shape, NO_SCORE, dtype=torch.float32, device=self.options.union_device)
        passes = []
        for number, (direction, start) in enumerate(plan_passes(prompts.key_slices)):
            if number == 0 or self.options.propagation == "reset":
                backend.reset()
                for slice_prompt in prompts.slices:
                    backend.add_prompt(slice_prompt)
            frames, pass_logits = backend.step_pass(start, reverse=direction == "reverse")
            union_pass(logits, frames, pass_logits)
            passes.append(Pass(direction, start, len(frames)))
        return PropagationRun(logits, tuple(passes))

    def _finish(
        self, prompts: VolumePrompts, run: PropagationRun, shared: Mapping[str, Any], started: float
    ) -> Segmentation:
        """Threshold where the union logits are, then post-process (or defer it) and describe one prompt set."""
        options, backend = self.options, self._live_backend()
        # A comparison is exact on any device, so the mask equals the CPU's; one bool transfer instead of float32.
        raw = (run.logits > options.logit_threshold).cpu().numpy()
        # Sigmoid on the host: a device's may differ from the CPU's in the last bit (a no-op move on the CPU).
        probabilities = torch.sigmoid(run.logits.cpu()).numpy() if options.probabilities else None
        steps = PostProcessing(
            fill_enclosed_holes=options.fill_enclosed_holes, largest_component=options.largest_component
        )
        info = VideoInfo(
            model=options.name,
            backend=backend.name,
            engine=backend.engine,
            propagation=options.propagation,
            coords=options.coords,
            key_slices=tuple(prompts.key_slices),
            passes=run.passes,
            logit_threshold=options.logit_threshold,
            fill_hole_area=options.fill_hole_area,
            fill_enclosed_holes=options.fill_enclosed_holes,
            largest_component=options.largest_component,
            voxels_before_postprocess=int(np.count_nonzero(raw)),
            device=str(options.device),
            precision=options.precision,
            image_size=options.image_size,
            intensity_window=(self.intensity_window.low, self.intensity_window.high),
            encoder_slices_total=self.encoder_slices_total,
            prepare_s=round(self.prepare_s, 4),
            segment_s=round(time.perf_counter() - started, 4),
            **shared,
        )
        pending = Segmentation(
            mask=raw, probabilities=probabilities, info=info, postprocessing=steps if steps.does_anything else None
        )
        return pending if self.defer_postprocess else pending.finished()

    def _live_backend(self) -> VideoBackend:
        if self._backend is None:
            raise SegmenterError("this session was closed; prepare the volume again")
        return self._backend

    def close(self) -> None:
        """Drop the tracking state and cached features (device memory is freed with them)."""
        if self._backend is not None:
            self._backend.close()
        self._backend = None

    def __enter__(self) -> VideoSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def segment_volumes(
    items: Sequence[tuple[Any, Sequence[VolumePrompts]]],
) -> list[list[Segmentation]]:
    """Segment several prepared volumes, each under its prompt sets; each session's ``segment_many`` results.

    Sessions that can share propagation (the same backend, weights and options, in an engine that batches across
    volumes: SAM2's lockstep engine) propagate in one call, so the passes of every volume run in the same batched
    steps and a short volume no longer leaves the device idle. Every other session (another model or options,
    SAM2's ``reference`` or ``fast-serial`` engine, the ``continuous`` policy, the ``transformers`` backend, or
    any other session) gets one ``segment_many`` call (one ``segment`` call per prompt set where it has none).
    The results are those of one ``segment_many`` per session (up to floating-point noise of the batched
    arithmetic); in a joint call ``info["volumes_in_call"]`` says how many volumes shared it and
    ``info["propagate_s"]`` is the whole call's.

    Parameters
    ----------
    items : sequence of (session, sequence of VolumePrompts)

    Returns
    -------
    list of lists of Segmentation
        One list per item, in order.

    Raises
    ------
    PromptError
        If a prompt does not fit its volume (nothing of that joint call is segmented then).
    SegmenterError
        If a session was closed, or a prompt kind its backend does not take.
    """
    items = [(session, list(prompt_sets)) for session, prompt_sets in items]
    results: list[list[Segmentation] | None] = [None] * len(items)
    joint: dict[Hashable, list[int]] = {}
    for number, (session, prompt_sets) in enumerate(items):
        key = session._joint_key() if isinstance(session, VideoSession) and prompt_sets else None
        if key is None and callable(getattr(session, "segment_many", None)):
            results[number] = list(session.segment_many(prompt_sets))
        elif key is None:  # a session without batching: one call per prompt set
            results[number] = [session.segment(prompts) for prompts in prompt_sets]
        else:
            joint.setdefault(key, []).append(number)
    for members in joint.values():
        for number, segmentations in zip(members, _segment_together([items[i] for i in members]), strict=True):
            results[number] = segmentations
    return [segmentations if segmentations is not None else [] for segmentations in results]


def _segment_together(items: list[tuple[VideoSession, list[VolumePrompts]]]) -> list[list[Segmentation]]:
    """One propagation call for every session's prompt sets (one session, or several of equal joint keys)."""
    for session, prompt_sets in items:
        backend = session._live_backend()
        for prompts in prompt_sets:
            for slice_prompt in prompts.slices:
                slice_prompt.validate_for(session.volume.shape)
            backend.check_prompts(prompts)
    if not any(prompt_sets for _, prompt_sets in items):
        return [[] for _ in items]
    first = items[0][0]
    started = time.perf_counter()
    # Sessions of one call share their weights, hence the encoder's counter: the call's encoder work is counted once.
    counter = first._counter
    encoded_before = counter.slices
    with torch.inference_mode(), first._live_backend().running():
        if len(items) == 1:
            outcomes = [first._propagate_all(items[0][1])]
        else:
            outcomes = first._propagate_volumes(items)
        for session, _ in items:
            session._live_backend().reset()
    propagated_s = time.perf_counter() - started
    encoded = counter.slices - encoded_before
    first._encoded += encoded
    frames_run = sum(p.slices for runs, _ in outcomes for run in runs for p in run.passes)
    together = {"volumes_in_call": len(items)} if len(items) > 1 else {}
    results = []
    for (session, prompt_sets), (runs, extra) in zip(items, outcomes, strict=True):
        shared = {
            "prompt_sets_in_call": len(prompt_sets),
            "encoder_slices_segment": encoded if session is first else 0,
            "propagate_s": round(propagated_s, 4),
            "slices_per_s": round(frames_run / propagated_s, 3) if propagated_s > 0 else None,
            **together,
            **extra,
        }
        results.append(
            [session._finish(prompts, run, shared, started) for prompts, run in zip(prompt_sets, runs, strict=True)]
        )
    return results


def union_pass(logits: torch.Tensor, frames: Sequence[int], pass_logits: torch.Tensor) -> None:
    """Fold one pass's logits ``(N, Y, X)`` of ``frames`` into the union ``logits`` (their maximum), in place.

    ``pass_logits`` are moved to the union's device first (a no-op where they already are).
    """
    if len(frames):
        index = torch.as_tensor(list(frames), device=logits.device)
        logits[index] = torch.maximum(logits.index_select(0, index), pass_logits.to(logits.device))


def _option(field_name: str) -> property:
    """A read-only attribute of a segmenter that reads its :class:`VideoOptions` field of the same name."""
    return property(lambda self: getattr(self.options, field_name), doc=f"``options.{field_name}`` (read-only).")


class VideoSegmenterBase:
    """What every video segmenter does the same way: its options as attributes, encoder counting, offloading.

    A subclass sets ``self.model`` and ``self.options`` and implements :meth:`prepare` and ``_encoder`` (the image
    encoder module, whose :class:`~zeroshot.segmenters.runtime.EncoderCounter` it reports).
    """

    model: Any
    options: VideoOptions

    name = _option("name")
    device = _option("device")
    precision = _option("precision")
    image_size = _option("image_size")
    propagation = _option("propagation")
    coords = _option("coords")
    logit_threshold = _option("logit_threshold")
    largest_component = _option("largest_component")
    fill_hole_area = _option("fill_hole_area")
    fill_enclosed_holes = _option("fill_enclosed_holes")
    preprocessing = _option("preprocessing")
    encoder_batch_size = _option("encoder_batch_size")
    offload_video_to_cpu = _option("offload_video_to_cpu")
    offload_state_to_cpu = _option("offload_state_to_cpu")
    return_probabilities = _option("probabilities")

    def _encoder(self) -> torch.nn.Module:
        raise NotImplementedError

    @property
    def encoded_slices(self) -> int:
        """Slices the image encoder of these weights has processed (shared with every offloading variant)."""
        return encoder_counter(self._encoder()).slices

    def numerics(self) -> contextlib.AbstractContextManager:
        """The numerics the model runs under (:func:`~zeroshot.segmenters.runtime.numerics_for`).

        On CUDA bfloat16 autocast with TF32, as the authors run, unless float32 was asked; float32 on the CPU.
        """
        return self.options.numerics()

    def without_probabilities(self) -> VideoSegmenterBase:
        """The same model (weights shared) returning masks only: no float32 copy of each union to the host, no sigmoid.

        ``zeroshot eval`` scores masks, so it builds its video models this way; the masks are the same.
        """
        if not self.options.probabilities:
            return self
        return self._with_options(replace(self.options, probabilities=False))

    def with_offload(self) -> VideoSegmenterBase | None:
        """The same model (weights shared, not copied) keeping image features and memories in host memory.

        The runner retries a case on this variant after a CUDA out-of-memory error. ``None`` when this segmenter
        already offloads both. The variant counts encoder work on the same counter (the encoder's own), so its
        sessions' ``encoder_slices_total`` is right.
        """
        if self.options.offloads_everything:
            return None
        return self._with_options(self.options.offloaded())

    def _with_options(self, options: VideoOptions) -> VideoSegmenterBase:
        """A variant of this segmenter with ``options``: the same model object (weights shared, not copied)."""
        variant = object.__new__(type(self))
        # Every attribute is either immutable (options, names, hashes) or the model, which is shared on purpose.
        variant.__dict__.update(self.__dict__)
        variant.options = options
        return variant
