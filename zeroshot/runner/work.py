"""The work of one case: read it, prompt it, segment it under every strategy and seed, and make its rows.

The stages are separate functions so that each executor can place them where they run best (the local executor
reads the next case in a thread and scores in worker processes; a Ray actor runs them in turn):

* :func:`read_case` -- volume, label and the prompts of every (strategy, seed), cached in the run directory;
* :func:`predict_case` -- one :class:`~zeroshot.segmenters.Session` per case and model, every prompt set
  segmented in it (the image encoder runs once per case, not once per strategy and seed); in an interactive run
  every round of every click curve too (:mod:`zeroshot.interactive`), each round a prediction of its own;
* :func:`finish_row` -- the row record from a prediction and its scores, appended to the run's store.

A video session's CPU post-processing (largest component, enclosed holes) can be deferred
(``predict_case(defer_postprocess=True)``): its predictions then carry the thresholded mask and the steps still to
apply (:attr:`Prediction.postprocessing`), which the executor runs where it scores (the local executor: in its
scoring processes), before scoring and before the mask is saved (:func:`finish_prediction` where it runs inline).

Anything a case raises becomes a failed row naming the reason; the run goes on. A CUDA out-of-memory error is
retried once with the segmenter's offloading variant (:func:`offload_variant`: ``segmenter.with_offload()``,
the same weights with image features and memories in host memory).
"""

from __future__ import annotations

import gc
import json
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from zeroshot.datasets import Case
from zeroshot.errors import SegmenterError
from zeroshot.interactive import Click, ClickSettings, replay, simulate
from zeroshot.interactive.loop import Round, next_round
from zeroshot.prompts.sources import CaseMasks
from zeroshot.prompts.types import VolumePrompts
from zeroshot.runner.rundir import RowKey, RunDir
from zeroshot.runner.scoring import Scores
from zeroshot.runner.zextent import ZExtentSession
from zeroshot.scoring import failed_row, header_d_max_mm
from zeroshot.segmenters.postprocess import PostProcessing
from zeroshot.store.records import PromptKey, RowRecord, plain_json
from zeroshot.store.schema import ORACLE_COLUMNS, TIMING_COLUMNS
from zeroshot.volume import Volume, read_label, read_volume, write_mask

__all__ = [
    "ORACLE_COLUMNS",
    "TIMING_COLUMNS",
    "CaseInputs",
    "CurveStart",
    "Prediction",
    "finish_prediction",
    "finish_row",
    "predict_case",
    "predict_cases",
    "read_case",
]

#: Longest error message kept in a row (the full traceback goes to logs/errors.log).
MAX_ERROR_CHARS = 500


@dataclass(frozen=True, eq=False)
class CaseInputs:
    """A case read and prompted, ready for any model.

    Attributes
    ----------
    case : Case
    volume : Volume or None
        ``None`` if reading failed.
    gt : (Z, Y, X) bool array or None
        The label mask on the volume's grid.
    prompts : mapping of (strategy, seed) to VolumePrompts or exception
        The prompts of each task, or why they could not be made.
    error : exception or None
        Why the case could not be read (every row of the case fails with it).
    seconds_read : float
        Time spent reading and prompting.
    d_max_mm : float
        The penalty distance of the case's failed rows: the image's diagonal in mm, read from the image's header
        (else the label's) when the case could not be read; NaN only when neither header can be read.
    """

    case: Case
    volume: Volume | None
    gt: np.ndarray | None
    prompts: Mapping[tuple[str, int], VolumePrompts | BaseException] = field(default_factory=dict)
    error: BaseException | None = None
    seconds_read: float = 0.0
    d_max_mm: float = float("nan")


@dataclass(frozen=True, eq=False)
class Prediction:
    """A segmenter's answer for one row, or the reason there is none.

    Attributes
    ----------
    key : RowKey
    mask : (Z, Y, X) bool array or None
        Final, unless ``postprocessing`` is pending.
    prompts : VolumePrompts or None
    error : exception or None
    info : mapping
        The segmentation's ``info`` (recorded in the row as JSON).
    seconds_prepare, seconds_segment : float
        Time to prepare the session (shared by every row of the case) and to segment this row (in an interactive
        run: to choose the round's clicks and segment).
    offloaded : bool
        Whether this row ran on the offloading variant after running out of GPU memory.
    clicks : tuple of Click
        Interactive runs: every click made up to this row's round (for a failed round, those before it).
    click_protocol : str
        Interactive runs: the protocol that made the clicks (``ClickSettings.protocol``).
    postprocessing : PostProcessing or None
        Post-processing still to apply to ``mask`` before it is scored or saved (deferred by the session).
    """

    key: RowKey
    mask: np.ndarray | None
    prompts: VolumePrompts | None
    error: BaseException | None = None
    info: Mapping[str, Any] = field(default_factory=dict)
    seconds_prepare: float = float("nan")
    seconds_segment: float = float("nan")
    offloaded: bool = False
    clicks: tuple[Click, ...] = ()
    click_protocol: str = ""
    postprocessing: PostProcessing | None = None


