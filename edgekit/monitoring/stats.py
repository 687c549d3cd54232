"""Two-sample drift statistics: PSI, Kolmogorov-Smirnov, Wasserstein-1, chi-square, two proportions.

scipy is used where it is installed (the full toolkit has it); the light ``[runtime]`` install has
only numpy, so each p-value also has a small closed-form fallback here, tested against scipy
(tests/test_monitor.py): the Kolmogorov distribution with Stephens' correction, the regularized upper
incomplete gamma function for chi-square, and the normal tail via ``math.erfc``.

"""

from __future__ import annotations

import importlib.util
import math

import numpy as np

PSI_BINS = 10
PSI_FLOOR = 1e-4  # share given to an empty bin so PSI stays finite


def _scipy_stats():
    return __import__("scipy.stats", fromlist=["stats"]) if importlib.util.find_spec("scipy") else None


def psi(reference: np.ndarray, current: np.ndarray, *, bins: int = PSI_BINS) -> float:
    """Population stability index over the reference's quantile bins: sum (c - r) * ln(c / r).

    Bins are reference deciles (equal reference mass); repeated values (e.g. image widths) merge bins.
    """
    reference, current = _finite(reference), _finite(current)
    if not len(reference) or not len(current):
        return float("nan")
    inner = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
    ref_share = np.bincount(np.searchsorted(inner, reference, side="right"), minlength=len(inner) + 1) / len(reference)
    cur_share = np.bincount(np.searchsorted(inner, current, side="right"), minlength=len(inner) + 1) / len(current)
    ref_share, cur_share = np.maximum(ref_share, PSI_FLOOR), np.maximum(cur_share, PSI_FLOOR)
    return float(np.sum((cur_share - ref_share) * np.log(cur_share / ref_share)))


def ks_2samp(reference: np.ndarray, current: np.ndarray, *, use_scipy: bool = True) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov statistic and two-sided p-value (asymptotic without scipy)."""
    reference, current = _finite(reference), _finite(current)
    if not len(reference) or not len(current):
        return float("nan"), float("nan")
    stats = _scipy_stats() if use_scipy else None
    if stats is not None:
        result = stats.ks_2samp(reference, current)
        return float(result.statistic), float(result.pvalue)
    both = np.concatenate([reference, current])
    cdf_ref = np.searchsorted(np.sort(reference), both, side="right") / len(reference)
    cdf_cur = np.searchsorted(np.sort(current), both, side="right") / len(current)
    statistic = float(np.max(np.abs(cdf_ref - cdf_cur)))
    root = math.sqrt(len(reference) * len(current) / (len(reference) + len(current)))
    # Stephens' small-sample correction of the limit distribution (Numerical Recipes, probks): within
    # ~7% of scipy's exact-n asymptotic p-value over the range that matters (measured in the tests)
    return statistic, kolmogorov_sf(statistic * (root + 0.12 + 0.11 / root))


def kolmogorov_sf(x: float) -> float:
    """P(K > x) for the Kolmogorov distribution: 2 sum (-1)^(k-1) exp(-2 k^2 x^2) (scipy.special.kolmogorov)."""
    if x <= 0:
        return 1.0
    if x < 0.3:  # P(K <= 0.3) ~ 1e-5: the value is 1 for any drift decision
        return 1.0
    total = sum((-1) ** (k - 1) * math.exp(-2.0 * k * k * x * x) for k in range(1, 101))
    return float(min(1.0, max(0.0, 2.0 * total)))


def wasserstein(reference: np.ndarray, current: np.ndarray) -> float:
    """Earth mover's distance between the two empirical distributions (same units as the feature)."""
    reference, current = np.sort(_finite(reference)), np.sort(_finite(current))
    if not len(reference) or not len(current):
        return float("nan")
    both = np.sort(np.concatenate([reference, current]))
    widths = np.diff(both)
    cdf_ref = np.searchsorted(reference, both[:-1], side="right") / len(reference)
    cdf_cur = np.searchsorted(current, both[:-1], side="right") / len(current)
    return float(np.sum(np.abs(cdf_ref - cdf_cur) * widths))


def chi2_sf(statistic: float, dof: int, *, use_scipy: bool = True) -> float:
    """Upper tail of the chi-square distribution: Q(dof/2, statistic/2) (scipy.stats.chi2.sf)."""
    if dof <= 0:
        return float("nan")
    stats = _scipy_stats() if use_scipy else None
    if stats is not None:
        return float(stats.chi2.sf(statistic, dof))
    return _gamma_upper_regularized(dof / 2.0, statistic / 2.0)


def _gamma_upper_regularized(a: float, x: float) -> float:
    """Q(a, x): the series below a+1, Lentz's continued fraction above (Numerical Recipes, gammq)."""
    if x <= 0:
        return 1.0
    log_prefix = -x + a * math.log(x) - math.lgamma(a)
    if x < a + 1.0:
        term = total = 1.0 / a
        n = a
        for _ in range(1000):
            n += 1.0
            term *= x / n
            total += term
            if abs(term) < abs(total) * 1e-15:
                break
        return float(max(0.0, 1.0 - total * math.exp(log_prefix)))
    tiny = 1e-300
    b = x + 1.0 - a
    c, d = 1.0 / tiny, 1.0 / b
    h = d
    for i in range(1, 1000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        step = d * c
        h *= step
        if abs(step - 1.0) < 1e-15:
            break
    return float(math.exp(log_prefix) * h)


def chi2_contingency(reference_counts: np.ndarray, current_counts: np.ndarray, *,
                     use_scipy: bool = True) -> tuple[float, float, int]:
    """Chi-square test of homogeneity on a 2 x K table of counts (classes empty in both are dropped).

    Both rows are samples (the reference's predicted classes too), so neither is taken as exact.
    """
    table = np.vstack([reference_counts, current_counts]).astype(np.float64)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or np.any(table.sum(axis=1) == 0):
        return float("nan"), float("nan"), 0
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    statistic = float(np.sum((table - expected) ** 2 / expected))
    dof = table.shape[1] - 1
    return statistic, chi2_sf(statistic, dof, use_scipy=use_scipy), dof


def two_proportion_pvalue(hits_a: int, n_a: int, hits_b: int, n_b: int) -> float:
    """Two-sided pooled z-test that two rates are equal (normal tail via math.erfc; no scipy needed)."""
    if n_a == 0 or n_b == 0:
        return float("nan")
    pooled = (hits_a + hits_b) / (n_a + n_b)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    if spread == 0:
        return 1.0
    z = abs(hits_a / n_a - hits_b / n_b) / spread
    return math.erfc(z / math.sqrt(2.0))


def _finite(values) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64).ravel()
    return values[np.isfinite(values)]
