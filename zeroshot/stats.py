"""Statistics over cases: bootstrap confidence intervals, paired differences, Wilcoxon tests, Holm correction.

Every function takes plain 1-D arrays of per-case values (one value per case: average repeated seeds within a
case first, so the case is the unit that is resampled) and returns a frozen dataclass. Nothing here knows about
result tables, penalties or models: :mod:`zeroshot.compare` applies the edge-case penalties and pairs the cases.

The bootstrap draws its resamples as :func:`scipy.stats.bootstrap` does (``rng.integers(0, n, (n_resamples, n))``
from ``numpy.random.default_rng(seed)``, quantiles with linear interpolation), so with the same seed the two give
the same interval; the tests hold it to that. Two interval methods are offered: ``"percentile"`` (the default, and
what the tables say they report) and ``"bca"`` (bias-corrected and accelerated, Efron & Tibshirani 1993, 14.3).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import special
from scipy import stats as scipy_stats

from zeroshot.errors import plain

__all__ = [
    "BOOTSTRAP_METHODS",
    "ConfidenceInterval",
    "PairedDifference",
    "Summary",
    "WilcoxonResult",
    "bootstrap_ci",
    "bootstrap_mean_cis",
    "holm_adjust",
    "mean_sd",
    "paired_difference",
    "paired_differences",
    "summarize",
    "summarize_many",
    "wilcoxon_signed_rank",
]

#: Interval methods :func:`bootstrap_ci` understands.
BOOTSTRAP_METHODS = ("percentile", "bca")
#: Resamples used when a caller does not say: the Monte Carlo error of a 95 % percentile bound is then about
#: 0.1 % of the bootstrap standard error's scale, well below the digits the tables print.
DEFAULT_RESAMPLES = 10_000

Statistic = Callable[..., np.ndarray]


@dataclass(frozen=True)
class ConfidenceInterval:
    """A point estimate with its bootstrap confidence interval.

    Attributes
    ----------
    estimate : float
        The statistic on the original sample (NaN for an empty sample).
    low, high : float
        Interval bounds (NaN for an empty sample; both equal ``estimate`` for a sample without spread).
    confidence : float
        Nominal coverage, e.g. 0.95.
    method : str
        ``"percentile"`` or ``"bca"``.
    n : int
        Number of values (cases) resampled.
    n_resamples : int
    seed : int
    """

    estimate: float
    low: float
    high: float
    confidence: float
    method: str
    n: int
    n_resamples: int
    seed: int


@dataclass(frozen=True)
class Summary:
    """Descriptive statistics of one sample of per-case values, with a bootstrap CI of the mean.

    Attributes
    ----------
    n : int
        Number of finite values summarised (NaN values are excluded and counted in ``n_missing``).
    n_missing : int
    mean, sd : float
        Mean and sample standard deviation (``ddof=1``; NaN for fewer than two values).
    median, q1, q3 : float
        Median and quartiles (linear interpolation); ``q3 - q1`` is the IQR.
    ci : ConfidenceInterval
        Bootstrap CI of the mean.
    """

    n: int
    n_missing: int
    mean: float
    sd: float
    median: float
    q1: float
    q3: float
    ci: ConfidenceInterval


@dataclass(frozen=True)
class WilcoxonResult:
    """Two-sided Wilcoxon signed-rank test of paired differences.

    Attributes
    ----------
    statistic : float
        scipy's statistic (the smaller of the rank sums); NaN when the test is undefined.
    p_value : float
        NaN when no difference is non-zero (the test has nothing to rank).
    n : int
        Number of pairs.
    n_nonzero : int
        Pairs with a non-zero difference (zeros are discarded: ``zero_method="wilcox"``).
    """

    statistic: float
    p_value: float
    n: int
    n_nonzero: int


@dataclass(frozen=True)
class PairedDifference:
    """Paired comparison of two methods on the same cases: ``a - b``.

    Attributes
    ----------
    n : int
        Number of pairs.
    mean_a, mean_b : float
    mean_difference : ConfidenceInterval
        Bootstrap CI of ``mean(a - b)`` (pairs are resampled together).
    median_difference : float
        Median of ``a - b``, an effect size robust to a few failed cases.
    wilcoxon : WilcoxonResult
    """

    n: int
    mean_a: float
    mean_b: float
    mean_difference: ConfidenceInterval
    median_difference: float
    wilcoxon: WilcoxonResult


def _as_sample(values: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array of per-case values, found shape {array.shape}")
    return array


def _check_options(confidence: float, n_resamples: int, method: str) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence: expected a fraction in (0, 1), found {plain(confidence)}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples: expected a positive count, found {plain(n_resamples)}")
    if method not in BOOTSTRAP_METHODS:
        raise ValueError(f"method: expected one of {', '.join(BOOTSTRAP_METHODS)}, found {method!r}")


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    *,
    statistic: Statistic = np.mean,
    confidence: float = 0.95,
    n_resamples: int = DEFAULT_RESAMPLES,
    method: str = "percentile",
    seed: int = 0,
) -> ConfidenceInterval:
    """Bootstrap confidence interval of a statistic over cases.

    Parameters
    ----------
    values : (N,) float array
        One value per case. Must be finite: apply penalties (and drop the cases the policy excludes) first.
    statistic : callable
        Vectorised statistic taking an array and ``axis=-1`` (``np.mean``, ``np.median``).
    confidence : float
        Nominal two-sided coverage.
    n_resamples : int
        Number of bootstrap resamples.
    method : {"percentile", "bca"}
        Percentile interval, or bias-corrected and accelerated interval (jackknife acceleration).
    seed : int
        Seed of ``numpy.random.default_rng``; the same seed gives the same interval.

    Returns
    -------
    ConfidenceInterval
        For an empty sample every number is NaN. For a sample without spread (one case, or all values equal)
        the interval collapses to the estimate: there is nothing to resample, and BCa would divide by zero.

    Raises
    ------
    ValueError
        For non-finite values, a non-1-D array, or options out of range.
    """
    sample = _finite_sample(values)
    _check_options(confidence, n_resamples, method)
    degenerate = _degenerate_interval(sample, statistic, confidence, n_resamples, method, seed)
    if degenerate is not None:
        return degenerate
    n = sample.size
    if seed is None:
        replicates = statistic(sample[np.random.default_rng().integers(0, n, (n_resamples, n))], axis=-1)
    elif statistic is np.mean:
        replicates = _resample_counts(n, n_resamples, seed) @ sample / n
    else:
        replicates = statistic(sample[_resample_indices(n, n_resamples, seed)], axis=-1)
    return _interval(sample, statistic, replicates, confidence, n_resamples, method, seed)


def bootstrap_mean_cis(
    samples: Sequence[Sequence[float] | np.ndarray],
    *,
    confidence: float = 0.95,
    n_resamples: int = DEFAULT_RESAMPLES,
    method: str = "percentile",
    seed: int = 0,
) -> list[ConfidenceInterval]:
    """:func:`bootstrap_ci` of the mean of each sample, the samples of one size resampled together.

    Every sample of ``n`` values is resampled with the same draws (those of ``seed``), so their replicate means are
    one matrix product of the draws' counts with the samples side by side: a comparison's hundreds of intervals
    read the draws once per size instead of once per interval. Each interval equals :func:`bootstrap_ci`'s to the
    last bits of summation order.
    """
    _check_options(confidence, n_resamples, method)
    checked = [_finite_sample(values) for values in samples]
    intervals: list[ConfidenceInterval | None] = [
        _degenerate_interval(sample, np.mean, confidence, n_resamples, method, seed) for sample in checked
    ]
    by_size: dict[int, list[int]] = {}
    for index, (sample, interval) in enumerate(zip(checked, intervals, strict=True)):
        if interval is None:
            by_size.setdefault(sample.size, []).append(index)
    for n, members in by_size.items():
        counts = _resample_counts(n, n_resamples, seed)
        for start in range(0, len(members), _COLUMNS_PER_PRODUCT):
            chunk = members[start : start + _COLUMNS_PER_PRODUCT]
            replicates = counts @ np.stack([checked[i] for i in chunk], axis=1) / n
            for column, index in enumerate(chunk):
                intervals[index] = _interval(
                    checked[index], np.mean, replicates[:, column], confidence, n_resamples, method, seed
                )
    return intervals  # type: ignore[return-value]


#: Samples resampled in one matrix product (bounds its (n_resamples, columns) replicate matrix: 20 MB at 10,000).
_COLUMNS_PER_PRODUCT = 256


def _finite_sample(values: Sequence[float] | np.ndarray) -> np.ndarray:
    sample = _as_sample(values, "values")
    if not np.all(np.isfinite(sample)):
        raise ValueError(
            "values: found NaN or inf; apply the edge-case penalties (zeroshot.metrics.apply_penalties) and drop "
            "excluded cases before bootstrapping"
        )
    return sample


def _degenerate_interval(
    sample: np.ndarray, statistic: Statistic, confidence: float, n_resamples: int, method: str, seed: int | None
) -> ConfidenceInterval | None:
    """The interval of an empty sample (NaN) or one without spread (the estimate); ``None`` for any other."""
    if sample.size == 0:
        nan = float("nan")
        return ConfidenceInterval(nan, nan, nan, confidence, method, 0, n_resamples, seed)
    if np.ptp(sample) == 0.0:
        estimate = float(statistic(sample, axis=-1))
        return ConfidenceInterval(estimate, estimate, estimate, confidence, method, sample.size, n_resamples, seed)
    return None


def _interval(
    sample: np.ndarray,
    statistic: Statistic,
    replicates: np.ndarray,
    confidence: float,
    n_resamples: int,
    method: str,
    seed: int | None,
) -> ConfidenceInterval:
    """The percentile or BCa interval from the bootstrap replicates of ``statistic`` over ``sample``."""
    n = sample.size
    estimate = float(statistic(sample, axis=-1))
    alpha = (1.0 - confidence) / 2.0
    if method == "bca":
        levels = _bca_levels(sample, statistic, estimate, replicates, alpha)
        if not np.all(np.isfinite(levels)):
            # Every replicate on one side of the estimate: the bias correction is infinite (scipy warns and
            # returns NaN too). Report an undefined interval rather than a misleading one.
            nan = float("nan")
            return ConfidenceInterval(estimate, nan, nan, confidence, method, n, n_resamples, seed)
    else:
        levels = np.array([alpha, 1.0 - alpha])
    low, high = np.quantile(replicates, levels)
    return ConfidenceInterval(estimate, float(low), float(high), confidence, method, n, n_resamples, seed)


@functools.lru_cache(maxsize=4)
def _resample_indices(n: int, n_resamples: int, seed: int) -> np.ndarray:
    """The resampled positions ``(n_resamples, n)``, drawn as scipy draws them; read-only, shared between calls.

    A comparison bootstraps every metric of a group (and every pair of methods) over the same cases with the same
    seed: the draws are identical, so they are made once.
    """
    indices = np.random.default_rng(seed).integers(0, n, (n_resamples, n))
    indices.setflags(write=False)
    return indices


@functools.lru_cache(maxsize=4)
def _resample_counts(n: int, n_resamples: int, seed: int) -> np.ndarray:
    """How often each case is drawn in each resample of :func:`_resample_indices`, as ``(n_resamples, n)`` floats.

    The mean of a resample is its counts times the sample, over ``n``: the replicates of a mean equal those of the
    gathered draws to the last bits of summation order (1e-16), and a comparison takes hundreds of them.
    """
    # The uncached draws: the counts are what is kept, and caching the (as large) indices too would double the
    # memory of each size and push the draws of medians out of their own cache.
    indices = _resample_indices.__wrapped__(n, n_resamples, seed)
    flat = (indices + n * np.arange(n_resamples)[:, None]).ravel()
    counts = np.bincount(flat, minlength=n * n_resamples).reshape(n_resamples, n).astype(np.float64)
    counts.setflags(write=False)
    return counts


def _bca_levels(
    sample: np.ndarray, statistic: Statistic, estimate: float, replicates: np.ndarray, alpha: float
) -> np.ndarray:
    """Quantile levels of the BCa interval (Efron & Tibshirani 1993, eqs. 14.9-14.15)."""
    # Bias correction: where the estimate sits in the bootstrap distribution (ties count half).
    below = (np.count_nonzero(replicates < estimate) + np.count_nonzero(replicates <= estimate)) / (
        2.0 * replicates.size
    )
    z0 = special.ndtri(below)
    # Acceleration from the jackknife: leave each case out once.
    n = sample.size
    leave_one_out = ~np.eye(n, dtype=bool)
    jackknife = statistic(np.broadcast_to(sample, (n, n))[leave_one_out].reshape(n, n - 1), axis=-1)
    centred = jackknife.mean() - jackknife
    denominator = np.sum(centred**2) ** 1.5
    acceleration = np.sum(centred**3) / (6.0 * denominator) if denominator > 0 else 0.0
    z = special.ndtri(np.array([alpha, 1.0 - alpha]))
    return special.ndtr(z0 + (z0 + z) / (1.0 - acceleration * (z0 + z)))


def summarize(
    values: Sequence[float] | np.ndarray,
    *,
    confidence: float = 0.95,
    n_resamples: int = DEFAULT_RESAMPLES,
    method: str = "percentile",
    seed: int = 0,
) -> Summary:
    """Mean ± SD, median [IQR] and a bootstrap CI of the mean of per-case values.

    NaN values (cases a policy excludes, e.g. both masks empty) are left out and counted in ``n_missing``;
    infinite values are refused by :func:`bootstrap_ci` (penalise them first).
    """
    sample = _as_sample(values, "values")
    kept = sample[~np.isnan(sample)]
    ci = bootstrap_ci(kept, confidence=confidence, n_resamples=n_resamples, method=method, seed=seed)
    return _summary(sample, kept, ci)


def summarize_many(
    samples: Sequence[Sequence[float] | np.ndarray],
    *,
    confidence: float = 0.95,
    n_resamples: int = DEFAULT_RESAMPLES,
    method: str = "percentile",
    seed: int = 0,
) -> list[Summary]:
    """:func:`summarize` of each sample, their intervals drawn together (:func:`bootstrap_mean_cis`)."""
    checked = [_as_sample(values, "values") for values in samples]
    kept = [sample[~np.isnan(sample)] for sample in checked]
    intervals = bootstrap_mean_cis(kept, confidence=confidence, n_resamples=n_resamples, method=method, seed=seed)
    return [_summary(*parts) for parts in zip(checked, kept, intervals, strict=True)]


def _summary(sample: np.ndarray, kept: np.ndarray, ci: ConfidenceInterval) -> Summary:
    nan = float("nan")
    if kept.size == 0:
        return Summary(0, sample.size, nan, nan, nan, nan, nan, ci)
    q1, median, q3 = np.quantile(kept, [0.25, 0.5, 0.75])
    mean, sd = mean_sd(kept)
    return Summary(
        n=int(kept.size),
        n_missing=int(sample.size - kept.size),
        mean=mean,
        sd=sd,
        median=float(median),
        q1=float(q1),
        q3=float(q3),
        ci=ci,
    )


def mean_sd(values: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Mean and sample standard deviation (``ddof=1``) of per-case values, NaN values left out.

    The one definition every table uses (``zeroshot compare``'s summaries, ``zeroshot eval``'s closing table): the
    values are one per case (seeds averaged within a case first, :func:`zeroshot.compare.case_values`). NaN for
    the mean without values, for the SD with fewer than two.
    """
    sample = _as_sample(values, "values")
    kept = sample[~np.isnan(sample)]
    nan = float("nan")
    if kept.size == 0:
        return nan, nan
    return float(np.mean(kept)), float(np.std(kept, ddof=1)) if kept.size > 1 else nan