def finish_prediction(prediction: Prediction) -> Prediction:
    """The prediction with its deferred post-processing applied (itself when none is pending).

    ``info`` gains the entries the steps record, as :meth:`~zeroshot.segmenters.base.Segmentation.finished` adds.
    """
    if prediction.postprocessing is None or prediction.mask is None:
        return prediction
    done = prediction.postprocessing.apply(prediction.mask)
    info = {**prediction.info, **done.info()}
    return replace(prediction, mask=done.mask, info=info, postprocessing=None)


def read_case(
    case: Case,
    tasks: Sequence[tuple[str, int]],
    strategies: Mapping[str, Any],
    rundir: RunDir,
    *,
    label: int,
    coarse_dir: Path | None = None,
) -> CaseInputs:
    """Read a case and make (or load from the run's cache) the prompts of every ``(strategy, seed)`` task.

    ``label`` is the run's structure (its value in the label and coarse files); a label file that holds other
    structures but not this one fails the case with the values it holds. ``coarse_dir`` holds the coarse masks
    of strategies whose source is ``coarse``. Never raises for a bad case: reading errors are returned in
    :attr:`CaseInputs.error` (with the D_max its headers give), prompting errors per task in
    :attr:`CaseInputs.prompts`.
    """
    start = time.perf_counter()
    try:
        volume = read_volume(case.image)
        if case.label is None:
            raise SegmenterError(f"case {case.key}: no label file; cannot score it")
        gt = read_label(case.label, volume, label=label, require_label=False)
    except Exception as exc:
        d_max_mm = header_d_max_mm(case.image, case.label)
        return CaseInputs(case, None, None, error=exc, seconds_read=time.perf_counter() - start, d_max_mm=d_max_mm)
    prompts: dict[tuple[str, int], VolumePrompts | BaseException] = {}
    masks = CaseMasks(case, volume, label=label, coarse_dir=coarse_dir, gt=gt)
    for strategy_name, seed in tasks:
        try:
            prompts[(strategy_name, seed)] = _prompts_for(strategies[strategy_name], masks, strategy_name, seed, rundir)
        except Exception as exc:
            prompts[(strategy_name, seed)] = exc
    return CaseInputs(case, volume, gt, prompts, seconds_read=time.perf_counter() - start, d_max_mm=volume.diagonal_mm)


def _prompts_for(strategy: Any, masks: CaseMasks, name: str, seed: int, rundir: RunDir) -> VolumePrompts:
    """The run's stored prompt set of this case, strategy and seed, or a new one (stored before it is used)."""
    from zeroshot.prompts.generate import case_prompts
    from zeroshot.prompts.serialise import prompts_to_json

    key = PromptKey(masks.case.sequence, masks.case.case_id, name, seed)
    stored = rundir.prompt_set(key)
    if stored is not None:
        return stored
    prompts = case_prompts(strategy, masks, seed)
    rundir.write_prompts(key, prompts_to_json(prompts))  # mask prompts inline: no file per case in the run
    return prompts


