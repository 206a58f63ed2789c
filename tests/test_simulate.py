"""The simulated ART-for-HIV cohort: CSV format, determinism, codes, calibration and clinical structure.

Published reference values come from the v2.0 summaries (shared reference art4hiv-data.md). Tolerances are stated
next to each check; they are loose enough for sampling noise at 3,000 patients and tight enough that a model
without the intended structure (noise, wrong scale, no failure-switch coupling) fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.signal import detrend

from healthgym_core.data.schema import ART4HIV, ART4HIV_COLUMNS
from healthgym_core.data.simulate import (
    SIMULATED_NOTICE,
    gender_ethnic_joint,
    simulate_cohort,
    simulated_notice,
)

N, MONTHS, SEED = 3000, 60, 0
REGIMEN = ["Base Drug Combo", "Comp. INI", "Comp. NNRTI", "Extra PI", "Extra pk-En"]
REALS = ["VL", "CD4", "Rel CD4"]
NA_INI, NA_NNRTI, NA_PI = 3, 3, 5


@pytest.fixture(scope="module")
def cohort() -> pd.DataFrame:
    return simulate_cohort(N, seed=SEED, months=MONTHS)


def _grid(df: pd.DataFrame, column: str) -> np.ndarray:
    """(patients, months) array of one column; relies on the (PatientID, Timestep) row order."""
    return df[column].to_numpy().reshape(-1, MONTHS)


def _switch_grid(df: pd.DataFrame) -> np.ndarray:
    """True where the regimen tuple differs from the previous month's."""
    reg = df[REGIMEN].to_numpy().reshape(-1, MONTHS, len(REGIMEN))
    sw = np.zeros(reg.shape[:2], dtype=bool)
    sw[:, 1:] = (reg[:, 1:] != reg[:, :-1]).any(axis=-1)
    return sw


def _trend_fisher_mean(a: np.ndarray, b: np.ndarray) -> float:
    """Health Gym §5.3: per-patient Pearson r of the linear trends, Fisher-z mean with weights n - 3."""
    ta = a - detrend(a, axis=1, type="linear")
    tb = b - detrend(b, axis=1, type="linear")
    ok = (np.ptp(a, axis=1) > 0) & (np.ptp(b, axis=1) > 0) & (ta.std(axis=1) > 0) & (tb.std(axis=1) > 0)
    rs = np.array([np.corrcoef(x, y)[0, 1] for x, y in zip(ta[ok], tb[ok])])
    z = np.arctanh(np.clip(rs, -0.999999, 0.999999))
    w = np.full(len(z), a.shape[1] - 3.0)
    return float(np.tanh(np.sum(w * z) / np.sum(w)))


# -- format --------------------------------------------------------------------------------------------------------
def test_format_matches_published_csv(cohort: pd.DataFrame) -> None:
    assert list(cohort.columns) == ART4HIV_COLUMNS
    assert len(cohort) == N * MONTHS
    assert cohort["PatientID"].dtype == np.int64 and cohort["Timestep"].dtype == np.int64
    for c in ART4HIV_COLUMNS[:-2]:
        assert cohort[c].dtype == np.float64, c
    assert cohort.index.equals(pd.RangeIndex(N * MONTHS))
    np.testing.assert_array_equal(cohort["PatientID"].to_numpy(), np.repeat(np.arange(N), MONTHS))
    np.testing.assert_array_equal(cohort["Timestep"].to_numpy(), np.tile(np.arange(MONTHS), N))
    assert not cohort.duplicated(["PatientID", "Timestep"]).any()
    assert cohort.notna().all().all()


def test_reals_finite_positive_and_in_range(cohort: pd.DataFrame) -> None:
    x = cohort[REALS].to_numpy()
    assert np.isfinite(x).all() and (x > 0).all()
    assert cohort["VL"].min() >= 0.1 - 1e-12 and cohort["VL"].max() < 1e5  # published 0.10 .. 97,566
    assert cohort["CD4"].min() >= 5 and cohort["CD4"].max() <= 5e4  # published 7.96 .. 42,475
    assert cohort["Rel CD4"].min() >= 1 and cohort["Rel CD4"].max() <= 600  # published 1.871 .. 586.6


def test_codes_in_documented_sets(cohort: pd.DataFrame) -> None:
    for var in ART4HIV.values():
        if var.kind == "real":
            continue
        values = set(np.unique(cohort[var.column]).tolist())
        assert values <= set(var.codes), (var.column, values)
    # every documented code of the categorical variables occurs somewhere in 180,000 rows
    assert set(np.unique(cohort["Base Drug Combo"])) == {0, 1, 2, 3, 4, 5}
    assert set(np.unique(cohort["Comp. INI"])) == {0, 1, 2, 3}
    assert set(np.unique(cohort["Comp. NNRTI"])) == {0, 1, 2, 3}
    assert set(np.unique(cohort["Extra PI"])) == {0, 1, 2, 3, 4, 5}
    assert set(np.unique(cohort["Ethnic"])) == {1, 2, 3, 4}


