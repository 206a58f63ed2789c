"""The collapse measures: a real sample scores like real data, one patient repeated scores collapsed."""

import numpy as np
import pytest

from healthgym_core.data.cohort import load_cohort
from healthgym_core.data.prepared import prepare_data
from healthgym_core.evaluation.collapse import collapse_metrics, distinct_share, diversity_ratio, verdict
from healthgym_core.evaluation.final import final_metrics
from healthgym_core.evaluation.marginals import joint_coverage


@pytest.fixture(scope="module")
def data():
    """450 validation and 450 test patients: enough that two real samples' Gender x Ethnic tables differ by less
    than the default study's 0.10 (with 60 patients per side they differ by about 0.15)."""
    return prepare_data(load_cohort("simulated", "demo7", patients=3000, seed=0), split_seed=0)


def test_real_patients_are_diverse_distinct_and_cover_the_joint(data):
    val, test = data.val_cohort, data.test_cohort
    m = collapse_metrics(data.schema, data.features, (val.reals, val.codes), (test.reals, test.codes))
    assert 0.7 < m["diversity_ratio"] < 1.4 and 0.7 < m["value_diversity"] < 1.4, m
    assert m["distinct_share"] == 1.0
    assert m["joint_tvd"] < 0.1 and m["joint_cell_coverage"] >= 0.75 and m["joint_max_cell"] < 0.8, m
    status, why = verdict({**m, "coverage": 1.0, "fd_feat": 10.0, "fd_feat_floor": 10.0})
    assert status == "faithful", why


def test_one_patient_repeated_is_collapsed(data):
    val = data.val_cohort
    reals = np.repeat(val.reals[:1], 500, axis=0)
    codes = np.repeat(val.codes[:1], 500, axis=0)
    m = collapse_metrics(data.schema, data.features, (val.reals, val.codes), (reals, codes))
    assert m["diversity_ratio"] < 1e-12 and m["distinct_share"] == 1 / 500
    assert m["joint_max_cell"] == 1.0 and m["joint_cells_covered"] <= 1
    status, why = verdict(m)
    assert status == "collapsed" and "diversity_ratio" in why
    # jitter below the decile resolution is still one patient; the final table says so too
    jitter = reals * (1 + 1e-4 * np.random.default_rng(0).standard_normal(reals.shape))
    assert distinct_share(val.reals, jitter, codes) == 1 / 500
    assert diversity_ratio(data.features, (val.reals, val.codes), (jitter, codes)) < 1e-4
    final = final_metrics(data, jitter, codes, seed=0)
    assert final["distinct_share"] == 1 / 500 and final["diversity_ratio"] < 1e-4


def test_one_patient_s_values_under_varied_flickering_categories_are_collapsed(data):
    """What a collapsed generator decoded at quantiles gives: every patient the same values, but categories drawn
    per patient and switching from month to month. The whole feature space counts the categories as diversity;
    the values' own diversity does not."""
    from healthgym_core.evaluation.damage import flicker

    val, test = data.val_cohort, data.test_cohort
    reals = np.repeat(test.reals[:1], len(test.reals), axis=0)
    _, codes = flicker((test.reals, test.codes), 1.0, 0)
    m = collapse_metrics(data.schema, data.features, (val.reals, val.codes), (reals, codes))
    assert m["diversity_ratio"] > 0.1 and m["distinct_share"] > 0.1  # neither sees it
    assert m["value_diversity"] < 1e-12
    status, why = verdict(m)
    assert status == "collapsed" and "value_diversity" in why, why
    assert verdict({k: v for k, v in m.items() if k != "value_diversity"})[0] != "collapsed"  # recorded before it


def test_joint_cells_count_within_a_factor_of_two():
    p = np.array([0.5, 0.3, 0.19, 0.01])
    assert joint_coverage(p, p)[1:] == (4, 4)
    q = np.array([0.6, 0.1, 0.29, 0.01])  # 0.1 is a third of 0.3: not covered; 0.29 is within 2x of 0.19
    tvd, covered, present = joint_coverage(p, q)
    assert (covered, present) == (3, 4) and tvd == pytest.approx(0.2)
    assert joint_coverage(p, np.array([0.1, 0.1, 0.7, 0.1]))[1] == 0  # each cell off by more than a factor of 2