def predict_case(
    segmenter: Any,
    inputs: CaseInputs,
    keys: Sequence[RowKey],
    *,
    seconds_prepare: list[float] | None = None,
    clicks: ClickSettings | None = None,
    starts: Mapping[RowKey, CurveStart] | None = None,
    batch_prompts: bool = True,
    defer_postprocess: bool = False,
) -> Iterator[Prediction]:
    """Segment one case under every row key given, in one session (one image encoding).

    Parameters
    ----------
    segmenter : Segmenter
    inputs : CaseInputs
        From :func:`read_case` with the same (strategy, seed) tasks as ``keys``.
    keys : sequence of RowKey
        The rows to make, all of this case and this segmenter's model; with ``clicks``, the curves to make
        (keys with ``round=None``).
    seconds_prepare : list or None
        If given, the time of each ``prepare`` call is appended (for benchmarks).
    clicks : ClickSettings or None
        Make each key's curve of simulated corrective clicks (:func:`zeroshot.interactive.simulate`) in the same
        session: one prediction per round, round 0 from the strategy's prompts alone.
    starts : mapping of RowKey to CurveStart or None
        With ``clicks``: curves that resume after a round already written (rebuilt from its recorded clicks by
        :func:`zeroshot.interactive.replay`); absent curves start at round 0.
    batch_prompts : bool
        Give every prompt set of the case to the session in one ``segment_many`` call (every key's; with
        ``clicks``, one call per round holding that round of every curve), so that they propagate in lockstep;
        sessions without ``segment_many`` get one ``segment`` call each. The rows are those of separate calls:
        a batch that raises anything but an out-of-memory error is redone one prompt set at a time, so that
        each row fails (or not) with its own reason, and after an out-of-memory retry the curves go on one at
        a time from where they were.
    defer_postprocess : bool
        Ask sessions that can (``session.defer_postprocess``) to leave their CPU post-processing to the caller:
        the predictions then carry it pending (:attr:`Prediction.postprocessing`; :func:`finish_prediction`
        applies it). Not with ``clicks``: a round's clicks are chosen from the final mask.

    Yields
    ------
    Prediction
        One per key (per key and round with ``clicks``), in order; failed rows carry their exception. A curve
        stops at its first failed round.
    """
    starts = starts or {}
    if inputs.error is not None or inputs.volume is None:
        error = inputs.error or SegmenterError(f"case {inputs.case.key}: no volume")
        for key in keys:
            yield _failed(key, None, error, clicks=clicks, start=starts.get(key))
        return
    source = _SessionSource(segmenter, inputs.volume, seconds_prepare, defer=defer_postprocess and clicks is None)
    ready: list[tuple[RowKey, VolumePrompts]] = []
    try:
        for key in keys:
            prompts = inputs.prompts.get((key.strategy, key.seed))
            if prompts is None or isinstance(prompts, BaseException):
                missing = SegmenterError(f"no prompts for strategy {key.strategy!r}, seed {key.seed}")
                yield _failed(key, None, prompts or missing, clicks=clicks, start=starts.get(key))
            elif batch_prompts:
                ready.append((key, prompts))
            elif clicks is None:
                yield from _predict_batch(source, [(key, prompts)])
            else:
                yield from _predict_curve(source, key, prompts, inputs.gt, clicks, starts.get(key))
        if ready and clicks is None:
            yield from _predict_batch(source, ready)
        elif ready:
            yield from _predict_curves(source, ready, inputs.gt, clicks, starts)
    finally:
        source.close()


def predict_cases(
    segmenter: Any,
    cases: Sequence[tuple[CaseInputs, Sequence[RowKey]]],
    *,
    seconds_prepare: list[float] | None = None,
    defer_postprocess: bool = False,
) -> list[list[Prediction]]:
    """Segment several cases with their prompt sets propagating together; each case's rows, as :func:`predict_case`.

    Every case's session is prepared, then all their prompt sets go to the model in one call
    (:func:`~zeroshot.segmenters.video_core.segment_volumes`: SAM2's lockstep engine batches the passes of every
    volume in the same steps). The rows are those of one :func:`predict_case` per case (with ``batch_prompts``):

    - a case that cannot be read or prepared, or whose prompts are missing, fails (or runs) as it would alone;
    - on CUDA, a case joins the call only while the free device memory holds the estimated features and memory
      banks of the cases so far and of it (:func:`_fits_on_device`); the others make a later call;
    - an out-of-memory error in the joint call frees every session and runs each case alone (where its own
      offloading retry still works); any other error runs each case alone, so it lands on its own rows;
    - a model whose sessions cannot share a call (another backend, engine or policy) runs each case alone.

    Click curves are not made here (the runner gives an interactive run's cases to :func:`predict_case`).
    ``defer_postprocess`` is :func:`predict_case`'s.

    Returns
    -------
    list of lists of Prediction
        One list per case, in order.
    """
    results: list[list[Prediction] | None] = [None] * len(cases)
    alone: list[int] = []
    joint: list[tuple[int, _SessionSource, list[tuple[RowKey, VolumePrompts]]]] = []

    def run_joint() -> None:
        if len(joint) == 1:  # nothing to share with: the case's own batched call, in the session it has
            index, source, ready = joint[0]
            results[index] = (results[index] or []) + list(_predict_batch(source, ready))
            source.close()
        elif joint:
            _predict_jointly(joint, results)
        joint.clear()

    for index, (inputs, keys) in enumerate(cases):
        if inputs.error is not None or inputs.volume is None:
            alone.append(index)
            continue
        failed, ready = _split_ready(inputs, keys)
        results[index] = failed
        if not ready:
            continue
        source = _SessionSource(segmenter, inputs.volume, seconds_prepare, defer=defer_postprocess)
        try:
            session = source.session()
        except Exception:
            source.close()  # prepared again alone, where an out-of-memory error gets its offloading retry
            results[index] = None
            alone.append(index)
            continue
        if not _joinable(session):
            results[index] = failed + list(_predict_batch(source, ready))
            source.close()
            continue
        members = [(src, len(rdy)) for _, src, rdy in joint]
        if joint and not _fits_on_device([*members, (source, len(ready))]):
            run_joint()
        joint.append((index, source, ready))
    run_joint()
    for index in alone:
        inputs, keys = cases[index]
        results[index] = list(
            predict_case(segmenter, inputs, keys, seconds_prepare=seconds_prepare, defer_postprocess=defer_postprocess)
        )
    return [rows or [] for rows in results]


