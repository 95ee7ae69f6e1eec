"""Cases and the dataset layouts they are found in: CrossPan, nnU-Net raw datasets and manifest CSVs.

A :class:`Case` names its files; nothing here reads voxels. Case ids become file names later, so an id must be one
safe path component: any text without path separators or control characters that is not ``.`` or ``..`` (spaces,
as exported file names often have, are fine). Sequences, centers and splits are matched without regard to case
(``--split test`` finds a manifest's ``TEST``); a selection value that matches no case is an error naming it.
"""

from __future__ import annotations

import csv
import json
import unicodedata
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from zeroshot.errors import DatasetError, ZeroshotError, ZeroshotWarning
from zeroshot.structure import Structure, dataset_label_names, multi_label_notice

__all__ = [
    "LAYOUTS",
    "SEQUENCES",
    "Case",
    "case_table",
    "detect_layout",
    "discover",
    "label_file_notice",
    "select",
]

#: The MRI sequences of the CrossPan benchmark, in the order tables show them.
SEQUENCES = ("T1", "T2", "OOP")
#: The dataset layouts :func:`discover` understands.
LAYOUTS = ("crosspan", "nnunet", "manifest")
#: Splits the CrossPan layout uses.
SPLITS = ("train", "val", "test")
UNKNOWN = "unknown"
MANIFEST_NAME = "manifest.csv"
MANIFEST_COLUMNS = ("case_id", "image", "label", "sequence", "center", "split")

_NIFTI = (".nii.gz", ".nii")
_SEPARATORS = ("/", "\\")
#: Tree images a manifest leaves out that a notice names before saying how many more there are.
_SHOWN = 5


@dataclass(frozen=True)
class Case:
    """One scan and its label, as a dataset lists it.

    Attributes
    ----------
    case_id : str
        Identifier, unique within its sequence; safe to use as a file name.
    sequence : str
        MRI sequence (``T1``, ``T2``, ``OOP``, or ``unknown``).
    center : str
        Acquisition center (``unknown`` where the layout does not say).
    split : str
        ``train``, ``val``, ``test`` (or ``unknown``).
    image : Path
    label : Path or None
        ``None`` where the dataset has no label for the case.
    """

    case_id: str
    sequence: str
    center: str
    split: str
    image: Path
    label: Path | None

    @property
    def key(self) -> str:
        """``sequence/case_id``: unique across a dataset, and the case's folder name in run directories."""
        return f"{self.sequence}/{self.case_id}"


def check_case_id(case_id: str, where: object) -> str:
    r"""Return ``case_id`` if it is one safe path component, else raise :class:`DatasetError` naming ``where``.

    Safe: not empty, not ``.`` or ``..``, no path separator (``/``, ``\``) and no control character; anything
    else (spaces, ``+``, accented letters) is kept as it is.
    """
    problem = _case_id_problem(case_id)
    if problem is not None:
        raise DatasetError(f"{where}: case id {case_id!r} {problem}")
    return case_id


def _case_id_problem(case_id: str) -> str | None:
    """Why ``case_id`` cannot be a file name, or ``None`` if it can."""
    if not case_id:
        return "is empty"
    if case_id in (".", ".."):
        return "is not a file name ('.' and '..' name folders)"
    if any(sep in case_id for sep in _SEPARATORS):
        return "holds a path separator ('/' or '\\'); a case id becomes one file name"
    if any(unicodedata.category(ch) == "Cc" for ch in case_id):
        return "holds a control character (tab, newline, ...); a case id becomes one file name"
    return None


def detect_layout(root: Path) -> str:
    """Guess the layout of ``root``: a CSV file or a folder with ``manifest.csv``, ``dataset.json``, or sequences."""
    root = Path(root)
    if root.is_file():
        if root.suffix.lower() == ".csv":
            return "manifest"
        raise DatasetError(f"{root}: a dataset is a folder or a manifest .csv file")
    if not root.is_dir():
        raise DatasetError(f"{root}: no such dataset folder or manifest")
    # A manifest beside a CrossPan tree (as the phantom writes) wins: it also knows each case's center.
    if (root / MANIFEST_NAME).is_file():
        return "manifest"
    if any((root / seq).is_dir() for seq in SEQUENCES):
        return "crosspan"
    if (root / "dataset.json").is_file() or (root / "imagesTr").is_dir() or (root / "imagesTs").is_dir():
        return "nnunet"
    raise DatasetError(
        f"{root}: unknown layout; expected {'/'.join(SEQUENCES)} folders (CrossPan), imagesTr/ and dataset.json "
        f"(nnU-Net) or a {MANIFEST_NAME}; or pass --layout"
    )


