"""Supervised baselines: per-case predictions scored on the run's own cases, and published numbers cited as such.

Predictions of a supervised model (e.g. an nnU-Net output folder) are named on the command line as
``MODEL-TRAIN[@TEST]=DIR``:

- ``MODEL`` names the model (``nnunet``), ``TRAIN`` the sequence it was trained on (the text after the *last*
  ``-``: ``nnunet-T1``, ``my-unet-OOP``);
- ``@TEST`` (optional) says which sequence's cases ``DIR`` holds. Without it, each sequence ``S`` of the run for
  which ``DIR/S/`` exists is scored from there; failing that, a run with a single sequence takes ``DIR`` itself;
- ``DIR`` holds one ``<case_id>.nii.gz`` (or ``.nii``) per case, on the grid of the case's image.

Each prediction is scored with the same metric code as the zero-shot rows, against the same label files the run
used (found through the dataset path in ``run.json``) and the same structure (the label value ``run.json``
records). A case of the run without a prediction becomes a failed row (the worst case in every aggregate), never
a silently smaller sample; a folder holding both ``<case_id>.nii`` and ``<case_id>.nii.gz`` is refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from zeroshot.compare.runs import RunError, RunTables, dataset_root, run_label
from zeroshot.compare.tables import KIND_SUPERVISED
from zeroshot.datasets import Case, discover

__all__ = [
    "PUBLISHED_COLUMNS",
    "BaselinePredictions",
    "parse_baseline_predictions",
    "published_rows",
    "read_published",
    "score_baseline_predictions",
]

#: Columns of a published-baselines CSV (benchmarks/baselines/published.csv).
PUBLISHED_COLUMNS = (
    "model", "setting", "train_sequence", "test_sequence", "dataset", "modality", "center", "metric", "relation",
    "value", "sd", "ci_low", "ci_high", "n", "source", "url", "note",
)  # fmt: skip
RELATIONS = ("=", ">", "<")
STRATEGY = "supervised"
_SPEC = re.compile(r"^(?P<model>[^=@]+)-(?P<train>[^=@\-]+)(?:@(?P<test>[^=@]+))?=(?P<folder>.+)$")
_NIFTI = (".nii.gz", ".nii")


@dataclass(frozen=True)
class BaselinePredictions:
    """One ``--baseline-preds`` argument.

    Attributes
    ----------
    model : str
        The model's name as rows will show it, with its train sequence: ``nnunet-T1``.
    train_sequence : str
    test_sequence : str or None
        ``None``: find the sequence(s) from the folder layout (see the module docstring).
    folder : Path
    """

    model: str
    train_sequence: str
    test_sequence: str | None
    folder: Path


def parse_baseline_predictions(text: str) -> BaselinePredictions:
    """Parse ``MODEL-TRAIN[@TEST]=DIR``.

    Examples
    --------
    >>> parse_baseline_predictions("nnunet-T1@T2=preds/t1_on_t2")
    BaselinePredictions(model='nnunet-T1', train_sequence='T1', test_sequence='T2', folder=PosixPath('preds/t1_on_t2'))

    Raises
    ------
    RunError
        When ``text`` does not have that form.
    """
    match = _SPEC.match(text.strip())
    if not match:
        raise RunError(
            f"--baseline-preds {text!r}: expected MODEL-TRAIN[@TEST]=DIR, e.g. nnunet-T1=preds/nnunet_T1 or "
            "nnunet-T1@T2=preds/t1_on_t2 (TRAIN: the sequence the model was trained on)"
        )
    model = f"{match['model']}-{match['train']}"
    return BaselinePredictions(model, match["train"], match["test"], Path(match["folder"]))


def _prediction_file(folder: Path, case_id: str) -> Path | None:
    found = [folder / f"{case_id}{suffix}" for suffix in _NIFTI if (folder / f"{case_id}{suffix}").is_file()]
    if len(found) > 1:
        raise RunError(
            f"--baseline-preds {folder}: case {case_id!r} has two prediction files ({found[0].name}, "
            f"{found[1].name}); keep one"
        )
    return found[0] if found else None


def _folders_by_sequence(spec: BaselinePredictions, sequences: Sequence[str]) -> dict[str, Path]:
    if not spec.folder.is_dir():
        raise RunError(f"--baseline-preds {spec.model}: {spec.folder} is not a folder")
    if spec.test_sequence is not None:
        if spec.test_sequence not in sequences:
            raise RunError(
                f"--baseline-preds {spec.model}@{spec.test_sequence}: the run has no {spec.test_sequence} cases "
                f"(it has {', '.join(sequences)})"
            )
        return {spec.test_sequence: spec.folder}
    nested = {s: spec.folder / s for s in sequences if (spec.folder / s).is_dir()}
    if nested:
        return nested
    if len(sequences) == 1:
        return {sequences[0]: spec.folder}
    raise RunError(
        f"--baseline-preds {spec.model}={spec.folder}: the run has sequences {', '.join(sequences)}; say which "
        f"one the folder holds ({spec.model}@SEQ=DIR) or give it one subfolder per sequence"
    )


def _run_cases(runs: RunTables) -> dict[tuple[str, str], Case]:
    """The dataset cases behind every (sequence, case_id) of the runs' results."""
    wanted = set(zip(runs.results["sequence"], runs.results["case_id"], strict=True))
    found: dict[tuple[str, str], Case] = {}
    for root, info in zip(runs.roots, runs.infos, strict=True):
        data, layout = dataset_root(info, root)
        for case in discover(data, layout=layout):
            if (case.sequence, case.case_id) in wanted:
                found[(case.sequence, case.case_id)] = case
    missing = sorted(wanted - set(found))
    if missing:
        raise RunError(
            f"{len(missing)} case(s) of the run are not in its dataset any more (e.g. {missing[0][0]}/"
            f"{missing[0][1]}); cannot score baselines against their labels"
        )
    return found