def _split_ready(
    inputs: CaseInputs, keys: Sequence[RowKey]
) -> tuple[list[Prediction], list[tuple[RowKey, VolumePrompts]]]:
    """The failed rows of keys without prompts, and the keys ready to segment with their prompts."""
    failed, ready = [], []
    for key in keys:
        prompts = inputs.prompts.get((key.strategy, key.seed))
        if prompts is None or isinstance(prompts, BaseException):
            missing = SegmenterError(f"no prompts for strategy {key.strategy!r}, seed {key.seed}")
            failed.append(_failed(key, None, prompts or missing, clicks=None, start=None))
        else:
            ready.append((key, prompts))
    return failed, ready


def _joinable(session: Any) -> bool:
    """Whether a (z-extent wrapped) session can propagate together with others of its model."""
    inner = getattr(session, "session", session)
    joint_key = getattr(inner, "_joint_key", None)
    return callable(joint_key) and joint_key() is not None


def _predict_jointly(
    joint: Sequence[tuple[int, _SessionSource, list[tuple[RowKey, VolumePrompts]]]],
    results: list[list[Prediction] | None],
) -> None:
    """One call for every case of ``joint``; each case's rows appended to ``results[index]``."""
    from zeroshot.runner.zextent import within_z_extent
    from zeroshot.segmenters.video_core import segment_volumes  # imports torch: only once a model runs

    items = [(source.session().session, [prompts for _, prompts in ready]) for _, source, ready in joint]
    try:
        start = time.perf_counter()
        together = segment_volumes(items)
        seconds = (time.perf_counter() - start) / sum(len(ready) for _, _, ready in joint)
        answers = []
        for (_, _, ready), segmentations in zip(joint, together, strict=True):
            answers.append(
                [within_z_extent(seg, prompts) for (_, prompts), seg in zip(ready, segmentations, strict=True)]
            )
    except Exception as exc:
        if is_out_of_memory(exc):  # alone, each case has the device to itself (and its own offloading retry)
            for _, source, _ in joint:
                source.close()
            release_device_memory()
        for index, source, ready in joint:
            results[index] = (results[index] or []) + list(_predict_batch(source, ready))
            source.close()
        return
    for (index, source, ready), segmentations in zip(joint, answers, strict=True):
        results[index] = (results[index] or []) + list(_batch_rows(source, ready, segmentations, seconds))
        source.close()