def discover(root: str | Path, *, layout: str | None = None, require_labels: bool = True) -> list[Case]:
    """List the cases of a dataset, sorted by sequence then id.

    Parameters
    ----------
    root : path
        The dataset folder, or a manifest CSV.
    layout : {"crosspan", "nnunet", "manifest"} or None
        ``None`` detects it (:func:`detect_layout`).
    require_labels : bool
        If true, an image without a label file is an error naming it.

    Warns
    -----
    ZeroshotWarning
        A manifest beside a CrossPan or nnU-Net tree that leaves some of the tree's images out (they are not
        evaluated): how many, and the first few.

    Raises
    ------
    DatasetError
        Unknown layout, no cases, an image without its label, duplicate or unsafe case ids, a case with both a
        ``.nii`` and a ``.nii.gz`` file, a bad manifest (every bad row listed in one error).
    """
    root = Path(root)
    layout = layout or detect_layout(root)
    if layout not in LAYOUTS:
        raise DatasetError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    finders = {"crosspan": _crosspan, "nnunet": _nnunet, "manifest": _manifest}
    cases = finders[layout](root)
    if layout == "manifest":
        _notice_unlisted_tree_images(root, cases)
    if not cases:
        raise DatasetError(f"{root}: no cases found in the {layout} layout")
    if require_labels:
        missing = [c for c in cases if c.label is None or not c.label.is_file()]
        if missing:
            names = ", ".join(f"{c.key} ({c.label or 'no label path'})" for c in missing[:5])
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise DatasetError(f"{root}: {len(missing)} image(s) without a label file: {names}{more}")
    seen: dict[str, Case] = {}
    for case in cases:
        if case.key in seen:
            raise DatasetError(f"{root}: duplicate case id {case.key!r} ({seen[case.key].image} and {case.image})")
        seen[case.key] = case
    return sorted(cases, key=lambda c: (_sequence_rank(c.sequence), c.case_id))


#: The option that selects by each attribute of a case, named in errors.
_OPTIONS = {"sequence": "--sequence", "center": "--center", "split": "--split", "case_id": "--case"}


def select(
    cases: Iterable[Case],
    *,
    sequences: Sequence[str] | None = None,
    centers: Sequence[str] | None = None,
    splits: Sequence[str] | None = None,
    case_ids: Sequence[str] | None = None,
) -> list[Case]:
    """Keep the cases matching every filter given (``None`` or empty keeps all).

    Sequences, centers and splits match without regard to case (``t1`` is ``T1``, ``test`` is ``TEST``); case
    ids match exactly.

    Raises
    ------
    DatasetError
        A value that matches no case of the dataset (every such value is named, with what the dataset has), or
        filters that together keep no case.
    """
    cases = list(cases)
    filters = {"sequence": sequences, "center": centers, "split": splits, "case_id": case_ids}
    kept = cases
    unmatched = []
    for attribute, wanted in filters.items():
        if not wanted:
            continue
        fold = _fold if attribute != "case_id" else str
        present = {fold(str(getattr(c, attribute))) for c in cases}
        missing = [str(w) for w in wanted if fold(str(w)) not in present]
        if missing:
            have = sorted({str(getattr(c, attribute)) for c in cases}, key=_sequence_rank_then_name)
            shown = ", ".join(have[:20]) + (f", ... ({len(have) - 20} more)" if len(have) > 20 else "")
            unmatched.append(f"{_OPTIONS[attribute]} {' '.join(missing)} (the dataset has {shown})")
        wanted_set = {fold(str(w)) for w in wanted}
        kept = [c for c in kept if fold(str(getattr(c, attribute))) in wanted_set]
    if unmatched:
        raise DatasetError("no case matches " + "; ".join(unmatched))
    if not kept:
        available = "; ".join(
            f"{name} {', '.join(values)}"
            for name, values in (
                ("sequences", sorted({c.sequence for c in cases}, key=_sequence_rank)),
                ("centers", sorted({c.center for c in cases})),
                ("splits", sorted({c.split for c in cases})),
            )
        )
        asked = ", ".join(f"{_OPTIONS[k]} {' '.join(map(str, v))}" for k, v in filters.items() if v)
        raise DatasetError(f"no case matches {asked} together; the dataset has {available}")
    return kept


def _fold(text: str) -> str:
    return text.casefold()


