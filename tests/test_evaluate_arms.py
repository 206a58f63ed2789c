"""Which configurations evaluate.py re-trains, and how its summary compares them (no training, no Ray)."""

import pandas as pd
import pytest

from study.base import upstream_options
from study.evaluate import choose_arms, summarise
from study.experiment import RANK_METRIC


def board() -> pd.DataFrame:
    rows = [  # the base configuration ranks second; one collapsed trial ranks last whatever its metric
        ("a", "ladder:60-50-40-30-20-10", 68.7, "partial"),
        ("b", "ladder:10-20-30-40-50-60", 72.4, "partial"),
        ("c", "full", 10.0, "collapsed"),
        ("d", "ladder:20-40-60", 90.0, "partial"),
    ]
    return pd.DataFrame(
        [
            {
                "trial_id": t,
                "status": "completed",
                "schedule": s,
                f"last_{RANK_METRIC}": v,
                "collapse": c,
                "upstream": False,
            }
            for t, s, v, c in rows
        ]
    )


def test_arms_are_upstream_base_then_the_study_s_own_best():
    base = {"config": {**upstream_options(), "schedule": "ladder:10-20-30-40-50-60", "lr_g": 2e-4}}
    arms = choose_arms(board(), ["schedule"], 2, base)
    assert [a["arm"] for a in arms] == ["upstream", "base", "rank1", "rank2"]
    assert arms[1]["schedule"] == "ladder:10-20-30-40-50-60"  # the base, not repeated among the ranked ones
    assert [a["schedule"] for a in arms[2:]] == ["ladder:60-50-40-30-20-10", "ladder:20-40-60"]
    up = choose_arms(board(), ["schedule"], 1, {"config": upstream_options()})
    assert [a["arm"] for a in up] == ["upstream", "rank1"] and up[1]["schedule"] == "ladder:60-50-40-30-20-10"


def test_the_upstream_reference_trial_is_never_a_ranked_arm():
    """Its factor values on a non-upstream base were never trained; a study whose only completed trials are the
    base and the reference has nothing to re-train besides them."""
    from study.base import UPSTREAM_REFERENCE

    base = {"config": {**upstream_options(), "corr_weight": 1.0, "lr_g": 2e-4}}
    rows = [  # the reference (corr_weight 10) ranks above a proposal, which ranks above a repeat of the base
        ("ref", 10.0, 3.0, UPSTREAM_REFERENCE),
        ("p", 3.0, 3.5, ""),
        ("b", 1.0, 4.0, ""),
    ]
    board = pd.DataFrame(
        [
            {"trial_id": t, "status": "completed", "corr_weight": w, f"last_{RANK_METRIC}": v, "collapse": "partial",
             "reference": r, "upstream": bool(r)}
            for t, w, v, r in rows
        ]
    )  # fmt: skip
    arms = choose_arms(board, ["corr_weight"], 2, base)
    assert [(a["arm"], a.get("corr_weight")) for a in arms] == [
        ("upstream", None),
        ("base", 1.0),
        ("rank1", 3.0),
    ]
    only_base = choose_arms(board[board["trial_id"] != "p"], ["corr_weight"], 1, base)
    assert [a["arm"] for a in only_base] == ["upstream", "base"]


def test_summary_says_whether_the_winner_beats_upstream_and_base_beyond_seed_spread():
    runs = pd.DataFrame(
        [{"arm": "upstream", "seed": s, "fd_feat": 70.0 + s} for s in (0, 1, 2)]
        + [{"arm": "base", "seed": s, "fd_feat": 40.0 + s} for s in (0, 1, 2)]
        + [{"arm": "rank1", "seed": s, "fd_feat": 37.0 + 3 * s} for s in (0, 1, 2)]
    )
    info = {"fd_feat": ("Frechet distance", True), "seed": ("", True)}
    row = summarise(runs, {"fd_feat": 1.0}, info).set_index("metric").loc["fd_feat"]
    assert row["best_arm"] == "rank1" and row["advantage"] == pytest.approx(71.0 - 40.0)
    assert bool(row["beyond_seed_spread"])  # 31 against sds 3 + 1
    assert row["best_found_arm"] == "rank1" and row["advantage_over_base"] == pytest.approx(1.0)
    assert not bool(row["beyond_seed_spread_over_base"])  # 1 better than its base, within sds 3 + 1


def test_a_diversity_ratio_above_real_is_no_better_than_one_as_far_below():
    # real patients score 1.0; rank1 overshoots to 1.6, the base falls short at 0.7, upstream is collapsed at 0.05
    runs = pd.DataFrame(
        [{"arm": "upstream", "seed": s, "diversity_ratio": 0.05 + 0.01 * s} for s in (0, 1, 2)]
        + [{"arm": "base", "seed": s, "diversity_ratio": 0.69 + 0.01 * s} for s in (0, 1, 2)]
        + [{"arm": "rank1", "seed": s, "diversity_ratio": 1.59 + 0.01 * s} for s in (0, 1, 2)]
    )
    info = {"diversity_ratio": ("total variance over real", False)}
    row = summarise(runs, {"diversity_ratio": 1.0}, info).set_index("metric").loc["diversity_ratio"]
    assert bool(row["nearest_real"])
    # the base is 0.30 from real, rank1 0.60: the base is the best arm, rank1 0.30 worse than its base
    assert row["best_arm"] == "base" and row["advantage"] == pytest.approx(0.94 - 0.30)
    assert row["best_found_arm"] == "rank1" and row["advantage_over_base"] == pytest.approx(0.30 - 0.60)
    assert not bool(row["beyond_seed_spread_over_base"])


def test_a_named_configuration_is_an_arm_of_its_own_unless_it_is_the_base():
    from healthgym_core.configs import load_config

    base = {"config": load_config("cpu_base").full()}
    named = [load_config("stronger_critic"), load_config("cpu_base"), load_config("upstream")]
    arms = choose_arms(board(), ["schedule"], 0, base, named)
    assert [a["arm"] for a in arms] == ["upstream", "base", "stronger_critic"]
    assert arms[2]["n_critic"] == 10 and arms[2]["corr_form"] == "2022"