def wilcoxon_signed_rank(differences: Sequence[float] | np.ndarray) -> WilcoxonResult:
    """Two-sided Wilcoxon signed-rank test that paired differences are centred on zero.

    Zero differences are discarded (``zero_method="wilcox"``); scipy chooses the exact distribution for small
    samples without ties and the normal approximation otherwise (``method="auto"``). With no non-zero
    difference the test is undefined and the p-value is NaN (:func:`holm_adjust` leaves it out of the family).
    """
    d = _as_sample(differences, "differences")
    if not np.all(np.isfinite(d)):
        raise ValueError("differences: found NaN or inf; pair penalised per-case values only")
    n_nonzero = int(np.count_nonzero(d))
    if n_nonzero == 0:
        return WilcoxonResult(float("nan"), float("nan"), int(d.size), 0)
    result = scipy_stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided")
    return WilcoxonResult(float(result.statistic), float(result.pvalue), int(d.size), n_nonzero)


def paired_difference(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    *,
    confidence: float = 0.95,
    n_resamples: int = DEFAULT_RESAMPLES,
    method: str = "percentile",
    seed: int = 0,
) -> PairedDifference:
    """Compare two methods on the same cases: bootstrap CI of the mean of ``a - b`` and a Wilcoxon test.

    Parameters
    ----------
    a, b : (N,) float arrays
        Penalised per-case values of the two methods, aligned case by case.

    Raises
    ------
    ValueError
        When ``a`` and ``b`` differ in length.
    """
    first, second = _pair(a, b)
    differences = first - second
    ci = bootstrap_ci(differences, confidence=confidence, n_resamples=n_resamples, method=method, seed=seed)
    return _paired(first, second, ci)


