"""Confidence intervals, sample sizes and paired tests for audit numbers.

Pure functions of counts and per-image outcomes, shared by the engine (gates, summary) and
``medaudit compare``; nothing here reads files or models."""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np

Z95 = 1.959963984540054  # two-sided 95%


def proportion_ci(k: int, n: int, z: float = Z95) -> tuple[float | None, float | None]:
    """Wilson score interval for k successes in n trials (95% by default).

    Wilson rather than the normal approximation: it stays inside [0, 1] and behaves at
    accuracies of 0 and 1, which robust accuracy often reaches."""
    if n <= 0:
        return (None, None)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def wilson_n_to_exclude(p: float, threshold: float, z: float = Z95) -> int | None:
    """Smallest n at which the Wilson interval around an observed proportion ``p`` excludes
    ``threshold`` (None when p equals it: no sample size decides).

    The Wilson interval is the set of t the score test does not reject,
    ``(p - t)^2 <= z^2 t (1 - t) / n``, so t is excluded exactly when
    ``n > z^2 t (1 - t) / (p - t)^2``."""
    gap = (p - threshold) ** 2
    if gap <= 0:
        return None
    return max(1, math.floor(z * z * threshold * (1 - threshold) / gap) + 1)


def wilson_half_width(p: float, n: int, z: float = Z95) -> float:
    """Half the width of the Wilson interval at proportion ``p`` with ``n`` trials."""
    return z * math.sqrt(p * (1 - p) * n + z * z / 4) / (n + z * z)


def wilson_n_for_half_width(p: float, half_width: float = 0.05, z: float = Z95) -> int:
    """Smallest n whose Wilson interval at proportion ``p`` is at most ``half_width`` either
    side (half its total width). Solves ``z^2 (p(1-p) n + z^2/4) = w^2 (n + z^2)^2`` for n,
    then steps to the exact integer the interval itself confirms."""
    w2, z2, v = half_width * half_width, z * z, p * (1 - p)
    # w^2 n^2 + (2 w^2 z^2 - z^2 v) n + (w^2 z^4 - z^4 / 4) = 0, larger root
    b, c = 2 * w2 * z2 - z2 * v, w2 * z2 * z2 - z2 * z2 / 4
    n = max(1, math.ceil((-b + math.sqrt(b * b - 4 * w2 * c)) / (2 * w2)))
    while n > 1 and wilson_half_width(p, n - 1, z) <= half_width:
        n -= 1
    while wilson_half_width(p, n, z) > half_width:
        n += 1
    return n


def mcnemar_exact(a_correct: Sequence[bool], b_correct: Sequence[bool]) -> dict[str, Any]:
    """McNemar's exact test on paired per-image outcomes: under "no difference" each
    discordant image is equally likely to favour A or B, so the count favouring B is
    Binomial(discordant, 1/2); two-sided p = 2 P(X <= min), capped at 1."""
    a = np.asarray(a_correct, dtype=bool)
    b = np.asarray(b_correct, dtype=bool)
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    m = only_a + only_b
    if m == 0:
        p = 1.0
    else:
        tail = sum(math.comb(m, i) for i in range(min(only_a, only_b) + 1))
        p = min(1.0, 2 * tail / 2 ** m)
    return {"test": "McNemar exact", "p_value": p, "only_a": only_a, "only_b": only_b, "n": int(len(a))}


def paired_difference_ci(a_correct: Sequence[bool], b_correct: Sequence[bool],
                         z: float = Z95) -> list[float]:
    """95% interval for p_B - p_A of paired proportions: Newcombe's hybrid score interval
    (method 10, Stat Med 1998;17:2635), built from each proportion's Wilson interval and
    the correlation of the paired outcomes."""
    a = np.asarray(a_correct, dtype=bool)
    b = np.asarray(b_correct, dtype=bool)
    n = len(a)
    both, only_a, only_b = int((a & b).sum()), int((a & ~b).sum()), int((~a & b).sum())
    neither = n - both - only_a - only_b
    p1, p2 = (both + only_a) / n, (both + only_b) / n
    l1, u1 = proportion_ci(both + only_a, n, z)
    l2, u2 = proportion_ci(both + only_b, n, z)
    denom = (both + only_a) * (only_b + neither) * (both + only_b) * (only_a + neither)
    phi = (both * neither - only_a * only_b) / math.sqrt(denom) if denom > 0 else 0.0
    delta = p2 - p1
    low = delta - math.sqrt(max(0.0, (p2 - l2) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1) + (u1 - p1) ** 2))
    high = delta + math.sqrt(max(0.0, (u2 - p2) ** 2 - 2 * phi * (u2 - p2) * (p1 - l1) + (p1 - l1) ** 2))
    return [max(-1.0, low), min(1.0, high)]


