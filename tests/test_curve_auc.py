"""The CVPR 2025 challenge's curve values (DSC_AUC, NSD_AUC, finals, time cap) on fabricated curves computed by hand,
and a comparison of two protocols' runs side by side."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from fixtures_clicks import interactive_row, write_run

from zeroshot.compare import BootstrapOptions, case_aucs, compare_runs, prepare_rows
from zeroshot.compare.auc import curve_auc
from zeroshot.errors import ConfigError

FAST = BootstrapOptions(n_resamples=200, seed=0)
#: Case 0: Dice after the box and each of 5 clicks; NSD the same + 0.05 (fixture rule), zeroed where Dice <= 0.2.
DICE_0 = (0.10, 0.15, 0.30, 0.60, 0.70, 0.90)
DICE_1 = (0.50, 0.55, 0.65, 0.70, 0.80, 0.85)


def curve_rows(dices, *, index: int, seed: int = 0, protocol: str = "cvpr25", seconds: float = 1.0) -> list[dict]:
    rows = []
    for round_index, dice in enumerate(dices):
        row = interactive_row(
            sequence="T2", index=index, model="medsam2", strategy="cvpr25-box", seed=seed,
            round_index=round_index, n_clicks=round_index, dice=dice,
        )  # fmt: skip
        row.update(click_protocol=protocol, seconds_prepare=2.0, seconds_segment=seconds)
        rows.append(row)
    return rows


def test_curve_auc_is_the_unit_trapezoid():
    assert curve_auc([0.5, 0.7, 0.8, 0.8, 0.9]) == pytest.approx(0.6 + 0.75 + 0.8 + 0.85)
    assert math.isnan(curve_auc([0.4]))


def test_auc_over_the_five_click_rounds_by_hand_with_the_nsd_dice_rule_and_the_time_cap():
    rows = prepare_rows(pd.DataFrame(curve_rows(DICE_0, index=0) + curve_rows(DICE_1, index=1)))
    cases = case_aucs(rows).set_index("case_id")
    first = cases.loc["phantom_000"]
    # Rounds 1..5 (not the box): Dice 0.15 0.30 0.60 0.70 0.90
    assert first["dsc_auc"] == pytest.approx((0.15 + 0.30) / 2 + (0.30 + 0.60) / 2 + (0.60 + 0.70) / 2 + 0.80)
    # NSD = Dice + 0.05 where Dice > 0.2, else 0: 0 0.35 0.65 0.75 0.95
    assert first["nsd_auc"] == pytest.approx(0.35 / 2 + (0.35 + 0.65) / 2 + (0.65 + 0.75) / 2 + (0.75 + 0.95) / 2)
    assert first["dsc_auc_norm"] == pytest.approx(first["dsc_auc"] / 4)
    assert (first["dsc_final"], first["nsd_final"]) == pytest.approx((0.90, 0.95))
    assert first["rounds"] == 5 and not first["over_time_cap"]
    second = cases.loc["phantom_001"]
    assert second["dsc_auc"] == pytest.approx((0.55 + 0.65) / 2 + (0.65 + 0.70) / 2 + (0.70 + 0.80) / 2 + 0.825)
    # 2 s prepare + 6 x 1 s segment = 8 s: over a 7 s cap every value is 0, under a 9 s cap nothing changes.
    capped = case_aucs(rows, time_cap_s=7.0)
    assert (capped[["dsc_auc", "nsd_auc", "dsc_final", "nsd_final"]] == 0).all().all()
    assert capped["over_time_cap"].tolist() == [1, 1]
    pd.testing.assert_frame_equal(case_aucs(rows, time_cap_s=9.0), cases.reset_index()[case_aucs(rows).columns])


def test_seeds_average_within_a_case_and_incomplete_curves_are_left_out():
    rows = curve_rows(DICE_0, index=0, seed=0) + curve_rows(DICE_1, index=0, seed=1) + curve_rows(DICE_1[:3], index=1)
    cases = case_aucs(prepare_rows(pd.DataFrame(rows))).set_index("case_id")
    assert cases.loc["phantom_000", "n_seeds"] == 2
    assert cases.loc["phantom_000", "dsc_final"] == pytest.approx((0.90 + 0.85) / 2)
    assert not cases.loc["phantom_001", "complete"] and math.isnan(cases.loc["phantom_001", "dsc_auc"])


def test_compare_writes_the_auc_table_and_puts_two_protocols_side_by_side(tmp_path):
    cvpr = write_run(tmp_path / "cvpr", pd.DataFrame(curve_rows(DICE_0, index=0) + curve_rows(DICE_1, index=1)))
    micro_rows = curve_rows(DICE_1, index=0, protocol="microsam") + curve_rows(DICE_0, index=1, protocol="microsam")
    for row in micro_rows:  # the same initial prompts give the same round 0 under any protocol
        if row["round"] == 0:
            row.update(interactive_row(
                sequence="T2", index=int(row["case_id"][-1]), model="medsam2", strategy="cvpr25-box", seed=0,
                round_index=0, n_clicks=0, dice=(DICE_0, DICE_1)[int(row["case_id"][-1])][0],
            ), click_protocol="microsam", seconds_prepare=2.0, seconds_segment=1.0)  # fmt: skip
    micro = write_run(tmp_path / "micro", pd.DataFrame(micro_rows))
    output = compare_runs([cvpr, micro], tmp_path / "out", options=FAST, time_cap_s=100.0)
    assert (tmp_path / "out" / "auc.md").is_file() and (tmp_path / "out" / "per_case_auc.csv").is_file()
    auc = output.auc.set_index(["strategy", "measure"])
    assert set(output.auc["strategy"]) == {"cvpr25-box · cvpr25", "cvpr25-box · microsam"}
    case_1 = (0.55 + 0.65) / 2 + (0.65 + 0.70) / 2 + (0.70 + 0.80) / 2 + (0.80 + 0.85) / 2
    expected = ((0.15 + 0.30) / 2 + (0.30 + 0.60) / 2 + (0.60 + 0.70) / 2 + 0.80 + case_1) / 2
    assert auc.loc[("cvpr25-box · cvpr25", "dsc_auc"), "mean"] == pytest.approx(expected)
    assert auc.loc[("cvpr25-box · microsam", "dsc_auc"), "mean"] == pytest.approx(expected)
    assert output.summary["n_cases"].max() == 2, "round 0, shared by both protocols, counts once per case"
    text = (tmp_path / "out" / "auc.md").read_text()
    assert "DSC_AUC" in text and "NSD_AUC / (R−1)" in text
    with pytest.raises(ConfigError, match=r"time_cap_s \(--time-cap-s\): expected seconds > 0"):
        compare_runs([cvpr], tmp_path / "bad", options=FAST, time_cap_s=0)