def paired_differences(
    pairs: Sequence[tuple[Sequence[float] | np.ndarray, Sequence[float] | np.ndarray]],
    *,
    confidence: float = 0.95,
    n_resamples: int = DEFAULT_RESAMPLES,
    method: str = "percentile",
    seed: int = 0,
) -> list[PairedDifference]:
    """:func:`paired_difference` of each pair ``(a, b)``, the intervals drawn together (:func:`bootstrap_mean_cis`)."""
    aligned = [_pair(a, b) for a, b in pairs]
    intervals = bootstrap_mean_cis(
        [first - second for first, second in aligned],
        confidence=confidence,
        n_resamples=n_resamples,
        method=method,
        seed=seed,
    )
    return [_paired(first, second, ci) for (first, second), ci in zip(aligned, intervals, strict=True)]


def _pair(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    first = _as_sample(a, "a")
    second = _as_sample(b, "b")
    if first.shape != second.shape:
        raise ValueError(
            f"a, b: paired samples must have one value per common case each, found {first.size} and {second.size}"
        )
    return first, second


def _paired(first: np.ndarray, second: np.ndarray, ci: ConfidenceInterval) -> PairedDifference:
    differences = first - second
    nan = float("nan")
    return PairedDifference(
        n=int(first.size),
        mean_a=float(np.mean(first)) if first.size else nan,
        mean_b=float(np.mean(second)) if second.size else nan,
        mean_difference=ci,
        median_difference=float(np.median(differences)) if differences.size else nan,
        wilcoxon=wilcoxon_signed_rank(differences),
    )


def holm_adjust(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm-Bonferroni step-down adjusted p-values (Holm 1979), in the input order.

    The ``i``-th smallest of ``m`` p-values is multiplied by ``m - i + 1``, a running maximum keeps the adjusted
    values monotone, and they are capped at 1. Rejecting where the adjusted value is ``<= alpha`` controls the
    family-wise error rate at ``alpha``. NaN p-values (tests that could not be made) stay NaN and do not count
    in ``m``.

    Examples
    --------
    >>> holm_adjust([0.01, 0.04, 0.03, 0.005]).round(3).tolist()
    [0.03, 0.06, 0.06, 0.02]
    """
    p = _as_sample(p_values, "p_values")
    defined = ~np.isnan(p)
    if np.any((p[defined] < 0) | (p[defined] > 1)):
        raise ValueError(f"p_values: expected probabilities in [0, 1], found {p[defined].tolist()}")
    adjusted = np.full_like(p, np.nan)
    finite = p[defined]
    m = finite.size
    if m == 0:
        return adjusted
    order = np.argsort(finite, kind="stable")
    scaled = finite[order] * (m - np.arange(m))
    stepped = np.minimum(np.maximum.accumulate(scaled), 1.0)
    result = np.empty(m)
    result[order] = stepped
    adjusted[defined] = result
    return adjusted
