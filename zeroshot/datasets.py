"""Cases and the dataset layouts they are found in: CrossPan, nnU-Net raw datasets and manifest CSVs.

A :class:`Case` names its files; nothing here reads voxels. Case ids become file names later, so an id that could
leave a folder (``..``, separators, absolute paths) is refused at discovery.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from zeroshot.errors import DatasetError

__all__ = [
    "LAYOUTS",
    "SEQUENCES",
    "Case",
    "case_table",
    "detect_layout",
    "discover",
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

_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
_NIFTI = (".nii.gz", ".nii")


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
    """Return ``case_id`` if it is safe as a file name, else raise :class:`DatasetError` naming ``where``."""
    if not _SAFE_ID.match(case_id) or ".." in case_id:
        raise DatasetError(
            f"{where}: case id {case_id!r} is not a safe file name (letters, digits, '.', '_', '+', '-'; "
            "no path separators or '..')"
        )
    return case_id


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

    Raises
    ------
    DatasetError
        Unknown layout, no cases, an image without its label, duplicate or unsafe case ids, a bad manifest.
    """
    root = Path(root)
    layout = layout or detect_layout(root)
    if layout not in LAYOUTS:
        raise DatasetError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    finders = {"crosspan": _crosspan, "nnunet": _nnunet, "manifest": _manifest}
    cases = finders[layout](root)
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


def select(
    cases: Iterable[Case],
    *,
    sequences: Sequence[str] | None = None,
    centers: Sequence[str] | None = None,
    splits: Sequence[str] | None = None,
    case_ids: Sequence[str] | None = None,
) -> list[Case]:
    """Keep the cases matching every filter given (``None`` keeps all); an empty result is an error."""
    cases = list(cases)
    filters = {"sequence": sequences, "center": centers, "split": splits, "case_id": case_ids}
    kept = cases
    for attribute, wanted in filters.items():
        if wanted:
            wanted_set = {str(w) for w in wanted}
            if attribute == "sequence":
                wanted_set = {w.upper() if w.upper() in SEQUENCES else w for w in wanted_set}
            kept = [c for c in kept if getattr(c, attribute) in wanted_set]
    if not kept:
        available = "; ".join(
            f"{name} {', '.join(values)}"
            for name, values in (
                ("sequences", sorted({c.sequence for c in cases}, key=_sequence_rank)),
                ("centers", sorted({c.center for c in cases})),
                ("splits", sorted({c.split for c in cases})),
            )
        )
        asked = ", ".join(f"{k}={list(v)}" for k, v in filters.items() if v)
        raise DatasetError(f"no case matches {asked}; the dataset has {available}")
    return kept


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
    for ext in _NIFTI:
        candidate = label_dir / f"{case_id}{ext}"
        if candidate.is_file():
            return candidate
    return None


def _images_in(folder: Path) -> list[tuple[str, Path]]:
    """``(case_id, path)`` for each ``<case>_0000.nii[.gz]`` in ``folder`` (other channels are ignored)."""
    found = []
    for path in sorted(folder.iterdir()):
        stem = _strip_nifti(path.name)
        if stem is None or not path.is_file():
            continue
        if not stem.endswith("_0000"):
            continue
        found.append((check_case_id(stem[: -len("_0000")], path), path))
    return found


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
    path = root if root.is_file() else root / MANIFEST_NAME
    if not path.is_file():
        raise DatasetError(f"{path}: manifest not found")
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        columns = tuple(reader.fieldnames or ())
        missing = [c for c in ("case_id", "image") if c not in columns]
        if missing:
            raise DatasetError(f"{path}: missing column(s) {missing}; expected {','.join(MANIFEST_COLUMNS)}")
        rows = list(reader)
    base = path.parent
    cases = []
    for line, row in enumerate(rows, start=2):
        where = f"{path}:{line}"
        case_id = check_case_id((row.get("case_id") or "").strip(), where)
        image = (row.get("image") or "").strip()
        if not image:
            raise DatasetError(f"{where}: case {case_id!r} has no image path")
        label = (row.get("label") or "").strip()
        image_path = (base / image).resolve() if not Path(image).is_absolute() else Path(image)
        if not image_path.is_file():
            raise DatasetError(f"{where}: image {image_path} of case {case_id!r} not found")
        label_path = None
        if label:
            label_path = (base / label).resolve() if not Path(label).is_absolute() else Path(label)
        cases.append(
            Case(
                case_id=case_id,
                sequence=_normalise_sequence((row.get("sequence") or "").strip()),
                center=(row.get("center") or "").strip() or UNKNOWN,
                split=(row.get("split") or "").strip() or UNKNOWN,
                image=image_path,
                label=label_path,
            )
        )
    return cases


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
