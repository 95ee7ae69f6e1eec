"""The work of one case: read it, prompt it, segment it under every strategy and seed, and make its rows.

The stages are separate functions so that each executor can place them where they run best (the local executor
reads the next case in a thread and scores in worker processes; a Ray actor runs them in turn) and so that the
interactive loop (corrective clicks) can reuse them:

* :func:`read_case` -- volume, label and the prompts of every (strategy, seed), cached in the run directory;
* :func:`predict_case` -- one :class:`~zeroshot.segmenters.Session` per case and model, every prompt set
  segmented in it (the image encoder runs once per case, not once per strategy and seed);
* :func:`finish_row` -- the row record from a prediction and its scores, written atomically.

Anything a case raises becomes a failed row naming the reason; the run goes on. A CUDA out-of-memory error is
retried once with the segmenter's offloading variant (:func:`offload_variant`: ``segmenter.with_offload()``
if the segmenter has that method, else a copy sharing the weights with the SAM2 ``offload_*_to_cpu`` flags set).
"""

from __future__ import annotations

import copy
import gc
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from zeroshot.datasets import Case
from zeroshot.errors import SegmenterError
from zeroshot.prompts.types import VolumePrompts
from zeroshot.runner.rundir import RowKey, RunDir, write_atomic
from zeroshot.runner.scoring import Scores, failed_metric_columns
from zeroshot.volume import Volume, read_label, read_volume, write_mask

__all__ = [
    "ORACLE_COLUMNS",
    "TIMING_COLUMNS",
    "CaseInputs",
    "Prediction",
    "finish_row",
    "predict_case",
    "read_case",
]

