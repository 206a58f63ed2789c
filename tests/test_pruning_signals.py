"""bench/pruning_signals.py: rank correlations with a bootstrap interval, and ASHA replayed with Ray's own scheduler."""

import importlib.util
import sys

import numpy as np
import pandas as pd
import pytest

from tests.study_helpers import ROOT

spec = importlib.util.spec_from_file_location("pruning_signals", ROOT / "bench" / "pruning_signals.py")
ps = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = ps  # its dataclass looks its module up
spec.loader.exec_module(ps)


def curves_of(values: dict[str, list[float]]) -> dict[str, pd.Series]:
    return {t: pd.Series(v, index=range(1, len(v) + 1)) for t, v in values.items()}


def test_asha_replay_stops_what_ray_stops():
    # Serial trials, rungs at epochs 1 and 2 (grace 1, factor 2, max 4), lower is better. A sets the bar; B is worse
    # than A at epoch 1 (cutoff = the median of {A}); C beats the median of {A, B} at 1 and A at 2; D is worse than
    # the median of {A, B, C} at 1.
    ran = ps.replay_asha(
        curves_of({"A": [1.0] * 4, "B": [2.0] * 4, "C": [0.5] * 4, "D": [3.0] * 4}), max_t=4, grace=1, rf=2,
        concurrency=1,
    )  # fmt: skip
    assert ran == {"A": 4, "B": 1, "C": 4, "D": 1}


def test_asha_replay_runs_trials_side_by_side():
    # Two at a time: A and B report epoch 1 together (A first); B is cut against A. C starts when B's slot frees,
    # while A is at epoch 2, and D after C is cut.
    ran = ps.replay_asha(
        curves_of({"A": [1.0, 1.0, 1.0], "B": [2.0, 2.0, 2.0], "C": [5.0, 0.1, 0.1], "D": [0.2, 0.2, 0.2]}),
        max_t=3, grace=1, rf=3, concurrency=2,
    )  # fmt: skip
    # rung at epoch 1 only (3 = max_t): cutoff is the 67th percentile of what is recorded, in max mode
    assert ran == {"A": 3, "B": 1, "C": 1, "D": 3}
    no_pruning = ps.replay_asha(curves_of({"A": [1.0] * 3, "B": [2.0] * 3}), max_t=3, grace=3, rf=3, concurrency=2)
    assert no_pruning == {"A": 3, "B": 3}


def test_a_trial_that_ends_early_frees_its_slot():
    ran = ps.replay_asha(curves_of({"A": [1.0], "B": [0.5, 0.5]}), max_t=2, grace=2, rf=2, concurrency=1)
    assert ran == {"A": 1, "B": 2}


def test_rank_correlations_are_oriented_and_bootstrapped():
    trials = [f"t{i}" for i in range(12)]
    rng = np.random.default_rng(0)
    quality = pd.Series(np.arange(12.0), index=trials)  # lower is better: t0 the best trial
    curves = {
        t: pd.DataFrame(
            {
                "epoch": [1, 2],
                "emd_feat": [q, 2 * q + 1],  # lower is better, ranks exactly like the final quality
                "coverage": [-q, rng.normal()],  # higher is better: at epoch 1 a perfect predictor, then noise
                "fd_feat": [-q, -q],  # backwards
            }
        )
        for t, q in quality.items()
    }
    table = ps.rank_correlations(curves, quality).set_index(["signal", "epoch"])
    assert table.loc[("emd_feat", 1), "rho"] == pytest.approx(1.0)
    assert table.loc[("emd_feat", 2), ["lo", "hi"]].tolist() == pytest.approx([1.0, 1.0])
    assert table.loc[("coverage", 1), "rho"] == pytest.approx(1.0)
    assert abs(table.loc[("coverage", 2), "rho"]) < 0.7
    lo, hi = table.loc[("coverage", 2), ["lo", "hi"]]
    assert lo < table.loc[("coverage", 2), "rho"] < hi and hi - lo > 0.5  # noise: a wide interval
    assert table.loc[("fd_feat", 1), "rho"] == pytest.approx(-1.0)
    assert set(table["n"]) == {12}