def _fits_on_device(members: Sequence[tuple[_SessionSource, int]]) -> bool:
    """Whether the device holds a joint call of these prepared cases (each with its number of prompt sets).

    Off CUDA there is no bound. On CUDA every case's features are allocated already (each was prepared), so the
    free memory must still hold what the call allocates for every case (the session's ``lockstep_bytes``), with a
    25 % margin for the step's activations; a session that cannot say what it needs is not bound.
    """
    torch = sys.modules.get("torch")
    sessions = [getattr(source.session(), "session", None) for source, _ in members]
    device = getattr(getattr(sessions[-1], "options", None), "device", None)
    if torch is None or getattr(device, "type", "") != "cuda":
        return True
    needed = 0
    for session, (_, prompt_sets) in zip(sessions, members, strict=True):
        estimate = getattr(session, "lockstep_bytes", None)
        if not callable(estimate):
            return True
        needed += estimate(prompt_sets)
    free, _ = torch.cuda.mem_get_info(device)
    return needed * 1.25 <= free


@dataclass(frozen=True)
class CurveStart:
    """Where an interactive curve resumes: after round ``round``, whose row recorded ``clicks`` (all so far).

    Attributes
    ----------
    round : int
        The last round of the curve's unbroken run of rows from round 0.
    clicks : tuple of Click
        The clicks of that round's row.
    written : frozenset of int
        Later rounds whose rows exist already (rows scored out of order can leave a gap when a run is killed):
        they are recomputed on the way, never written again.
    """

    round: int
    clicks: tuple[Click, ...] = ()
    written: frozenset[int] = frozenset()


class _SessionSource:
    """The session of one case, prepared on first use; after a CUDA out-of-memory error, the offloading variant's.

    A ``prepare`` that failed for another reason is not tried again: every later row of the case fails with it.
    With ``defer``, a session that can defer its post-processing is asked to.
    """

    def __init__(
        self, segmenter: Any, volume: Volume, seconds_prepare: list[float] | None, *, defer: bool = False
    ) -> None:
        self.segmenter = segmenter
        self.defer = defer
        self.volume = volume
        self.offloaded = False
        self.seconds_prepare = float("nan")
        self._log = seconds_prepare
        self._session: Any = None
        self._error: BaseException | None = None

    def session(self) -> Any:
        if self._session is None:
            if self._error is not None:
                raise self._error
            start = time.perf_counter()
            try:
                prepared = self.segmenter.prepare(self.volume)
                if self.defer and hasattr(prepared, "defer_postprocess"):
                    prepared.defer_postprocess = True
                self._session = ZExtentSession(prepared)
            except Exception as exc:
                self._error = exc
                raise
            self.seconds_prepare = time.perf_counter() - start
            if self._log is not None:
                self._log.append(self.seconds_prepare)
        return self._session

    def fall_back(self, error: BaseException) -> bool:
        """Switch to the offloading variant after an out-of-memory ``error`` (once per case); whether it did."""
        variant = None if self.offloaded or not is_out_of_memory(error) else offload_variant(self.segmenter)
        if variant is None:
            return False
        self.close()
        release_device_memory()
        self.segmenter, self.offloaded, self._error = variant, True, None
        return True

    def close(self) -> None:
        _close(self._session)
        self._session = None


def _segment_blamed(session: Any, prompt_sets: Sequence[VolumePrompts]) -> list[Any]:
    """The segmentation of each prompt set, or the exception that its own call raised.

    Several prompt sets go in one ``segment_many`` call where the session has it; if that raises (anything but
    out of memory) they are redone one at a time, so that each error lands on the prompt set that raised it, as
    in separate calls. An out-of-memory error is raised, for the caller to retry on the offloading variant.
    """
    many = getattr(session, "segment_many", None)
    if callable(many) and len(prompt_sets) > 1:
        try:
            return list(many(prompt_sets))
        except Exception as exc:
            if is_out_of_memory(exc):
                raise
    results: list[Any] = []
    for prompts in prompt_sets:
        try:
            results.append(session.segment(prompts))
        except Exception as exc:
            if is_out_of_memory(exc):
                raise
            results.append(exc)
    return results


def _predict_batch(source: _SessionSource, ready: Sequence[tuple[RowKey, VolumePrompts]]) -> Iterator[Prediction]:
    """The rows of every ``(key, prompts)`` from one batched call (see :func:`_segment_blamed`)."""
    while True:
        try:
            session = source.session()
            start = time.perf_counter()
            results = _segment_blamed(session, [prompts for _, prompts in ready])
            seconds = (time.perf_counter() - start) / len(ready)  # the call's time, shared by its rows
        except Exception as exc:
            if source.fall_back(exc):
                continue
            results, seconds = [exc] * len(ready), float("nan")
        break
    yield from _batch_rows(source, ready, results, seconds)


