"""``zeroshot migrate``: convert a run written before the run store (one JSON file per row and per prompt set).

Such a run holds ``rows/<seq>/<case>/<model>/<strategy>/seed<k>[/round<r>].json`` (each ``{"row", "slices",
"info"}``) and ``prompts/<seq>/<case>/<strategy>/seed<k>.json`` (with ``seed<k>.masks/`` beside mask prompts).
Migration appends every row and prompt set to the run's store (mask prompts inline in their prompt set, as a run
writes them now), compacts it, rebuilds the tables, and only then removes ``rows/`` and ``prompts/``. Killed
midway, the old files are still there and ``zeroshot migrate`` starts over (the store can hold only what an
earlier migration wrote: ``zeroshot eval`` refuses a run until its migration is complete).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from zeroshot.errors import ConfigError, PromptError
from zeroshot.prompts.serialise import mask_dir_for, prompts_from_json, prompts_to_json
from zeroshot.runner.rundir import RunDir, read_json
from zeroshot.runner.tables import write_tables
from zeroshot.store.paths import LEGACY_PROMPTS, LEGACY_ROWS, legacy_key, legacy_prompt_key
from zeroshot.store.records import RowRecord
from zeroshot.store.store import RunStore

__all__ = ["Migration", "migrate_run"]


@dataclass(frozen=True)
class Migration:
    """What :func:`migrate_run` converted.

    Attributes
    ----------
    rows, prompts : int
        Row files and prompt files moved into the store.
    files_before, files_after : int
        Files holding rows and prompts before (``rows/``, ``prompts/``) and after (``store/``).
    """

    rows: int
    prompts: int
    files_before: int
    files_after: int


def migrate_run(root: str | Path) -> Migration:
    """Convert the run directory ``root`` from one file per row to the run store; rebuild its tables.

    Raises
    ------
    ConfigError
        ``root`` has no ``run.json``, another process writes to it, or a row file is not a zeroshot row.
    """
    rundir = RunDir(root)
    if rundir.read_manifest() is None:
        raise ConfigError(f"migrate: {rundir.root} has no run.json; is it a run directory (zeroshot eval --out)?")
    rows_dir, prompts_dir = rundir.root / LEGACY_ROWS, rundir.root / LEGACY_PROMPTS
    with rundir.lock():
        if not rows_dir.is_dir() and not prompts_dir.is_dir():
            return Migration(0, 0, 0, rundir.store.file_count())
        shutil.rmtree(rundir.store.folder, ignore_errors=True)  # what a killed migration wrote; it starts over
        store = RunStore(rundir.root)
        row_files = sorted(p for p in rows_dir.rglob("*.json") if p.is_file()) if rows_dir.is_dir() else []
        prompt_files = sorted(p for p in prompts_dir.rglob("*.json") if p.is_file()) if prompts_dir.is_dir() else []
        files_before = sum(1 for d in (rows_dir, prompts_dir) if d.is_dir() for p in d.rglob("*") if p.is_file())
        prompts = 0
        for path in prompt_files:
            key = legacy_prompt_key(rundir.root, path)
            if key is None:
                continue
            store.append_prompts(key, _prompts_text(path))
            prompts += 1
        rows = 0
        for path in row_files:
            key = legacy_key(rundir.root, path)
            if key is None:
                continue
            document = read_json(path)
            try:
                record = RowRecord(key, document["row"], document.get("slices") or {}, document.get("info") or {})
            except (KeyError, TypeError) as exc:
                raise ConfigError(f"migrate: {path}: not a zeroshot row file ({exc})") from exc
            store.append_row(record)
            rows += 1
        store.close()
        write_tables(rundir)
        for folder in (rows_dir, prompts_dir):  # renamed first: the run counts as migrated at once
            if folder.is_dir():
                gone = folder.with_name(f".{folder.name}.migrated")
                shutil.rmtree(gone, ignore_errors=True)
                folder.rename(gone)
                shutil.rmtree(gone)
        return Migration(rows, prompts, files_before, store.file_count())


def _prompts_text(path: Path) -> str:
    """The JSON of a prompts file of the layout before the store, its mask prompts inline (no files in the store).

    A prompt set without a ``.masks`` folder beside it is kept as written.
    """
    text = path.read_text(encoding="utf-8").strip()
    masks = mask_dir_for(path)
    if not masks.is_dir():
        return text
    try:
        return prompts_to_json(prompts_from_json(text, mask_dir=masks))
    except PromptError as exc:
        raise ConfigError(f"migrate: {path}: its mask prompts cannot be read ({exc})") from exc
