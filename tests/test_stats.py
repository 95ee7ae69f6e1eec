"""zeroshot.stats against scipy and against cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as scipy_stats

from zeroshot import stats


@pytest.fixture
def dice_like() -> np.ndarray:
    rng = np.random.default_rng(7)
    return np.clip(rng.beta(5, 2, size=40), 0, 1)


@pytest.mark.parametrize("method", ["percentile", "bca"])
@pytest.mark.parametrize("statistic", [np.mean, np.median])
def test_bootstrap_matches_scipy_with_same_seed(dice_like, method, statistic):
    ours = stats.bootstrap_ci(dice_like, statistic=statistic, n_resamples=2000, method=method, seed=3)
    theirs = scipy_stats.bootstrap(
        (dice_like,), statistic, n_resamples=2000, method=method, rng=np.random.default_rng(3)
    ).confidence_interval
    assert ours.low == pytest.approx(theirs.low, rel=1e-12)
    assert ours.high == pytest.approx(theirs.high, rel=1e-12)
    assert ours.estimate == pytest.approx(float(statistic(dice_like)))
    assert (ours.method, ours.n, ours.n_resamples, ours.seed) == (method, 40, 2000, 3)


def test_bootstrap_is_reproducible_and_seed_sensitive(dice_like):
    first = stats.bootstrap_ci(dice_like, n_resamples=500, seed=11)
    again = stats.bootstrap_ci(dice_like, n_resamples=500, seed=11)
    other = stats.bootstrap_ci(dice_like, n_resamples=500, seed=12)
    assert first == again
    assert (first.low, first.high) != (other.low, other.high)


def test_bootstrap_ci_of_mean_covers_normal_theory_interval():
    # Known answer: for a large normal sample the percentile CI of the mean is mean ± 1.96 sd/sqrt(n).
    sample = np.random.default_rng(0).normal(0.7, 0.1, size=400)
    ci = stats.bootstrap_ci(sample, n_resamples=4000, seed=1)
    half_width = 1.959964 * sample.std(ddof=1) / np.sqrt(sample.size)
    assert ci.low == pytest.approx(sample.mean() - half_width, abs=0.002)
    assert ci.high == pytest.approx(sample.mean() + half_width, abs=0.002)
    assert ci.low < ci.estimate < ci.high


def test_bootstrap_degenerate_samples():
    empty = stats.bootstrap_ci([])
    assert empty.n == 0 and np.isnan(empty.estimate) and np.isnan(empty.low) and np.isnan(empty.high)
    for method in stats.BOOTSTRAP_METHODS:
        constant = stats.bootstrap_ci([0.8, 0.8, 0.8], method=method)
        assert constant.low == constant.estimate == constant.high == pytest.approx(0.8)
        single = stats.bootstrap_ci([0.3], method=method)
        assert (single.low, single.high) == (0.3, 0.3)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"values": [0.5, np.nan]}, "NaN or inf"),
        ({"values": [0.5, np.inf]}, "apply the edge-case penalties"),
        ({"values": [[0.5, 0.6]]}, "1-D array"),
        ({"values": [0.5], "confidence": 1.0}, "confidence"),
        ({"values": [0.5], "n_resamples": 0}, "n_resamples"),
        ({"values": [0.5], "method": "basic"}, "method: expected one of percentile, bca"),
    ],
)
def test_bootstrap_refuses_bad_input(kwargs, match):
    values = kwargs.pop("values")
    with pytest.raises(ValueError, match=match):
        stats.bootstrap_ci(values, **kwargs)


def test_summarize_known_values_and_excluded_nan():
    summary = stats.summarize([1.0, 2.0, 3.0, 4.0, np.nan], n_resamples=200)
    assert (summary.n, summary.n_missing) == (4, 1)
    assert summary.mean == 2.5
    assert summary.sd == pytest.approx(np.sqrt(5 / 3))
    assert (summary.q1, summary.median, summary.q3) == (1.75, 2.5, 3.25)
    assert summary.ci.low >= 1.0 and summary.ci.high <= 4.0
    nothing = stats.summarize([np.nan])
    assert nothing.n == 0 and nothing.n_missing == 1 and np.isnan(nothing.mean)
    one = stats.summarize([0.4])
    assert one.mean == 0.4 and np.isnan(one.sd)


def test_wilcoxon_matches_scipy_and_handles_zeros():
    d = np.array([0.12, -0.03, 0.08, 0.0, 0.2, 0.05, -0.01, 0.07, 0.11, 0.09])
    ours = stats.wilcoxon_signed_rank(d)
    theirs = scipy_stats.wilcoxon(d, zero_method="wilcox")
    assert ours.p_value == pytest.approx(theirs.pvalue)
    assert ours.statistic == pytest.approx(theirs.statistic)
    assert (ours.n, ours.n_nonzero) == (10, 9)
    undefined = stats.wilcoxon_signed_rank(np.zeros(6))
    assert np.isnan(undefined.p_value) and undefined.n_nonzero == 0


def test_wilcoxon_known_exact_p_value():
    # Eight positive differences with distinct ranks: exact two-sided p = 2 / 2**8.
    result = stats.wilcoxon_signed_rank(np.arange(1, 9) / 10)
    assert result.p_value == pytest.approx(2 / 256)
    assert result.statistic == 0.0


def test_wilcoxon_refuses_non_finite():
    with pytest.raises(ValueError, match="differences: found NaN or inf"):
        stats.wilcoxon_signed_rank([0.1, np.nan])


def test_paired_difference_matches_scipy_paired_bootstrap():
    rng = np.random.default_rng(5)
    a = np.clip(rng.normal(0.75, 0.1, 30), 0, 1)
    b = np.clip(a - 0.05 + rng.normal(0, 0.05, 30), 0, 1)
    result = stats.paired_difference(a, b, n_resamples=1000, seed=9)
    theirs = scipy_stats.bootstrap(
        (a, b),
        lambda x, y, axis: np.mean(x, axis=axis) - np.mean(y, axis=axis),
        paired=True,
        n_resamples=1000,
        method="percentile",
        rng=np.random.default_rng(9),
    ).confidence_interval
    assert result.mean_difference.low == pytest.approx(theirs.low)
    assert result.mean_difference.high == pytest.approx(theirs.high)
    assert result.mean_difference.estimate == pytest.approx(a.mean() - b.mean())
    assert result.median_difference == pytest.approx(np.median(a - b))
    assert result.wilcoxon.p_value == pytest.approx(scipy_stats.wilcoxon(a - b).pvalue)
    assert result.mean_difference.low > 0  # a is better by construction


def test_paired_difference_refuses_unpaired():
    with pytest.raises(ValueError, match="one value per common case"):
        stats.paired_difference([0.1, 0.2], [0.1])


@pytest.mark.parametrize(
    ("p", "expected"),
    [
        # R: p.adjust(c(0.01, 0.04, 0.03, 0.005), "holm")
        ([0.01, 0.04, 0.03, 0.005], [0.03, 0.06, 0.06, 0.02]),
        # The running maximum lifts the last two from 0.08 and 0.05 to 0.09.
        ([0.01, 0.02, 0.03, 0.04, 0.05], [0.05, 0.08, 0.09, 0.09, 0.09]),
        # Capped at 1.
        ([0.5, 0.6], [1.0, 1.0]),
        ([0.2], [0.2]),
    ],
)
def test_holm_textbook_values(p, expected):
    np.testing.assert_allclose(stats.holm_adjust(p), expected)


def test_holm_leaves_nan_out_of_the_family():
    adjusted = stats.holm_adjust([0.01, np.nan, 0.04])
    np.testing.assert_allclose(adjusted, [0.02, np.nan, 0.04])
    assert np.isnan(stats.holm_adjust([np.nan])).all()
    assert stats.holm_adjust([]).size == 0


def test_holm_refuses_non_probabilities():
    with pytest.raises(ValueError, match=r"p_values: expected probabilities in \[0, 1\]"):
        stats.holm_adjust([0.5, 1.5])


@pytest.mark.parametrize("method", ["percentile", "bca"])
def test_intervals_drawn_together_equal_those_drawn_one_by_one(method):
    rng = np.random.default_rng(5)
    samples = [rng.random(n) for n in (30, 30, 17, 1)] + [np.full(9, 0.4), np.array([])]
    samples += [rng.random(12) for _ in range(300)]  # more columns than one matrix product takes
    together = stats.bootstrap_mean_cis(samples, n_resamples=700, method=method, seed=4)
    for sample, interval in zip(samples, together, strict=True):
        alone = stats.bootstrap_ci(sample, n_resamples=700, method=method, seed=4)
        assert (interval.n, interval.method, interval.seed) == (alone.n, alone.method, alone.seed)
        np.testing.assert_allclose(
            [interval.estimate, interval.low, interval.high], [alone.estimate, alone.low, alone.high], rtol=1e-12
        )
    pairs = [(rng.random(20), rng.random(20)) for _ in range(3)]
    for result, (a, b) in zip(stats.paired_differences(pairs, n_resamples=500), pairs, strict=True):
        assert result == stats.paired_difference(a, b, n_resamples=500) or np.isclose(
            result.mean_difference.low, stats.paired_difference(a, b, n_resamples=500).mean_difference.low, rtol=1e-12
        )