def _batch_rows(
    source: _SessionSource, ready: Sequence[tuple[RowKey, VolumePrompts]], results: Sequence[Any], seconds: float
) -> Iterator[Prediction]:
    """The row of each ``(key, prompts)`` from its segmentation (or the exception it raised)."""
    for (key, prompts), result in zip(ready, results, strict=True):
        try:
            if isinstance(result, Exception):
                raise result
            mask = _checked_mask(result.mask, source.volume, source.segmenter)
        except Exception as exc:
            yield Prediction(key, None, prompts, error=exc, offloaded=source.offloaded)
            continue
        yield _segmented(source, key, prompts, result, mask, seconds)


@dataclass
class _Curve:
    """One click curve stepped in lockstep with the case's others (:func:`_predict_curves`)."""

    key: RowKey
    initial: VolumePrompts
    resume: CurveStart | None
    written: frozenset[int]
    current: Round | None = None
    pending: tuple[int, VolumePrompts, tuple[Click, ...]] | None = None

    def start(self) -> CurveStart | None:
        """Where the one-at-a-time path resumes this curve: its last round here, else where the run resumed it."""
        if self.current is None:
            return self.resume
        return CurveStart(self.current.round, self.current.clicks, self.written)


def _predict_curves(
    source: _SessionSource,
    ready: Sequence[tuple[RowKey, VolumePrompts]],
    gt: np.ndarray,
    settings: ClickSettings,
    starts: Mapping[RowKey, CurveStart],
) -> Iterator[Prediction]:
    """The rounds of every curve, each round of all the curves segmented in one call.

    Curves that resume (``starts``) are rebuilt one at a time first (:func:`replay`), then join the others. Any
    error hands the curves to the one-at-a-time path from their last finished round, after switching to the
    offloading variant if it was an out-of-memory error, so every row is the one :func:`_predict_curve` makes.
    """
    finished = {key for key, start in starts.items() if start.round >= settings.rounds}  # no rows left to make
    curves = [
        _Curve(key, prompts, starts.get(key), starts[key].written if key in starts else frozenset())
        for key, prompts in ready
        if key not in finished
    ]
    if not curves:
        return
    try:
        session = source.session()
        for curve in curves:
            start = starts.get(curve.key)
            if start is None:
                curve.pending = (0, curve.initial, ())
            else:
                curve.current = replay(session, curve.initial, start.clicks, settings=settings, round_index=start.round)
        spacing = source.volume.spacing_mm
        while True:
            for curve in curves:
                while curve.pending is None and curve.current is not None and curve.current.round < settings.rounds:
                    began = time.perf_counter()
                    following = next_round(curve.current, gt, curve.initial, spacing, settings=settings)
                    if isinstance(following, Round):
                        curve.current = following  # nothing to correct: the same prediction, no call
                        seconds = time.perf_counter() - began  # choosing found nothing, as _predict_curve times it
                        yield from _curve_rows(source, curve, following, seconds, settings)
                    else:
                        curve.pending = following
            waiting = [curve for curve in curves if curve.pending is not None]
            if not waiting:
                return
            began = time.perf_counter()
            results = _segment_blamed(session, [curve.pending[1] for curve in waiting])  # type: ignore[index]
            seconds = (time.perf_counter() - began) / len(waiting)
            for curve, result in zip(waiting, results, strict=True):
                index, prompts, clicks = curve.pending  # type: ignore[misc]
                try:
                    if isinstance(result, Exception):
                        raise result
                    _checked_mask(result.mask, source.volume, source.segmenter)
                except Exception as exc:  # the curve ends at its first failed round, as in _predict_curve
                    curves.remove(curve)
                    yield Prediction(
                        curve.key.at_round(index),
                        None,
                        curve.initial,
                        error=exc,
                        offloaded=source.offloaded,
                        clicks=curve.current.clicks if curve.current is not None else (),
                        click_protocol=settings.protocol,
                    )
                    continue
                curve.current, curve.pending = Round(index, prompts, result, clicks), None
                yield from _curve_rows(source, curve, curve.current, seconds, settings)
    except Exception as exc:  # out of memory (or a session that cannot be prepared): one curve at a time
        source.fall_back(exc)
        for curve in curves:
            yield from _predict_curve(source, curve.key, curve.initial, gt, settings, curve.start())


