"""How collapsed synthetic patients are: their diversity relative to real patients, the share of distinct patients,
and a verdict (collapsed / partial / faithful) from fixed thresholds, used by every evaluation and the study's
summaries."""

from __future__ import annotations

import numpy as np

from healthgym_core.data.schema import Schema
from healthgym_core.evaluation.features import FeatureSpace, value_columns
from healthgym_core.evaluation.marginals import joint_metrics

N_BINS = 10  # each real variable is binned at the reference patients' deciles to tell patients apart

# Below any: the generator emits (nearly) one patient. The values' own diversity is needed besides the whole
# feature space's: decoded at quantiles, a generator whose values are one patient's still draws varied categories
# (and may switch them every month), which the whole space counts as diversity.
COLLAPSED_DIVERSITY = 0.1
COLLAPSED_DISTINCT = 0.1
COLLAPSED_VALUES = 0.1
# All of these: the cohort is faithful at the study's scale (the targets of the default study).
FAITHFUL = {
    "coverage": (">=", 0.9),
    "joint_tvd": ("<=", 0.10),
    "diversity_ratio": (">=", 0.5),
    "fd_feat_ratio": ("<=", 5.0),
}


def diversity_ratio(
    space: FeatureSpace, real: tuple[np.ndarray, np.ndarray], fake: tuple[np.ndarray, np.ndarray]
) -> float:
    """Total variance of the synthetic patients over that of the real ones, in the frozen feature space of fd_feat
    (1 for a sample of the same population; 0 for one patient repeated)."""
    er, ef = space.embed(*real), space.embed(*fake)
    tr = float(np.var(er, axis=0, ddof=1).sum())
    return float(np.var(ef, axis=0, ddof=1).sum()) / tr if tr > 0 else float("nan")


def value_diversity(schema: Schema, real: tuple[np.ndarray, np.ndarray], fake: tuple[np.ndarray, np.ndarray]) -> float:
    """How much the synthetic patients' real-valued trajectories differ from one another, against real patients: the
    mean over the per-patient value summaries (`features.value_columns`) of their variance ratio (1 for a sample
    of the same population; 0 when every patient has the same values, whatever their categories)."""
    ratios = [
        float(np.var(f)) / vr
        for (_, r), (_, f) in zip(value_columns(schema, real[0]), value_columns(schema, fake[0]))
        if (vr := float(np.var(r))) > 0
    ]
    return float(np.mean(ratios)) if ratios else float("nan")


def patient_keys(reference_reals: np.ndarray, reals: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """[N, T * V] integer keys: every month's category codes, and every month's reals as their decile among the
    reference patients' values (pooled over months)."""
    bins = []
    for j in range(reals.shape[2]):
        edges = np.quantile(reference_reals[:, :, j], np.linspace(0, 1, N_BINS + 1)[1:-1])
        bins.append(np.searchsorted(edges, reals[:, :, j]))
    parts = [np.stack(bins, axis=-1) if bins else np.zeros(reals.shape[:2] + (0,), np.int64), codes.astype(np.int64)]
    return np.concatenate(parts, axis=-1).reshape(len(reals), -1)


def distinct_share(reference_reals: np.ndarray, reals: np.ndarray, codes: np.ndarray) -> float:
    """The share of patients that are distinct at that resolution (1 for real cohorts; 1/N for one patient)."""
    keys = patient_keys(reference_reals, reals, codes)
    return len(np.unique(keys, axis=0)) / len(keys)


def collapse_metrics(
    schema: Schema, space: FeatureSpace, real: tuple[np.ndarray, np.ndarray], fake: tuple[np.ndarray, np.ndarray]
) -> dict[str, float]:
    """diversity_ratio, value_diversity, distinct_share and the joint tables of category pairs (TVD, largest cell, cells within a
    factor of 2) of synthetic patients against the real `reference` ones."""
    out = {"diversity_ratio": diversity_ratio(space, real, fake), "distinct_share": distinct_share(real[0], *fake)}
    if schema.n_real:
        out["value_diversity"] = value_diversity(schema, real, fake)
    out.update(joint_metrics(schema, real[1], fake[1]))
    return out


def with_fd_feat_ratio(metrics: dict) -> dict:
    """A copy of `metrics` with `fd_feat_ratio` (fd_feat / its floor) added when absent and a floor is given."""
    m = dict(metrics)
    if "fd_feat_ratio" not in m and m.get("fd_feat_floor"):
        m["fd_feat_ratio"] = m.get("fd_feat", np.nan) / m["fd_feat_floor"]
    return m


def missed_targets(metrics: dict) -> dict[str, str]:
    """The faithfulness targets a result misses, each as its value and the target ('0.8 (>= 0.9)'); a metric the
    result lacks counts as missed. `fd_feat_ratio` is computed from fd_feat and its floor when absent."""
    m = with_fd_feat_ratio(metrics)
    missed = {}
    for k, (op, v) in FAITHFUL.items():
        x = m.get(k, np.nan)
        if not (x >= v if op == ">=" else x <= v):
            missed[k] = f"{x:.3g} ({op} {v:g})"
    return missed


def verdict(metrics: dict) -> tuple[str, str]:
    """("collapsed" | "partial" | "faithful", the numbers behind it). `fd_feat_ratio` is fd_feat / its floor."""
    m = with_fd_feat_ratio(metrics)
    div, dist = m.get("diversity_ratio", np.nan), m.get("distinct_share", np.nan)
    values = m.get("value_diversity", np.nan)  # NaN in results recorded before it existed: no verdict from it
    shown = ", ".join(
        f"{k} {m[k]:.3g}"
        for k in (
            "diversity_ratio",
            "value_diversity",
            "distinct_share",
            "coverage",
            "joint_tvd",
            "joint_max_cell",
            "fd_feat_ratio",
        )
        if k in m and m[k] == m[k]
    )
    if div < COLLAPSED_DIVERSITY or dist < COLLAPSED_DISTINCT or values < COLLAPSED_VALUES:
        return "collapsed", shown
    return ("partial" if missed_targets(m) else "faithful"), shown


def targets_text() -> str:
    return ", ".join(f"{k} {op} {v:g}" for k, (op, v) in FAITHFUL.items())
