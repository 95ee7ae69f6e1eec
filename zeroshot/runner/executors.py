"""Executors: where the cases of one model run.

The local executor pipelines a single process; Ray spreads cases over a cluster
(:mod:`zeroshot.runner.ray_executor`).

The local executor keeps the model busy: while it segments one case, a thread reads and prompts the next
(:class:`Prefetcher`), and finished predictions are scored in worker processes (:class:`RowScorer`), whose
results are written as rows as they arrive; with ``--save-pred`` a thread writes the prediction files meanwhile
(gzip releases the GIL), each before its row. At most a few predictions wait for scoring, so memory stays bounded
when scoring is slower than the model. With scoring processes the model's CPU post-processing (largest component,
enclosed holes) is deferred to them too: the session hands on the thresholded mask, a worker finishes it before
scoring, and the file saved is the finished mask.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import queue
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from zeroshot.datasets import Case
from zeroshot.interactive import ClickSettings
from zeroshot.runner.rundir import RowKey, RunDir
from zeroshot.runner.scoring import finish_and_score, score_prediction
from zeroshot.runner.work import (
    CaseInputs,
    CurveStart,
    Prediction,
    finish_prediction,
    finish_row,
    predict_case,
    predict_cases,
    read_case,
    release_device_memory,
    save_prediction,
)
from zeroshot.store import RowRecord

__all__ = ["CaseJob", "Executor", "LocalExecutor", "Prefetcher", "Progress", "RowScorer", "RunContext"]


@dataclass(frozen=True, eq=False)
class CaseJob:
    """The rows still to make for one case and one model.

    Attributes
    ----------
    case : Case
    keys : tuple of RowKey
        The rows to make; in an interactive run, the click curves (keys with ``round=None``).
    starts : mapping of RowKey to CurveStart
        Interactive runs: the curves that resume after a round already written.
    """

    case: Case
    keys: tuple[RowKey, ...]
    starts: Mapping[RowKey, CurveStart] = field(default_factory=dict)

    @property
    def tasks(self) -> tuple[tuple[str, int], ...]:
        """The distinct ``(strategy, seed)`` pairs of the keys, in order."""
        return tuple(dict.fromkeys((k.strategy, k.seed) for k in self.keys))


@dataclass(frozen=True, eq=False)
class RunContext:
    """What every executor needs to make rows.

    Attributes
    ----------
    rundir : RunDir
    strategies : mapping of str to Strategy
    label : int
        Label value of the structure.
    tolerances_mm : tuple of float
    save_pred : bool
    build : callable
        ``build(model_name) -> Segmenter``.
    record_model : callable
        ``record_model(model_name, describe_dict)``: checks the model's identity against the run and records
        it; raises :class:`~zeroshot.errors.ConfigError` on a conflict (before any row of the model is made).
    coarse_dir : Path or None
        Coarse masks for strategies whose source is ``coarse``.
    clicks : ClickSettings or None
        Simulated corrective clicks (an interactive run), or ``None``.
    batch_prompts : bool
        Segment every prompt set of a case (every round of its curves) in one ``segment_many`` call
        (:func:`~zeroshot.runner.work.predict_case`).
    """

    rundir: RunDir
    strategies: Mapping[str, Any]
    label: int
    tolerances_mm: tuple[float, ...]
    save_pred: bool
    build: Callable[[str], Any]
    record_model: Callable[[str, Mapping[str, Any]], None]
    coarse_dir: Path | None = None
    clicks: ClickSettings | None = None
    batch_prompts: bool = True


class Progress(Protocol):
    """Receives progress: each row record as written, and each case x model finished."""

    def row(self, record: RowRecord) -> None:
        """A row was written."""

    def case_done(self) -> None:
        """A case's rows for one model were all handed on."""


class Executor(Protocol):
    """Runs the case jobs of one model."""

    def run_model(self, model: str, jobs: Sequence[CaseJob], context: RunContext, progress: Progress) -> None:
        """Make every row of ``jobs`` with model ``model``."""


