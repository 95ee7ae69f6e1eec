"""The structure a run segments and scores: one value of the label files, chosen once per run.

Label files hold one whole number per voxel: 0 is background, every other value a structure (CrossPan: 1 pancreas;
a TotalSegmentator-style multi-label file: 1 spleen, 7 pancreas, ...). The user names the structure once
(``--label 7``, or ``--label pancreas`` looked up in an nnU-Net ``dataset.json``'s ``labels``), the run records it,
and every reader of ground truth or coarse masks takes it from there: no reader has a default of its own.

Without ``--label`` the structure is value 1 (CrossPan's convention), and :func:`multi_label_notice` says so when
the label files hold several structures, so that a multi-label dataset is never scored on the wrong organ
without a word.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from zeroshot.errors import ConfigError

__all__ = [
    "DATASET_JSON",
    "DEFAULT_LABEL",
    "Structure",
    "check_label_value",
    "dataset_label_names",
    "describe_values",
    "find_dataset_json",
    "multi_label_notice",
    "resolve_structure",
]

#: The label value used when the user names none (CrossPan: 0 background, 1 pancreas).
DEFAULT_LABEL = 1
#: nnU-Net's dataset description, whose ``labels`` name each label value.
DATASET_JSON = "dataset.json"


@dataclass(frozen=True)
class Structure:
    """The structure of a run: a label value, its name where a ``dataset.json`` gives one, and who chose it.

    Attributes
    ----------
    value : int
        The label value (1 or more) whose voxels form the structure.
    name : str or None
        Its name in the dataset's ``dataset.json`` (``pancreas``), if the dataset names it.
    given : bool
        Whether the user chose it (``--label``); ``False`` for the default value 1.
    """

    value: int
    name: str | None = None
    given: bool = True

    def __post_init__(self) -> None:
        check_label_value(self.value, "label")

    def describe(self) -> str:
        """``label 7 (pancreas)``, or ``label 1`` without a name."""
        return f"label {self.value}" + (f" ({self.name})" if self.name else "")


def check_label_value(value: object, where: str = "--label") -> int:
    """Return ``value`` if it is a structure's label value (a whole number of at least 1), else raise.

    Raises
    ------
    ConfigError
        For 0 (the background), negative numbers and anything that is not a whole number.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where}: expected a whole number (the structure's value in the label files), got {value!r}")
    if value == 0:
        raise ConfigError(
            f"{where} 0: value 0 is the background of every label file; give the structure's value (1 or more)"
        )
    if value < 0:
        raise ConfigError(f"{where} {value}: label values are 1 or more (0 is the background)")
    return value


def find_dataset_json(*places: str | Path | None) -> Path | None:
    """The first ``dataset.json`` in ``places`` (folders, or files whose folder is searched), or ``None``."""
    for place in places:
        if place is None:
            continue
        folder = Path(place)
        if folder.is_file():
            folder = folder.parent
        candidate = folder / DATASET_JSON
        if candidate.is_file():
            return candidate
    return None


def dataset_label_names(path: str | Path | None) -> dict[int, str]:
    """The label values a ``dataset.json`` names, ``{value: name}``, background included; ``{}`` for ``None``.

    Both spellings nnU-Net has used are read: v2's ``{"background": 0, "pancreas": 7}`` and v1's (and the
    Medical Segmentation Decathlon's) ``{"0": "background", "7": "pancreas"}``. Region labels of nnU-Net v2 (a list
    of values under one name) are not single structures and are left out.

    Raises
    ------
    ConfigError
        A file that is not JSON, or ``labels`` that is not a mapping.
    """
    if path is None:
        return {}
    path = Path(path)
    try:
        info = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not readable as JSON ({exc})") from exc
    labels = info.get("labels") if isinstance(info, Mapping) else None
    if labels is None:
        return {}
    if not isinstance(labels, Mapping):
        raise ConfigError(f"{path}: 'labels' should map names to values, found {type(labels).__name__}")
    names: dict[int, str] = {}
    if labels and all(str(key).strip().isdigit() for key in labels):  # v1: {"0": "background", "1": "pancreas"}
        for key, name in labels.items():
            names[int(key)] = str(name)
        return dict(sorted(names.items()))
    for name, value in labels.items():  # v2: {"background": 0, "pancreas": 1}
        if isinstance(value, int) and not isinstance(value, bool):
            names[value] = str(name)
    return dict(sorted(names.items()))


def resolve_structure(spec: int | str | None, *, dataset_json: str | Path | None = None) -> Structure:
    """The structure a ``--label`` option names.

    Parameters
    ----------
    spec : int, str or None
        A label value (``7`` or ``"7"``), a name from ``dataset_json``'s ``labels`` (``"pancreas"``, matched
        without regard to case), or ``None`` for the default value 1.
    dataset_json : path or None
        The dataset's ``dataset.json`` (see :func:`find_dataset_json`), which names the values.

    Raises
    ------
    ConfigError
        Value 0 or a negative value; a name without a ``dataset.json``, or one it does not list (the message
        lists the names it has).
    """
    names = dataset_label_names(dataset_json)
    if spec is None:
        return Structure(DEFAULT_LABEL, names.get(DEFAULT_LABEL), given=False)
    if isinstance(spec, int) and not isinstance(spec, bool):
        value = check_label_value(spec)
        return Structure(value, names.get(value))
    text = str(spec).strip()
    if text.lstrip("+-").isdigit():
        value = check_label_value(int(text))
        return Structure(value, names.get(value))
    if not names:
        where = f"{dataset_json} has no 'labels'" if dataset_json else f"the dataset has no {DATASET_JSON}"
        raise ConfigError(
            f"--label {text!r}: a structure's name needs an nnU-Net {DATASET_JSON} that names the label values "
            f"({where}); give the value instead, e.g. --label 7"
        )
    matches = [(value, name) for value, name in names.items() if name.lower() == text.lower()]
    if not matches:
        listed = ", ".join(f"{name} = {value}" for value, name in names.items())
        raise ConfigError(f"--label {text!r}: {dataset_json} names no such structure; it has {listed}")
    value, name = matches[0]
    if value == 0:
        raise ConfigError(f"--label {text!r}: {dataset_json} gives it value 0, the background; choose a structure")
    return Structure(value, name)


def multi_label_notice(
    structure: Structure, values: Iterable[int], *, names: Mapping[int, str] | None = None, where: object = ""
) -> str | None:
    """A one-line notice when the default structure is used on label files that hold several, else ``None``.

    Parameters
    ----------
    structure : Structure
        The run's structure; a structure the user chose never gets a notice.
    values : iterable of int
        The label values present in a label file of the dataset.
    names : mapping of int to str, optional
        What the dataset's ``dataset.json`` calls each value.
    where : object
        The file the values were read from (named in the notice).
    """
    if structure.given:
        return None
    names = dict(names or {})
    present = sorted({int(v) for v in values} - {0})
    named = sorted(set(names) - {0})
    if len(present) < 2 and len(named) < 2:
        return None
    listed = ", ".join(_named_value(v, names) for v in (present or named))
    source = f" in {where}" if where and present else " in dataset.json"
    return (
        f"the label files hold several structures (values {listed}{source}); scoring {structure.describe()}, the "
        "default: choose the structure with --label VALUE or --label NAME"
    )


def _named_value(value: int, names: Mapping[int, str]) -> str:
    return f"{value} {names[value]}" if value in names else str(value)


def describe_values(values: Sequence[int], limit: int = 20) -> str:
    """Label values as plain text: ``0, 1, 7`` (at most ``limit``, then how many more)."""
    shown = ", ".join(str(int(v)) for v in values[:limit])
    return shown + (f", ... ({len(values) - limit} more)" if len(values) > limit else "")