def _curve_rows(
    source: _SessionSource, curve: _Curve, state: Round, seconds: float, settings: ClickSettings
) -> Iterator[Prediction]:
    if state.round in curve.written:
        return
    curve.written = curve.written | {state.round}  # the one-at-a-time path, if it takes over, skips it
    yield _round_row(source, curve.key, state, np.asarray(state.segmentation.mask), seconds, settings)


def _round_row(
    source: _SessionSource, key: RowKey, state: Round, mask: np.ndarray, seconds: float, settings: ClickSettings
) -> Prediction:
    """The row of one click round: the curve's key at the round, with the round's prompts and clicks."""
    return _segmented(
        source, key.at_round(state.round), state.prompts, state.segmentation, mask, seconds, state.clicks, settings
    )


def _predict_curve(
    source: _SessionSource,
    key: RowKey,
    prompts: VolumePrompts,
    gt: np.ndarray,
    settings: ClickSettings,
    start: CurveStart | None,
) -> Iterator[Prediction]:
    """The rounds of one click curve from ``start`` on; after an out-of-memory retry it resumes where it failed."""
    written = start.written if start is not None else frozenset()
    done, clicks = (start.round, start.clicks) if start is not None else (-1, ())
    while True:
        try:
            session = source.session()
            resume = None
            if done >= 0:
                resume = replay(session, prompts, clicks, settings=settings, round_index=done)
            began = time.perf_counter()
            for state in simulate(session, gt, prompts, settings=settings, start=resume):
                seconds = time.perf_counter() - began
                mask = _checked_mask(state.segmentation.mask, source.volume, source.segmenter)
                done, clicks = state.round, state.clicks
                if state.round not in written:
                    yield _round_row(source, key, state, mask, seconds, settings)
                began = time.perf_counter()
            return
        except Exception as exc:
            if source.fall_back(exc):
                continue
            yield Prediction(
                key.at_round(done + 1),
                None,
                prompts,
                error=exc,
                offloaded=source.offloaded,
                clicks=clicks,
                click_protocol=settings.protocol,
            )
            return


def _segmented(
    source: _SessionSource,
    key: RowKey,
    prompts: VolumePrompts,
    segmentation: Any,
    mask: np.ndarray,
    seconds: float,
    clicks: tuple[Click, ...] = (),
    settings: ClickSettings | None = None,
) -> Prediction:
    """The row of a segmentation that succeeded (a click round's with its clicks and protocol)."""
    return Prediction(
        key,
        mask,
        prompts,
        info=dict(segmentation.info),
        seconds_prepare=source.seconds_prepare,
        seconds_segment=seconds,
        offloaded=source.offloaded,
        clicks=clicks,
        click_protocol=settings.protocol if settings is not None else "",
        postprocessing=getattr(segmentation, "postprocessing", None),
    )


def _failed(
    key: RowKey,
    prompts: VolumePrompts | None,
    error: BaseException,
    *,
    clicks: ClickSettings | None,
    start: CurveStart | None,
) -> Prediction:
    """The failed row of a key; for a curve, its first round still to make."""
    if clicks is None:
        return Prediction(key, None, prompts, error=error)
    protocol = clicks.protocol
    if start is None:
        return Prediction(key.at_round(0), None, prompts, error=error, click_protocol=protocol)
    return Prediction(
        key.at_round(start.round + 1), None, prompts, error=error, clicks=start.clicks, click_protocol=protocol
    )


def _checked_mask(mask: Any, volume: Volume, segmenter: Any) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.shape != volume.shape:
        raise SegmenterError(
            f"{getattr(segmenter, 'name', segmenter)}: returned a mask of shape {mask.shape} for a volume of shape "
            f"{volume.shape}"
        )
    if mask.dtype != bool:
        raise SegmenterError(f"{getattr(segmenter, 'name', segmenter)}: returned a {mask.dtype} mask, not bool")
    return mask


def _close(session: Any) -> None:
    if session is not None:
        session.close()


def offload_variant(segmenter: Any) -> Any | None:
    """The segmenter's offloading variant: ``segmenter.with_offload()``, or ``None`` where it has none.

    Every torch segmenter defines ``with_offload()`` (the same weights, image features and per-slice memories
    kept in host memory; ``None`` when it offloads everything already). A segmenter without the method (the
    weight-free baselines) has nothing to offload: its out-of-memory error fails the row.
    """
    method = getattr(segmenter, "with_offload", None)
    return method() if callable(method) else None


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is a CUDA out-of-memory error (torch is not imported just to ask)."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(error, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