class LocalExecutor:
    """One model in this process; reading in a thread, scoring in ``workers`` processes (0: in this process).

    Parameters
    ----------
    workers : int
        Scoring processes.
    prefetch : int
        Cases read ahead of the one being segmented (at least ``cases_in_flight``).
    cases_in_flight : int
        Cases whose prompt sets propagate together (:func:`~zeroshot.runner.work.predict_cases`): up to this
        many prefetched cases are prepared and segmented in one call, bounded by free GPU memory. Interactive
        runs (click curves) and runs without ``batch_prompts`` take one case at a time.
    """

    def __init__(self, workers: int = 1, *, prefetch: int = 1, cases_in_flight: int = 1) -> None:
        self.workers = workers
        self.prefetch = max(prefetch, cases_in_flight)
        self.cases_in_flight = cases_in_flight

    def run_model(self, model: str, jobs: Sequence[CaseJob], context: RunContext, progress: Progress) -> None:
        """Build the model once and run every job through it."""
        segmenter = context.build(model)
        try:
            context.record_model(model, segmenter.describe())
            with (
                Prefetcher(jobs, context, depth=self.prefetch) as prefetcher,
                RowScorer(context, workers=self.workers, on_row=progress.row) as scorer,
            ):
                together = self.cases_in_flight > 1 and context.clicks is None and context.batch_prompts
                for group in _groups(prefetcher, self.cases_in_flight if together else 1):
                    if len(group) > 1:
                        rows = predict_cases(
                            segmenter,
                            [(inputs, job.keys) for job, inputs in group],
                            defer_postprocess=scorer.finishes_off_thread,
                        )
                    else:
                        job, inputs = group[0]
                        predictions = predict_case(
                            segmenter,
                            inputs,
                            job.keys,
                            clicks=context.clicks,
                            starts=job.starts,
                            batch_prompts=context.batch_prompts,
                            defer_postprocess=scorer.finishes_off_thread,
                        )
                        rows = [predictions]
                    for (_, inputs), case_rows in zip(group, rows, strict=True):
                        for prediction in case_rows:
                            scorer.submit(prediction, inputs)
                        progress.case_done()
        finally:
            close = getattr(segmenter, "close", None)
            if callable(close):
                close()
            del segmenter
            release_device_memory()


def _groups(items: Iterator[tuple[CaseJob, CaseInputs]], size: int) -> Iterator[list[tuple[CaseJob, CaseInputs]]]:
    """Consecutive groups of ``size`` prefetched cases in order (the last one may be shorter)."""
    group: list[tuple[CaseJob, CaseInputs]] = []
    for item in items:
        group.append(item)
        if len(group) >= size:
            yield group
            group = []
    if group:
        yield group


class Prefetcher:
    """Read and prompt cases in a background thread, ``depth`` cases ahead of the consumer.

    Iterating yields ``(job, CaseInputs)`` in job order. Leaving the ``with`` block early stops the thread.
    """

    _DONE = object()

    def __init__(self, jobs: Sequence[CaseJob], context: RunContext, *, depth: int = 1) -> None:
        self._jobs = list(jobs)
        self._context = context
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name="zeroshot-prefetch", daemon=True)

    def __enter__(self) -> Prefetcher:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def __iter__(self) -> Iterator[tuple[CaseJob, CaseInputs]]:
        while True:
            item = self._queue.get()
            if item is self._DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _work(self) -> None:
        context = self._context
        try:
            for job in self._jobs:
                if self._stop.is_set():
                    return
                inputs = read_case(
                    job.case,
                    job.tasks,
                    context.strategies,
                    context.rundir,
                    label=context.label,
                    coarse_dir=context.coarse_dir,
                )
                if not self._put((job, inputs)):
                    return
        except BaseException as exc:  # a bug, not a bad case (read_case returns those): re-raised by the consumer
            self._put(exc)
            return
        self._put(self._DONE)


