import math

import numpy as np
import pytest

from healthgym_core.data.cohort import cohort_from_frame, load_cohort
from healthgym_core.data.prepared import prepare_data
from healthgym_core.data.schema import ART4HIV, Schema
from healthgym_core.data.simulate import simulate_cohort
from healthgym_core.evaluation import classifiers, dependence, distances, final, privacy
from healthgym_core.evaluation.final import METRIC_INFO, final_metrics, real_floor


@pytest.fixture(scope="module")
def demo():
    # 600 patients -> 420 / 90 / 90 train / validation / test
    return prepare_data(load_cohort("simulated", "demo7", patients=600), split_seed=0)


@pytest.fixture(scope="module")
def full():
    return prepare_data(load_cohort("simulated", "full13", patients=400), split_seed=0)


@pytest.fixture(scope="module")
def demo_floor(demo):
    return real_floor(demo, seed=0)


@pytest.fixture(scope="module")
def full_floor(full):
    return real_floor(full, seed=0)


# -- hand-checked helpers ---------------------------------------------------------------------------------------


def test_fisher_z_mean_by_hand():
    assert dependence.fisher_z_mean(np.array([0.5, 0.5])) == pytest.approx(0.5)
    assert dependence.fisher_z_mean(np.array([0.9, -0.9])) == pytest.approx(0.0, abs=1e-12)
    # weights n - 3: tanh((1 * atanh(0.2) + 3 * atanh(0.6)) / 4)
    expect = math.tanh((math.atanh(0.2) + 3 * math.atanh(0.6)) / 4)
    assert dependence.fisher_z_mean(np.array([0.2, 0.6]), np.array([1.0, 3.0])) == pytest.approx(expect)
    # r = +-1 is clipped at 0.999999, NaN entries and zero weights are skipped, all skipped -> NaN
    assert dependence.fisher_z_mean(np.array([1.0, 1.0])) == pytest.approx(0.999999)
    assert dependence.fisher_z_mean(np.array([0.3, np.nan, -0.8]), np.array([1.0, 1.0, 0.0])) == pytest.approx(0.3)
    assert np.isnan(dependence.fisher_z_mean(np.array([np.nan, 0.4]), np.array([1.0, 0.0])))
    # along an axis: columns are averaged independently
    out = dependence.fisher_z_mean(np.array([[0.5, 0.1], [0.5, -0.1]]), axis=0)
    assert out == pytest.approx([0.5, 0.0])


def test_trend_cycle_of_a_line_plus_a_centred_cosine():
    T = 60
    t = np.arange(T, dtype=float)
    wave = np.cos(2 * np.pi * 3 * (t - (T - 1) / 2) / T)  # even about the centre, full periods: orthogonal to 1 and t
    line = 2.0 + 0.5 * t
    trend, cycle = dependence.trend_cycle((line + wave)[None, :], axis=1)
    assert trend[0] == pytest.approx(line, abs=1e-9)
    assert cycle[0] == pytest.approx(wave, abs=1e-9)
    trend, cycle = dependence.trend_cycle(line[None, :], axis=1)
    assert trend[0] == pytest.approx(line) and np.abs(cycle).max() < 1e-9

    # two variables: opposite trends, the same cycle -> trend r = -1 (clipped), cycle r = +1 (clipped)
    x = np.stack([line + wave, 5.0 - 2.0 * t + 0.3 * wave], axis=-1)[None]  # [1, T, 2]
    m = dependence.dynamic_correlations(np.repeat(x, 4, axis=0))
    assert m["trend"][0, 1] == pytest.approx(-0.999999) and m["cycle"][0, 1] == pytest.approx(0.999999)
    assert m["sign_agree"][0, 1] == 0.0
    # a constant series is skipped: its pairs are undefined
    x3 = np.concatenate([x, np.ones((1, T, 1))], axis=-1)
    m = dependence.dynamic_correlations(x3)
    assert np.isnan(m["trend"][0, 2]) and np.isnan(m["cycle"][1, 2]) and np.isnan(m["sign_agree"][2, 0])


