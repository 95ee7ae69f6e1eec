"""Prompts as JSON: one object per case, mask prompts as PNG files beside it; reading back gives the same prompts.

One case's object (:func:`prompts_to_json` writes it on one line)::

    {"case_id": "p000", "strategy": "box-mid", "seed": 0, "source": "gt",
     "oracle": {"gt_prompt": true, "gt_z_range": false},
     "slices": [{"z": 12, "box": [40, 52, 71, 80], "points": [], "labels": [], "mask": null}],
     "details": {...}}

A prompts *file* is JSON Lines: one such object per line, in a stable order, so that the same seed gives the
same file byte for byte and a large dataset can be streamed. Mask prompts are 8-bit PNGs (0 and 255) in the
folder :func:`mask_dir_for` names beside the file; the JSON holds each mask's file name, which ends in a hash of
its content, so names never collide and a changed file is detected on reading.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from zeroshot.atomic import write_atomic
from zeroshot.errors import PromptError
from zeroshot.prompts.checks import int_tuple, of_type
from zeroshot.prompts.types import SlicePrompt, VolumePrompts

__all__ = [
    "mask_dir_for",
    "mask_file_name",
    "prompts_from_json",
    "prompts_to_json",
    "read_prompts_file",
    "write_prompt_masks",
    "write_prompts_file",
]

_KEYS = ("case_id", "strategy", "seed", "source", "oracle", "slices")
_SLICE_KEYS = ("z", "box", "points", "labels", "mask")


def mask_file_name(case_id: str, z: int, mask: np.ndarray) -> str:
    """``<case_id>_z<z:04d>_<12 hex digits of SHA-256 of the mask>.png``."""
    digest = hashlib.sha256(repr(mask.shape).encode() + np.packbits(mask, axis=None).tobytes()).hexdigest()
    return f"{case_id}_z{z:04d}_{digest[:12]}.png"


def mask_dir_for(path: str | Path) -> Path:
    """The folder of mask prompts beside a prompts file: ``prompts.jsonl`` -> ``prompts.masks/``."""
    return Path(path).with_suffix(".masks")


def prompts_to_json(prompts: VolumePrompts) -> str:
    """One case's prompts as a one-line JSON object (mask prompts by file name; see :func:`write_prompt_masks`).

    Raises
    ------
    PromptError
        If ``details`` or ``oracle`` hold a value JSON cannot represent exactly (NaN, infinity, objects).
    """
    slices = [
        {
            "z": s.z,
            "box": list(s.box) if s.box is not None else None,
            "points": [list(p) for p in s.points],
            "labels": list(s.labels),
            "mask": mask_file_name(prompts.case_id, s.z, s.mask) if s.mask is not None else None,
        }
        for s in prompts.slices
    ]
    data = {
        "case_id": prompts.case_id,
        "strategy": prompts.strategy,
        "seed": prompts.seed,
        "source": prompts.source,
        "oracle": dict(prompts.oracle),
        "slices": slices,
        "details": dict(prompts.details),
    }
    try:
        return json.dumps(data, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise PromptError(f"case {prompts.case_id}: prompts cannot be written as JSON ({exc})") from exc


def prompts_from_json(text: str, mask_dir: str | Path | None = None) -> VolumePrompts:
    """Read one case's prompts from the JSON :func:`prompts_to_json` wrote.

    Parameters
    ----------
    text : str
        One JSON object.
    mask_dir : path or None
        Where the mask prompts' PNG files are; needed only if a slice has a mask.

    Raises
    ------
    PromptError
        Invalid JSON, a missing key or a value of the wrong type (named), a mask without ``mask_dir``, or a
        mask file that is missing or whose content does not match its name.
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PromptError(f"prompts: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise PromptError(f"prompts: expected a JSON object, got {type(data).__name__}")
    missing = [k for k in _KEYS if k not in data]
    if missing:
        raise PromptError(f"prompts: missing key(s) {missing}; expected {', '.join(_KEYS)}")
    case_id = of_type(data["case_id"], str, "prompts", "case_id", error=PromptError)
    where = f"prompts of case {case_id}"
    seed = of_type(data["seed"], int, where, "seed", error=PromptError)
    oracle = of_type(data["oracle"], dict, where, "oracle", error=PromptError)
    if not all(isinstance(v, bool) for v in oracle.values()):
        raise PromptError(f"{where}: oracle: every flag must be true or false, got {oracle}")
    raw_slices = of_type(data["slices"], list, where, "slices", error=PromptError)
    slices = tuple(
        _slice_from_json(raw, case_id, mask_dir, f"{where}: slices[{i}]") for i, raw in enumerate(raw_slices)
    )
    return VolumePrompts(
        case_id=case_id,
        strategy=of_type(data["strategy"], str, where, "strategy", error=PromptError),
        seed=seed,
        source=of_type(data["source"], str, where, "source", error=PromptError),
        slices=slices,
        oracle=oracle,
        details=of_type(data.get("details", {}), dict, where, "details", error=PromptError),
    )


def write_prompt_masks(prompts: VolumePrompts, mask_dir: str | Path) -> list[Path]:
    """Write the mask prompts of ``prompts`` as PNG files into ``mask_dir`` (created if needed); return the paths.

    A file already there under the same content-hashed name is kept. Files appear atomically.
    """
    mask_dir = Path(mask_dir)
    written = []
    for s in prompts.slices:
        if s.mask is None:
            continue
        path = mask_dir / mask_file_name(prompts.case_id, s.z, s.mask)
        if not path.is_file():
            mask_dir.mkdir(parents=True, exist_ok=True)
            ok, encoded = cv2.imencode(".png", s.mask.astype(np.uint8) * 255)
            if not ok:  # pragma: no cover - OpenCV encodes any 2D uint8 array
                raise PromptError(f"{path}: could not encode the mask of case {prompts.case_id}, slice {s.z}")
            write_atomic(path, encoded.tobytes())
        written.append(path)
    return written


def write_prompts_file(path: str | Path, prompts: Iterable[VolumePrompts]) -> int:
    """Write prompts as JSON Lines to ``path`` (masks into :func:`mask_dir_for`); return the number of lines.

    The file appears atomically when every line is written; ``prompts`` may be a generator.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    count = 0
    with tmp.open("w", encoding="utf-8", newline="\n") as handle:
        for item in prompts:
            write_prompt_masks(item, mask_dir_for(path))
            handle.write(prompts_to_json(item) + "\n")
            count += 1
    os.replace(tmp, path)
    return count


def read_prompts_file(path: str | Path) -> list[VolumePrompts]:
    """Read a JSON Lines prompts file written by :func:`write_prompts_file` (blank lines are skipped).

    Raises
    ------
    PromptError
        If the file is missing, or a line is not valid prompts (the message gives ``path:line``).
    """
    path = Path(path)
    if not path.is_file():
        raise PromptError(f"{path}: prompts file not found")
    out = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                out.append(prompts_from_json(line, mask_dir_for(path)))
            except PromptError as exc:
                raise PromptError(f"{path}:{number}: {exc}") from exc
    return out


def _slice_from_json(raw: object, case_id: str, mask_dir: str | Path | None, where: str) -> SlicePrompt:
    raw = of_type(raw, dict, where, "slice", error=PromptError)
    missing = [k for k in _SLICE_KEYS if k not in raw]
    if missing:
        raise PromptError(f"{where}: missing key(s) {missing}; expected {', '.join(_SLICE_KEYS)}")
    z = of_type(raw["z"], int, where, "z", error=PromptError)
    box = raw["box"]
    if box is not None:
        box = int_tuple(box, 4, where, "box", error=PromptError)
    points = tuple(
        int_tuple(p, 2, where, "points", error=PromptError)
        for p in of_type(raw["points"], list, where, "points", error=PromptError)
    )
    labels = tuple(
        of_type(v, int, where, "labels", error=PromptError)
        for v in of_type(raw["labels"], list, where, "labels", error=PromptError)
    )
    mask = None
    if raw["mask"] is not None:
        name = of_type(raw["mask"], str, where, "mask", error=PromptError)
        mask = _read_mask(name, case_id, z, mask_dir, where)
    return SlicePrompt(z=z, box=box, points=points, labels=labels, mask=mask)  # type: ignore[arg-type]


def _read_mask(name: str, case_id: str, z: int, mask_dir: str | Path | None, where: str) -> np.ndarray:
    if mask_dir is None:
        raise PromptError(f"{where}: refers to mask file {name!r}; pass mask_dir to read it")
    if Path(name).name != name:
        raise PromptError(f"{where}: mask file name {name!r} must not contain a folder")
    path = Path(mask_dir) / name
    if not path.is_file():
        raise PromptError(f"{where}: mask file {path} not found")
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None or image.ndim != 2:
        raise PromptError(f"{where}: {path} is not a single-channel PNG mask")
    mask = image > 0
    if mask_file_name(case_id, z, mask) != name:
        raise PromptError(f"{where}: {path} does not hold the mask its name promises (changed after writing?)")
    return mask
