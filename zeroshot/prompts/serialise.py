"""Prompts as JSON: one object per case, mask prompts inline or as PNG files beside it; reading gives them back.

One case's object (:func:`prompts_to_json` writes it on one line)::

    {"case_id": "p000", "strategy": "box-mid", "seed": 0, "source": "gt",
     "oracle": {"gt_prompt": true, "gt_z_range": false},
     "slices": [{"z": 12, "box": [40, 52, 71, 80], "points": [], "labels": [], "mask": null}],
     "details": {...}}

A slice's mask prompt takes one of two forms, and readers accept both:

- **inline** (the default; what a run's store holds):
  ``{"shape": [Y, X], "bits": "<base64>", "sha256": "<64 hex digits>"}``, where ``bits`` is the zlib-compressed
  ``np.packbits`` of the ``(Y, X)`` mask in row-major order and ``sha256`` the digest of its shape and packed bits.
  The object carries the mask itself, so a run's file count does not grow with its mask prompts (a mask of
  13,000 pixels at 512 x 512 is 572 characters; its PNG would be 2,124 in base64, and a file of its own), and the
  digest catches a record damaged after writing.
- **a file name** (``mask_files=True``; what a prompts file written by ``zeroshot prompts`` holds): an 8-bit PNG
  (0 and 255) in the folder :func:`mask_dir_for` names beside the file, named by :func:`mask_file_name`, which ends
  in the same digest, so names never collide and a changed file is detected on reading. PNGs open in any viewer.

A prompts *file* is JSON Lines: one such object per line, in a stable order, so that the same seed gives the
same file byte for byte and a large dataset can be streamed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import zlib
from collections.abc import Iterable, Mapping
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
_INLINE_MASK_KEYS = ("shape", "bits", "sha256")
#: zlib level of inline masks: level 9 takes 3-5x as long for 8-10 % fewer bytes (phantom and blob masks, 512 x 512).
_ZLIB_LEVEL = 6


def _mask_digest(shape: tuple[int, ...], packed: bytes) -> str:
    """SHA-256 (hex) of a mask's shape and packed bits (``np.packbits(mask, axis=None)``).

    What names mask files and checks inline masks.
    """
    return hashlib.sha256(repr(tuple(shape)).encode() + packed).hexdigest()


def mask_file_name(case_id: str, z: int, mask: np.ndarray) -> str:
    """``<case_id>_z<z:04d>_<12 hex digits of SHA-256 of the mask>.png``."""
    return f"{case_id}_z{z:04d}_{_mask_digest(mask.shape, np.packbits(mask, axis=None).tobytes())[:12]}.png"


def mask_dir_for(path: str | Path) -> Path:
    """The folder of mask prompts beside a prompts file: ``prompts.jsonl`` -> ``prompts.masks/``."""
    return Path(path).with_suffix(".masks")


def prompts_to_json(prompts: VolumePrompts, *, mask_files: bool = False) -> str:
    """One case's prompts as a one-line JSON object.

    Parameters
    ----------
    prompts : VolumePrompts
    mask_files : bool
        Write each mask prompt as the name of its PNG file (:func:`write_prompt_masks` writes the files), as a
        prompts file does; by default each mask travels inline (see the module docstring).

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
            "mask": None if s.mask is None else _mask_to_json(prompts.case_id, s.z, s.mask, mask_files=mask_files),
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
        Where the mask prompts' PNG files are; needed only if a slice names a mask file (inline masks need none).

    Raises
    ------
    PromptError
        Invalid JSON, a missing key or a value of the wrong type (named), a mask file name without ``mask_dir``,
        a mask file that is missing or whose content does not match its name, or an inline mask that cannot be
        decoded or does not match its digest.
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
            handle.write(prompts_to_json(item, mask_files=True) + "\n")
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
    if isinstance(raw["mask"], Mapping):
        mask = _inline_mask_from_json(raw["mask"], f"{where}: mask")
    elif raw["mask"] is not None:
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


def _mask_to_json(case_id: str, z: int, mask: np.ndarray, *, mask_files: bool) -> str | dict[str, object]:
    """A mask prompt as JSON: its file name, or the inline object of the module docstring."""
    if mask_files:
        return mask_file_name(case_id, z, mask)
    packed = np.packbits(mask, axis=None).tobytes()
    return {
        "shape": [int(n) for n in mask.shape],
        "bits": base64.b64encode(zlib.compress(packed, _ZLIB_LEVEL)).decode("ascii"),
        "sha256": _mask_digest(mask.shape, packed),
    }


def _inline_mask_from_json(raw: Mapping, where: str) -> np.ndarray:
    """The ``(Y, X)`` bool mask of an inline mask object, checked against its digest."""
    missing = [k for k in _INLINE_MASK_KEYS if k not in raw]
    if missing:
        raise PromptError(f"{where}: missing key(s) {missing}; expected {', '.join(_INLINE_MASK_KEYS)}")
    shape = int_tuple(raw["shape"], 2, where, "shape", error=PromptError)
    if min(shape) < 1:
        raise PromptError(f"{where}: shape: expected two sizes of at least 1, got {list(shape)}")
    bits = of_type(raw["bits"], str, where, "bits", error=PromptError)
    digest = of_type(raw["sha256"], str, where, "sha256", error=PromptError)
    try:
        packed = zlib.decompress(base64.b64decode(bits, validate=True))
    except (binascii.Error, ValueError, zlib.error) as exc:
        raise PromptError(f"{where}: bits: not base64 of zlib-compressed packed bits ({exc})") from exc
    size = shape[0] * shape[1]
    expected = (size + 7) // 8
    if len(packed) != expected:
        raise PromptError(f"{where}: bits: {len(packed)} bytes, but a {shape[0]}x{shape[1]} mask packs into {expected}")
    if _mask_digest(shape, packed) != digest:
        raise PromptError(f"{where}: the mask does not match its sha256 (changed after writing?)")
    return np.unpackbits(np.frombuffer(packed, dtype=np.uint8), count=size).reshape(shape).astype(bool)
