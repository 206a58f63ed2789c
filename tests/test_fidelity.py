"""Controlled damage, the user-level measures and the fidelity signals: at their floor for identical patients, larger
for each damage, deterministic."""

import numpy as np
import pytest

from healthgym_core.data.cohort import load_cohort
from healthgym_core.data.prepared import prepare_data
from healthgym_core.evaluation.damage import DAMAGES
from healthgym_core.evaluation.fidelity import SIGNALS, SignalSpace
from healthgym_core.evaluation.realism import misses, realism


@pytest.fixture(scope="module")
def data():
    return prepare_data(load_cohort("simulated", "demo7", patients=600, seed=0), split_seed=0)


def patients(c):
    return c.reals, c.codes


def test_damage_at_strength_0_changes_nothing_and_at_1_does_what_it_says(data):
    p = patients(data.train_cohort)
    for name, fn in DAMAGES.items():
        r, c = fn(p, 0.0, 0)
        assert np.allclose(r, p[0]) and (c == p[1]).all(), name
    r, _ = DAMAGES["smooth"](p, 1.0, 0)
    assert np.allclose(np.diff(np.log1p(r), axis=1), 0.0, atol=1e-9)  # flat trajectories
    r, c = DAMAGES["collapse"](p, 1.0, 0)
    assert len(np.unique(r.reshape(len(r), -1), axis=0)) == 1 and len(np.unique(c.reshape(len(c), -1), axis=0)) == 1
    _, c = DAMAGES["scramble_joint"](p, 1.0, 0)
    assert sorted(c[:, 0, 1]) == sorted(p[1][:, 0, 1])  # the marginal kept


def test_realism_of_real_patients_meets_every_target_and_smoothed_ones_miss(data):
    real, other = patients(data.val_cohort), patients(data.train_cohort)
    m = realism(data.schema, real, other)
    assert misses(m) == {}, m
    assert 0.8 < m["variability_ratio/VL"] < 1.25 and m["absent_categories"] == 0
    smooth = realism(data.schema, real, DAMAGES["smooth"](other, 0.8, 0))
    assert smooth["variability_ratio/VL"] == pytest.approx(0.2 * m["variability_ratio/VL"], rel=1e-6)
    assert "variability_ratio/VL" in misses(smooth) and "detect_auc" in misses(smooth)
    rare = realism(data.schema, real, DAMAGES["drop_rare"](other, 1.0, 0))
    assert rare["absent_categories"] >= 1 and "absent_categories" in misses(rare)
    assert 0.5 < m["switch_ratio"] < 2.0
    ratios = [realism(data.schema, real, DAMAGES["flicker"](other, s, 0))["switch_ratio"] for s in (0.25, 1.0)]
    assert m["switch_ratio"] < ratios[0] < ratios[1] and ratios[1] > 5  # about 19 changes a patient against about 1
    flickered = realism(data.schema, real, DAMAGES["flicker"](other, 1.0, 0))
    assert "switch_ratio" in misses(flickered) and flickered["detect_auc"] > 0.85


@pytest.mark.parametrize("name", list(SIGNALS))
def test_each_signal_is_0_for_identical_patients_and_grows_with_damage(data, name):
    space = SignalSpace.fit(data.schema, patients(data.train_cohort))
    ref, fake = patients(data.val_cohort), patients(data.train_cohort)
    f = SIGNALS[name]
    x = space.embed(ref)
    assert abs(f(x, x)) < 1e-9 if name != "classifier_gap" else f(x, x) < 0.05
    floor = f(x, space.embed(fake))
    assert f(x, space.embed(fake)) == floor  # deterministic
    for damage in ("collapse", "smooth", "squash_tails", "flicker"):
        values = [f(x, space.embed(DAMAGES[damage](fake, s, 0))) for s in (0.25, 1.0)]
        if name == "classifier_gap":  # bounded by log 2: it saturates once the two are told apart for sure
            assert floor < values[0] and floor < values[1] <= np.log(2), (damage, floor, values)
        else:
            assert floor < values[0] < values[1], (damage, floor, values)
