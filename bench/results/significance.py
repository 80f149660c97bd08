"""Whether a difference is more than noise: Welch's t-test (scipy.stats.ttest_ind, unequal variances, two-sided) at
95%, as pyperf's `compare_to` answers. Each side must have at least two independent values: test accuracies over
seeds, or the p50s of separate repetitions of a latency measurement (`bench benchmark --repeat N`; the calls inside
one measurement follow one another and are not independent, so they are never the sample).

A latency difference must also be larger than a margin (LATENCY_MARGIN, 5%) to be called significant: the 95%
confidence interval of the difference of means must lie wholly beyond +-5% of A's mean (a minimum-effect test, as
pyperf's `compare_to --min-speed` asks). The repetitions of one run share that minute's machine state, so their
spread hides the drift between two runs measured at different times; on 2 shared cores, the same ONNX files timed in
two runs differed by up to 20% at 0.03 ms a call. ONNX Runtime's run_benchmark.py repeats until the coefficient of
variation is at most 5%: below that, a difference is not one a team should act on."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

ALPHA = 0.05
METHOD = "Welch's t-test, two-sided, 95%"
LATENCY_MARGIN = 0.05  # a latency change within 5% of A's mean is never called significant


@dataclass(frozen=True)
class Verdict:
    """``significant`` None: not testable, ``reason`` says why."""

    significant: bool | None
    p_value: float | None
    n_a: int
    n_b: int
    reason: str = ""
    change: float | None = None  # B's mean against A's, relative: +0.10 is 10% more
    margin: float = 0.0  # the relative change a difference must exceed, with 95% confidence, to count

    def text(self) -> str:
        if self.significant is None:
            return f"not testable ({self.reason})"
        words = f"{'significant' if self.significant else 'not significant'} (p={self.p_value:.2g}"
        if self.margin and not self.significant and self.p_value < ALPHA:
            words += f"; within the {self.margin:.0%} margin"
        return words + ")"

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


def test_interval(trial: dict) -> str:
    """A trial's test accuracy's 95% Wilson interval over its test images, as tables and reports show it."""
    from bench.core.formats import pct

    interval = wilson(trial.get("test_acc"), (trial.get("split") or {}).get("test"))
    return "-" if interval is None else f"{pct(interval[0])}-{pct(interval[1])}"


INTERVAL_METHOD = "test 95%: Wilson score interval over the test images"


def welch(a: list[float], b: list[float], what: str = "values", margin: float = 0.0) -> Verdict:
    """Whether the means of ``a`` and ``b`` differ at 95% (Welch's t-test) by more than ``margin`` of ``a``'s mean:
    significant when the 95% confidence interval of the difference lies wholly beyond it (with no margin, exactly
    when p < 0.05); ``what`` names the values in the reason a test cannot be made."""
    a = [x for x in a if x is not None and math.isfinite(x)]
    b = [x for x in b if x is not None and math.isfinite(x)]
    if len(a) < 2 or len(b) < 2:
        return Verdict(None, None, len(a), len(b), f"{len(a)} and {len(b)} {what}: 2 or more on each side")
    mean_a, mean_b = sum(a) / len(a), sum(b) / len(b)
    change = (mean_b - mean_a) / abs(mean_a) if mean_a else None
    allowed = margin * abs(mean_a)
    if _spread(a) == 0 and _spread(b) == 0:  # no noise on either side: the t statistic is undefined
        same = math.isclose(mean_a, mean_b, rel_tol=0, abs_tol=1e-12)
        beyond = abs(mean_b - mean_a) > allowed
        return Verdict(not same and beyond, 1.0 if same else 0.0, len(a), len(b), "", change, margin)
    from scipy import stats

    test = stats.ttest_ind(b, a, equal_var=False)
    low, high = test.confidence_interval(1 - ALPHA)  # of mean(b) - mean(a)
    p = float(test.pvalue)
    return Verdict(bool(low > allowed or high < -allowed), p, len(a), len(b), "", change, margin)


def _spread(xs: list[float]) -> float:
    return max(xs) - min(xs)
