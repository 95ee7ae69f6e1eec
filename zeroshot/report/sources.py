"""The report's only reader of run outputs: tables, provenance, prompts and saved predictions, compare and figures.

Everything the report shows comes through this module, so that when the run store changes (rows no longer one
JSON file each) only this module follows it. It reads the outputs that stay stable: ``results.parquet`` (or
``.csv``), ``slices.parquet``, ``failures.csv`` and ``run.json`` of each run (through
:func:`zeroshot.compare.load_runs`, the one home for reading runs), the predictions saved with ``--save-pred``
(the results' ``prediction`` column), the cached prompts, the tables of ``zeroshot compare`` and the PNG/PDF files
of ``zeroshot figures``. It never parses the row files.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from zeroshot.compare.runs import RunError, RunTables, dataset_root, load_runs, run_label
from zeroshot.errors import ZeroshotError

if TYPE_CHECKING:
    from zeroshot.runner.rundir import RunDir

__all__ = [
    "COMPARE_TABLES",
    "CaseImages",
    "CaseReader",
    "CompareTable",
    "FigureFile",
    "PromptMarks",
    "ReportSources",
    "find_figures",
    "prediction_file",
    "read_compare_tables",
    "read_prompt_marks",
    "read_sources",
]

#: The tables of ``zeroshot compare`` in the order the report shows them; other CSVs of the folder follow,
#: sorted by name. ``per_case*`` tables are left out: the case browser shows every case.
COMPARE_TABLES = ("summary", "summary_by_center", "cross_sequence", "paired", "clicks", "noc", "auc", "published")
_SKIPPED_TABLES = ("per_case", "per_case_clicks", "per_case_auc", "baseline_results")


@dataclass(frozen=True, eq=False)
class ReportSources:
    """The runs a report shows.

    Attributes
    ----------
    runs : RunTables
        Results, per-slice rows (``None`` where no run has them) and ``run.json`` of every run.
    failures : DataFrame
        The failed rows with their reasons (each run's ``failures.csv``; from its results where absent), with a
        ``run`` column (index into ``runs.roots``).
    """

    runs: RunTables
    failures: pd.DataFrame

    @cached_property
    def run_dirs(self) -> tuple[RunDir, ...]:
        """One :class:`~zeroshot.runner.rundir.RunDir` per run, shared by every row.

        Its store reads the run's prompt sets once, on the first row; a ``RunDir`` per row read them all again for
        each row.
        """
        from zeroshot.runner.rundir import RunDir

        return tuple(RunDir(root) for root in self.runs.roots)


@dataclass(frozen=True)
class CompareTable:
    """One table of ``zeroshot compare`` (its numeric CSV)."""

    name: str
    path: Path
    frame: pd.DataFrame


@dataclass(frozen=True)
class FigureFile:
    """One figure of ``zeroshot figures``: its PNG and, where written, its PDF."""

    name: str
    png: Path
    pdf: Path | None


@dataclass(frozen=True)
class PromptMarks:
    """What the user gave on one slice: a box ``[x0, y0, x1, y1]`` (inclusive pixels) and points ``[x, y]``.

    ``labels`` are 1 (positive) or 0 (negative), one per point.
    """

    z: int
    box: tuple[int, int, int, int] | None
    points: tuple[tuple[int, int], ...]
    labels: tuple[int, ...]


@dataclass(frozen=True, eq=False)
class CaseImages:
    """The arrays one case entry is drawn from.

    Attributes
    ----------
    image : (Z, Y, X) float32 array
    gt : (Z, Y, X) bool array
        The run's structure (its label value).
    prediction : (Z, Y, X) bool array or None
        ``None`` where the prediction was not saved (``zeroshot eval`` without ``--save-pred``) or is gone.
    spacing_mm : (float, float, float)
        In array-axis order.
    """

    image: np.ndarray
    gt: np.ndarray
    prediction: np.ndarray | None
    spacing_mm: tuple[float, float, float]


def read_sources(run_dirs: list[Path] | tuple[Path, ...]) -> ReportSources:
    """Read one or more run directories (as :func:`zeroshot.compare.load_runs`, with its checks).

    Raises
    ------
    RunError
        As :func:`~zeroshot.compare.load_runs`: no run, a folder that is not a run, rows present twice, runs that
        cannot be pooled.
    """
    runs = load_runs(run_dirs)
    failures = []
    for index, root in enumerate(runs.roots):
        path = root / "failures.csv"
        if path.is_file():
            try:
                frame = pd.read_csv(path, keep_default_na=False, dtype=str)
            except (OSError, ValueError) as exc:
                raise RunError(f"{path}: cannot read the failures table: {exc}") from exc
        else:  # a run written before failures.csv existed: its failed rows say the same
            rows = runs.results.loc[(runs.results["run"] == index) & runs.results["failed"]]
            frame = rows.drop(columns="run").astype(str)
        frame = frame.copy()
        frame["run"] = index
        failures.append(frame)
    return ReportSources(runs=runs, failures=pd.concat(failures, ignore_index=True))


def read_compare_tables(folder: Path) -> tuple[CompareTable, ...]:
    """The numeric tables (CSV) that ``zeroshot compare`` wrote into ``folder``.

    Raises
    ------
    ZeroshotError
        When ``folder`` is not a folder or holds no table of ``zeroshot compare``.
    """
    if not folder.is_dir():
        raise ZeroshotError(f"--compare {folder}: no such folder (the --out of zeroshot compare)")
    found = {path.stem: path for path in folder.glob("*.csv") if path.stem not in _SKIPPED_TABLES}
    if not any(name in found for name in COMPARE_TABLES):
        raise ZeroshotError(
            f"--compare {folder}: holds none of {', '.join(f'{n}.csv' for n in COMPARE_TABLES[:4])}; is it the --out "
            "of zeroshot compare?"
        )
    order = [name for name in COMPARE_TABLES if name in found] + sorted(set(found) - set(COMPARE_TABLES))
    tables = []
    for name in order:
        try:
            frame = pd.read_csv(found[name])
        except (OSError, ValueError) as exc:
            raise ZeroshotError(f"{found[name]}: cannot read this table of zeroshot compare: {exc}") from exc
        tables.append(CompareTable(name=name, path=found[name], frame=frame))
    return tuple(tables)


def find_figures(folder: Path) -> tuple[FigureFile, ...]:
    """Every figure (PNG, with its PDF where present) that ``zeroshot figures`` wrote into ``folder``.

    Raises
    ------
    ZeroshotError
        When ``folder`` is not a folder or holds no PNG.
    """
    from zeroshot.figures import FIGURES

    if not folder.is_dir():
        raise ZeroshotError(f"--figures {folder}: no such folder (the --out of zeroshot figures)")
    pngs = {path.stem: path for path in folder.glob("*.png")}
    if not pngs:
        raise ZeroshotError(f"--figures {folder}: holds no PNG; is it the --out of zeroshot figures?")
    order = [name for name in FIGURES if name in pngs] + sorted(set(pngs) - set(FIGURES))
    figures = []
    for name in order:
        pdf = pngs[name].with_suffix(".pdf")
        figures.append(FigureFile(name=name, png=pngs[name], pdf=pdf if pdf.is_file() else None))
    return tuple(figures)


def optional_round(value: Any) -> int | None:
    """A row's round as an int, ``None`` for a row without one (NaN or NA where runs with and without rounds mix)."""
    return None if value is None or pd.isna(value) else int(value)


def prediction_file(sources: ReportSources, row: Any) -> Path | None:
    """The saved prediction of one result row, or ``None`` where none was saved or the file is gone.

    The results' ``prediction`` column (relative to the run) names it; runs whose tables predate that column are
    looked up where ``--save-pred`` writes.
    """
    root = sources.runs.roots[int(row.run)]
    recorded = getattr(row, "prediction", None)
    if isinstance(recorded, str) and recorded:
        path = root / recorded
        return path if path.is_file() else None
    if recorded is None or (isinstance(recorded, float) and np.isnan(recorded)):
        from zeroshot.runner.rundir import RowKey

        round_index = optional_round(getattr(row, "round", None))
        key = RowKey(row.sequence, row.case_id, row.model, row.strategy, int(row.seed), round_index)
        path = sources.run_dirs[int(row.run)].prediction_path(key)
        return path if path.is_file() else None
    return None


def read_prompt_marks(sources: ReportSources, row: Any) -> tuple[PromptMarks, ...]:
    """The prompts of one result row (boxes and points per key slice, then the corrective clicks so far).

    The strategy's prompts come from the run's prompt cache (shared by every model), the clicks from the row's
    ``clicks`` column. A prompt the run did not keep gives no marks: the report draws what it can find.
    """
    from zeroshot.store import PromptKey

    marks: list[PromptMarks] = []
    key = PromptKey(row.sequence, row.case_id, row.strategy, int(row.seed))
    stored = sources.run_dirs[int(row.run)].stored_prompts(key)
    try:
        document = json.loads(stored) if stored is not None else {}
    except ValueError:
        document = {}
    for item in document.get("slices", []) if isinstance(document, Mapping) else []:
        if not isinstance(item, Mapping) or not isinstance(item.get("z"), int):
            continue
        box = item.get("box")
        points = tuple((int(x), int(y)) for x, y in item.get("points") or ())
        labels = tuple(int(v) for v in item.get("labels") or (1,) * len(points))
        marks.append(
            PromptMarks(
                z=int(item["z"]),
                box=tuple(int(v) for v in box) if box is not None and len(box) == 4 else None,
                points=points,
                labels=labels[: len(points)],
            )
        )
    clicks = getattr(row, "clicks", None)
    if isinstance(clicks, str) and clicks:
        for click in json.loads(clicks):
            point = ((int(click["x"]), int(click["y"])),)
            marks.append(PromptMarks(z=int(click["z"]), box=None, points=point, labels=(int(click["label"]),)))
    return tuple(marks)


class CaseReader:
    """Reads the arrays of result rows: finds each run's dataset once, and keeps the last case it read.

    The rows of one case (every model and strategy) come one after the other, so they are drawn from one reading
    of its image and ground truth.
    """

    def __init__(self, sources: ReportSources) -> None:
        self._sources = sources
        self._cases: dict[int, dict[tuple[str, str], Any] | str] = {}
        self._last: tuple[tuple[int, str, str], Any, np.ndarray | None, str | None] | None = None

    def _case(self, run: int, sequence: str, case_id: str) -> Any:
        if run not in self._cases:
            from zeroshot.datasets import discover

            root = self._sources.runs.roots[run]
            try:
                data, layout = dataset_root(self._sources.runs.infos[run], root)
                self._cases[run] = {(c.sequence, c.case_id): c for c in discover(data, layout=layout)}
            except (ZeroshotError, OSError) as exc:
                self._cases[run] = f"the dataset of run {root} cannot be read ({exc})"
        cases = self._cases[run]
        if isinstance(cases, str):
            return cases
        found = cases.get((sequence, case_id))
        return found if found is not None else f"case {sequence}/{case_id} is no longer in the run's dataset"

    def images(self, row: Any) -> CaseImages | str:
        """Image, ground truth and saved prediction of one result row, or a sentence saying what is missing."""
        from zeroshot.volume import read_label, read_volume

        key = (int(row.run), str(row.sequence), str(row.case_id))
        if self._last is None or self._last[0] != key:
            case = self._case(*key)
            if isinstance(case, str):
                self._last = (key, None, None, case)
            else:
                try:
                    volume = read_volume(case.image)
                    label = run_label(self._sources.runs, key[0])
                    gt = read_label(case.label, volume, label=label, require_label=False)
                except (ZeroshotError, OSError, ValueError) as exc:
                    self._last = (key, None, None, f"cannot read the image or label of {case.key} ({exc})")
                else:
                    self._last = (key, volume, gt, None)
        _, volume, gt, problem = self._last
        if problem is not None:
            return problem
        path = prediction_file(self._sources, row)
        prediction = None
        if path is not None:
            try:
                prediction = read_label(path, volume, label=1, require_label=False)  # predictions are written 0/1
            except (ZeroshotError, OSError, ValueError) as exc:
                return f"cannot read the saved prediction {path} ({exc})"
        return CaseImages(
            image=volume.array,
            gt=gt,
            prediction=prediction,
            spacing_mm=tuple(float(s) for s in volume.spacing_mm),
        )
