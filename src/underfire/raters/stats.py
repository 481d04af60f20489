"""The statistics of a study's analysis, in plain Python (checked against ``scipy.stats``
in the tests): Wilson's interval, the exact two-sided binomial (sign) test, a bootstrap over
raters and Fleiss' κ."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

__all__ = ["binomial_test", "bootstrap_interval", "fleiss_kappa", "wilson_interval"]

Z95 = 1.959963984540054


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson's score interval of a proportion ``k / n`` (95 % by default); (0, 1) for n = 0."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def _log_pmf(i: int, n: int, p: float) -> float:
    return (
        math.lgamma(n + 1)
        - math.lgamma(i + 1)
        - math.lgamma(n - i + 1)
        + i * math.log(p)
        + (n - i) * math.log(1 - p)
    )


def binomial_test(k: int, n: int, p: float = 0.5) -> float:
    """Exact two-sided p-value of ``k`` successes in ``n`` trials under success rate ``p``:
    the probability of every outcome no more likely than ``k`` (1 for n = 0)."""
    if n == 0:
        return 1.0
    if not 0 < p < 1:
        raise ValueError(f"p must be in (0, 1), got {p}")
    own = _log_pmf(k, n, p)
    tolerance = 1e-7  # outcomes as likely as k up to rounding count as "no more likely"
    total = sum(math.exp(lp) for i in range(n + 1) if (lp := _log_pmf(i, n, p)) <= own + tolerance)
    return min(1.0, total)


def bootstrap_interval(
    per_rater: Sequence[tuple[int, int]], reps: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float] | None:
    """Percentile interval of the pooled rate Σk / Σn when raters (their ``(k, n)``) are
    resampled with replacement: it widens when raters disagree with each other, which
    Wilson's interval (answers independent) does not see. None without answers."""
    rows = [(k, n) for k, n in per_rater if n > 0]
    if not rows:
        return None
    rng = random.Random(seed)
    rates = []
    for _ in range(reps):
        sample = rng.choices(rows, k=len(rows))
        rates.append(sum(k for k, _ in sample) / sum(n for _, n in sample))
    rates.sort()
    lo = rates[int(math.floor((1 - level) / 2 * (reps - 1)))]
    hi = rates[int(math.ceil((1 + level) / 2 * (reps - 1)))]
    return lo, hi


def fleiss_kappa(counts: Sequence[Sequence[int]]) -> float | None:
    """Fleiss' κ of items × categories counts (how many raters put each item in each
    category); items rated by fewer than two raters are left out, and the number of raters
    may differ between items (each item's agreement is over its own raters). None when it is
    undefined (no item with two ratings, or every rating in one category)."""
    rows = [list(r) for r in counts if sum(r) >= 2]
    if not rows:
        return None
    agreement = [(sum(c * c for c in r) - sum(r)) / (sum(r) * (sum(r) - 1)) for r in rows]
    observed = sum(agreement) / len(agreement)
    total = sum(sum(r) for r in rows)
    shares = [sum(r[j] for r in rows) / total for j in range(len(rows[0]))]
    expected = sum(s * s for s in shares)
    if expected >= 1.0:
        return None
    return (observed - expected) / (1 - expected)
