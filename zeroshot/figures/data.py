"""What the figures draw from: penalised rows, per-case values, the strategy each figure shows, ablation settings."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from zeroshot import stats
from zeroshot.compare.runs import find_key
from zeroshot.compare.tables import KIND_SUPERVISED, sequence_order

__all__ = [
    "FigureSkipped",
    "StrategySettings",
    "main_strategy",
    "mean_ci",
    "sequences_of",
    "strategy_settings",
]

_JITTER = re.compile(r"(?:^|[-_])j(?:itter)?(\d+(?:\.\d+)?)(?=$|[-_])")
_SLICES = re.compile(r"(?:^|[-_])k(\d+)(?=$|[-_])|(?:^|[-_])(\d+)slices?(?=$|[-_])")


class FigureSkipped(Exception):
    """A figure the tables cannot support; the message says why (printed, never fatal)."""


@dataclass(frozen=True)
class StrategySettings:
    """The ablation axes of one strategy (NaN where they do not apply or are unknown).

    Attributes
    ----------
    name : str
    prompt_type : str
        ``box``, ``points``, ``box+points``, ``mask`` or ``unknown``.
    jitter_percent : float
        Box side jitter in % of the box size (NaN without a box).
    key_slices : float
        Number of prompted slices (NaN for "every slice" or unknown).
    """

    name: str
    prompt_type: str
    jitter_percent: float
    key_slices: float


def sequences_of(frame: pd.DataFrame) -> list[str]:
    """The sequences present, in table order (T1, T2, OOP, others)."""
    unique = pd.Series(frame["sequence"].unique())
    return unique.iloc[np.argsort(sequence_order(unique).to_numpy(), kind="stable")].tolist()


def main_strategy(rows: pd.DataFrame, preferred: Sequence[str] = ("box-mid",)) -> str:
    """The strategy single-strategy figures show: a preferred name if present, else the one most models share."""
    zero_shot = rows.loc[rows["kind"] != KIND_SUPERVISED]
    if zero_shot.empty:
        raise FigureSkipped("no zero-shot rows")
    for name in preferred:
        if (zero_shot["strategy"] == name).any():
            return name
    coverage = zero_shot.groupby("strategy")["model"].nunique()
    return str(coverage.sort_values(ascending=False, kind="stable").index[0])


def mean_ci(values: np.ndarray, *, n_resamples: int, seed: int) -> tuple[float, float, float]:
    """Mean and percentile bootstrap CI of finite values (NaN triple when there are none)."""
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    ci = stats.bootstrap_ci(finite, n_resamples=n_resamples, seed=seed)
    return ci.estimate, ci.low, ci.high


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _from_settings(name: str, settings: Mapping[str, Any]) -> StrategySettings:
    prompt = settings.get("prompt") if isinstance(settings.get("prompt"), Mapping) else {}
    prompt_type = str(prompt.get("type", settings.get("prompt_type", "unknown")))
    box = prompt.get("box") if isinstance(prompt.get("box"), Mapping) else {}
    jitter = _number(box.get("jitter_percent", 0.0)) if "box" in prompt_type else float("nan")
    key_slices = settings.get("key_slices") if isinstance(settings.get("key_slices"), Mapping) else {}
    rule = key_slices.get("rule")
    if rule in ("middle", "largest", "centroid"):
        count = 1.0
    elif rule == "spread":
        count = _number(key_slices.get("count", 1))
    elif rule == "index":
        count = float(len(key_slices.get("index", ())))
    else:
        count = float("nan")
    return StrategySettings(name, prompt_type, jitter, count)


def _from_name(name: str) -> StrategySettings:
    lowered = name.lower()
    prompt_type = (
        "points" if "point" in lowered else "mask" if "mask" in lowered else "box" if "box" in lowered else "unknown"
    )
    jitter = _JITTER.search(lowered)
    slices = _SLICES.search(lowered)
    jitter_percent = float(jitter.group(1)) if jitter else (0.0 if prompt_type == "box" else float("nan"))
    count = float(slices.group(1) or slices.group(2)) if slices else float("nan")
    return StrategySettings(name, prompt_type, jitter_percent, count)


def strategy_settings(infos: Sequence[Mapping[str, Any]], names: Sequence[str]) -> dict[str, StrategySettings]:
    """Ablation axes of each strategy: from the settings runs record (``strategies`` in run.json), else the name.

    Names like ``abl-box-j10-k3`` or ``box-mid-jitter10`` are parsed as a fallback (``j``/``jitter`` followed by a
    percentage, ``k`` followed by the slice count); anything unparsable is NaN, and the ablation figure leaves it
    out rather than guessing.
    """
    recorded: dict[str, Mapping[str, Any]] = {}
    for info in infos:
        for section in find_key(info, "strategies"):
            if isinstance(section, Mapping):
                recorded.update({str(k): v for k, v in section.items() if isinstance(v, Mapping)})
            elif isinstance(section, list):
                recorded.update({str(s["name"]): s for s in section if isinstance(s, Mapping) and "name" in s})
    return {name: _from_settings(name, recorded[name]) if name in recorded else _from_name(name) for name in names}
