"""What a user reads off a synthetic cohort next to real patients: how much values move from month to month, how far
the tails reach, which categories are missing, the Gender x Ethnic table, and whether a classifier tells the two
apart. Each as a number with a stated target (TARGETS), so that a cohort can be judged as a clinician or a
classifier would judge it.
"""

from __future__ import annotations

import numpy as np

from healthgym_core.data.schema import Schema
from healthgym_core.evaluation.classifiers import detection
from healthgym_core.evaluation.features import detector_features, regimen_changes
from healthgym_core.evaluation.marginals import category_shares, joint_metrics, log1p10, tvd_and_coverage

Patients = tuple[np.ndarray, np.ndarray]  # reals [N, T, R] in original units, internal codes [N, T, C]
RARE_SHARE = 0.01  # a real category counts as one a cohort must hold from this share of patient-months on
# name -> (what it is, the rule a faithful cohort meets): ratios are synthetic over real.
TARGETS = {
    "variability_ratio/<variable>": ("median per-patient sd of the monthly change of log10(x + 1)", "within 2x"),
    "p95_ratio/<variable>": ("95th percentile of the values, over all patient-months", "within 2x"),
    "iqr_ratio/<variable>": ("interquartile range of log10(x + 1), over all patient-months", "within 2x"),
    "switch_ratio": (
        "mean regimen changes per patient (months whose regimen differs from the month before)",
        "within 2x",
    ),
    "absent_categories": (f"real categories holding >= {RARE_SHARE:.0%} of patient-months never generated", "= 0"),
    "coverage": ("share of real categories generated at >= half their real share", ">= 0.9"),
    "joint_tvd": ("total-variation distance of the Gender x Ethnic table", "<= 0.10"),
    "detect_auc": ("held-out AUC of a gradient-boosting detector on per-patient summaries", "<= 0.85"),
}


def monthly_change_sd(reals: np.ndarray) -> np.ndarray:
    """[N, T, R] -> [N, R]: each patient's sd of the month-to-month change of log10(x + 1)."""
    if reals.shape[1] < 2:
        return np.zeros((reals.shape[0], reals.shape[2]))
    return np.diff(log1p10(reals), axis=1).std(axis=1)


def _ratio(a: float, b: float) -> float:
    return float(a / b) if b > 0 else (1.0 if a == 0 else float("inf"))


def realism(schema: Schema, real: Patients, fake: Patients, seed: int = 0) -> dict[str, float]:
    """The user-level measures of `fake` against `real` (see TARGETS)."""
    (rr, rc), (fr, fc) = real, fake
    out: dict[str, float] = {}
    mr, mf = monthly_change_sd(rr), monthly_change_sd(fr)
    for j, v in enumerate(schema.reals):
        out[f"variability_ratio/{v.name}"] = _ratio(np.median(mf[:, j]), np.median(mr[:, j]))
        out[f"p95_ratio/{v.name}"] = _ratio(np.percentile(fr[:, :, j], 95), np.percentile(rr[:, :, j], 95))
        iqr = [np.subtract(*np.percentile(log1p10(x[:, :, j]), [75, 25])) for x in (fr, rr)]
        out[f"iqr_ratio/{v.name}"] = _ratio(*iqr)
    if schema.categoricals and rc.shape[1] > 1:
        out["switch_ratio"] = _ratio(regimen_changes(schema, fc).mean(), regimen_changes(schema, rc).mean())
    if schema.categoricals:
        real_shares, fake_shares = category_shares(schema, rc), category_shares(schema, fc)
        out["absent_categories"] = float(
            sum(int(((p >= RARE_SHARE) & (q == 0)).sum()) for p, q in zip(real_shares, fake_shares))
        )
        out["coverage"] = tvd_and_coverage(real_shares, fake_shares)[1]
        joint = joint_metrics(schema, rc, fc)
        if "joint_tvd" in joint:
            out["joint_tvd"] = joint["joint_tvd"]
    out.update(
        {
            k: v
            for k, v in detection(detector_features(schema, *real), detector_features(schema, *fake), seed).items()
            if k == "detect_auc"
        }
    )
    return out


def misses(measures: dict[str, float]) -> dict[str, str]:
    """The measures that miss their target, each with its value and the rule."""
    out = {}
    for k, v in measures.items():
        family = k.split("/")[0] + "/<variable>" if "/" in k else k
        if family not in TARGETS or not np.isfinite(v):
            continue
        rule = TARGETS[family][1]
        ok = {
            "within 2x": 0.5 <= v <= 2.0,
            "= 0": v == 0,
            ">= 0.9": v >= 0.9,
            "<= 0.10": v <= 0.10,
            "<= 0.85": v <= 0.85,
        }[rule]
        if not ok:
            out[k] = f"{v:.3g} ({rule})"
    return out