def test_other_sizes_and_bad_arguments() -> None:
    one = simulate_cohort(1, seed=3, months=1)
    assert list(one.columns) == ART4HIV_COLUMNS and len(one) == 1
    short = simulate_cohort(5, seed=3, months=12)
    assert len(short) == 60 and short["Timestep"].max() == 11 and short["PatientID"].max() == 4
    for bad in (0, -3):
        with pytest.raises(ValueError):
            simulate_cohort(bad)
        with pytest.raises(ValueError):
            simulate_cohort(10, months=bad)


def test_notice_says_simulated() -> None:
    for text in (SIMULATED_NOTICE, simulated_notice(7, 1234)):
        assert "Simulated" in text and "NOT the Health Gym dataset" in text
    assert "seed 7" in simulated_notice(7, 1234) and "1,234" in simulated_notice(7, 1234)


# -- determinism ---------------------------------------------------------------------------------------------------
def test_deterministic_per_seed(cohort: pd.DataFrame) -> None:
    again = simulate_cohort(N, seed=SEED, months=MONTHS)
    pd.testing.assert_frame_equal(cohort, again, check_exact=True)
    other = simulate_cohort(N, seed=SEED + 1, months=MONTHS)
    assert not np.array_equal(cohort["VL"].to_numpy(), other["VL"].to_numpy())
    assert not np.array_equal(cohort["Base Drug Combo"].to_numpy(), other["Base Drug Combo"].to_numpy())


# -- calibration to the published v2.0 marginals -------------------------------------------------------------------
def test_viral_load_marginals(cohort: pd.DataFrame) -> None:
    vl = cohort["VL"]
    assert 38.78 / 1.5 <= vl.median() <= 38.78 * 1.5  # factor 1.5
    assert 7041 / 2 <= vl.mean() <= 7041 * 2  # factor 2: the heavy tail
    assert vl.quantile(0.99) > 3e4  # a real high-viraemia tail, not a shifted bulk


def test_cd4_marginals(cohort: pd.DataFrame) -> None:
    cd4, rel = cohort["CD4"], cohort["Rel CD4"]
    assert abs(cd4.median() / 466.4 - 1) <= 0.15  # 15%
    assert abs(cd4.mean() / 823.1 - 1) <= 0.25  # 25%: right tail (mean/median about 1.77)
    assert abs(rel.mean() / 36.35 - 1) <= 0.20  # 20%


def test_demographics(cohort: pd.DataFrame) -> None:
    first = cohort.groupby("PatientID")[["Gender", "Ethnic"]]
    assert (first.nunique() == 1).all().all()  # constant within a patient
    female = (cohort["Gender"] == 2).mean()
    assert abs(female - 0.137) <= 0.03  # published mean code 1.137
    shares = cohort["Ethnic"].value_counts(normalize=True)
    assert 0.55 <= shares[4] <= 0.80  # Other dominant (demo subset: 68.7%)
    assert shares[4] > shares[3] > shares[2] > shares[1] > 0  # Other > Caucasian > African > Asian
    joint = gender_ethnic_joint()
    assert joint.shape == (2, 4) and (joint > 0).all() and abs(joint.sum() - 1) < 1e-12
    assert abs(joint[1].sum() - 0.137) < 1e-12


@pytest.mark.parametrize("column, published", [("VL (M)", 0.131), ("CD4 (M)", 0.155), ("Drug (M)", 0.777)])
def test_flag_rates(cohort: pd.DataFrame, column: str, published: float) -> None:
    assert abs(cohort[column].mean() - published) <= 0.03  # 0.03 absolute


def test_pk_enhancer_rate(cohort: pd.DataFrame) -> None:
    assert abs(cohort["Extra pk-En"].mean() - 0.0669) <= 0.03  # 0.03 absolute


def test_switch_rate(cohort: pd.DataFrame) -> None:
    reg = cohort[REGIMEN]
    not_first = (cohort["Timestep"] > 0).to_numpy()[:, None]
    changed = (reg.ne(reg.groupby(cohort["PatientID"]).shift()) & not_first).any(axis=1)
    share = changed.groupby(cohort["PatientID"]).any().mean()
    assert abs(share - 5691 / 8916) <= 0.06  # published 0.638
    assert share == pytest.approx(_switch_grid(cohort).any(axis=1).mean())