def release_device_memory() -> None:
    """Free cached GPU memory after an out-of-memory error (a no-op without CUDA)."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def finish_row(
    prediction: Prediction,
    inputs: CaseInputs,
    scores: Scores | BaseException | None,
    rundir: RunDir,
    *,
    tolerances_mm: Sequence[float],
    prediction_path: str = "",
    uses_gt: bool | None = None,
) -> RowRecord:
    """Make the row record of a prediction and append it to the run's store; return the record.

    Parameters
    ----------
    prediction : Prediction
    inputs : CaseInputs
    scores : Scores, exception or None
        The scores (``None`` for a failed prediction, an exception if scoring failed).
    rundir : RunDir
    tolerances_mm : sequence of float
        NSD tolerances (the columns of a failed row).
    prediction_path : str
        The saved prediction, relative to the run directory ("" if not saved).
    uses_gt : bool or None
        Whether the row's strategy prompts from the ground truth: the ``oracle_gt_prompt`` flag of a row whose
        prompts could not be made (so that failed rows fall in the same oracle group as their strategy's others).

    Returns
    -------
    RowRecord
        As stored: the row, its per-slice table and the segmentation info.

    Notes
    -----
    A row of an interactive run (a key with a ``round``) also has ``round``, ``n_clicks`` (clicks so far),
    ``clicks`` (JSON list of ``{round, z, x, y, label}`` so far) and ``click_protocol`` after the identity columns.
    Its ``key_slices`` are the slices prompted in that round (the strategy's and the clicked ones), which the
    per-slice distances are measured from.
    """
    key, case = prediction.key, inputs.case
    error = prediction.error if prediction.error is not None else scores if isinstance(scores, BaseException) else None
    row: dict[str, Any] = {
        "case_id": key.case_id,
        "sequence": key.sequence,
        "center": case.center,
        "split": case.split,
        "model": key.model,
        "strategy": key.strategy,
        "seed": key.seed,
    }
    if key.round is not None:
        row["round"] = key.round
        row["n_clicks"] = len(prediction.clicks)
        row["clicks"] = json.dumps([click.as_record() for click in prediction.clicks])
        row["click_protocol"] = prediction.click_protocol or "zeroshot"
    if error is None and isinstance(scores, Scores):
        row.update(scores.metrics)
        slices = scores.slices
    else:
        row.update(failed_row(tolerances_mm, d_max_mm=inputs.d_max_mm))
        slices = {}
    row["failed"] = error is not None
    row["error"] = _error_text(error) if error is not None else ""
    row.update(oracle_flags(prediction.prompts))
    if prediction.prompts is None and uses_gt is not None:
        row["oracle_gt_prompt"] = bool(uses_gt)
    prompts = prediction.prompts
    row["prompt_source"] = prompts.source if prompts is not None else ""
    row["key_slices"] = " ".join(str(z) for z in prompts.key_slices) if prompts is not None else ""
    row["box_coverage"] = prompts.box_coverage if prompts is not None else float("nan")
    row["offloaded"] = prediction.offloaded
    row["prediction"] = prediction_path if error is None else ""
    row["seconds_read"] = inputs.seconds_read
    row["seconds_prepare"] = prediction.seconds_prepare
    row["seconds_segment"] = prediction.seconds_segment
    record = RowRecord(key, row, slices, plain_json(dict(prediction.info)))
    rundir.write_row(record)
    if error is not None:
        rundir.log_failure(key, error)
    return record


def oracle_flags(prompts: VolumePrompts | None) -> dict[str, bool]:
    """The ``oracle_*`` columns of a row from its prompts' ``oracle`` mapping (absent keys are false)."""
    flags = dict.fromkeys(ORACLE_COLUMNS, False)
    if prompts is not None:
        for name, used in prompts.oracle.items():
            column = name if name.startswith("oracle_") else f"oracle_{name}"
            flags[column] = bool(used)
    return flags


def _error_text(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}".replace("\n", " ")
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 3] + "..."


def save_prediction(rundir: RunDir, prediction: Prediction, volume: Volume) -> str:
    """Write a prediction as NIfTI overlaying its input image; return its path relative to the run directory."""
    path = rundir.prediction_path(prediction.key)
    write_mask(path, prediction.mask, volume)
    return path.relative_to(rundir.root).as_posix()