def test_a_collapsed_trial_never_ranks_above_one_that_is_not():
    """fd_feat alone put a collapsed upstream trial (96) above a trial leaving collapse (102) in a default study's
    ninth epoch; the leaderboard, --base and evaluate.py all take the first completed row as the best."""
    import pandas as pd

    from study.experiment import RANK_METRIC
    from study.leaderboard import completed_by_rank, rank

    board = pd.DataFrame(
        {
            "trial_id": ["a", "b", "c", "d", "e"],
            "status": ["completed", "completed", "pruned", "completed", "completed"],
            "collapse": ["collapsed", "partial", "partial", "faithful", "partial"],
            f"last_{RANK_METRIC}": [96.0, 102.0, 50.0, 110.0, 101.0],
        }
    )
    assert rank(board)["trial_id"].tolist() == ["d", "e", "b", "a", "c"]
    assert completed_by_rank(board)["trial_id"].tolist() == ["d", "e", "b", "a"]
    # without a verdict (an old leaderboard) the order is by the metric alone
    assert rank(board.drop(columns="collapse"))["trial_id"].tolist() == ["a", "e", "b", "d", "c"]


def test_the_summary_advises_only_what_the_best_trial_does_not_do():
    import pandas as pd

    from study.leaderboard import collapse_summary

    board = pd.DataFrame(
        {
            "trial_id": ["a", "b"],
            "status": ["completed", "completed"],
            "collapse": ["partial", "collapsed"],
            **{f"last_{m}": [1.0, 0.1] for m in ("diversity_ratio", "distinct_share")},
            "last_coverage": [0.8, 0.1],
            "last_joint_tvd": [0.05, 0.4],
            "last_fd_feat": [70.0, 70.0],
            "fd_feat_floor": [1.1, 1.1],
        }
    )
    upstream = collapse_summary(board, {"config": {"noise_prior": "uniform"}})
    assert upstream.startswith(
        "The best trial a is not collapsed but misses the faithfulness targets on coverage 0.8 (>= 0.9), "
        "fd_feat_ratio 63.6 (<= 5):"
    )
    assert "1 of 2" not in upstream
    assert "--set noise_prior=buffer" in upstream and "--space optimizer" in upstream
    buffered = collapse_summary(board, {"config": {"noise_prior": "buffer"}})  # the CPU preset's base
    assert "noise_prior" not in buffered and "--max-epochs" in buffered and "--space optimizer" in buffered
    searched = collapse_summary(board.assign(noise_prior=["uniform", "buffer"]), {"config": {"noise_prior": "buffer"}})
    assert "--set noise_prior=buffer" in searched  # a factor of the space: the best trial's own value counts
    # every target met but fd_feat's: no advice to train longer, which the learning curves show does not close it
    only_fd = collapse_summary(board.assign(last_coverage=[0.95, 0.1]), {"config": {"noise_prior": "buffer"}})
    assert "targets on fd_feat_ratio 63.6 (<= 5):" in only_fd
    assert "Only fd_feat misses, and nothing measured closes it" in only_fd and "--max-epochs" not in only_fd


def test_missed_targets_name_each_value_and_its_target():
    from healthgym_core.evaluation.collapse import missed_targets, verdict

    good = {"coverage": 0.95, "joint_tvd": 0.08, "diversity_ratio": 0.7, "fd_feat": 5.0, "fd_feat_floor": 1.25}
    assert missed_targets(good) == {} and verdict(good)[0] == "faithful"
    assert missed_targets(good | {"fd_feat": 6.0}) == {}  # 6 / 1.25 = 4.8 meets it
    assert missed_targets(good | {"fd_feat": 7.5}) == {"fd_feat_ratio": "6 (<= 5)"}
    assert missed_targets(good | {"coverage": 0.85, "joint_tvd": 0.12}) == {
        "coverage": "0.85 (>= 0.9)",
        "joint_tvd": "0.12 (<= 0.1)",
    }
    lacking = {k: v for k, v in good.items() if k != "joint_tvd"}
    assert list(missed_targets(lacking)) == ["joint_tvd"] and verdict(lacking)[0] == "partial"


def test_the_report_ranks_an_earlier_study_as_the_leaderboard_ranks_now(tmp_path):
    """A study finished under an earlier ranking metric: the report names today's best and says which trial the
    exported cohort came from."""
    import shutil

    import pandas as pd

    from study.experiment import RANK_METRIC
    from study.reporting.loading import load_experiment
    from tests.study_helpers import ROOT

    shutil.copy(ROOT / "docs" / "results" / "critic" / "study.json", tmp_path / "study.json")  # a real record
    pd.DataFrame(
        {  # saved best-first by another metric: "old" first
            "trial_id": ["old", "new", "gone"],
            "status": ["completed", "completed", "completed"],
            "collapse": ["partial", "partial", "collapsed"],
            f"last_{RANK_METRIC}": [3.5, 3.1, 1.0],
            "seed": [0, 1, 2],
        }
    ).to_parquet(tmp_path / "leaderboard.parquet")
    exp = load_experiment(tmp_path)
    assert exp.best()["trial_id"] == "new" and exp.exported == "old"
    assert exp.board["trial_id"].tolist() == ["new", "old", "gone"]
