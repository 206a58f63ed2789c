"""The final report of the best trials: synthetic patients scored against the held-out TEST patients.

`final_metrics(data, reals, codes, seed=...)` scores synthetic sequences (original units, [N, T, R] reals and
[N, T, C] internal codes, as `CohortTransform.decode` returns them) with every statistic of the evaluation modules
(marginals, dependence, distances, classifiers, privacy); `real_floor(data)` scores the real validation patients the
same way, which is what real data achieves: report every metric next to its floor (`format_report`). `METRIC_INFO`
describes every key. The choices behind each statistic are in docs/evaluation.md.
"""

from __future__ import annotations

import numpy as np

from healthgym_core.data.prepared import PreparedData
from healthgym_core.evaluation.classifiers import detection, utility
from healthgym_core.evaluation.collapse import distinct_share, diversity_ratio, value_diversity
from healthgym_core.evaluation.dependence import dependence, static_corr_l1, variable_series
from healthgym_core.evaluation.distances import MMD_MAX, emd_feat, fixed_directions, mmd2_rbf, sliced_wasserstein
from healthgym_core.evaluation.features import FeatureSpace, detector_features
from healthgym_core.evaluation.fidelity import energy_feat
from healthgym_core.evaluation.marginals import marginals
from healthgym_core.evaluation.privacy import privacy
from healthgym_core.evaluation.rng import metric_rng


class _MetricInfo(dict):
    """name -> (one-line description, lower_is_better; readers ask `verdicts.direction`). A per-variable key such
    as ``ks/VL`` resolves to its family entry ``ks/<variable>`` for indexing, ``in`` and ``get``."""

    @staticmethod
    def _family(key: object) -> str | None:
        if isinstance(key, str) and "/" in key:
            return key.split("/", 1)[0] + "/<variable>"
        return None

    def __missing__(self, key: object) -> tuple[str, bool]:
        fam = self._family(key)
        if fam is not None and dict.__contains__(self, fam):
            return dict.__getitem__(self, fam)
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        fam = self._family(key)
        return dict.__contains__(self, key) or (fam is not None and dict.__contains__(self, fam))

    def get(self, key: object, default: object = None) -> object:
        try:
            return self[key]
        except KeyError:
            return default