def test_within_patient_corr_and_pooled_acf_by_hand():
    x = np.array([[[1.0, 2.0, 5.0], [2.0, 4.0, 5.0], [3.0, 6.5, 5.0]]])  # one patient, T = 3, V = 3
    r = dependence.within_patient_corr(x)[0]
    assert r[0, 1] == pytest.approx(np.corrcoef(x[0, :, 0], x[0, :, 1])[0, 1])
    assert np.isnan(r[0, 2]) and np.isnan(r[2, 2])
    alt = np.array([1.0, -1.0, 1.0, -1.0])[None, :, None]  # mean 0: lag-1 sum -3 over sum of squares 4
    acf = dependence.pooled_acf(alt, max_lag=2)
    assert acf[0] == pytest.approx([-0.75, 0.5])
    assert np.isnan(dependence.pooled_acf(np.ones((2, 5, 1)), max_lag=2)).all()


def test_auc_by_hand():
    assert classifiers.auc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0
    assert classifiers.auc([0.8, 0.9, 0.1, 0.2], [0, 0, 1, 1]) == 0.0
    assert classifiers.auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    assert classifiers.auc([0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1]) == pytest.approx(0.5)
    assert np.isnan(classifiers.auc([0.1, 0.2], [1, 1]))


def test_mmd_by_hand():
    x, y = np.zeros((2, 1)), np.ones((2, 1))
    assert distances.mmd2_rbf(x, y, bandwidth=1.0) == pytest.approx(2 - 2 * math.exp(-0.5))
    rng = np.random.default_rng(0)
    a = rng.standard_normal((300, 4))
    b = rng.standard_normal((300, 4))
    assert abs(distances.mmd2_rbf(a, a)) < 0.01  # identical samples
    assert abs(distances.mmd2_rbf(a, b)) < 0.01  # same distribution
    assert distances.mmd2_rbf(a, b + 2.0) > 0.3


def test_the_detector_tells_shifted_patients_apart_and_not_identical_ones():
    rng = np.random.default_rng(1)
    real = rng.standard_normal((300, 5))
    same = rng.standard_normal((300, 5))
    narrow = rng.standard_normal((300, 5))  # one feature's spread shrunk: the same mean, a narrower distribution
    narrow[:, 2] *= 0.2
    floor = classifiers.detection(real, same, seed=0)
    assert 0.4 < floor["detect_auc"] < 0.6
    found = classifiers.detection(real, narrow, seed=0)
    assert found["detect_auc"] > 0.75 and found["detect_accuracy"] > 0.7
    assert classifiers.detection(real, narrow, seed=0) == found  # deterministic for a seed


def test_record_keys():
    reals = np.array([[[29.9, 793.0]], [[0.0, 1e-300]]])
    codes = np.array([[[1, 0]], [[1, 0]]])
    keys = privacy.record_keys(reals, codes)
    assert privacy.record_keys(reals * (1 + 1e-9), codes) == keys
    assert privacy.record_keys(reals * (1 + 1e-4), codes)[0] != keys[0]
    assert privacy.record_keys(reals, codes + 1)[1] != keys[1]


def test_nearest_distances_match_brute_force():
    from scipy.spatial.distance import cdist

    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((23, 7)), rng.standard_normal((17, 7))
    b[3] = a[5]  # an exact copy is at distance 0
    d = cdist(a, b)
    for chunk in (4, 1024):
        da, db = privacy.nearest_distances(a, b, chunk=chunk)
        assert da == pytest.approx(d.min(1)) and db == pytest.approx(d.min(0))
        assert da[5] == 0.0 and db[3] == 0.0


# -- real held-out patients score near the floor -------------------------------------------------------------


