"""Options several commands share: the structure (``--label``) and seeds, validated while the arguments are parsed."""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Sequence
from pathlib import Path

from zeroshot.datasets import label_file_notice
from zeroshot.errors import ConfigError, ZeroshotWarning
from zeroshot.structure import Structure, find_dataset_json, resolve_structure

__all__ = ["add_label_option", "seed", "structure_for"]

LABEL_HELP = (
    "the structure: its value in the label files (e.g. 7) or its name in the dataset's nnU-Net dataset.json "
    "(e.g. pancreas); default 1 (CrossPan's pancreas), with a note when the label files hold several structures"
)


def add_label_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """Add ``--label VALUE|NAME`` (kept as text: a name is resolved against the dataset once it is known)."""
    parser.add_argument("--label", metavar="VALUE|NAME", help=LABEL_HELP)


def seed(text: str) -> int:
    """An argparse ``type`` for seeds: a whole number from 0 to 2**63 - 1 (refused while parsing, before any work)."""
    from zeroshot.runner.config import check_seed

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    try:
        return check_seed(value, "seed")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("seed: ")) from None


def structure_for(
    label: str | None, *, dataset: Sequence[Path | None], first_label_file: Path | None = None
) -> Structure:
    """Resolve ``--label`` against the ``dataset.json`` found in ``dataset`` (folders tried in order).

    Without ``--label``, a note says when ``first_label_file`` holds several structures.

    Raises
    ------
    ConfigError
        See :func:`zeroshot.structure.resolve_structure`.
    """
    dataset_json = find_dataset_json(*dataset)
    structure = resolve_structure(label, dataset_json=dataset_json)
    notice = label_file_notice(structure, first_label_file, dataset_json=dataset_json)
    if notice is not None:
        warnings.warn(notice, ZeroshotWarning, stacklevel=2)
    return structure