def _score_case(
    case: Case, prediction: Path | None, *, tolerances_mm: Sequence[float], label: int
) -> dict[str, object]:
    """One row via :func:`zeroshot.scoring.score_files` (grid and binary checks included); errors become failed rows."""
    from zeroshot.errors import ZeroshotError
    from zeroshot.scoring import header_d_max_mm, score_files

    if prediction is None:
        return {"failed": True, "error": "no prediction file", "d_max_mm": header_d_max_mm(case.label, case.image)}
    try:
        metrics = score_files(case.label, prediction, tolerances_mm=tuple(tolerances_mm), label=label)
    except ZeroshotError as exc:  # a broken file becomes a failed row with its reason; the others are still scored
        d_max_mm = header_d_max_mm(case.label, case.image, prediction)
        return {"failed": True, "error": str(exc), "d_max_mm": d_max_mm}
    return {**metrics.as_row(), "failed": False, "error": ""}


def score_baseline_predictions(
    runs: RunTables,
    specs: Sequence[BaselinePredictions],
    *,
    tolerances_mm: Sequence[float] = (2.0,),
) -> pd.DataFrame:
    """Score supervised predictions on the run's cases; rows in the results schema plus ``kind, train_sequence``.

    Every case of the run on a scored sequence gets a row per model (``strategy`` ``supervised``, ``seed`` 0):
    a missing or unreadable prediction is a failed row with its reason. The structure scored is the runs' label
    value (:func:`~zeroshot.compare.runs.run_label`), as for their zero-shot rows.

    Raises
    ------
    RunError
        A bad folder, an unknown test sequence, run cases that its dataset no longer lists, or runs that record no
        label value.
    """
    if not specs:
        return pd.DataFrame()
    label = run_label(runs)
    sequences = sorted(runs.results["sequence"].unique())
    cases = _run_cases(runs)
    records = []
    for spec in specs:
        for sequence, folder in _folders_by_sequence(spec, sequences).items():
            for (case_sequence, case_id), case in sorted(cases.items()):
                if case_sequence != sequence:
                    continue
                prediction = _prediction_file(folder, case_id)
                row = _score_case(case, prediction, tolerances_mm=tolerances_mm, label=label)
                records.append(
                    {
                        "case_id": case_id,
                        "sequence": sequence,
                        "center": case.center,
                        "split": case.split,
                        "model": spec.model,
                        "strategy": STRATEGY,
                        "seed": 0,
                        "kind": KIND_SUPERVISED,
                        "train_sequence": spec.train_sequence,
                        "prediction": str(folder),
                        **row,
                    }
                )
    return pd.DataFrame.from_records(records)


def read_published(path: str | Path) -> pd.DataFrame:
    """Read a published-baselines CSV (the columns of ``benchmarks/baselines/published.csv``).

    Raises
    ------
    RunError
        A missing file, missing columns, a relation other than ``=``, ``>``, ``<``, or a row without a source.
    """
    path = Path(path)
    if not path.is_file():
        raise RunError(f"--baselines {path}: no such file")
    table = pd.read_csv(path, dtype={"train_sequence": str, "test_sequence": str, "center": str})
    missing = [c for c in PUBLISHED_COLUMNS if c not in table.columns]
    if missing:
        raise RunError(f"{path}: missing column(s) {', '.join(missing)}; see benchmarks/baselines/README.md")
    bad_relation = ~table["relation"].isin(RELATIONS)
    if bad_relation.any():
        first = int(bad_relation.idxmax())
        raise RunError(
            f"{path}: row {first + 2} has relation {table.loc[first, 'relation']!r}; expected one of "
            f"{' '.join(RELATIONS)}"
        )
    unsourced = table["source"].isna() | (table["source"].astype(str).str.strip() == "")
    if unsourced.any():
        raise RunError(f"{path}: row {int(unsourced.idxmax()) + 2} has no source; only cited numbers belong here")
    return table


def published_rows(published: pd.DataFrame, metric: str = "dice") -> pd.DataFrame:
    """The published rows for one metric, with a display cell (``0.850 ± 0.079``, ``> 0.85``)."""
    chosen = published.loc[published["metric"] == metric].copy()
    chosen["cell"] = [_cell(row) for row in chosen.to_dict("records")]
    return chosen


def _cell(row: Mapping[str, object]) -> str:
    value = float(row["value"])
    if row["relation"] != "=":
        return f"{row['relation']} {value:g}"
    sd = row.get("sd")
    return f"{value:.3f} ± {float(sd):.3f}" if sd is not None and pd.notna(sd) else f"{value:.3f}"