def _sequence_rank_then_name(value: str) -> tuple[int, str]:
    return (_sequence_rank(value), value)


def _sequence_rank(sequence: str) -> int:
    return SEQUENCES.index(sequence) if sequence in SEQUENCES else len(SEQUENCES)


def _normalise_sequence(sequence: str) -> str:
    for known in SEQUENCES:
        if sequence.upper() == known:
            return known
    return sequence or UNKNOWN


def _strip_nifti(name: str) -> str | None:
    for ext in _NIFTI:
        if name.endswith(ext):
            return name[: -len(ext)]
    return None


def _label_for(label_dir: Path, case_id: str) -> Path | None:
    found = [label_dir / f"{case_id}{ext}" for ext in _NIFTI if (label_dir / f"{case_id}{ext}").is_file()]
    if len(found) > 1:
        raise DatasetError(
            f"{label_dir}: case {case_id!r} has two label files ({found[0].name}, {found[1].name}); keep one, so "
            "that every command reads the same"
        )
    return found[0] if found else None


def _images_in(folder: Path) -> list[tuple[str, Path]]:
    """``(case_id, path)`` for each ``<case>_0000.nii[.gz]`` in ``folder`` (other channels are ignored)."""
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        stem = _strip_nifti(path.name)
        if stem is None or not path.is_file() or path.name.startswith("."):
            continue
        if not stem.endswith("_0000"):
            continue
        case_id = check_case_id(stem[: -len("_0000")], path)
        if case_id in found:
            raise DatasetError(
                f"{folder}: case {case_id!r} has two image files ({found[case_id].name}, {path.name}); keep one"
            )
        found[case_id] = path
    return sorted(found.items())


def _crosspan(root: Path) -> list[Case]:
    cases = []
    for sequence in SEQUENCES:
        for split in SPLITS:
            image_dir = root / sequence / split / "images"
            if not image_dir.is_dir():
                continue
            label_dir = root / sequence / split / "labels"
            for case_id, image in _images_in(image_dir):
                label = _label_for(label_dir, case_id) if label_dir.is_dir() else None
                label = label or label_dir / f"{case_id}.nii.gz"
                cases.append(Case(case_id, sequence, UNKNOWN, split, image, label if label.is_file() else None))
    return cases


def _nnunet(root: Path) -> list[Case]:
    sequence = UNKNOWN
    meta = root / "dataset.json"
    if meta.is_file():
        try:
            info = json.loads(meta.read_text())
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{meta}: not valid JSON ({exc})") from exc
        channels = info.get("channel_names") or info.get("modality") or {}
        names = [str(v).upper() for v in channels.values()] if isinstance(channels, dict) else []
        if len(names) == 1 and names[0] in SEQUENCES:
            sequence = names[0]
    cases = []
    for images, labels, split in (("imagesTr", "labelsTr", "train"), ("imagesTs", "labelsTs", "test")):
        image_dir = root / images
        if not image_dir.is_dir():
            continue
        label_dir = root / labels
        for case_id, image in _images_in(image_dir):
            label = _label_for(label_dir, case_id) if label_dir.is_dir() else None
            cases.append(Case(case_id, sequence, UNKNOWN, split, image, label))
    return cases


def _manifest(root: Path) -> list[Case]:
    path = _manifest_path(root)
    if not path.is_file():
        raise DatasetError(f"{path}: manifest not found")
    # utf-8-sig: Excel's "CSV UTF-8" export starts with a byte-order mark, which would hide the first column's name.
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = tuple(name.strip() for name in reader.fieldnames or ())
        reader.fieldnames = list(columns)
        missing = [c for c in ("case_id", "image") if c not in columns]
        if missing:
            raise DatasetError(
                f"{path}: missing column(s) {', '.join(missing)}; expected {','.join(MANIFEST_COLUMNS)} "
                f"(found {','.join(columns) or 'none'})"
            )
        rows = list(reader)
    base = path.parent
    cases = []
    problems = []
    for line, row in enumerate(rows, start=2):
        case_id = (row.get("case_id") or "").strip()
        image = (row.get("image") or "").strip()
        label = (row.get("label") or "").strip()
        problem = _case_id_problem(case_id)
        image_path = _manifest_file(base, image) if image else None
        if problem is None and image_path is None:
            problem = "has no image path"
        elif problem is None and not image_path.is_file():
            problem = f"names image {image_path}, which does not exist"
        if problem is not None:
            problems.append(f"line {line}: case id {case_id!r} {problem}")
            continue
        cases.append(
            Case(
                case_id=case_id,
                sequence=_normalise_sequence((row.get("sequence") or "").strip()),
                center=(row.get("center") or "").strip() or UNKNOWN,
                split=(row.get("split") or "").strip() or UNKNOWN,
                image=image_path,
                label=_manifest_file(base, label) if label else None,
            )
        )
    if problems:
        shown = "\n  ".join(problems[:50])
        more = f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
        raise DatasetError(
            f"{path}: {len(problems)} of {len(rows)} row(s) cannot be used:\n  {shown}{more}\nA case id becomes "
            "a file name: any text without '/', '\\' or control characters that is not '.' or '..'; image paths "
            "are relative to the manifest's folder."
        )
    return cases


