"""Confidence intervals for proportions (accuracies, success rates)."""

from __future__ import annotations

import math


def proportion_ci(k: int, n: int, z: float = 1.959963984540054) -> tuple[float | None, float | None]:
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
