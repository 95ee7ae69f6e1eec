"""Names as path components, and the paths of the layout runs had before the store (``rows/``, ``prompts/``).

Saved predictions keep per-row paths (``predictions/<seq>/<case>/<model>/<strategy>/seed<k>[/round<r>].nii.gz``):
they are volumes the user asked for with ``--save-pred``, read by viewers, and their count is the user's choice.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote, unquote

from zeroshot.store.records import PromptKey, RowKey

__all__ = [
    "LEGACY_PROMPTS",
    "LEGACY_ROWS",
    "key_parts",
    "legacy_key",
    "legacy_prompt_path",
    "legacy_row_path",
    "path_component",
]

#: Folders of the layout before the store: one JSON file per row, one per prompt set.
LEGACY_ROWS = "rows"
LEGACY_PROMPTS = "prompts"
_SEED_PREFIX = "seed"
_ROUND_PREFIX = "round"


def path_component(name: str) -> str:
    """Encode a name (model, strategy, ...) as one safe, reversible path component.

    Characters other than letters, digits and ``._+-=`` are percent-encoded (``random:sam2@128`` becomes
    ``random%3Asam2%40128``); a leading dot is encoded too, so no name can be hidden, ``.`` or ``..``.
    """
    encoded = quote(name, safe="._+-=")
    if encoded.startswith("."):
        encoded = "%2E" + encoded[1:]
    return encoded


def key_parts(key: RowKey) -> tuple[str, ...]:
    """Path components of a row (``<seq>/<case>/<model>/<strategy>/seed<k>[/round<r>]``, no suffix)."""
    parts = (
        path_component(key.sequence),
        path_component(key.case_id),
        path_component(key.model),
        path_component(key.strategy),
        f"{_SEED_PREFIX}{key.seed}",
    )
    return parts if key.round is None else (*parts, f"{_ROUND_PREFIX}{key.round}")


def legacy_row_path(root: Path, key: RowKey) -> Path:
    """Where the layout before the store kept the row of ``key``."""
    *folders, leaf = key_parts(key)
    return root.joinpath(LEGACY_ROWS, *folders, f"{leaf}.json")


def legacy_prompt_path(root: Path, key: PromptKey) -> Path:
    """Where the layout before the store kept the prompt set of ``key``."""
    return root.joinpath(
        LEGACY_PROMPTS,
        path_component(key.sequence),
        path_component(key.case_id),
        path_component(key.strategy),
        f"{_SEED_PREFIX}{key.seed}.json",
    )


def legacy_key(root: Path, path: Path) -> RowKey | None:
    """The key of a row file of the layout before the store, or ``None`` for anything else."""
    try:
        parts = path.relative_to(root / LEGACY_ROWS).parts
    except ValueError:
        return None
    if not parts or parts[-1].startswith(".") or not parts[-1].endswith(".json"):
        return None
    *names, leaf = (*parts[:-1], parts[-1][: -len(".json")])
    round_index = None
    if len(names) == 5:  # .../seed<k>/round<r>.json
        round_index = _number_after(_ROUND_PREFIX, leaf)
        *names, leaf = names
        if round_index is None:
            return None
    seed = _number_after(_SEED_PREFIX, leaf)
    if len(names) != 4 or seed is None:
        return None
    sequence, case_id, model, strategy = (unquote(name) for name in names)
    return RowKey(sequence, case_id, model, strategy, seed, round_index)


def legacy_prompt_key(root: Path, path: Path) -> PromptKey | None:
    """The key of a prompts file of the layout before the store, or ``None`` for anything else."""
    try:
        parts = path.relative_to(root / LEGACY_PROMPTS).parts
    except ValueError:
        return None
    if len(parts) != 4 or parts[-1].startswith(".") or not parts[-1].endswith(".json"):
        return None
    seed = _number_after(_SEED_PREFIX, parts[-1][: -len(".json")])
    if seed is None:
        return None
    sequence, case_id, strategy = (unquote(name) for name in parts[:3])
    return PromptKey(sequence, case_id, strategy, seed)


def _number_after(prefix: str, name: str) -> int | None:
    text = name[len(prefix) :] if name.startswith(prefix) else ""
    return int(text) if text.isascii() and text.isdigit() else None
