"""fd_feat explained: its two terms add up to it, the per-feature shifts add up to its mean term, and one patient
repeated pays the real patients' whole variance in the spread term."""

import numpy as np
import pytest

from healthgym_core.data.cohort import load_cohort
from healthgym_core.data.prepared import prepare_data
from healthgym_core.evaluation.features import FeatureSpace, feature_names, summary_features


@pytest.fixture(scope="module")
def data():
    return prepare_data(load_cohort("simulated", "demo7", patients=600, seed=0), split_seed=0)


def test_names_match_the_feature_columns(data):
    val = data.val_cohort
    names = feature_names(data.schema, val.reals.shape[1])
    assert len(names) == summary_features(data.schema, val.reals, val.codes).shape[1] == len(set(names))
    assert names[:2] == ["VL mean", "VL sd"] and "CD4 sd of monthly change" in names and "Gender=Male share" in names


def test_terms_add_up_and_the_reference_scores_zero(data):
    val, test = data.val_cohort, data.test_cohort
    space = data.features
    mean_term, spread_term = space.terms(test.reals, test.codes)
    assert mean_term + spread_term == pytest.approx(space.distance(test.reals, test.codes), rel=1e-9)
    assert mean_term >= 0 and spread_term >= -1e-9
    assert sum(space.terms(val.reals, val.codes)) == pytest.approx(0.0, abs=1e-6)  # the reference itself
    table = space.explain((val.reals, val.codes), (val.reals, val.codes))
    assert np.allclose(table["shift"], 0.0) and np.allclose(table["sd_ratio"].dropna(), 1.0)


def test_one_patient_repeated_pays_the_whole_real_variance(data):
    val = data.val_cohort
    reals, codes = np.repeat(val.reals[:1], 300, axis=0), np.repeat(val.codes[:1], 300, axis=0)
    _, spread_term = data.features.terms(reals, codes)
    assert spread_term == pytest.approx(np.trace(data.features.ref_cov), rel=1e-6)
    table = data.features.explain((val.reals, val.codes), (reals, codes))
    assert (table["sd_ratio"].dropna() < 1e-12).all()


def test_shifts_make_up_the_mean_term_when_every_component_is_kept(data):
    train, val, test = data.train_cohort, data.val_cohort, data.test_cohort
    full = FeatureSpace.fit(train, val, n_components=1000)  # as many components as features: a rotation
    smooth = test.reals.copy()
    smooth[:, 1:, 0] = smooth[:, :1, 0]  # VL frozen at its first month: no monthly change
    table = full.explain((val.reals, val.codes), (smooth, test.codes))
    # the shift is measured from the validation patients, the mean term from the same reference's embedding
    assert (table["shift"] ** 2).sum() == pytest.approx(full.terms(smooth, test.codes)[0], rel=1e-6)
    assert table["feature"].iloc[0] in ("VL sd of monthly change", "VL sd", "VL lag-1 autocorrelation")
    assert table["shift"].iloc[0] < -1
