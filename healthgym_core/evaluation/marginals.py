"""Marginal statistics of real vs synthetic patients: KS and W1 of the reals, TVD and coverage of the categories,
and the joint tables of category pairs (Gender x Ethnic, NNRTI x base combination)."""

from __future__ import annotations

import numpy as np
from scipy import stats

from healthgym_core.data.schema import Schema

JOINT_MIN_MASS = 0.01  # a joint cell counts as present in the real data from this share on
JOINT_PAIRS = {"joint": ("Gender", "Ethnic"), "regimen_joint": ("Comp_NNRTI", "Base_Drug_Combo")}


def log1p10(x: np.ndarray) -> np.ndarray:
    """log10(x + 1) of non-negative values: the scale of the heavy-tailed reals (VL, CD4)."""
    return np.log10(np.maximum(x, 0.0) + 1.0)


def ks_statistic(x: np.ndarray, y: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic."""
    x, y = np.sort(np.ravel(x)), np.sort(np.ravel(y))
    grid = np.concatenate([x, y])
    cx = np.searchsorted(x, grid, side="right") / x.size
    cy = np.searchsorted(y, grid, side="right") / y.size
    return float(np.abs(cx - cy).max())


def category_shares(schema: Schema, codes: np.ndarray) -> list[np.ndarray]:
    """Per categorical variable, its category shares pooled over patient-months."""
    return [
        np.bincount(codes[:, :, j].ravel(), minlength=v.num_classes) / codes[:, :, j].size
        for j, v in enumerate(schema.categoricals)
    ]


def month_shares(codes: np.ndarray, k: int) -> np.ndarray:
    """[N, T] codes -> [T, k] per-month shares."""
    return np.stack([np.bincount(codes[:, t], minlength=k) for t in range(codes.shape[1])]) / codes.shape[0]


def tvd_and_coverage(real: list[np.ndarray], fake: list[np.ndarray]) -> tuple[list[float], float]:
    """TVD per variable between share vectors, and category coverage: the share of categories present in the real
    data whose synthetic frequency is at least half the real one."""
    tvd, covered, present = [], 0, 0
    for p, q in zip(real, fake):
        tvd.append(0.5 * float(np.abs(p - q).sum()))
        mask = p > 0
        present += int(mask.sum())
        covered += int((q[mask] >= 0.5 * p[mask]).sum())
    return tvd, (covered / present if present else 1.0)


def joint_pairs(schema: Schema) -> dict[str, tuple[int, int]]:
    """The category pairs whose joint table is scored, as positions among the schema's categoricals: Gender x Ethnic
    (else the first two categoricals) as "joint", Comp_NNRTI x Base_Drug_Combo as "regimen_joint" where present."""
    names = [v.name for v in schema.categoricals]
    out = {}
    for prefix, (na, nb) in JOINT_PAIRS.items():
        if na in names and nb in names:
            out[prefix] = (names.index(na), names.index(nb))
        elif prefix == "joint" and len(names) >= 2:
            out[prefix] = (0, 1)  # generic fallback: the first two categorical variables
    return out


def joint_table(a: np.ndarray, b: np.ndarray, ka: int, kb: int) -> np.ndarray:
    """[ka, kb] shares of the (a, b) code pairs over all patient-months."""
    return np.bincount((a * kb + b).ravel(), minlength=ka * kb).reshape(ka, kb) / a.size


def joint_coverage(p: np.ndarray, q: np.ndarray) -> tuple[float, int, int]:
    """(TVD, cells covered, cells present): a real cell with >= 1% mass is covered when the synthetic share is
    within a factor of 2 of the real one."""
    mask = p >= JOINT_MIN_MASS
    covered = (q[mask] >= 0.5 * p[mask]) & (q[mask] <= 2.0 * p[mask])
    return 0.5 * float(np.abs(p - q).sum()), int(covered.sum()), int(mask.sum())


def marginal_metrics(
    schema: Schema, real: tuple[np.ndarray, np.ndarray], fake: tuple[np.ndarray, np.ndarray]
) -> dict[str, float]:
    """The per-epoch marginals: mean KS over reals, mean TVD over categoricals (pooled over months), coverage."""
    (r_reals, r_codes), (f_reals, f_codes) = real, fake
    ks = [ks_statistic(r_reals[:, :, j], f_reals[:, :, j]) for j in range(r_reals.shape[2])]
    tvd, coverage = tvd_and_coverage(category_shares(schema, r_codes), category_shares(schema, f_codes))
    return {
        "ks_mean": float(np.mean(ks)) if ks else 0.0,
        "tvd_mean": float(np.mean(tvd)) if tvd else 0.0,
        "coverage": coverage,
    }


def joint_metrics(schema: Schema, real_codes: np.ndarray, fake_codes: np.ndarray) -> dict[str, float]:
    """Per pair of `joint_pairs`: its TVD, the real cells (>= 1%) reproduced within a factor of 2 (count and
    share); for Gender x Ethnic
    also the largest synthetic cell (the upstream v1 demo collapsed to 0.939 against 0.602 in its data)."""
    out: dict[str, float] = {}
    for prefix, (ia, ib) in joint_pairs(schema).items():
        ka, kb = schema.categoricals[ia].num_classes, schema.categoricals[ib].num_classes
        p = joint_table(real_codes[:, :, ia], real_codes[:, :, ib], ka, kb)
        q = joint_table(fake_codes[:, :, ia], fake_codes[:, :, ib], ka, kb)
        tvd, n_cov, n_present = joint_coverage(p, q)
        out[f"{prefix}_tvd"] = tvd
        if prefix == "joint":
            out["joint_max_cell"] = float(q.max())
        out[f"{prefix}_cells_covered"] = float(n_cov)
        out[f"{prefix}_cell_coverage"] = n_cov / n_present if n_present else 1.0
    return out


def marginals(
    schema: Schema, real: tuple[np.ndarray, np.ndarray], fake: tuple[np.ndarray, np.ndarray]
) -> dict[str, float]:
    """The final evaluation's marginals: per real variable KS (pooled and per month) and W1 on log10(x + 1); per
    categorical TVD (pooled and per month); coverage; the joint tables; and how often a variable that never
    changes within a real patient changes within a synthetic one."""
    (rr, rc), (fr, fc) = real, fake
    out: dict[str, float] = {}
    ks, w1, ks_month = [], [], []
    for j, v in enumerate(schema.reals):
        a, b = rr[:, :, j], fr[:, :, j]
        out[f"ks/{v.name}"] = k = ks_statistic(a, b)
        out[f"w1/{v.name}"] = w = float(stats.wasserstein_distance(log1p10(a).ravel(), log1p10(b).ravel()))
        ks.append(k)
        w1.append(w)
        ks_month.append(np.mean([ks_statistic(a[:, t], b[:, t]) for t in range(a.shape[1])]))
    if ks:
        out["ks_mean"] = float(np.mean(ks))
        out["ks_month_mean"] = float(np.mean(ks_month))
        out["w1_mean"] = float(np.mean(w1))
    if schema.categoricals:
        tvd, coverage = tvd_and_coverage(category_shares(schema, rc), category_shares(schema, fc))
        tvd_month = []
        for j, v in enumerate(schema.categoricals):
            out[f"tvd/{v.name}"] = tvd[j]
            p_t, q_t = month_shares(rc[:, :, j], v.num_classes), month_shares(fc[:, :, j], v.num_classes)
            tvd_month.append(0.5 * float(np.abs(p_t - q_t).sum(1).mean()))
        out["tvd_mean"] = float(np.mean(tvd))
        out["tvd_month_mean"] = float(np.mean(tvd_month))
        out["coverage"] = coverage
    out.update(joint_metrics(schema, rc, fc))
    if rc.shape[2] and rc.shape[1] > 1:
        static = (rc == rc[:, :1]).all(axis=(0, 1))  # [C]: never changes within any real patient
        if static.any():
            out["static_change_rate"] = float((fc[:, :, static] != fc[:, :1, static]).any(axis=(1, 2)).mean())
    return out
