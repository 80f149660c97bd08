"""Whether a difference is more than noise: Welch's t-test (scipy.stats.ttest_ind, unequal variances, two-sided) at
95%, as pyperf's `compare_to` answers. Each side must have at least two independent values: test accuracies over
seeds, or the p50s of separate repetitions of a latency measurement (`bench benchmark --repeat N`; the calls inside
one measurement follow one another and are not independent, so they are never the sample)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

ALPHA = 0.05
METHOD = "Welch's t-test, two-sided, 95%"


@dataclass(frozen=True)
class Verdict:
    """``significant`` None: not testable, ``reason`` says why."""

    significant: bool | None
    p_value: float | None
    n_a: int
    n_b: int
    reason: str = ""

    def text(self) -> str:
        if self.significant is None:
            return f"not testable ({self.reason})"
        return f"{'significant' if self.significant else 'not significant'} (p={self.p_value:.2g})"

    def asdict(self) -> dict:
        return asdict(self)


def verdict_text(verdict: dict) -> str:
    """A Verdict's ``asdict()`` (as `bench compare --json` gives it) in words."""
    return Verdict(**verdict).text()


Z95 = 1.959963984540054  # the two-sided 95% normal quantile


def wilson(accuracy: float | None, n: int | None) -> tuple[float, float] | None:
    """The 95% Wilson score interval of an accuracy measured on ``n`` images (None without both): how far the true
    accuracy may be from it given the test set's size (500 images: about +-4 points at 50%)."""
    if accuracy is None or not n:
        return None
    p, z2 = accuracy, Z95**2
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def welch(a: list[float], b: list[float], what: str = "values") -> Verdict:
    """Whether the means of ``a`` and ``b`` differ at 95% (Welch's t-test); ``what`` names the values in the reason
    a test cannot be made."""
    a = [x for x in a if x is not None and math.isfinite(x)]
    b = [x for x in b if x is not None and math.isfinite(x)]
    if len(a) < 2 or len(b) < 2:
        return Verdict(None, None, len(a), len(b), f"{len(a)} and {len(b)} {what}: 2 or more on each side")
    if _spread(a) == 0 and _spread(b) == 0:  # no noise on either side: the t statistic is undefined
        same = math.isclose(sum(a) / len(a), sum(b) / len(b), rel_tol=0, abs_tol=1e-12)
        return Verdict(not same, 1.0 if same else 0.0, len(a), len(b))
    from scipy import stats

    p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    return Verdict(p < ALPHA, p, len(a), len(b))


def _spread(xs: list[float]) -> float:
    return max(xs) - min(xs)
