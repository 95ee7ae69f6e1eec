"""Fabricated run directories with known statistics, so compare/figures tests do not depend on the runner.

``write_synthetic_run`` writes what ``zeroshot eval --out`` writes (run.json, results.parquet/csv, slices.parquet,
predictions and prompts for one method) for the cases of a phantom dataset, with metric values given by a formula:

    dice(model, strategy, sequence, case i, seed s) = BASE[model] - STRATEGY_COST[strategy] - SEQUENCE_COST[sequence]
                                                      + 0.01 i + (0.01 if s == 0 else -0.01)

so the per-case mean over seeds 0 and 1 is exact and known, plus one failed row and one missed organ whose
penalised values are known (Dice 0, distances D_max).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from zeroshot.datasets import discover
from zeroshot.runner.rundir import RowKey, RunDir
from zeroshot.store import PromptKey
from zeroshot.volume import read_label, read_volume, write_mask

MODELS = ("medsam2", "sam2.1-tiny")
BASE = {"medsam2": 0.80, "sam2.1-tiny": 0.70}
STRATEGIES = ("box-mid", "abl-box-j10-k1", "abl-box-j0-k3", "point-center")
STRATEGY_COST = {"box-mid": 0.0, "abl-box-j10-k1": 0.05, "abl-box-j0-k3": -0.02, "point-center": 0.10}
STRATEGY_SETTINGS = {
    "box-mid": {"key_slices": {"rule": "middle"}, "prompt": {"type": "box", "box": {"jitter_percent": 0.0}}},
    "abl-box-j10-k1": {
        "key_slices": {"rule": "spread", "count": 1},
        "prompt": {"type": "box", "box": {"jitter_percent": 10.0}},
    },
    "abl-box-j0-k3": {
        "key_slices": {"rule": "spread", "count": 3},
        "prompt": {"type": "box", "box": {"jitter_percent": 0.0}},
    },
    "point-center": {"key_slices": {"rule": "middle"}, "prompt": {"type": "points", "points": {"positives": 1}}},
}
SEQUENCE_COST = {"T1": 0.0, "T2": 0.05, "OOP": 0.15}
SEEDS = (0, 1)
D_MAX_MM = 400.0
FAILED = ("medsam2", "box-mid", "T1", 0, 1)  # model, strategy, sequence, case index, seed
MISSED = ("sam2.1-tiny", "box-mid", "T2", 1, 0)
SLICES_PER_CASE = 12
SPACING_Z_MM = 3.0


def dice_formula(model: str, strategy: str, sequence: str, index: int, seed: int) -> float:
    return (
        BASE[model] - STRATEGY_COST[strategy] - SEQUENCE_COST[sequence] + 0.01 * index + (0.01 if seed == 0 else -0.01)
    )


def expected_case_mean(model: str, strategy: str, sequence: str, index: int) -> float:
    """Penalised per-case value (mean over seeds) of Dice, accounting for the failed and missed rows."""
    values = []
    for seed in SEEDS:
        if (model, strategy, sequence, index, seed) in (FAILED, MISSED):
            values.append(0.0)
        else:
            values.append(dice_formula(model, strategy, sequence, index, seed))
    return float(np.mean(values))


def metrics_from_dice(dice: float) -> dict:
    """Overlap and distance columns that follow from a fabricated Dice (the other fixtures reuse this)."""
    return {
        "dice": dice,
        "iou": dice / (2 - dice),
        "nsd_2mm": min(1.0, dice + 0.05),
        "hd95_mm": 30.0 * (1 - dice),
        "hd_mm": 45.0 * (1 - dice),
        "assd_mm": 8.0 * (1 - dice),
        "masd_mm": 8.0 * (1 - dice),
    }


def _row(case, index: int, model: str, strategy: str, seed: int) -> dict:
    key = (model, strategy, case.sequence, index, seed)
    base = {
        "case_id": case.case_id,
        "sequence": case.sequence,
        "center": case.center,
        "split": case.split,
        "model": model,
        "strategy": strategy,
        "seed": seed,
        "d_max_mm": D_MAX_MM,
        "oracle_gt_prompt": True,
        "error": "",
    }
    if key == FAILED:
        nan = float("nan")
        return {
            **base,
            "dice": nan,
            "iou": nan,
            "nsd_2mm": nan,
            "hd95_mm": nan,
            "hd_mm": nan,
            "assd_mm": nan,
            "masd_mm": nan,
            "vol_gt_ml": nan,
            "vol_pred_ml": nan,
            "rel_vol_err": nan,
            "empty_gt": None,
            "empty_pred": None,
            "failed": True,
            "error": "CUDA out of memory",
        }
    if key == MISSED:
        inf = float("inf")
        return {
            **base,
            "dice": 0.0,
            "iou": 0.0,
            "nsd_2mm": 0.0,
            "hd95_mm": inf,
            "hd_mm": inf,
            "assd_mm": inf,
            "masd_mm": inf,
            "vol_gt_ml": 60.0,
            "vol_pred_ml": 0.0,
            "rel_vol_err": -1.0,
            "empty_gt": False,
            "empty_pred": True,
            "failed": False,
        }
    dice = dice_formula(model, strategy, case.sequence, index, seed)
    return {
        **base,
        **metrics_from_dice(dice),
        "vol_gt_ml": 60.0,
        "vol_pred_ml": 60.0 * (1 + (0.5 - dice) / 4),
        "rel_vol_err": (0.5 - dice) / 4,
        "empty_gt": False,
        "empty_pred": False,
        "failed": False,
    }


def _slices(row: dict) -> list[dict]:
    if row["failed"]:
        return []
    key_slice = SLICES_PER_CASE // 2
    out = []
    for z in range(SLICES_PER_CASE):
        distance = abs(z - key_slice)
        out.append(
            {
                **{k: row[k] for k in ("case_id", "sequence", "model", "strategy", "seed")},
                "z": z,
                "dist_slices": distance,
                "dist_mm": distance * SPACING_Z_MM,
                "gt_area_px": 100,
                "pred_area_px": 90,
                "gt_area_mm2": 150.0,
                "pred_area_mm2": 135.0,
                "slice_dice": max(0.0, row["dice"] - 0.04 * distance),
            }
        )
    return out


def _prompt_document(case_id: str, strategy: str, seed: int, box: tuple[int, int, int, int], z: int) -> dict:
    x0, y0, x1, y1 = box
    return {
        "case_id": case_id,
        "strategy": strategy,
        "seed": seed,
        "source": "gt",
        "oracle": {"gt_prompt": True},
        "slices": [{"z": z, "box": [x0, y0, x1, y1], "points": [[(x0 + x1) // 2, (y0 + y1) // 2]], "labels": [1]}],
        "details": {},
    }


def write_predictions(run: RunDir, cases, model: str, strategy: str, seed: int) -> None:
    """Save eroded-label predictions and box prompts for one method (what --save-pred and the prompt cache hold)."""
    from scipy import ndimage

    for index, case in enumerate(cases):
        image = read_volume(case.image)
        label = read_label(case.label, image, label=1)
        iterations = 1 + index % 3  # worse predictions for some cases: best/median/worst differ
        prediction = ndimage.binary_erosion(label, iterations=iterations) if index % 3 else label
        write_mask(run.prediction_path(RowKey(case.sequence, case.case_id, model, strategy, seed)), prediction, image)
        areas = label.sum(axis=(1, 2))
        z = int(np.argmax(areas))
        ys, xs = np.nonzero(label[z])
        box = (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))
        key = PromptKey(case.sequence, case.case_id, strategy, seed)
        run.write_prompts(key, json.dumps(_prompt_document(case.case_id, strategy, seed, box, z)))
    run.store.close()  # the prompts are rolled into the run's store parts


def write_synthetic_run(
    root: Path,
    data: Path,
    *,
    sequences: tuple[str, ...] = ("T1", "T2", "OOP"),
    models: tuple[str, ...] = MODELS,
    strategies: tuple[str, ...] = STRATEGIES,
    with_slices: bool = True,
    with_predictions: bool = False,
) -> Path:
    """Write a run directory at ``root`` over the cases of the dataset at ``data`` (see the module docstring)."""
    run = RunDir(root)
    root.mkdir(parents=True, exist_ok=True)
    cases = [c for c in discover(data) if c.sequence in sequences]
    rows, slices = [], []
    for case in cases:
        index = int(case.case_id.rsplit("_", 1)[-1])
        for model in models:
            for strategy in strategies:
                for seed in SEEDS:
                    row = _row(case, index, model, strategy, seed)
                    rows.append(row)
                    slices.extend(_slices(row))
    results = pd.DataFrame(rows)
    results.to_parquet(root / "results.parquet", index=False)
    results.to_csv(root / "results.csv", index=False)
    if with_slices:
        pd.DataFrame(slices).to_parquet(root / "slices.parquet", index=False)
    manifest = {
        "format": 1,
        "identity": {
            "fixed": {"label": 1, "tolerances_mm": [2.0]},
            "strategies": {name: STRATEGY_SETTINGS[name] for name in strategies},
            "models": {name: {"name": name} for name in models},
            "seeds": list(SEEDS),
        },
        "invocations": [{"selection": {"data": str(data), "layout": None, "sequences": list(sequences)}}],
    }
    run.write_manifest(manifest)
    if with_predictions:
        write_predictions(run, cases, models[0], strategies[0], 0)
    return root


def write_baseline_predictions(folder: Path, data: Path, *, sequence: str, mode: str) -> Path:
    """Supervised predictions for the cases of one sequence: ``perfect`` (the label), ``empty`` or ``missing``."""
    folder.mkdir(parents=True, exist_ok=True)
    for case in discover(data):
        if case.sequence != sequence:
            continue
        image = read_volume(case.image)
        label = read_label(case.label, image, label=1)
        if mode == "missing":
            continue
        mask = label if mode == "perfect" else np.zeros_like(label)
        write_mask(folder / f"{case.case_id}.nii.gz", mask, image)
    return folder
