"""Which way every metric is better, and when one configuration beats another: the one home of both.

Every reader (the leaderboard's best-over-epochs, the evaluation's verdicts, the bench tables, the report and the
dashboard) asks `direction`, `badness`, `best_of` and `beats` here; none keeps a direction of its own.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

# Metrics whose real-vs-real value is the target: a cohort above it is as wrong as one below (a diversity ratio of 1.3
# overshoots real patients' spread as 0.7 falls short of it). They are judged by their distance to that value.
NEAREST_REAL = frozenset({"diversity_ratio", "value_diversity"})
# The value real patients score by construction, where no measured real-vs-real floor is at hand (per epoch).
REAL_VALUE = {"diversity_ratio": 1.0, "value_diversity": 1.0}


def _lower_is_better(metric: str) -> bool:
    from healthgym_core.evaluation.final import METRIC_INFO  # descriptions and directions of the final metrics

    return bool(METRIC_INFO.get(metric, ("", True))[1])  # per-epoch losses and gaps: lower


def direction(metric: str) -> str:
    """'lower', 'higher' or 'nearest real'."""
    if metric in NEAREST_REAL:
        return "nearest real"
    return "lower" if _lower_is_better(metric) else "higher"


def target(metric: str, real: float | None = None) -> float | None:
    """The real value a NEAREST_REAL metric is judged against (`real`, the measured floor, when finite)."""
    if metric not in NEAREST_REAL:
        return None
    return real if real is not None and math.isfinite(real) else REAL_VALUE.get(metric, 1.0)


def badness(metric: str, values, real: float | None = None):
    """Values oriented so that lower is better: themselves, their negatives, or their distance to real."""
    v = np.asarray(values, dtype=np.float64) if not isinstance(values, (float, int, pd.Series)) else values
    t = target(metric, real)
    if t is not None:
        return abs(v - t)
    return v if _lower_is_better(metric) else -v


def best_of(metric: str, values: Sequence[float] | pd.Series, real: float | None = None) -> float:
    """The best of several values of one metric (e.g. a trial's epochs); NaN when there are none."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if not len(v):
        return math.nan
    return float(v[int(np.argmin(badness(metric, v, real)))])


def beats(
    metric: str, mean: pd.Series, sd: pd.Series, candidates: list[str], reference: str, real: float | None = None
) -> tuple[str, float, bool]:
    """The best candidate arm, its advantage over the reference arm's mean (positive: better; for a NEAREST_REAL
    metric, how much nearer to real), and whether that advantage exceeds the two arms' seed spreads
    (advantage > sd_best + sd_reference): the rule every "beyond the seed spread" verdict uses."""
    score = {a: float(badness(metric, float(mean[a]), real)) for a in [*candidates, reference]}
    best = min(candidates, key=score.__getitem__)
    diff = score[reference] - score[best]
    return best, diff, bool(diff > sd[best] + sd[reference])
