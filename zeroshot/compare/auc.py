"""Curve summaries of the CVPR 2025 interactive challenge: DSC_AUC, NSD_AUC, final DSC and NSD, the time cap.

``CVPR25_iter_eval.py`` (JunMa11/CVPR-MedSegFMCompetition 748e862, lines 495-541) scores each case over its six
steps (the box, then 5 clicks) and defines, per case:

- **NSD** at 2 mm only where DSC > 0.2, else 0 (line 497: "NSD is also low when dice is too low");
- **DSC_AUC**, **NSD_AUC**: ``scipy.integrate.cumulative_trapezoid(values[-5:], np.arange(5))[-1]``, the trapezoid
  area with unit spacing over the five click steps only, not the box step (line 530: "the bbox prompt is
  optional"): ``sum((v[i] + v[i+1]) / 2 for i in 1..4)``, between 0 and 4, not normalised;
- **DSC_Final**, **NSD_Final**: the values after the last click;
- a **time cap** of 90 s per class for the whole case (README "Upper Time Bound"): a case over it scores 0.

Here a curve's steps are its rounds: the AUCs run over rounds 1..R of a curve with R rounds (R = 5 is the
challenge's), so ``dsc_auc`` lies in [0, R - 1]. ``dsc_auc_norm = dsc_auc / (R - 1)`` is the mean height of the
trapezoid curve between the first and the last click, in [0, 1], comparable across budgets (the challenge's
DSC_AUC / 4 at R = 5); both are undefined (NaN) for R < 2. Values are computed per curve (case x seed) from the
penalised rows (a failed round scores 0), then averaged over seeds within a case. The time cap, when asked for,
compares each curve's ``seconds_prepare`` (once) plus every round's ``seconds_segment`` with the cap: over it,
every value of that curve is 0. It is an option of ``zeroshot compare`` rather than of ``eval`` because the run
records the times, so the same run can be scored with and without the cap, on the hardware that made it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from zeroshot.compare.clicks import _CASE, _CURVE, GROUP, _curve_rows, _sorted, _statistics
from zeroshot.compare.runs import RunError
from zeroshot.compare.tables import BootstrapOptions

__all__ = ["AUC_MEASURES", "NSD_MIN_DICE", "auc_table", "case_aucs", "curve_auc"]

#: The challenge computes NSD only where DSC exceeds this; below it NSD counts as 0.
NSD_MIN_DICE = 0.2
#: The per-case values, in table order.
AUC_MEASURES = ("dsc_auc", "nsd_auc", "dsc_auc_norm", "nsd_auc_norm", "dsc_final", "nsd_final")


def curve_auc(values: Sequence[float]) -> float:
    """Trapezoid area with unit spacing under ``values`` (the click steps 1..R); NaN for fewer than two.

    Examples
    --------
    >>> curve_auc([0.5, 0.7, 0.8, 0.8, 0.9])  # (0.5 + 0.7) / 2 + (0.7 + 0.8) / 2 + 0.8 + (0.8 + 0.9) / 2
    3.0
    """
    array = np.asarray(values, dtype=float)
    if array.size < 2:
        return math.nan
    return float(np.sum((array[1:] + array[:-1]) / 2.0))


def case_aucs(rows: pd.DataFrame, *, nsd_column: str = "nsd_2mm", time_cap_s: float | None = None) -> pd.DataFrame:
    """Per case: the CVPR25 curve values (see the module docstring), seeds averaged.

    Parameters
    ----------
    rows : DataFrame
        Output of :func:`~zeroshot.compare.tables.prepare_rows` with the interactive columns.
    nsd_column : str
        The NSD column (the challenge's tolerance is 2 mm).
    time_cap_s : float or None
        Per-case time cap in seconds (``None``: no cap).

    Returns
    -------
    DataFrame
        ``sequence, model, strategy, case_id, center, rounds, n_seeds, complete, over_time_cap`` (seeds over the
        cap) and the :data:`AUC_MEASURES`; values of incomplete curves (a run still under way) are NaN.

    Raises
    ------
    RunError
        As :func:`~zeroshot.compare.clicks.click_curves`, or when ``nsd_column`` is missing.
    """
    if nsd_column not in rows.columns:
        raise RunError(f"the results have no {nsd_column} column; the NSD curve values need it")
    dice = _curve_rows(rows, "dice")
    nsd = _curve_rows(rows, nsd_column)
    table = dice.assign(nsd=np.where(dice["dice"] > NSD_MIN_DICE, nsd[nsd_column].to_numpy(dtype=float), 0.0))
    table["_last_round"] = table.groupby(list(GROUP), sort=False, dropna=False)["round"].transform("max")
    seconds = table.get("seconds_segment", pd.Series(0.0, index=table.index)).fillna(0.0)
    prepare = table.get("seconds_prepare", pd.Series(0.0, index=table.index)).fillna(0.0)
    records = []
    for _, curve in table.groupby("_curve", sort=True):
        last = int(curve["_last_round"].iloc[0])
        complete = int(curve["round"].max()) == last or bool(curve["failed"].iloc[-1])
        over = time_cap_s is not None and float(prepare[curve.index].max() + seconds[curve.index].sum()) > time_cap_s
        steps = curve.set_index("round").reindex(range(1, last + 1))
        dsc = steps["dice"].fillna(0.0).to_numpy() if complete else np.full(last, math.nan)
        nsd_values = steps["nsd"].fillna(0.0).to_numpy() if complete else np.full(last, math.nan)
        if over:
            dsc, nsd_values = np.zeros_like(dsc), np.zeros_like(nsd_values)
        dsc_auc, nsd_auc = curve_auc(dsc), curve_auc(nsd_values)
        records.append(
            {
                **{c: curve[c].iloc[0] for c in _CURVE},
                "rounds": last,
                "complete": complete,
                "over_time_cap": over,
                "dsc_auc": dsc_auc,
                "nsd_auc": nsd_auc,
                "dsc_auc_norm": dsc_auc / (last - 1) if last >= 2 else math.nan,
                "nsd_auc_norm": nsd_auc / (last - 1) if last >= 2 else math.nan,
                "dsc_final": dsc[-1] if last >= 1 else math.nan,
                "nsd_final": nsd_values[-1] if last >= 1 else math.nan,
            }
        )
    per_curve = pd.DataFrame.from_records(records)
    by_case = per_curve.groupby(list(_CASE), sort=False, dropna=False)
    cases = by_case[list(AUC_MEASURES)].mean()
    cases.insert(0, "rounds", by_case["rounds"].first())
    cases.insert(1, "n_seeds", by_case.size())
    cases.insert(2, "complete", by_case["complete"].all())
    cases.insert(3, "over_time_cap", by_case["over_time_cap"].sum().astype(int))
    cases = cases.reset_index()
    cases.loc[~cases["complete"], list(AUC_MEASURES)] = math.nan
    return _sorted(cases, ["case_id"])


def auc_table(cases: pd.DataFrame, *, options: BootstrapOptions | None = None) -> pd.DataFrame:
    """Per sequence x model x strategy and measure: mean over cases with a bootstrap CI.

    Parameters
    ----------
    cases : DataFrame
        Output of :func:`case_aucs`.
    options : BootstrapOptions, optional

    Returns
    -------
    DataFrame
        One row per group x measure (:data:`AUC_MEASURES`): ``sequence, model, strategy, measure, rounds,
        n_cases, n_incomplete, n_over_time_cap, mean, sd, median, q1, q3, ci_low, ci_high`` and the CI settings.
    """
    options = options or BootstrapOptions()
    records = []
    for key, group in cases.groupby(list(GROUP), sort=False, dropna=False):
        for measure in AUC_MEASURES:
            records.append(
                {
                    **dict(zip(GROUP, key, strict=True)),
                    "measure": measure,
                    "rounds": int(group["rounds"].iloc[0]),
                    **_statistics(group.loc[group["complete"], measure].to_numpy(dtype=float), options),
                    "n_incomplete": int((~group["complete"]).sum()),
                    "n_over_time_cap": int((group["over_time_cap"] > 0).sum()),
                    **options.columns(),
                }
            )
    columns = [
        *GROUP, "measure", "rounds", "n_cases", "n_incomplete", "n_over_time_cap", "mean", "sd", "median", "q1",
        "q3", "ci_low", "ci_high", "ci_method", "confidence", "n_resamples", "bootstrap_seed",
    ]  # fmt: skip
    table = pd.DataFrame.from_records(records, columns=columns)
    order = {m: i for i, m in enumerate(AUC_MEASURES)}
    table = table.assign(_measure=table["measure"].map(order))
    return _sorted(table, ["_measure"]).drop(columns="_measure")