METRIC_INFO: dict[str, tuple[str, bool]] = _MetricInfo(
    {
        # marginals
        "ks/<variable>": ("KS statistic of one real variable, pooled over patient-months", True),
        "ks_mean": ("mean KS statistic over real variables, pooled over patient-months", True),
        "ks_month_mean": ("KS statistic per month, averaged over months and real variables", True),
        "w1/<variable>": ("Wasserstein-1 of one real variable on log10(x+1), pooled over patient-months", True),
        "w1_mean": ("mean Wasserstein-1 on log10(x+1) over real variables", True),
        "tvd/<variable>": ("total-variation distance of one categorical, pooled over patient-months", True),
        "tvd_mean": ("mean total-variation distance over categoricals, pooled over patient-months", True),
        "tvd_month_mean": ("total-variation distance per month, averaged over months and categoricals", True),
        "coverage": ("share of real categories whose synthetic frequency is >= half the real one", False),
        "joint_tvd": ("TVD of the Gender x Ethnic joint (else the first two categoricals) over its cells", True),
        "joint_max_cell": (
            "largest single-cell share of that joint in the data scored (upstream collapse 0.939, real 0.602)",
            True,
        ),
        "joint_cells_covered": ("number of real joint cells with >= 1% mass reproduced within a factor of 2", False),
        "joint_cell_coverage": ("share of real joint cells with >= 1% mass reproduced within a factor of 2", False),
        "regimen_joint_tvd": ("TVD of the Comp_NNRTI x Base_Drug_Combo joint", True),
        "regimen_joint_cells_covered": (
            "number of real NNRTI x Base cells with >= 1% mass reproduced within a factor of 2",
            False,
        ),
        "regimen_joint_cell_coverage": (
            "share of real NNRTI x Base cells with >= 1% mass reproduced within a factor of 2",
            False,
        ),
        "diversity_ratio": (
            "total variance of the scored patients over that of real ones in fd_feat's frozen feature space (0: one patient repeated)",
            False,
        ),
        "value_diversity": (
            "mean variance ratio of the per-patient summaries of the real variables (0: every patient's values the "
            "same, whatever their categories)",
            False,
        ),
        "distinct_share": (
            "share of distinct patients (codes and real-variable deciles every month; 1/N: one patient repeated)",
            False,
        ),
        "static_change_rate": (
            "share of patients in whom a variable that never changes within a real patient changes",
            True,
        ),
        # dependence
        "corr_l1": ("mean |difference| of the lower-triangle static Pearson matrices in one-hot model space", True),
        "trend_l1": ("mean |difference| of the Fisher-z mean within-patient trend correlation matrices", True),
        "cycle_l1": (
            "mean |difference| of the Fisher-z mean within-patient cycle (detrended) correlation matrices",
            True,
        ),
        "trend_sign_concordance": (
            "share of variable pairs whose majority slope-sign direction matches the real one, weighted by |real agreement - 0.5|",
            False,
        ),
        "trend_sign_l1": ("mean |difference| of the per-pair share of patients whose slopes agree in sign", True),
        "acf_diff/<variable>": ("mean |difference| of one variable's autocorrelation over lags 1-12", True),
        "acf_diff": ("mean |difference| of per-variable autocorrelations over lags 1-12", True),
        # distribution level
        "fd_feat": ("Frechet distance in the frozen summary-feature space, against the test patients", True),
        "emd_feat": (
            "exact earth mover's distance in fd_feat's space (8 leading components) to the test patients",
            True,
        ),
        "energy_feat": (
            "energy distance over every standardised per-patient summary to the test patients: the ranking metric",
            True,
        ),
        "mmd2": ("unbiased RBF-kernel MMD^2 on the frozen feature embeddings (median-heuristic bandwidth)", True),
        "sliced_w": ("sliced Wasserstein on flattened model-space sequences (256 fixed directions)", True),
        # detection
        "detect_accuracy": (
            "held-out accuracy of a balanced real-vs-synthetic gradient-boosting detector on per-patient summaries "
            "(0.5 = indistinguishable)",
            True,
        ),
        "detect_auc": ("held-out AUC of that detector (0.5 = indistinguishable)", True),
        "detect_advantage": ("|detect_accuracy - 0.5|", True),
        # utility
        "tstr_auc": (
            "AUC on test patients of a last-month VL>200 (or > median) classifier trained on the data scored",
            False,
        ),
        "trtr_auc": ("the same classifier trained on real training patients (same size): the reference", False),
        "utility_gap": ("trtr_auc - tstr_auc", True),
        "tstr_r2": (
            "R^2 on test patients of a ridge regression of last-month log10(x+1), trained on the data scored",
            False,
        ),
        "trtr_r2": ("the same regression trained on real training patients (same size): the reference", False),
        "utility_r2_gap": ("trtr_r2 - tstr_r2", True),
        # privacy
        "dcr_train_median": (
            "median distance from a scored patient to the closest training patient (subsample)",
            False,
        ),
        "dcr_holdout_median": ("median distance from a scored patient to the closest test (holdout) patient", True),
        "p_dcr_train_closer": ("P(DCR to training < DCR to an equal-sized holdout); 0.5 = no memorisation", True),
        "exact_copies": (
            "share of scored patients identical to a training patient (reals to 1e-6 relative, equal codes)",
            True,
        ),
        "membership_auc": (
            "AUC of a distance-threshold membership attack, train members vs holdout (0.5 = no leakage)",
            True,
        ),
    }
)