@pytest.mark.parametrize("which", ["demo", "full"])
def test_real_patients_score_like_real_data(which, request):
    m = request.getfixturevalue(f"{which}_floor")
    assert m["detect_auc"] < 0.7 and m["detect_advantage"] < 0.2
    assert m["ks_mean"] < 0.1 and m["w1_mean"] < 0.15 and m["tvd_mean"] < 0.15
    assert m["coverage"] >= 0.8 and m["joint_cell_coverage"] >= 0.6 and m["static_change_rate"] == 0.0
    assert 0.5 < m["joint_max_cell"] < 0.75  # the real Gender x Ethnic top cell is about 0.6
    assert abs(m["p_dcr_train_closer"] - 0.5) < 0.15 and abs(m["membership_auc"] - 0.5) < 0.15
    assert m["exact_copies"] == 0.0
    assert abs(m["mmd2"]) < 0.05 and m["corr_l1"] < 0.15 and m["acf_diff"] < 0.2
    assert all(np.isfinite(v) for v in m.values())


def test_full_schema_has_the_regimen_joint_and_all_reals(full_floor):
    for k in ("regimen_joint_tvd", "regimen_joint_cells_covered", "ks/Rel_CD4", "tvd/Drug_M", "acf_diff/Comp_INI"):
        assert k in full_floor


# -- broken synthetic sets score much worse ----------------------------------------------------------------------


def test_collapse_to_one_patient(demo, demo_floor):
    v = demo.val_cohort
    m = final_metrics(demo, np.repeat(v.reals[:1], 200, 0), np.repeat(v.codes[:1], 200, 0))
    assert m["joint_max_cell"] == 1.0 and m["joint_cells_covered"] == 1.0
    assert m["coverage"] < 0.5 < demo_floor["coverage"]
    assert m["detect_auc"] > 0.95
    assert m["tvd_mean"] > 3 * demo_floor["tvd_mean"] and m["ks_mean"] > 3 * demo_floor["ks_mean"]
    assert m["fd_feat"] > 10 * demo_floor["fd_feat"] and m["mmd2"] > 0.3
    assert m["emd_feat"] > 2 * demo_floor["emd_feat"]  # the ranking metric, on test patients
    assert m["acf_diff"] > 3 * demo_floor["acf_diff"]


def test_copies_of_training_patients(demo, demo_floor):
    tr = demo.train_cohort
    m = final_metrics(demo, tr.reals, tr.codes)
    assert m["exact_copies"] == 1.0 and m["membership_auc"] == 1.0
    # every member of the equal-sized training reference is copied, the rest is as close as a holdout
    ref, _ = privacy.privacy_reference(demo, seed=0)
    expect = 0.5 + 0.5 * len(ref) / tr.n_patients
    assert (
        m["p_dcr_train_closer"] == pytest.approx(expect, abs=0.06)
        and m["p_dcr_train_closer"] > demo_floor["p_dcr_train_closer"]
    )
    assert m["utility_gap"] == pytest.approx(0.0, abs=1e-9)  # same training set for TSTR and TRTR

    # copies of exactly the training reference: always closer to training, distance 0
    m = final_metrics(demo, tr.reals[ref], tr.codes[ref])
    assert m["p_dcr_train_closer"] == 1.0 and m["dcr_train_median"] == 0.0 and m["exact_copies"] == 1.0
    assert m["membership_auc"] == 1.0 and m["dcr_holdout_median"] > 1.0


def test_reals_times_ten(demo, demo_floor):
    v = demo.val_cohort
    m = final_metrics(demo, v.reals * 10.0, v.codes)
    assert m["ks_mean"] > 0.3 > demo_floor["ks_mean"] and m["w1_mean"] > 0.5
    assert m["detect_auc"] > 0.9 and m["fd_feat"] > 2 * demo_floor["fd_feat"]
    assert m["tvd_mean"] == demo_floor["tvd_mean"] and m["joint_tvd"] == demo_floor["joint_tvd"]  # codes untouched


