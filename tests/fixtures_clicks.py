"""Fabricated interactive results with known click curves, so the click tables are tested without the runner.

Rows follow the interactive schema (``round``, ``n_clicks``, ``clicks``) and the metric columns of
:mod:`fixtures_runs`. The value after ``k`` clicks of case ``i`` is

    dice(model, sequence, i, k, seed) = min(1, 0.5 + OFFSETS[i] + 0.06 k - MODEL_COST[model] - SEQUENCE_COST[sequence]
                                               + (0.01 if seed == 0 else -0.01))

so for medsam2 on T1 the seed-averaged curves reach Dice 0.85 after NOC_85 clicks and 0.90 after NOC_90 clicks
(8 = the budget: case 0 never reaches either, case 1 reaches 0.85 with its last click and never 0.90), each at
least 0.005 away from a threshold so rounding cannot move an answer.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from fixtures_runs import D_MAX_MM, SEQUENCE_COST, metrics_from_dice

OFFSETS = (-0.195, -0.095, 0.005, 0.105, 0.205, 0.355)
MODEL_COST = {"medsam2": 0.0, "sam2.1-tiny": 0.10}
CENTERS = ("center-A", "center-B", "center-C", "center-D", "center-A", "center-C")
SEEDS = (0, 1)
ROUNDS = 8
#: Seed-averaged NoC per case index for medsam2 on T1 (one click per round, budget 8).
NOC_85 = (8, 8, 6, 5, 3, 0)
NOC_90 = (8, 8, 7, 5, 4, 1)


def click_dice(model: str, sequence: str, index: int, n_clicks: int, seed: int) -> float:
    """Dice of case ``index`` after ``n_clicks`` clicks (see the module docstring)."""
    value = 0.5 + OFFSETS[index] + 0.06 * n_clicks - MODEL_COST[model] - SEQUENCE_COST[sequence]
    return min(1.0, value + (0.01 if seed == 0 else -0.01))


def expected_case_dice(model: str, sequence: str, index: int, n_clicks: int) -> float:
    """Seed-averaged Dice of one case after ``n_clicks`` clicks."""
    return float(np.mean([click_dice(model, sequence, index, n_clicks, s) for s in SEEDS]))


def clicks_per_round(per_round: str, index: int, round_index: int) -> int:
    """Clicks made in one round: 1, or with ``both`` 2 (1 in every third round of odd cases: one error region)."""
    if round_index == 0:
        return 0
    if per_round == "one":
        return 1
    return 1 if index % 2 and round_index % 3 == 0 else 2


def interactive_row(
    *, sequence: str, index: int, model: str, strategy: str, seed: int, round_index: int, n_clicks: int, dice: float
) -> dict:
    """One result row of an interactive run with every metric column derived from ``dice``."""
    clicks = [{"round": r, "z": 5, "x": 10 + r, "y": 12, "label": 1} for r in range(1, round_index + 1)]
    return {
        "case_id": f"phantom_{index:03d}",
        "sequence": sequence,
        "center": CENTERS[index],
        "split": "test",
        "model": model,
        "strategy": strategy,
        "seed": seed,
        "round": round_index,
        "n_clicks": n_clicks,
        "clicks": json.dumps(clicks[:n_clicks]),
        **metrics_from_dice(dice),
        "vol_gt_ml": 60.0,
        "vol_pred_ml": 60.0,
        "rel_vol_err": 0.0,
        "d_max_mm": D_MAX_MM,
        "empty_gt": False,
        "empty_pred": False,
        "failed": False,
        "error": "",
        "oracle_gt_prompt": True,
    }


def interactive_results(
    *,
    sequences: Sequence[str] = ("T1", "T2", "OOP"),
    models: Sequence[str] = ("medsam2", "sam2.1-tiny"),
    strategies: Sequence[str] = ("box-mid",),
    per_round: dict[str, str] | None = None,
    rounds: int = ROUNDS,
) -> pd.DataFrame:
    """Every row of a fabricated interactive run (``per_round`` maps a strategy to ``one`` or ``both``)."""
    per_round = per_round or {}
    rows = []
    for sequence, index, model, strategy, seed in itertools.product(
        sequences, range(len(OFFSETS)), models, strategies, SEEDS
    ):
        n_clicks = 0
        for round_index in range(rounds + 1):
            n_clicks += clicks_per_round(per_round.get(strategy, "one"), index, round_index)
            dice = click_dice(model, sequence, index, n_clicks, seed)
            identity = {"sequence": sequence, "index": index, "model": model, "strategy": strategy, "seed": seed}
            rows.append(interactive_row(**identity, round_index=round_index, n_clicks=n_clicks, dice=dice))
    return pd.DataFrame(rows)


def write_run(root: Path, results: pd.DataFrame) -> Path:
    """A run directory holding ``results`` (results.parquet) and a minimal run.json."""
    root.mkdir(parents=True, exist_ok=True)
    results.to_parquet(root / "results.parquet", index=False)
    manifest = {"format": 1, "identity": {"seeds": list(SEEDS)}, "invocations": []}
    (root / "run.json").write_text(json.dumps(manifest), encoding="utf-8")
    return root