# -- regimen structure ---------------------------------------------------------------------------------------------
def test_ini_and_nnrti_rarely_together(cohort: pd.DataFrame) -> None:
    ini = cohort["Comp. INI"] != NA_INI
    nnrti = cohort["Comp. NNRTI"] != NA_NNRTI
    assert (ini & nnrti).mean() < 0.05  # below 5% of rows
    assert np.corrcoef(ini, nnrti)[0, 1] < -0.35  # the published negative INI-NNRTI relation (independent: 0)


def test_components_tied_to_base(cohort: pd.DataFrame) -> None:
    base, pi, pk = cohort["Base Drug Combo"], cohort["Extra PI"], cohort["Extra pk-En"]
    ini, nnrti = cohort["Comp. INI"], cohort["Comp. NNRTI"]
    # FTC + RTVB + TDF: the booster is in the base, so a PI to boost comes with it, and no second enhancer
    b4 = base == 4
    assert pi[b4].isin([0, 2, 4]).all() and (pk[b4] == 0).all()
    # DRV + FTC + TDF: a PI base, boosted (ritonavir as Extra PI or the pk enhancer), no NNRTI
    b3 = base == 3
    assert (pi[b3].isin([1, 3]) | (pk[b3] == 1)).all() and (nnrti[b3] == NA_NNRTI).all()
    # EVG is always boosted
    assert (pk[ini == 2] == 1).all()
    # every row has some third agent or a PI-type base, except the residual "Other" backbone
    no_third = (ini == NA_INI) & (nnrti == NA_NNRTI) & (pi == NA_PI) & (pk == 0) & (base != 3)
    assert (base[no_third] == 5).all()


def test_regimen_constant_between_switches_and_recorded(cohort: pd.DataFrame) -> None:
    sw = _switch_grid(cohort)
    drug_m = _grid(cohort, "Drug (M)")
    assert (drug_m[sw] == 1).all()  # a regimen start is always recorded
    per_patient = sw.sum(axis=1)
    assert per_patient.max() < 20  # switches are events, not month-to-month noise
    assert 0.7 <= sw.sum() / len(per_patient) <= 2.0  # switches per patient in 60 months


# -- clinical dynamics ---------------------------------------------------------------------------------------------
def test_viral_load_falls_after_regimen_start(cohort: pd.DataFrame) -> None:
    lv = np.log10(_grid(cohort, "VL"))
    high = lv[:, 0] > 4  # started from a high VL
    assert high.mean() > 0.1
    med = np.median(lv[high], axis=0)
    assert med[4] < med[0] - 2 and med[4] < np.log10(200)  # suppressed within a few months
    assert med[1] > med[4]  # gradual, not instantaneous


def test_switches_follow_virological_failure(cohort: pd.DataFrame) -> None:
    lv = np.log10(_grid(cohort, "VL"))
    sw = _switch_grid(cohort)
    p, t = np.nonzero(sw[:, : MONTHS - 6])
    keep = t >= 1
    p, t = p[keep], t[keep]
    before, after = lv[p, t - 1], lv[p, t + 5]
    failing = before > 3
    assert failing.mean() >= 0.4  # most switches come after VL > 1,000
    assert failing.mean() >= 2.5 * (lv > 3).mean()  # far more often than the base rate
    assert failing.mean() <= 0.9  # some switches for other reasons
    assert np.median(after[failing]) < np.median(before[failing]) - 1.5  # the new regimen re-suppresses


def test_viral_rebound_occurs(cohort: pd.DataFrame) -> None:
    lv = np.log10(_grid(cohort, "VL"))
    was_suppressed = np.maximum.accumulate(lv < np.log10(200), axis=1)
    high_after = (lv > 4) & np.roll(was_suppressed, 1, axis=1)
    high_after[:, 0] = False
    assert 0.1 <= high_after.any(axis=1).mean() <= 0.8  # failure after suppression in a fair share of patients


def test_cd4_recovers_with_suppression_and_falls_with_viraemia(cohort: pd.DataFrame) -> None:
    lv = np.log10(_grid(cohort, "VL"))
    cd4 = _grid(cohort, "CD4")
    high = lv[:, 0] > 4
    assert np.median(cd4[high, 12] / cd4[high, 0]) > 1.1  # recovery after starting ART
    sw = _switch_grid(cohort)
    p, t = np.nonzero(sw)
    keep = (t >= 7) & (lv[p, np.maximum(t - 1, 0)] > 3)
    p, t = p[keep], t[keep]
    assert np.median(cd4[p, t - 1] / cd4[p, t - 7]) < 0.95  # decline in the six months of failure