#: Oracle flags every row carries (more appear when prompts report other oracle keys).
ORACLE_COLUMNS = ("oracle_gt_prompt", "oracle_gt_z_range", "oracle_gt_roi_crop")
#: Columns that measure time; they differ between otherwise identical runs.
TIMING_COLUMNS = ("seconds_read", "seconds_prepare", "seconds_segment")
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
    """

    case: Case
    volume: Volume | None
    gt: np.ndarray | None
    prompts: Mapping[tuple[str, int], VolumePrompts | BaseException] = field(default_factory=dict)
    error: BaseException | None = None
    seconds_read: float = 0.0


@dataclass(frozen=True, eq=False)
class Prediction:
    """A segmenter's answer for one row, or the reason there is none.

    Attributes
    ----------
    key : RowKey
    mask : (Z, Y, X) bool array or None
    prompts : VolumePrompts or None
    error : exception or None
    info : mapping
        The segmentation's ``info`` (recorded in the row as JSON).
    seconds_prepare, seconds_segment : float
        Time to prepare the session (shared by every row of the case) and to segment this row.
    offloaded : bool
        Whether this row ran on the offloading variant after running out of GPU memory.
    """

    key: RowKey
    mask: np.ndarray | None
    prompts: VolumePrompts | None
    error: BaseException | None = None
    info: Mapping[str, Any] = field(default_factory=dict)
    seconds_prepare: float = float("nan")
    seconds_segment: float = float("nan")
    offloaded: bool = False


def read_case(
    case: Case,
    tasks: Sequence[tuple[str, int]],
    strategies: Mapping[str, Any],
    rundir: RunDir,
    *,
    label: int = 1,
    coarse_dir: Path | None = None,
) -> CaseInputs:
    """Read a case and make (or load from the run's cache) the prompts of every ``(strategy, seed)`` task.

    ``coarse_dir`` holds the coarse masks of strategies whose source is ``coarse``. Never raises for a bad case:
    reading errors are returned in :attr:`CaseInputs.error`, prompting errors per task in
    :attr:`CaseInputs.prompts`.
    """
    start = time.perf_counter()
    try:
        volume = read_volume(case.image)
        if case.label is None:
            raise SegmenterError(f"case {case.key}: no label file; cannot score it")
        gt = read_label(case.label, volume, label=label, require_label=False)
    except Exception as exc:
        return CaseInputs(case, None, None, error=exc, seconds_read=time.perf_counter() - start)
    prompts: dict[tuple[str, int], VolumePrompts | BaseException] = {}
    for strategy_name, seed in tasks:
        try:
            prompts[(strategy_name, seed)] = _prompts_for(
                case, volume, gt, strategies[strategy_name], strategy_name, seed, rundir, coarse_dir
            )
        except Exception as exc:
            prompts[(strategy_name, seed)] = exc
    return CaseInputs(case, volume, gt, prompts, seconds_read=time.perf_counter() - start)


def _prompts_for(
    case: Case,
    volume: Volume,
    gt: np.ndarray,
    strategy: Any,
    name: str,
    seed: int,
    rundir: RunDir,
    coarse_dir: Path | None,
) -> VolumePrompts:
    from zeroshot.prompts.generate import make_prompts
    from zeroshot.prompts.serialise import mask_dir_for, prompts_from_json, prompts_to_json, write_prompt_masks
    from zeroshot.prompts.sources import read_source_mask

    path = rundir.prompt_path(case.sequence, case.case_id, name, seed)
    if path.is_file():
        return prompts_from_json(path.read_text(), mask_dir=mask_dir_for(path))
    if strategy.source.kind == "coarse":
        source = read_source_mask(strategy, case, volume, coarse_dir=coarse_dir)
    else:
        source = gt
    prompts = make_prompts(strategy, case_id=case.case_id, volume=volume, source_mask=source, seed=seed, gt_mask=gt)
    write_prompt_masks(prompts, mask_dir_for(path))  # mask prompts first: the JSON names them
    write_atomic(path, prompts_to_json(prompts))
    return prompts


def predict_case(
    segmenter: Any, inputs: CaseInputs, keys: Sequence[RowKey], *, seconds_prepare: list[float] | None = None
) -> Iterator[Prediction]:
    """Segment one case under every row key given, in one session (one image encoding).

    Parameters
    ----------
    segmenter : Segmenter
    inputs : CaseInputs
        From :func:`read_case` with the same (strategy, seed) tasks as ``keys``.
    keys : sequence of RowKey
        The rows to make, all of this case and this segmenter's model.
    seconds_prepare : list or None
        If given, the time of each ``prepare`` call is appended (for benchmarks).

    Yields
    ------
    Prediction
        One per key, in order; failed rows carry their exception.
    """
    if inputs.error is not None or inputs.volume is None:
        error = inputs.error or SegmenterError(f"case {inputs.case.key}: no volume")
        for key in keys:
            yield Prediction(key, None, None, error=error)
        return
    current = segmenter
    session = None
    prepare_error: BaseException | None = None
    prepare_time = float("nan")
    offloaded = False
    try:
        for key in keys:
            prompts = inputs.prompts.get((key.strategy, key.seed))
            if prompts is None or isinstance(prompts, BaseException):
                missing = SegmenterError(f"no prompts for strategy {key.strategy!r}, seed {key.seed}")
                yield Prediction(key, None, None, error=prompts or missing)
                continue
            if prepare_error is not None:
                yield Prediction(key, None, prompts, error=prepare_error, offloaded=offloaded)
                continue
            for attempt in (1, 2):
                stage = "prepare"
                try:
                    if session is None:
                        start = time.perf_counter()
                        session = current.prepare(inputs.volume)
                        prepare_time = time.perf_counter() - start
                        if seconds_prepare is not None:
                            seconds_prepare.append(prepare_time)
                    stage = "segment"
                    start = time.perf_counter()
                    segmentation = session.segment(prompts)
                    segment_time = time.perf_counter() - start
                    mask = _checked_mask(segmentation.mask, inputs.volume, current)
                    yield Prediction(
                        key,
                        mask,
                        prompts,
                        info=dict(segmentation.info),
                        seconds_prepare=prepare_time,
                        seconds_segment=segment_time,
                        offloaded=offloaded,
                    )
                    break
                except Exception as exc:
                    retry = offload_variant(current) if attempt == 1 and is_out_of_memory(exc) else None
                    if retry is not None:
                        session = _close(session)
                        release_device_memory()
                        current, offloaded = retry, True
                        continue
                    if stage == "prepare":
                        prepare_error = exc
                    yield Prediction(key, None, prompts, error=exc, offloaded=offloaded)
                    break
    finally:
        _close(session)


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
    """The segmenter's offloading variant, or ``None`` if it has none (or already offloads everything).

    ``segmenter.with_offload()`` where the segmenter defines it; otherwise, for a segmenter with the SAM2 flags
    ``offload_video_to_cpu`` / ``offload_state_to_cpu``, a shallow copy (sharing the loaded weights) with both
    set, so that image features and per-slice memories live in host memory.
    """
    method = getattr(segmenter, "with_offload", None)
    if callable(method):
        return method()
    flags = ("offload_video_to_cpu", "offload_state_to_cpu")
    if not all(hasattr(segmenter, flag) for flag in flags) or all(getattr(segmenter, f) for f in flags):
        return None
    variant = copy.copy(segmenter)
    for flag in flags:
        setattr(variant, flag, True)
    return variant


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
) -> dict[str, Any]:
    """Make the row record of a prediction and write it atomically; return the record.

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
    dict
        ``{"row": {...}, "slices": {...}}`` as written to the row file.
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
    if error is None and isinstance(scores, Scores):
        row.update(scores.metrics)
        slices = scores.slices
    else:
        d_max = inputs.volume.diagonal_mm if inputs.volume is not None else float("nan")
        row.update(failed_metric_columns(tolerances_mm, d_max_mm=d_max))
        slices = {}
    row["failed"] = error is not None
    row["error"] = _error_text(error) if error is not None else ""
    row.update(oracle_flags(prediction.prompts))
    if prediction.prompts is None and uses_gt is not None:
        row["oracle_gt_prompt"] = bool(uses_gt)
    prompts = prediction.prompts
    row["prompt_source"] = prompts.source if prompts is not None else ""
    row["key_slices"] = " ".join(str(z) for z in prompts.key_slices) if prompts is not None else ""
    row["offloaded"] = prediction.offloaded
    row["prediction"] = prediction_path if error is None else ""
    row["seconds_read"] = inputs.seconds_read
    row["seconds_prepare"] = prediction.seconds_prepare
    row["seconds_segment"] = prediction.seconds_segment
    record = {"row": row, "slices": slices, "info": dict(prediction.info)}
    rundir.write_row(key, record)
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