def test_an_exported_record_reads_back_as_the_same_trials(tmp_path):
    """A batch's record (CSV) holds what the analysis reads: order, configuration, curves and test quality; two
    batches read together keep their order and stay apart."""
    rng = np.random.default_rng(1)
    order = ["b2", "a1", "c3"]
    trials = ps.Trials(
        order=order,
        configs={t: {"n_critic": i + 1, "schedule": "full", "seed": i, "reference": ""} for i, t in enumerate(order)},
        factors=["n_critic", "schedule"],
        histories={
            t: pd.DataFrame({"epoch": [1, 2, 3], "emd_feat": rng.random(3), "coverage": rng.random(3)}) for t in order
        },
        scores=pd.DataFrame({q: rng.random(3) for q in ps.QUALITIES}, index=order),
        max_t=3,
    )
    path = tmp_path / "batch1.csv"
    trials.record().to_csv(path, index=False)
    back = ps.Trials.from_record(path)
    ids = [f"batch1/{t}" for t in order]
    assert back.order == ids and back.max_t == 3 and back.factors == ["n_critic", "schedule"]
    assert back.configs[ids[1]] == {"n_critic": 2, "schedule": "full", "seed": 1, "reference": None}
    for t, i in zip(order, ids):
        pd.testing.assert_frame_equal(back.histories[i][trials.histories[t].columns], trials.histories[t])
        assert back.scores.loc[i].tolist() == pytest.approx(trials.scores.loc[t].tolist())
    other = tmp_path / "batch2.csv"
    trials.record().to_csv(other, index=False)
    both = ps.Trials.read([path, other], samples=0, seed=0)
    assert both.order == ids + [f"batch2/{t}" for t in order] and len(both.scores) == 6
    with pytest.raises(ps.ConfigError, match="a trial appears in two sources"):
        ps.Trials.read([path, path], samples=0, seed=0)
    longer = trials.record().assign(max_epochs=4)
    longer.to_csv(tmp_path / "longer.csv", index=False)
    with pytest.raises(ps.ConfigError, match="different epoch budgets"):
        ps.Trials.read([path, tmp_path / "longer.csv"], samples=0, seed=0)
    pd.DataFrame({"epoch": [1]}).to_csv(tmp_path / "not.csv", index=False)
    with pytest.raises(ps.ConfigError, match="not.csv: not a signal record"):
        ps.Trials.from_record(tmp_path / "not.csv")


def test_shuffled_replays_keep_the_winner_only_when_the_signal_predicts_it():
    # Four trials, one at a time, rungs at epoch 1 (grace 1, factor 2, max 2). "good" ranks the trials at epoch 1
    # as they end; "bad" ranks the best trial last, so ASHA stops it unless it starts first (1 order in 4).
    order = ["w", "x", "y", "z"]
    final = {"w": 1.0, "x": 2.0, "y": 3.0, "z": 4.0}  # validation emd_feat at epoch 2: w wins, as on test
    trials = ps.Trials(
        order=order,
        configs={t: {"n_critic": i + 1, "seed": i, "reference": ""} for i, t in enumerate(order)},
        factors=["n_critic"],
        histories={t: pd.DataFrame({"epoch": [1, 2], "emd_feat": [final[t], final[t]]}) for t in order},
        scores=pd.DataFrame({q: [final[t] for t in order] for q in ps.QUALITIES}, index=order),
        max_t=2,
    )
    good = {t: pd.Series([final[t], final[t]], index=[1, 2]) for t in order}
    bad = {t: pd.Series([-final[t], -final[t]], index=[1, 2]) for t in order}
    kept = ps.shuffled_replays(trials, good, 1, 2, 1, orders=40, seed_sd=0.1, best=1.0)
    assert kept["orders_within_seed_spread"] == 1.0 and kept["gap_mean"] == 0.0
    assert 0.5 < kept["share_mean"] < 1.0  # some trials stopped at the rung
    lost = ps.shuffled_replays(trials, bad, 1, 2, 1, orders=40, seed_sd=0.1, best=1.0)
    assert 0.1 <= lost["orders_within_seed_spread"] <= 0.45
    assert lost["gap_mean"] >= 0.5


def test_base_vs_upstream_per_study():
    # two batches, each a base (first) and an upstream reference; emd_feat lower is better. In batch a the base is
    # behind at epoch 1 and ahead at 2; in batch b ahead at both. A batch without a reference is left out.
    def batch(name, base, upstream):
        ids = [f"{name}/base", f"{name}/up"]
        return (
            ids,
            {ids[0]: {"reference": None}, ids[1]: {"reference": "upstream"}},
            {
                ids[0]: pd.DataFrame({"epoch": [1, 2], "emd_feat": base}),
                ids[1]: pd.DataFrame({"epoch": [1, 2], "emd_feat": upstream}),
            },
        )

    a, b = batch("a", [6.0, 4.0], [5.0, 5.0]), batch("b", [4.0, 3.0], [5.0, 5.5])
    alone = ["c/base"], {"c/base": {"reference": None}}, {"c/base": pd.DataFrame({"epoch": [1], "emd_feat": [1.0]})}
    parts = (a, b, alone)
    trials = ps.Trials(
        order=[t for p in parts for t in p[0]],
        configs={k: v for p in parts for k, v in p[1].items()},
        factors=[],
        histories={k: v for p in parts for k, v in p[2].items()},
        scores=pd.DataFrame(),
        max_t=2,
    )
    m = ps.base_vs_upstream(trials, "emd_feat").set_index(["study", "epoch"])["ahead"]
    assert m.to_dict() == {("a", 1): -1.0, ("a", 2): 1.0, ("b", 1): 1.0, ("b", 2): 2.5}