def test_measurement_flags_track_failure(cohort: pd.DataFrame) -> None:
    lv = np.log10(_grid(cohort, "VL"))
    vl_m, cd4_m = _grid(cohort, "VL (M)"), _grid(cohort, "CD4 (M)")
    assert vl_m[lv > 3].mean() > 1.5 * vl_m[lv <= 3].mean()  # more testing while viraemic
    assert cd4_m[vl_m == 1].mean() > 3 * cd4_m[vl_m == 0].mean()  # CD4 mostly measured with VL


def test_within_patient_trend_correlations(cohort: pd.DataFrame) -> None:
    lv = np.log10(_grid(cohort, "VL"))
    cd4 = _grid(cohort, "CD4")
    rel = _grid(cohort, "Rel CD4")
    assert _trend_fisher_mean(lv, cd4) < -0.3  # published: strong negative VL-CD4 trend relation
    assert _trend_fisher_mean(rel, cd4) > 0.3  # published: strong positive Rel CD4-CD4 relation
    # the trend r of two lines is +-1, so also require a clear majority of patients with opposite-sign slopes
    t = np.arange(MONTHS) - (MONTHS - 1) / 2
    slope_vl, slope_cd4 = (lv - lv.mean(1, keepdims=True)) @ t, (cd4 - cd4.mean(1, keepdims=True)) @ t
    assert (np.sign(slope_vl) != np.sign(slope_cd4)).mean() > 0.6
    # and the relation holds between patients' slopes, not just their signs
    assert np.corrcoef(slope_vl, np.log(np.abs(slope_cd4) + 1) * np.sign(slope_cd4))[0, 1] < -0.2


# -- speed ---------------------------------------------------------------------------------------------------------
def test_ten_thousand_patients_under_30_seconds() -> None:
    start = time.perf_counter()
    df = simulate_cohort(10_000, seed=1)
    elapsed = time.perf_counter() - start
    assert len(df) == 600_000
    assert elapsed < 30.0, f"{elapsed:.1f} s"


# -- the same cohort on every CPU ----------------------------------------------------------------------------------
_FINGERPRINT = """
from healthgym_core.data.cohort import load_cohort
print(load_cohort("simulated", "demo7", patients=500, seed=3).fingerprint())
"""


def test_the_cohort_does_not_depend_on_the_cpus_vector_instructions() -> None:
    # numpy's AVX-512 exp/log/pow differ from libm's in the last bit; with them the cohort came out different.
    from numpy._core._multiarray_umath import __cpu_features__ as features

    if not features.get("AVX512F"):
        pytest.skip("needs a CPU with AVX-512, whose numpy kernels differ from the C library's")
    runs = {}
    for name, disabled in (("AVX-512", ""), ("without", "X86_V4 AVX512_ICL")):
        env = {**os.environ, "NPY_DISABLE_CPU_FEATURES": disabled}
        out = subprocess.run([sys.executable, "-c", _FINGERPRINT], env=env, capture_output=True, text=True, check=True)
        runs[name] = out.stdout.strip()
    assert runs["AVX-512"] == runs["without"] and len(runs["without"]) == 16, runs


# A record made by the simulator before it used libm, on an AVX-512 CPU; its data cannot be rebuilt.
EARLIER_AVX512_DATA = "a8010b92f940d18a"
RECORDS = sorted(Path(__file__).resolve().parents[1].glob("docs/results/*/study.json"))


@pytest.mark.parametrize("path", RECORDS, ids=[p.parent.name for p in RECORDS])
def test_committed_study_records_rebuild_their_data_or_say_why_not(path: Path) -> None:
    from healthgym_core.errors import ConfigError
    from study.experiment import read_study_record, study_data

    record = read_study_record(path.parent)
    if record["data"]["fingerprint"] != EARLIER_AVX512_DATA:
        assert study_data(record).fingerprint == record["data"]["fingerprint"]
        return
    with pytest.raises(ConfigError) as refused:
        study_data(record)
    message = str(refused.value)
    assert "can no longer be rebuilt" in message and EARLIER_AVX512_DATA in message and "fb78dc93860e43d3" in message
    assert "\n" not in message


def test_the_per_space_records_are_on_the_data_a_clone_simulates() -> None:
    # so that each space's committed study is evaluated and reported anew from a clone (the test above rebuilds them)
    from study.spaces import BUILTIN

    spaces = {
        p.parent.name: json.loads(p.read_text())["data"]["fingerprint"] for p in RECORDS if p.parent.name in BUILTIN
    }
    assert len(spaces) >= 6 and EARLIER_AVX512_DATA not in spaces.values(), spaces
