"""``zeroshot merge``: combine run directories (the shards of a job array, or runs extended on other machines).

Runs combine under the rules that let one run directory be extended (:mod:`zeroshot.runner.config`): the shared
settings must be equal, and every case, model and strategy present in several runs must have the same identity
there. Each row may come from one run only. The output is a complete run directory: its ``run.json`` holds the
union identity and every input run's invocations; the runs' stores are copied file by file (their Parquet parts,
and the log segments of runs killed before compacting them, then compacted), mask prompts copied, predictions
hard-linked (copied across file systems); the tables are rebuilt from the store.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from zeroshot.errors import ConfigError
from zeroshot.runner.config import (
    MANIFEST_FORMAT,
    dataset_conflict,
    now_utc,
)
from zeroshot.runner.identity import RunIdentity
from zeroshot.runner.rundir import PREDICTIONS, RunDir, write_atomic
from zeroshot.runner.tables import RunTables, write_tables
from zeroshot.store.parts import part_paths
from zeroshot.store.store import PROMPT_MASKS, KeySet, RunStore

__all__ = ["merge_runs"]

#: What the user can do about runs that cannot be merged (``merge`` has no option to override it).
MERGE_REMEDY = (
    "Their rows would not be comparable. Merge only runs of one configuration (the shards of one job array, or "
    "runs extended with the same settings); evaluate the others again with matching settings, or keep them apart."
)


def merge_runs(runs: Sequence[str | Path], out: str | Path) -> RunTables:
    """Merge run directories into a new one at ``out`` and write its tables.

    Parameters
    ----------
    runs : sequence of path
        Run directories (each with a ``run.json``).
    out : path
        A new (absent or empty) directory.

    Returns
    -------
    RunTables
        The merged tables.

    Raises
    ------
    ConfigError
        No run given, a run given twice or without ``run.json``, ``out`` not new, runs of conflicting
        configurations (naming each difference: the label value and tolerances among them) or of different
        datasets (:func:`~zeroshot.runner.config.dataset_conflict`), or a row present in two runs.
    """
    if not runs:
        raise ConfigError("merge: give at least one run directory")
    dirs = [RunDir(Path(r)) for r in runs]
    resolved = [d.root.resolve() for d in dirs]
    if len(set(resolved)) != len(resolved):
        raise ConfigError("merge: a run directory is given more than once")
    target = RunDir(Path(out))
    if target.root.resolve() in resolved:
        raise ConfigError(f"merge: --out {target.root} is one of the runs to merge; choose a new directory")
    if target.root.exists() and any(target.root.iterdir()):
        raise ConfigError(f"merge: --out {target.root} exists and is not empty; choose a new directory")
    manifests = []
    for run in dirs:
        manifest = run.read_manifest()
        if manifest is None:
            raise ConfigError(f"merge: {run.root} has no run.json; is it a run directory (zeroshot eval --out)?")
        manifests.append(manifest)

    identity = RunIdentity.from_json(manifests[0]["identity"])
    for run, manifest in zip(dirs[1:], manifests[1:], strict=True):
        where = f"merge: {run.root} and the runs before it"
        added = RunIdentity.from_json(manifest["identity"])
        identity.check_compatible(added, where=where, remedy=MERGE_REMEDY)
        for earlier, other in zip(dirs, manifests, strict=False):
            if other is manifest:
                break
            conflict = dataset_conflict(other, manifest)
            if conflict is not None:
                raise ConfigError(
                    f"merge: {earlier.root} and {run.root} evaluated different datasets ({conflict}). {MERGE_REMEDY}"
                )
        identity = identity.union(added)

    seen: list[tuple[Path, KeySet]] = []
    for run in dirs:
        run.check_layout()
        keys = run.done_keys()
        for root, earlier in seen:
            shared = keys.first_shared(earlier)
            if shared is not None:
                raise ConfigError(
                    f"merge: row {shared.describe()} is in both {root} and {run.root}; each row must come from one run"
                )
        seen.append((run.root, keys))

    with target.lock():
        for run in dirs:
            _copy_store(run.store, target.store)
            _copy_tree(run.store.folder / PROMPT_MASKS, target.store.folder / PROMPT_MASKS, link=False)  # older runs
            _copy_tree(run.root / PREDICTIONS, target.root / PREDICTIONS, link=True)
        target.store.compact_all()
        invocations = []
        for run, manifest in zip(dirs, manifests, strict=True):
            for invocation in manifest.get("invocations", []):
                invocations.append({**invocation, "run": str(run.root.resolve())})
        target.write_manifest(
            {
                "format": MANIFEST_FORMAT,
                "tool": "zeroshot",
                "created": now_utc(),
                "config_sha256": identity.sha256(),
                "identity": identity.to_json(),
                "merged_from": [str(r) for r in resolved],
                "invocations": invocations,
            }
        )
        return write_tables(target)


def _copy_store(source: RunStore, target: RunStore) -> None:
    """Copy the records of ``source`` into ``target``: committed parts as they are, segments to be compacted."""
    for stem in source.stems():
        paths, copies = part_paths(source.parts_folder, stem), part_paths(target.parts_folder, stem)
        if copies.rows.exists() or (target.log_folder / f"{stem}.jsonl").exists():
            raise ConfigError(f"merge: {source.root} holds records named {stem} that another run also holds")
        if paths.rows.is_file():
            for origin, copy in (
                (paths.slices, copies.slices),
                (paths.prompts, copies.prompts),
                (paths.rows, copies.rows),
            ):
                write_atomic(copy, origin.read_bytes())  # the rows part last: it commits the stem
        else:
            write_atomic(target.log_folder / f"{stem}.jsonl", (source.log_folder / f"{stem}.jsonl").read_bytes())


def _copy_tree(source: Path, destination: Path, *, link: bool) -> None:
    """Copy the files under ``source`` (hidden temporaries excluded); an existing identical file is kept."""
    if not source.is_dir():
        return
    for path in sorted(source.rglob("*")):
        if not path.is_file() or path.name.startswith("."):
            continue
        target = destination / path.relative_to(source)
        if target.exists():
            continue  # prompts of the same case, strategy and seed are the same file (identities were checked)
        target.parent.mkdir(parents=True, exist_ok=True)
        if link:
            try:
                os.link(path, target)
                continue
            except OSError:
                shutil.copy2(path, target)
                continue
        write_atomic(target, path.read_bytes())
