"""Statistics for sweeps, in numpy only (scipy is not a dependency of this project)."""
import math

import numpy as np


def _tied_pairs(values: np.ndarray) -> float:
    """Number of unordered pairs with equal values: sum over groups of equal values of t(t-1)/2."""
    _, counts = np.unique(values, return_counts=True)
    counts = counts.astype(np.float64)
    return float(np.sum(counts * (counts - 1) / 2))


def finite_pairs(x, y):
    """x and y as float arrays, keeping only the positions where both are finite (a failed run's NaN
    measure or gap takes no part in a rank correlation)."""
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"kendall_tau_b: x and y differ in length ({x.size} vs {y.size})")
    keep = np.isfinite(x) & np.isfinite(y)
    return x[keep], y[keep]


def kendall_tau_b(x, y) -> float:
    """Kendall's tau-b rank correlation of x and y (pairs with a NaN/inf in either are dropped).

        tau_b = (n_c - n_d) / sqrt((n_0 - n_1) (n_0 - n_2))

    with n_0 = n(n-1)/2 pairs, n_c / n_d the concordant / discordant pairs, and n_1 / n_2 the pairs tied
    in x / in y (sum of t(t-1)/2 over groups of ties). This is the tau that scipy.stats.kendalltau
    returns by default. n_c - n_d is the sum over pairs of sign(x_i - x_j) * sign(y_i - y_j), evaluated
    with one n-by-n sign matrix per variable: a sweep has at most a few thousand runs, so O(n^2) memory
    is fine and the formula stays easy to check. NaN when fewer than two pairs remain or when x or y is
    constant (tau is undefined then).
    """
    x, y = finite_pairs(x, y)
    n = x.size
    if n < 2:
        return math.nan
    upper = np.triu_indices(n, k=1)
    sx = np.sign(x[:, None] - x[None, :])[upper]
    sy = np.sign(y[:, None] - y[None, :])[upper]
    s = float(np.sum(sx * sy))  # a pair tied in x or y contributes 0
    n0 = n * (n - 1) / 2
    denominator = (n0 - _tied_pairs(x)) * (n0 - _tied_pairs(y))
    if denominator <= 0:
        return math.nan
    return s / math.sqrt(denominator)


def mean_std(values, ddof: int = 0):
    """(mean, std, count) of the finite values; std is the population std (ddof 0, as `hessgap train
    --runs` reports it) unless ddof says otherwise; NaN where there are too few values."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return math.nan, math.nan, 0
    std = float(np.std(v, ddof=ddof)) if v.size > ddof else math.nan
    return float(np.mean(v)), std, int(v.size)