def test_categoricals_shuffled_across_time(demo, demo_floor):
    v = demo.val_cohort
    rng = np.random.default_rng(0)
    codes = np.stack([c[rng.permutation(c.shape[0])] for c in v.codes])
    m = final_metrics(demo, v.reals, codes)
    assert m["tvd_mean"] == pytest.approx(demo_floor["tvd_mean"])  # pooled shares unchanged
    assert m["acf_diff/Base_Drug_Combo"] > 0.3 > demo_floor["acf_diff/Base_Drug_Combo"]
    assert m["acf_diff"] > 3 * demo_floor["acf_diff"]
    assert m["fd_feat"] > 10 * demo_floor["fd_feat"] and m["detect_auc"] > demo_floor["detect_auc"] + 0.1


# -- determinism, coverage of METRIC_INFO, schemas, inputs --------------------------------------------------------


def test_deterministic_for_a_seed(full, full_floor):
    again = real_floor(full, seed=0)
    assert again.keys() == full_floor.keys()
    assert all(again[k] == full_floor[k] for k in again)
    other = real_floor(full, seed=1)
    assert other["ks_mean"] == full_floor["ks_mean"] and other["fd_feat"] == full_floor["fd_feat"]
    assert any(other[k] != full_floor[k] for k in ("detect_auc", "p_dcr_train_closer", "membership_auc", "tstr_auc"))


def test_metric_info_covers_every_key(demo_floor, full_floor):
    for m in (demo_floor, full_floor):
        for k in m:
            assert k in METRIC_INFO, k
            desc, lower = METRIC_INFO[k]
            assert isinstance(desc, str) and desc and isinstance(lower, bool)
    assert METRIC_INFO.get("ks/VL") == METRIC_INFO["ks/<variable>"] and "ks/anything" in METRIC_INFO
    assert "nonsense" not in METRIC_INFO and METRIC_INFO.get("nope/") is None
    # no stale entries: every metric described is produced for the 13-variable schema
    produced = {k if "/" not in k else k.split("/")[0] + "/<variable>" for k in full_floor}
    assert set(METRIC_INFO) == produced
    report = final.format_report(full_floor, full_floor)
    assert all(k in report for k in full_floor)
    lines = {line.split()[0]: line for line in report.splitlines()}
    assert (
        "nearest real" in lines["diversity_ratio"] and " lower " in lines["fd_feat"] and " higher " in lines["coverage"]
    )


@pytest.mark.parametrize("names", [["VL", "CD4"], ["Gender", "Ethnic", "Extra_PI"], ["CD4", "Extra_pk_En"]])
def test_schemas_without_some_variables(names):
    schema = Schema("part", tuple(ART4HIV[n] for n in names))
    data = prepare_data(cohort_from_frame(simulate_cohort(160, seed=2), schema, "simulated"))
    m = real_floor(data)
    assert all(k in METRIC_INFO for k in m)
    assert ("ks_mean" in m) == (schema.n_real > 0) and ("tvd_mean" in m) == bool(schema.categoricals)
    assert ("joint_tvd" in m) == (len(schema.categoricals) >= 2) and ("tstr_auc" in m) == (schema.n_real > 0)
    assert "regimen_joint_tvd" not in m
    assert all(np.isfinite(v) for v in m.values())


def test_bad_inputs_are_refused(demo):
    v = demo.val_cohort
    with pytest.raises(ValueError, match="months"):
        final_metrics(demo, v.reals[:, :30], v.codes[:, :30])
    with pytest.raises(ValueError, match="categorical"):
        final_metrics(demo, v.reals, v.codes[:, :, :2])
    bad = v.codes.copy()
    bad[0, 0, 0] = 5
    with pytest.raises(ValueError, match="out of range"):
        final_metrics(demo, v.reals, bad)
    with pytest.raises(ValueError, match="non-finite"):
        final_metrics(demo, np.where(np.arange(v.reals.shape[0])[:, None, None] == 0, np.nan, v.reals), v.codes)