def unpaired_proportion_test(k_a: int, n_a: int, k_b: int, n_b: int, z: float = Z95) -> dict[str, Any]:
    """Two independent proportions: the pooled score z-test (two-sided p) and Newcombe's
    hybrid score interval for p_B - p_A (method 10 of Stat Med 1998;17:873)."""
    p1, p2 = k_a / n_a, k_b / n_b
    pooled = (k_a + k_b) / (n_a + n_b)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    p = 1.0 if se == 0 else math.erfc(abs(p2 - p1) / se / math.sqrt(2))
    l1, u1 = proportion_ci(k_a, n_a, z)
    l2, u2 = proportion_ci(k_b, n_b, z)
    delta = p2 - p1
    ci = [delta - math.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2), delta + math.sqrt((u2 - p2) ** 2 + (p1 - l1) ** 2)]
    return {"test": "two-proportion z-test (unpaired)", "p_value": p, "ci95": ci, "n": [n_a, n_b]}


def bootstrap_difference(statistic_a: Callable[[np.ndarray], float], statistic_b: Callable[[np.ndarray], float],
                         n_a: int, n_b: int | None = None, *, resamples: int = 2000, seed: int = 0,
                         paired: bool = True) -> dict[str, Any]:
    """Bootstrap of ``statistic_b - statistic_a``, each a function of the image indices of
    one resample. Paired: both audits see the same resampled images (they hold the same
    images); unpaired: each audit's images are resampled on their own.

    The 95% interval is the percentile interval; the two-sided p-value is twice the smaller
    share of resampled differences on either side of 0 (each share counted as
    (k + 1) / (B + 1), so it is never 0), capped at 1. Resamples where a statistic is
    undefined (an AUROC without positives) are dropped and counted."""
    n_b = n_a if n_b is None else n_b
    if paired and n_a != n_b:
        raise ValueError("a paired bootstrap needs the same images in both audits")
    rng = np.random.default_rng(seed)
    everything_a, everything_b = np.arange(n_a), np.arange(n_b)
    delta = statistic_b(everything_b) - statistic_a(everything_a)
    diffs = np.empty(resamples)
    for r in range(resamples):
        idx_a = rng.integers(0, n_a, n_a)
        idx_b = idx_a if paired else rng.integers(0, n_b, n_b)
        diffs[r] = statistic_b(idx_b) - statistic_a(idx_a)
    valid = diffs[np.isfinite(diffs)]
    if not math.isfinite(delta) or len(valid) == 0:
        return {"test": _bootstrap_name(paired), "p_value": None, "ci95": [None, None], "delta": None,
                "resamples": resamples, "valid_resamples": int(len(valid)), "seed": seed}
    below, above = int((valid <= 0).sum()), int((valid >= 0).sum())
    p = min(1.0, 2 * min(below + 1, above + 1) / (len(valid) + 1))
    low, high = np.percentile(valid, [2.5, 97.5])
    return {"test": _bootstrap_name(paired), "p_value": p, "ci95": [float(low), float(high)], "delta": float(delta),
            "resamples": resamples, "valid_resamples": int(len(valid)), "seed": seed}


def _bootstrap_name(paired: bool) -> str:
    return "paired bootstrap" if paired else "bootstrap (unpaired)"


def auroc(scores: np.ndarray, is_positive: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U, ties count half); NaN without both classes."""
    from scipy.stats import rankdata

    is_positive = np.asarray(is_positive, dtype=bool)
    m, n = int(is_positive.sum()), int((~is_positive).sum())
    if m == 0 or n == 0:
        return float("nan")
    ranks = rankdata(np.asarray(scores, dtype=np.float64))
    return float((ranks[is_positive].sum() - m * (m + 1) / 2) / (m * n))


BOOTSTRAP_RESAMPLES = 2000


def bootstrap_mean_ci(values: Sequence[float], resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> dict[str, Any]:
    """95% percentile-bootstrap interval of the mean of per-image values (Dice, IoU):
    images are resampled with replacement, ``resamples`` times, from a generator seeded with
    ``seed``, so the interval is reproducible. Non-finite values are left out; with no
    finite value the interval is [None, None]."""
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    block: dict[str, Any] = {"ci95": [None, None], "ci_method": "percentile bootstrap over images",
                             "ci_resamples": int(resamples), "ci_seed": int(seed), "ci_n": int(finite.size)}
    if finite.size:
        rng = np.random.default_rng(seed)
        per_draw = max(1, 2_000_000 // finite.size)  # bounds the index array at ~16 MB for large audits
        means = np.concatenate([finite[rng.integers(0, finite.size, (min(per_draw, resamples - done), finite.size))]
                                .mean(axis=1) for done in range(0, resamples, per_draw)])
        low, high = np.percentile(means, [2.5, 97.5])
        block["ci95"] = [float(low), float(high)]
    return block
