"""Read run directories: ``run.json``, the results table, the per-slice table, and paths to saved files.

A run directory (written by :mod:`zeroshot.runner`) holds ``run.json`` (provenance, including the dataset it
evaluated), ``results.parquet`` (or ``results.csv``; one row per case x model x strategy x seed), optionally
``slices.parquet`` (one row per slice), ``predictions/`` and ``prompts/``. Several runs (e.g. one per sequence, or
shards already merged) are read together; a row that appears in two runs is an error, never silently doubled, and
so are runs that cannot be pooled (:func:`check_comparable`): another structure (label value), other NSD
tolerances, or another dataset.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from zeroshot.errors import ZeroshotError
from zeroshot.store.schema import IDENTITY_COLUMNS, ROUND
from zeroshot.store.tables import RunTables

__all__ = [
    "IDENTITY",
    "RunError",
    "RunTables",
    "check_comparable",
    "dataset_root",
    "find_key",
    "load_runs",
    "method_keys",
    "run_label",
]

#: Columns that identify one result row (``round`` is added for interactive runs).
IDENTITY = IDENTITY_COLUMNS
#: Columns every results table must have for the comparison to work.
REQUIRED = (*IDENTITY, "center", "dice", "failed")
RUN_JSON = "run.json"


class RunError(ZeroshotError):
    """A run directory (or a comparison output) that cannot be read as the tables it should hold."""


def method_keys(frame: pd.DataFrame) -> list[str]:
    """Columns that name a method in ``frame``: model and strategy, plus ``round`` for interactive runs."""
    return ["model", "strategy", *(["round"] if "round" in frame.columns else [])]


def _read_table(folder: Path, stem: str, *, required: bool) -> pd.DataFrame | None:
    parquet, csv = folder / f"{stem}.parquet", folder / f"{stem}.csv"
    try:
        if parquet.is_file():
            return pd.read_parquet(parquet)
        if csv.is_file():
            return pd.read_csv(csv, keep_default_na=True)
    except (OSError, ValueError) as exc:
        raise RunError(f"{folder}: cannot read {stem} table: {exc}") from exc
    if required:
        raise RunError(f"{folder}: no {stem}.parquet or {stem}.csv; is this a run directory (zeroshot eval --out)?")
    return None


def _read_info(folder: Path) -> Mapping[str, Any]:
    path = folder / RUN_JSON
    if not path.is_file():
        return {}
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RunError(f"{path}: not readable as JSON: {exc}") from exc
    if not isinstance(info, dict):
        raise RunError(f"{path}: expected a JSON object, found {type(info).__name__}")
    return info


def _normalise(results: pd.DataFrame, where: Path) -> pd.DataFrame:
    if results.empty:
        raise RunError(
            f"{where}: the run holds no result rows (an empty shard, or a run that has not finished a row yet); "
            "nothing to compare: leave it out"
        )
    missing = [c for c in REQUIRED if c not in results.columns]
    if missing:
        raise RunError(f"{where}: results table lacks column(s) {', '.join(missing)}")
    frame = results.copy()
    for column in ("case_id", "sequence", "center", "model", "strategy"):
        frame[column] = frame[column].astype(str)
    for flag in ("failed", "empty_gt", "empty_pred"):
        if flag in frame.columns:
            frame[flag] = frame[flag].fillna(False).astype(bool)
    return frame


def load_runs(paths: Sequence[str | Path], *, read_slices: bool = True) -> RunTables:
    """Read the tables of one or more run directories (one :class:`~zeroshot.store.RunTables` for them all).

    Parameters
    ----------
    paths : sequence of path
        Run directories (each with ``results.parquet`` or ``results.csv``).
    read_slices : bool
        Also read the per-slice tables (``False``: ``slices`` is ``None``; the comparison tables do not use them,
        and at 100k rows they are 6M rows to read).

    Raises
    ------
    RunError
        No path given, a folder that is not a run, a run without rows, a table without the identity columns, a
        result row (same case, sequence, model, strategy, seed) present in two runs, or runs that cannot be pooled
        (:func:`check_comparable`).
    """
    if not paths:
        raise RunError("no run directory given")
    roots, infos, results, slices = [], [], [], []
    for index, raw in enumerate(paths):
        root = Path(raw)
        if not root.is_dir():
            raise RunError(f"{root}: no such run directory")
        table = _normalise(_read_table(root, "results", required=True), root)
        table["run"] = index
        per_slice = _read_table(root, "slices", required=False) if read_slices else None
        if per_slice is not None:
            per_slice = per_slice.copy()
            for column in ("case_id", "sequence", "model", "strategy"):
                if column in per_slice.columns:
                    per_slice[column] = per_slice[column].astype(str)
            per_slice["run"] = index
            slices.append(per_slice)
        roots.append(root)
        infos.append(_read_info(root))
        results.append(table)
    check_comparable(roots, infos)
    combined = pd.concat(results, ignore_index=True)
    identity = [*IDENTITY, *(c for c in (ROUND, "click_protocol") if c in combined.columns)]
    duplicated = combined.duplicated(identity, keep=False)
    if duplicated.any():
        first = combined.loc[duplicated].iloc[0]
        runs = sorted({str(roots[i]) for i in combined.loc[duplicated, "run"]})
        raise RunError(
            f"{len(combined.loc[duplicated])} result rows appear twice (e.g. case {first['sequence']}/"
            f"{first['case_id']}, model {first['model']}, strategy {first['strategy']}, seed {first['seed']}) in "
            f"{', '.join(runs)}; pass each run once (merge shards with `zeroshot merge`)"
        )
    return RunTables(
        roots=tuple(roots),
        infos=tuple(infos),
        results=combined,
        slices=pd.concat(slices, ignore_index=True) if slices else None,
    )


def find_key(document: Any, key: str) -> list[Any]:
    """Every value stored under ``key`` anywhere in a JSON document, depth first, in document order.

    ``run.json`` nests its sections (selection per invocation, identities per component); reading it by search
    rather than by fixed paths keeps the comparison working across layouts of that file.
    """
    found: list[Any] = []
    if isinstance(document, Mapping):
        for name, value in document.items():
            if name == key:
                found.append(value)
            found.extend(find_key(value, key))
    elif isinstance(document, list):
        for item in document:
            found.extend(find_key(item, key))
    return found


def dataset_root(info: Mapping[str, Any], where: Path) -> tuple[Path, str | None]:
    """The dataset folder (and layout, if recorded) a run evaluated, from its ``run.json``.

    The last ``data`` path recorded wins (a run extended later records each invocation's selection).

    Raises
    ------
    RunError
        When ``run.json`` records no dataset path.
    """
    paths = [v for v in find_key(info, "data") if isinstance(v, str) and v]
    if not paths:
        raise RunError(f"{where / RUN_JSON}: records no dataset path (a 'data' entry); cannot find the labels")
    layouts = [v for v in find_key(info, "layout") if isinstance(v, str) and v]
    return Path(paths[-1]), layouts[-1] if layouts else None


def _fixed(info: Mapping[str, Any]) -> Mapping[str, Any]:
    identity = info.get("identity") if isinstance(info, Mapping) else None
    fixed = identity.get("fixed") if isinstance(identity, Mapping) else None
    return fixed if isinstance(fixed, Mapping) else {}


def check_comparable(roots: Sequence[Path], infos: Sequence[Mapping[str, Any]]) -> None:
    """Refuse runs whose rows cannot be pooled into one table.

    Each pair of runs must score the same structure (``label`` in ``run.json``'s identity), with the same NSD
    tolerances, on the same dataset (:func:`zeroshot.runner.config.dataset_conflict`). What a run does not record
    (a ``run.json`` without an identity) is not held against it.

    Raises
    ------
    RunError
        Naming both runs and what differs.
    """
    if len(roots) < 2:
        return
    # Imported here, not at the top: zeroshot.runner (with the prompt and interactive code it imports) is a
    # third of compare's import time, and a single run has no pair to check.
    from zeroshot.runner.config import dataset_conflict

    for i, j in itertools.combinations(range(len(roots)), 2):
        first, second = _fixed(infos[i]), _fixed(infos[j])
        for key, what in (("label", "label value (--label)"), ("tolerances_mm", "NSD tolerances (--tolerance-mm)")):
            if key in first and key in second and first[key] != second[key]:
                raise RunError(
                    f"{roots[i]} and {roots[j]} differ in their {what}: {first[key]} and {second[key]}; their rows "
                    "measure different things and cannot be pooled. Compare each on its own, or evaluate both alike"
                )
        conflict = dataset_conflict(infos[i], infos[j])
        if conflict is not None:
            raise RunError(
                f"{roots[i]} and {roots[j]} evaluated different datasets ({conflict}); pooling them would mix their "
                "cases in one table. Compare each dataset on its own"
            )


def run_label(runs: RunTables, index: int | None = None) -> int:
    """The label value (the structure) the runs scored, from their ``run.json``; of run ``index`` if given.

    Raises
    ------
    RunError
        When no run records its label (a ``run.json`` without ``identity.fixed.label``): the structure to read
        from label files would be a guess.
    """
    chosen = runs.infos if index is None else (runs.infos[index],)
    labels = {int(fixed["label"]) for fixed in map(_fixed, chosen) if isinstance(fixed.get("label"), int)}
    if len(labels) == 1:
        return labels.pop()
    where = ", ".join(str(runs.roots[i]) for i in (range(len(runs.roots)) if index is None else (index,)))
    if not labels:
        raise RunError(
            f"{where}: run.json records no label value (identity.fixed.label); cannot tell which structure of the "
            "label files to read"
        )
    raise RunError(f"{where}: the runs scored different label values ({sorted(labels)})")
