import math

import numpy as np
import pytest
import torch

from healthgym_core.config import TrainConfig
from healthgym_core.epoch import RECORD_KEYS, train_epoch
from healthgym_core.errors import ConfigError, NonFiniteLossError
from healthgym_core.evaluation.validation import evaluate
from healthgym_core.state import build_state


def run(config, data, epochs):
    state = build_state(config, data)
    return state, [r for _ in range(epochs) for r in train_epoch(state, data).records]


def test_records_and_budget_counters(small_data, tiny_config):
    state, records = run(tiny_config, small_data, 1)
    n_train = len(small_data.split.train)  # 84 patients, batch 32 -> 3 batches per pass, 2 passes
    assert len(records) == 6 and [r["L"] for r in records] == [5, 5, 5, 10, 10, 10]
    assert set(records[0]) == set(RECORD_KEYS)
    assert [r["batch"] for r in records[:3]] == [32, 32, n_train - 64]
    assert state.g_steps == 6 and state.d_steps == 12
    assert state.sequence_months == tiny_config.n_critic * n_train * (5 + 10)
    for r in records:
        assert r["W_gap"] == pytest.approx(r["D_real"] - r["D_fake"])
        assert all(math.isfinite(r[k]) for k in RECORD_KEYS)


def test_deterministic_on_cpu(small_data, tiny_config):
    _, a = run(tiny_config, small_data, 2)
    _, b = run(tiny_config, small_data, 2)
    assert a == b
    other = TrainConfig(**{**tiny_config.to_dict(), "seed": 2})
    _, c = run(other, small_data, 1)
    assert c[0]["D_loss"] != a[0]["D_loss"]


@pytest.mark.parametrize(
    "field,value",
    [
        ("fresh_real_batch", True),
        ("align_reverse", True),
        ("corr_form", "2022"),
        ("schedule", "random:5-10"),
        ("schedule", "staged:1:5-10"),
        ("schedule", "full:10:2"),
    ],
)
def test_options_train(small_data, tiny_config, field, value):
    cfg = TrainConfig(**{**tiny_config.to_dict(), field: value})
    _, records = run(cfg, small_data, 1)
    assert len(records) == 6 and all(math.isfinite(r["G_loss"]) for r in records)


def test_non_finite_loss_is_raised_before_the_optimiser_step(small_data, tiny_config):
    state = build_state(tiny_config, small_data)
    with torch.no_grad():
        state.critic.score.bias.fill_(float("nan"))
    before = {k: v.clone() for k, v in state.critic.state_dict().items()}
    with pytest.raises(NonFiniteLossError) as e:
        train_epoch(state, small_data)
    err = e.value
    assert err.step == 1 and err.epoch == 1 and err.length == 5 and math.isnan(err.values["D_loss"])
    assert "non-finite loss at epoch 1, step 1 (L=5)" in str(err)
    assert state.opt_d.state == {} and state.d_steps == 0  # no optimiser step ran
    after = state.critic.state_dict()
    assert all(torch.equal(before[k], after[k]) or k == "score.bias" for k in before)


@pytest.mark.parametrize(
    "change,needle",
    [
        ({"n_critic": 0}, "n_critic=0"),
        ({"gp_weight": -1.0}, "gp_weight=-1.0"),
        ({"corr_weight": float("nan")}, "corr_weight"),
        ({"schedule": "zigzag"}, "unknown schedule"),
        ({"batch_size": 0}, "batch_size"),
        ({"lr_d": 0.0}, "lr_d"),
        ({"corr_form": "2023"}, "corr_form"),
        ({"device": "tpu"}, "device"),
    ],
)
def test_bad_options_are_refused(change, needle, small_data, tiny_config):
    with pytest.raises(ConfigError, match=needle):
        build_state(TrainConfig(**{**tiny_config.to_dict(), **change}), small_data)


def test_options_checked_against_the_data(small_data, tiny_config):
    with pytest.raises(ConfigError, match="length 80 is longer than the data's 60 months"):
        build_state(TrainConfig(**{**tiny_config.to_dict(), "schedule": "ladder:10-80"}), small_data)
    with pytest.raises(ConfigError, match="batch_size=500 is larger than the 84 training patients"):
        build_state(TrainConfig(**{**tiny_config.to_dict(), "batch_size": 500}), small_data)


def test_evaluation_metrics(small_data, tiny_config):
    state, _ = run(tiny_config, small_data, 1)
    m = evaluate(state.generator, state.critic, small_data, tiny_config.seed, 64)
    assert set(m) == {
        "wasserstein_gap",
        "fd_feat",
        "fd_feat_floor",
        "sliced_w",
        "ks_mean",
        "tvd_mean",
        "coverage",
        # the collapse measures (issue 13), every epoch
        "diversity_ratio",
        "value_diversity",
        "distinct_share",
        "joint_tvd",
        "joint_max_cell",
        "joint_cells_covered",
        "joint_cell_coverage",
        # the comparable Wasserstein estimates (issue 14) and their floors
        "emd_feat",
        "emd_feat_floor",
        "critic_gap",
        "critic_gap_floor",
        # the ranking metric (issue 33) and its floor
        "energy_feat",
        "energy_feat_floor",
    }
    assert all(math.isfinite(v) for v in m.values())
    assert m == evaluate(state.generator, state.critic, small_data, tiny_config.seed, 64)  # fixed evaluation noise
    # An untrained generator is far from the data; real training patients are at the floor.
    assert m["fd_feat"] > 3 * m["fd_feat_floor"]
    assert 0 <= m["coverage"] <= 1 and 0 < m["ks_mean"] <= 1


def test_fd_feat_ranks_real_above_noise(small_data):
    f = small_data.features
    val = small_data.val_cohort
    assert f.distance(val.reals, val.codes) == pytest.approx(0.0, abs=1e-6)
    test = small_data.test_cohort
    rng = np.random.default_rng(0)
    shuffled_codes = rng.permuted(test.codes, axis=1)  # same marginals, broken time structure
    assert f.distance(test.reals, test.codes) < f.distance(test.reals, shuffled_codes)
