"""The Wasserstein estimates every trial measures on one scale: the exact EMD in fd_feat's feature space and a
fixed-protocol independent critic's gap."""

import numpy as np
import pytest

from healthgym_core.data.cohort import load_cohort
from healthgym_core.data.prepared import prepare_data
from healthgym_core.evaluation.distances import EMD_COMPONENTS, emd, independent_critic_gap
from healthgym_core.evaluation.validation import comparable_floors


@pytest.fixture(scope="module")
def data():
    return prepare_data(load_cohort("simulated", "demo7", patients=600, seed=0), split_seed=0)


def test_emd_is_exact_on_small_samples():
    a = np.array([[0.0, 0.0], [1.0, 0.0]])
    b = np.array([[1.0, 1.0], [0.0, 1.0]])  # the optimal matching moves each point by 1
    assert emd(a, b) == pytest.approx(1.0)
    assert emd(a, a[::-1]) == 0.0


def test_emd_floor_identity_and_collapse(data):
    f = data.features
    val, train = (
        f.embed(data.val_cohort.reals, data.val_cohort.codes),
        f.embed(data.train_cohort.reals, data.train_cohort.codes),
    )
    k = EMD_COMPONENTS
    val, train = val[:, :k], train[:, :k]
    floor = comparable_floors(data)["emd_feat_floor"]
    assert floor == emd(val, train) and 0 < floor
    assert emd(val, val) < 1e-6  # identical samples: zero (to rounding), below the floor
    collapsed = np.repeat(train[:1], 500, axis=0)
    assert emd(val, collapsed) > 1.5 * floor
    assert emd(val, np.repeat(train.mean(0, keepdims=True), 500, axis=0)) > 1.5 * floor  # even the average patient
    assert emd(val, train) == emd(val, train)  # the same numbers for the same inputs


def test_independent_critic_gap_floor_collapse_and_determinism(data):
    floor = comparable_floors(data)["critic_gap_floor"]
    assert floor == independent_critic_gap(data.val, data.train)  # deterministic
    same = independent_critic_gap(data.val, data.val.copy())
    collapsed = independent_critic_gap(data.val, np.repeat(data.train[:1], len(data.val), axis=0))
    assert abs(same) < 1e-4 and 0 < floor  # two copies of one sample: zero; real against real: a small floor
    assert collapsed > 3 * floor