class RowScorer:
    """Save, score and write the rows of predictions, scoring in worker processes as they come.

    A prediction's pending post-processing (:attr:`~zeroshot.runner.work.Prediction.postprocessing`) is applied
    before it is scored or saved: in the worker process that scores it, which hands the finished mask back only
    to be saved, or in line without workers.

    Parameters
    ----------
    context : RunContext
    workers : int
        Scoring processes (started with ``spawn``: no state of the parent's threads or CUDA context leaks in);
        0 scores in the calling thread.
    on_row : callable
        Called with each row record once written.
    max_pending : int or None
        Predictions waiting for scores before :meth:`submit` blocks (default ``2 * workers``).
    """

    def __init__(
        self,
        context: RunContext,
        *,
        workers: int,
        on_row: Callable[[RowRecord], None],
        max_pending: int | None = None,
    ) -> None:
        self._context = context
        self._on_row = on_row
        self._pool = (
            cf.ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
            if workers > 0
            else None
        )
        self._max_pending = max_pending or max(1, 2 * workers)
        self._pending: dict[cf.Future, tuple[Prediction, CaseInputs, cf.Future | None]] = {}
        # Prediction files are written off the model's thread when scoring is too; each row waits for its file.
        use_saver = self._pool is not None and context.save_pred
        self._saver = cf.ThreadPoolExecutor(1, thread_name_prefix="zeroshot-save") if use_saver else None

    @property
    def finishes_off_thread(self) -> bool:
        """Whether deferred post-processing runs off the caller's thread here (in scoring processes)."""
        return self._pool is not None

    def __enter__(self) -> RowScorer:
        return self

    def __exit__(self, exc_type: object, *exc_info: object) -> None:
        try:
            if exc_type is None:
                self._collect(wait_all=True)
        finally:
            if self._saver is not None:
                self._saver.shutdown(wait=True, cancel_futures=exc_type is not None)
            if self._pool is not None:
                self._pool.shutdown(wait=exc_type is None, cancel_futures=exc_type is not None)

    def submit(self, prediction: Prediction, inputs: CaseInputs) -> None:
        """Hand on one prediction; its row is written when its scores are in."""
        context = self._context
        if self._pool is not None and prediction.mask is not None and inputs.gt is not None:
            pending = prediction.postprocessing
            arguments = (inputs.gt, prediction.mask, pending, inputs.volume.spacing_mm, prediction.prompts.key_slices)
            future = self._pool.submit(
                finish_and_score,
                *arguments,
                tolerances_mm=context.tolerances_mm,
                return_mask=self._saver is not None and pending is not None,
            )
            saved = None
            if self._saver is not None:
                saved = self._saver.submit(self._save, prediction, inputs.volume, future)
            self._pending[future] = (prediction, inputs, saved)
            if len(self._pending) >= self._max_pending:
                self._collect(wait_all=False)
            return
        path = ""
        try:
            prediction = finish_prediction(prediction)
        except Exception as exc:
            prediction = replace(prediction, mask=None, error=exc)
        if prediction.mask is not None and context.save_pred:
            try:
                path = save_prediction(context.rundir, prediction, inputs.volume)
            except Exception as exc:
                prediction = replace(prediction, mask=None, error=exc)
        if prediction.mask is None or inputs.gt is None:
            self._write(prediction, inputs, None, path)
            return
        arguments = (inputs.gt, prediction.mask, inputs.volume.spacing_mm, prediction.prompts.key_slices)
        try:
            scores = score_prediction(*arguments, tolerances_mm=context.tolerances_mm)
        except Exception as exc:
            scores = exc
        self._write(prediction, inputs, scores, path)

    def _save(self, prediction: Prediction, volume: Any, finished: cf.Future) -> str:
        """Save a prediction's mask (in the saver thread); a deferred one once its worker has finished it."""
        if prediction.postprocessing is not None:
            prediction = replace(prediction, mask=finished.result().mask, postprocessing=None)
        return save_prediction(self._context.rundir, prediction, volume)

    def _collect(self, *, wait_all: bool) -> None:
        while self._pending:
            done, _ = cf.wait(self._pending, return_when=cf.ALL_COMPLETED if wait_all else cf.FIRST_COMPLETED)
            for future in sorted(done, key=lambda f: self._pending[f][0].key):
                prediction, inputs, saved = self._pending.pop(future)
                try:
                    finished = future.result()
                    scores = finished.scores
                    # The row needs the finished segmentation's info; its mask was saved (or not needed) already.
                    prediction = replace(prediction, info={**prediction.info, **finished.info})
                except cf.process.BrokenProcessPool:
                    raise
                except Exception as exc:
                    scores = exc
                path = ""
                if saved is not None:
                    try:
                        path = saved.result()
                    except Exception as exc:  # as when saved in line: the row fails, unscored
                        prediction, scores = replace(prediction, mask=None, error=exc), None
                self._write(prediction, inputs, scores, path)
            if not wait_all:
                return

    def _write(self, prediction: Prediction, inputs: CaseInputs, scores: Any, path: str) -> None:
        record = finish_row(
            prediction,
            inputs,
            scores,
            self._context.rundir,
            tolerances_mm=self._context.tolerances_mm,
            prediction_path=path,
            uses_gt=getattr(self._context.strategies.get(prediction.key.strategy), "uses_gt", None),
        )
        self._on_row(record)
