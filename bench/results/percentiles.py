"""Percentiles backed by enough samples: MLPerf LoadGen's early-stopping rule (mlcommons/inference,
loadgen/early_stopping.cc and results.cc), used for every latency percentile cnnbench states as a number.

With n latencies, of which t exceed some value L, the true p-th percentile is at most L with confidence c when seeing
t or fewer exceedances in n queries would be unlikely (probability at most 1 - c) were the share of queries above L
more than 1 - p. The estimate is the smallest L the samples support: the t-th largest sample for the largest such t.
It is never below the empirical percentile. For p99 at 99% confidence it needs at least 662 samples (with exactly
662, the estimate is the largest sample: a bound, not a middle value), p90 needs 64, p50 needs 11; with fewer,
cnnbench says how many it needed instead of printing a number that is really the maximum."""

from __future__ import annotations

from functools import cache

import numpy as np

CONFIDENCE = 0.99  # LoadGen's, fixed (results.cc)
PERCENTILES = (50, 90, 99)
RULE = (
    f"percentiles are MLPerf LoadGen's early-stopping estimates at {CONFIDENCE:.0%} confidence (a bound the true "
    "percentile stays under): p50 needs 11 samples, p90 64, p99 662; with fewer, the count it needed is shown instead"
)


@cache
def _min_passing(overlatency: int, p: float, confidence: float = CONFIDENCE) -> int:
    """The fewest queries at or under a latency, beside ``overlatency`` queries above it, that show with
    ``confidence`` that the p-quantile (0 < p < 1) is at most that latency: the smallest h with
    P(Binomial(h + t, 1 - p) <= t) <= 1 - confidence."""
    from scipy.stats import binom

    def passes(h: int) -> bool:
        return binom.cdf(overlatency, h + overlatency, 1 - p) <= 1 - confidence

    lo, hi = 1, 2
    while not passes(hi):
        lo, hi = hi, hi * 2
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if passes(mid) else (mid + 1, hi)
    return lo


def needed(percentile: float, confidence: float = CONFIDENCE) -> int:
    """Samples a percentile (0-100) needs before any estimate: LoadGen's floor (one sample may lie above it)."""
    return _min_passing(1, percentile / 100, confidence) + 1


def allowed_over(n: int, percentile: float, confidence: float = CONFIDENCE) -> int:
    """The most of ``n`` samples that may lie above a value for the percentile still to be shown at or under it
    (-1 when n is too few for any)."""
    p = percentile / 100
    if n < needed(percentile, confidence):
        return -1
    lo, hi = 1, 2
    while _min_passing(hi, p, confidence) + hi <= n:
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if _min_passing(mid, p, confidence) + mid <= n else (lo, mid)
    return lo


def estimate(samples, percentile: float, confidence: float = CONFIDENCE) -> float | None:
    """The early-stopping estimate of a percentile (0-100) of ``samples``, or None when they are too few."""
    t = allowed_over(len(samples), percentile, confidence)
    if t < 1:
        return None
    return float(np.sort(np.asarray(samples, dtype=np.float64))[len(samples) - t])


def estimates(samples, percentiles=PERCENTILES) -> dict:
    """{"p50_ms": estimate or None, ...} and, for each one that is None, {"p99_needs": samples it needed}."""
    out: dict = {}
    for q in percentiles:
        out[f"p{q}_ms"] = value = estimate(samples, q)
        if value is None:
            out[f"p{q}_needs"] = needed(q)
    return out


def supported(percentile: float, n: int | None) -> bool:
    """Whether ``n`` samples are enough to state the percentile (0-100) at all."""
    return n is not None and n >= needed(percentile)