def _manifest_path(root: Path) -> Path:
    return root if root.is_file() else root / MANIFEST_NAME


def _manifest_file(base: Path, text: str) -> Path:
    return Path(text) if Path(text).is_absolute() else (base / text).resolve()


def _notice_unlisted_tree_images(root: Path, cases: Sequence[Case]) -> None:
    """Warn when the manifest's folder holds a CrossPan or nnU-Net tree with images the manifest leaves out."""
    folder = _manifest_path(root).parent
    image_dirs = [folder / seq / split / "images" for seq in SEQUENCES for split in SPLITS]
    image_dirs += [folder / "imagesTr", folder / "imagesTs"]
    listed = {c.image.resolve() for c in cases}
    unlisted = [
        path
        for image_dir in image_dirs
        if image_dir.is_dir()
        for path in sorted(image_dir.iterdir())
        if path.is_file()
        and _strip_nifti(path.name) is not None
        and not path.name.startswith(".")
        and path.resolve() not in listed
    ]
    if unlisted:
        shown = ", ".join(str(p.relative_to(folder)) for p in unlisted[:_SHOWN])
        more = f" and {len(unlisted) - _SHOWN} more" if len(unlisted) > _SHOWN else ""
        warnings.warn(
            f"{_manifest_path(root)} wins over the image tree beside it and leaves {len(unlisted)} of its image(s) "
            f"out (they are not used): {shown}{more}. Add them to the manifest, or pass --layout crosspan (or "
            "nnunet) to use the tree",
            ZeroshotWarning,
            stacklevel=3,
        )


def case_table(cases: Sequence[Case]) -> str:
    """Format cases as a text table (reading only file headers) followed by counts per sequence and center."""
    from collections import Counter

    from zeroshot.volume import read_header

    header = ("case_id", "sequence", "center", "split", "shape (z,y,x)", "spacing mm (z,y,x)")
    rows = []
    for case in cases:
        shape, spacing = read_header(case.image)
        rows.append(
            (
                case.case_id,
                case.sequence,
                case.center,
                case.split,
                "x".join(str(s) for s in shape),
                " x ".join(f"{s:.3g}" for s in spacing),
            )
        )
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(row: Sequence[object]) -> str:
        return "  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()

    lines = [line(header), line(["-" * w for w in widths]), *(line(r) for r in rows), ""]
    counts = Counter((c.sequence, c.center) for c in cases)
    centers = sorted({c.center for c in cases})
    sequences = sorted({c.sequence for c in cases}, key=_sequence_rank)
    count_header = ("sequence", *centers, "total")
    count_rows = [
        (s, *(counts.get((s, c), 0) for c in centers), sum(counts.get((s, c), 0) for c in centers)) for s in sequences
    ]
    count_rows.append(("total", *(sum(counts.get((s, c), 0) for s in sequences) for c in centers), len(cases)))
    widths = [max(len(str(r[i])) for r in [count_header, *count_rows]) for i in range(len(count_header))]
    lines += [line(count_header), *(line(r) for r in count_rows)]
    return "\n".join(lines)


def label_file_notice(
    structure: Structure, label_file: str | Path | None, *, dataset_json: str | Path | None = None
) -> str | None:
    """The multi-label notice (:func:`zeroshot.structure.multi_label_notice`) for one label file, or ``None``.

    Only the file's values are read, once per command: a dataset's label files share their label scheme.
    """
    if structure.given or label_file is None:
        return None
    from zeroshot.volume import read_label_values

    try:
        values = read_label_values(label_file)
    except ZeroshotError:
        return None  # the case fails with its own message when it is read
    return multi_label_notice(structure, values, names=dataset_label_names(dataset_json), where=label_file)