def check_synthetic(data: PreparedData, reals: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    schema = data.schema
    reals = np.asarray(reals, dtype=np.float64)
    codes = np.asarray(codes)
    if reals.ndim != 3 or codes.ndim != 3 or reals.shape[:2] != codes.shape[:2]:
        raise ValueError(
            f"expected reals [N, T, R] and codes [N, T, C] with equal N, T; got {reals.shape} and {codes.shape}"
        )
    if reals.shape[2] != schema.n_real or codes.shape[2] != len(schema.categoricals):
        raise ValueError(
            f"schema {schema.name} has {schema.n_real} real and {len(schema.categoricals)} categorical variables; "
            f"got {reals.shape[2]} and {codes.shape[2]}"
        )
    if reals.shape[1] != data.n_months:
        raise ValueError(f"sequences have {reals.shape[1]} months; the test patients have {data.n_months}")
    if reals.shape[0] < 2:
        raise ValueError("need at least 2 synthetic patients")
    if not np.isfinite(reals).all():
        raise ValueError("synthetic reals contain non-finite values")
    if codes.size and (not np.array_equal(codes, np.round(codes)) or codes.min() < 0):
        raise ValueError("codes must be non-negative integers (internal 0-based codes)")
    codes = codes.astype(np.int64)
    for j, v in enumerate(schema.categoricals):
        if codes[:, :, j].max() >= v.num_classes:
            raise ValueError(f"{v.name}: code {int(codes[:, :, j].max())} out of range (0..{v.num_classes - 1})")
    return reals, codes


def final_metrics(data: PreparedData, reals: np.ndarray, codes: np.ndarray, *, seed: int = 0) -> dict[str, float]:
    """Score synthetic patients (original units, [N,T,R] reals and [N,T,C] internal codes) against the TEST
    patients. Deterministic for a seed; metrics whose variables the schema lacks are left out."""
    reals, codes = check_synthetic(data, reals, codes)
    schema, test = data.schema, data.test_cohort
    out: dict[str, float] = {}
    out.update(marginals(schema, (test.reals, test.codes), (reals, codes)))

    fake_model = data.transform.encode_arrays(np.maximum(reals, 0.0), codes)  # decode may give -1e-16
    if not np.isfinite(fake_model).all():
        raise ValueError("synthetic reals do not map to finite model-space values")
    real_model = data.test.astype(np.float64)
    corr = static_corr_l1(real_model, fake_model)
    if np.isfinite(corr):  # NaN: fewer than two columns vary in the real data
        out["corr_l1"] = corr
    out.update(
        dependence(
            schema,
            variable_series(data.transform, test.reals, test.codes),
            variable_series(data.transform, reals, codes),
        )
    )

    space = FeatureSpace.fit(data.train_cohort, test)
    out["fd_feat"] = space.distance(reals, codes)
    er, ef = space.embed(test.reals, test.codes), space.embed(reals, codes)
    out["emd_feat"] = emd_feat(er, ef, seed=seed)
    out["energy_feat"] = energy_feat(data, (reals, codes), (test.reals, test.codes))
    out["diversity_ratio"] = diversity_ratio(space, (test.reals, test.codes), (reals, codes))
    if data.schema.n_real:
        out["value_diversity"] = value_diversity(data.schema, (test.reals, test.codes), (reals, codes))
    out["distinct_share"] = distinct_share(test.reals, reals, codes)
    rng = metric_rng(seed, "mmd")
    er = er[np.sort(rng.choice(len(er), MMD_MAX, replace=False))] if len(er) > MMD_MAX else er
    ef = ef[np.sort(rng.choice(len(ef), MMD_MAX, replace=False))] if len(ef) > MMD_MAX else ef
    out["mmd2"] = mmd2_rbf(er, ef)
    out["sliced_w"] = sliced_wasserstein(real_model, fake_model, fixed_directions(real_model[0].size))

    out.update(
        detection(detector_features(schema, test.reals, test.codes), detector_features(schema, reals, codes), seed)
    )
    out.update(utility(data, reals, codes, seed))
    out.update(privacy(data, fake_model, reals, codes, seed))
    return {k: float(v) for k, v in out.items()}


def real_floor(data: PreparedData, *, seed: int = 0) -> dict[str, float]:
    """The same metrics for real held-out patients: the validation patients scored as if synthetic against the
    test patients. What real data scores; report each metric next to it. (Sample-size-dependent metrics such as
    KS, fd_feat and MMD^2 have a floor measured at the validation size.)"""
    return final_metrics(data, data.val_cohort.reals, data.val_cohort.codes, seed=seed)


def format_report(metrics: dict[str, float], floor: dict[str, float] | None = None) -> str:
    """A plain-text table: metric, value, real floor, which direction is better, description."""
    from healthgym_core.evaluation.verdicts import direction

    lines = [f"{'metric':<30} {'value':>10} {'real floor':>10}  {'better':<12}  description"]
    for k, v in metrics.items():
        desc = METRIC_INFO.get(k, ("", True))[0]
        fl = floor.get(k, float("nan")) if floor else float("nan")
        lines.append(f"{k:<30} {v:>10.4g} {fl:>10.4g}  {direction(k):<12}  {desc}")
    return "\n".join(lines)
