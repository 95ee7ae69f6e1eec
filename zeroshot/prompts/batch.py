"""Prompts for the cases of a dataset: read each case once, make every strategy's prompts for every seed, write.

A case that cannot be prompted (an empty coarse mask under ``on_empty: fail``, an unreadable file) is recorded
as a :class:`PromptFailure` with its reason and the others go on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from zeroshot.datasets import Case
from zeroshot.errors import ZeroshotError
from zeroshot.prompts.generate import make_prompts
from zeroshot.prompts.serialise import write_prompts_file
from zeroshot.prompts.settings import Strategy
from zeroshot.prompts.sources import read_gt_mask, read_source_mask
from zeroshot.prompts.types import VolumePrompts
from zeroshot.volume import read_volume

__all__ = ["DatasetPrompts", "PromptFailure", "prompts_for_case", "write_dataset_prompts"]


@dataclass(frozen=True)
class PromptFailure:
    """A case, strategy and seed that produced no prompts, and why."""

    case_key: str
    strategy: str
    seed: int
    reason: str


@dataclass(frozen=True)
class DatasetPrompts:
    """What :func:`write_dataset_prompts` wrote.

    Attributes
    ----------
    path : Path
        The JSON Lines file.
    written : int
        Prompt sets (lines) in it.
    failures : tuple of PromptFailure
    """

    path: Path
    written: int
    failures: tuple[PromptFailure, ...]


def prompts_for_case(
    case: Case,
    strategies: Sequence[Strategy],
    seeds: Sequence[int],
    *,
    coarse_dir: str | Path | None = None,
    gt_label: int = 1,
) -> tuple[list[VolumePrompts], list[PromptFailure]]:
    """Read one case's image and source masks once and make its prompts for every strategy and seed.

    ``gt_label`` is the structure's value in the label files. The case's sequence is added to each prompt set's
    ``details`` (``sequence``), since case ids repeat across sequences. Errors the user can act on
    (:class:`~zeroshot.errors.ZeroshotError`) become failures.
    """
    made: list[VolumePrompts] = []
    failures: list[PromptFailure] = []

    def fail(strategy: Strategy, seed: int, exc: Exception) -> None:
        failures.append(PromptFailure(case.key, strategy.name, seed, str(exc)))

    try:
        volume = read_volume(case.image)
    except ZeroshotError as exc:
        for strategy in strategies:
            for seed in seeds:
                fail(strategy, seed, exc)
        return made, failures
    masks: dict[tuple[str, int], np.ndarray | ZeroshotError] = {}

    def cached(key: tuple[str, int], read: Callable[[], np.ndarray]) -> np.ndarray:
        if key not in masks:
            try:
                masks[key] = read()
            except ZeroshotError as exc:
                masks[key] = exc
        found = masks[key]
        if isinstance(found, ZeroshotError):
            raise found
        return found

    def gt_mask() -> np.ndarray:
        return cached(("gt", gt_label), lambda: read_gt_mask(case, volume, label=gt_label))

    def source_mask(strategy: Strategy) -> np.ndarray:
        if strategy.source.kind != "coarse":
            return gt_mask()
        key = ("coarse", strategy.source.label)
        return cached(key, lambda: read_source_mask(strategy, case, volume, coarse_dir=coarse_dir))

    for strategy in strategies:
        for seed in seeds:
            try:
                source = source_mask(strategy)
                gt = gt_mask() if strategy.source.on_empty == "gt" else None
                prompts = make_prompts(
                    strategy, case_id=case.case_id, volume=volume, source_mask=source, seed=seed, gt_mask=gt
                )
            except ZeroshotError as exc:
                fail(strategy, seed, exc)
                continue
            made.append(dataclasses.replace(prompts, details={**prompts.details, "sequence": case.sequence}))
    return made, failures


def write_dataset_prompts(
    cases: Sequence[Case],
    strategies: Sequence[Strategy],
    seeds: Sequence[int],
    out: str | Path,
    *,
    coarse_dir: str | Path | None = None,
    gt_label: int = 1,
    progress: bool = True,
) -> DatasetPrompts:
    """Write the prompts of every case, strategy and seed (in that order) to a JSON Lines file.

    Mask prompts go into the folder beside it (:func:`~zeroshot.prompts.serialise.mask_dir_for`). The same
    inputs and seeds give the same file byte for byte.
    """
    failures: list[PromptFailure] = []

    def generate() -> Iterator[VolumePrompts]:
        for case in tqdm(cases, desc="prompts", unit="case", disable=not progress):
            made, failed = prompts_for_case(case, strategies, seeds, coarse_dir=coarse_dir, gt_label=gt_label)
            failures.extend(failed)
            yield from made

    written = write_prompts_file(out, generate())
    return DatasetPrompts(path=Path(out), written=written, failures=tuple(failures))
