"""One home for every metric's direction and the beyond-the-seed-spread rule (healthgym_core.evaluation.verdicts)."""

import math

import pandas as pd
import pytest

from healthgym_core.evaluation.verdicts import beats, best_of, direction
from study.leaderboard import trial_row


def test_directions():
    assert direction("emd_feat") == "lower"
    assert direction("coverage") == "higher"
    assert direction("ks/VL") == "lower"
    assert direction("diversity_ratio") == "nearest real"
    assert direction("wasserstein_gap") == "lower"  # a per-epoch signal outside the final table


def test_best_diversity_is_nearest_real_not_largest():
    assert best_of("diversity_ratio", [0.9, 1.4, 1.6]) == 0.9
    assert best_of("diversity_ratio", [0.5, 1.2], real=1.1) == 1.2
    assert best_of("coverage", [0.5, 0.9, 0.7]) == 0.9
    assert best_of("emd_feat", [3.0, 2.5, math.nan]) == 2.5
    assert math.isnan(best_of("emd_feat", []))


def test_the_leaderboard_keeps_the_diversity_nearest_real_as_a_trials_best():
    # Today's code kept the largest ratio (1.4): an overshoot of real patients' spread, not the best epoch.
    history = pd.DataFrame({"epoch": [1, 2, 3], "diversity_ratio": [0.3, 0.95, 1.4], "coverage": [0.5, 0.9, 0.8]})
    row = trial_row("t1", {"seed": 0}, [], history, max_epochs=3)
    assert row["best_diversity_ratio"] == 0.95
    assert row["best_coverage"] == 0.9
    assert row["last_diversity_ratio"] == 1.4


def test_beats_needs_the_advantage_beyond_both_spreads():
    mean = pd.Series({"up": 5.0, "a": 3.0, "b": 4.0})
    sd = pd.Series({"up": 1.0, "a": 0.5, "b": 0.1})
    assert beats("emd_feat", mean, sd, ["a", "b"], "up") == ("a", 2.0, True)
    sd_wide = pd.Series({"up": 1.5, "a": 0.6, "b": 0.1})
    assert beats("emd_feat", mean, sd_wide, ["a", "b"], "up")[2] is False
    div = pd.Series({"base": 0.79, "cand": 1.30})
    best, adv, beyond = beats("diversity_ratio", div, pd.Series({"base": 0.0, "cand": 0.0}), ["cand"], "base", 1.01)
    assert best == "cand" and adv == pytest.approx(0.22 - 0.29) and not beyond  # farther from real: not better
