"""Prompts for the cases of a dataset: read each case once, make every strategy's prompts for every seed, write.

A case that cannot be prompted (an empty coarse mask under ``on_empty: fail``, an unreadable file) is recorded
as a :class:`PromptFailure` with its reason and the others go on.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from zeroshot.datasets import Case
from zeroshot.errors import ZeroshotError
from zeroshot.prompts.generate import LOW_BOX_COVERAGE, case_prompts
from zeroshot.prompts.serialise import write_prompts_file
from zeroshot.prompts.settings import Strategy
from zeroshot.prompts.sources import CaseMasks, check_source_label
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
    low_coverage : int
        Prompt sets whose box covers less than :data:`~zeroshot.prompts.generate.LOW_BOX_COVERAGE` of the
        structure on one of its slices (a jitter or shift too large for the structure).
    """

    path: Path
    written: int
    failures: tuple[PromptFailure, ...]
    low_coverage: int = 0


def prompts_for_case(
    case: Case,
    strategies: Sequence[Strategy],
    seeds: Sequence[int],
    *,
    label: int,
    coarse_dir: str | Path | None = None,
) -> tuple[list[VolumePrompts], list[PromptFailure]]:
    """Read one case's image and source masks once and make its prompts for every strategy and seed.

    ``label`` is the structure's value in the label (and coarse) files. Each prompt set is made by
    :func:`~zeroshot.prompts.generate.case_prompts`, as ``zeroshot eval`` makes it. Errors the user can act on
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
    masks = CaseMasks(case, volume, label=label, coarse_dir=coarse_dir)
    for strategy in strategies:
        for seed in seeds:
            try:
                made.append(case_prompts(strategy, masks, seed))
            except ZeroshotError as exc:
                fail(strategy, seed, exc)
    return made, failures


def write_dataset_prompts(
    cases: Sequence[Case],
    strategies: Sequence[Strategy],
    seeds: Sequence[int],
    out: str | Path,
    *,
    label: int,
    coarse_dir: str | Path | None = None,
    progress: bool = True,
) -> DatasetPrompts:
    """Write the prompts of every case, strategy and seed (in that order) to a JSON Lines file.

    ``label`` is the structure's value in the label (and coarse) files; a strategy whose own ``source.label``
    differs is refused before any case is read. Mask prompts go into the folder beside it
    (:func:`~zeroshot.prompts.serialise.mask_dir_for`). The same inputs and seeds give the same file byte for
    byte.

    Raises
    ------
    ConfigError
        A strategy whose ``source.label`` differs from ``label``.
    """
    for strategy in strategies:
        check_source_label(strategy, label)
    failures: list[PromptFailure] = []
    low_coverage = 0

    def generate() -> Iterator[VolumePrompts]:
        nonlocal low_coverage
        for case in tqdm(cases, desc="prompts", unit="case", disable=not progress):
            made, failed = prompts_for_case(case, strategies, seeds, label=label, coarse_dir=coarse_dir)
            failures.extend(failed)
            low_coverage += sum(p.box_coverage < LOW_BOX_COVERAGE for p in made)
            yield from made

    written = write_prompts_file(out, generate())
    return DatasetPrompts(path=Path(out), written=written, failures=tuple(failures), low_coverage=low_coverage)
