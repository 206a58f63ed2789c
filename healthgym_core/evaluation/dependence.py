"""Dependence between variables, real vs synthetic: static Pearson correlations, Health Gym's trend and cycle
correlations within patients, slope-sign agreement and autocorrelations."""

from __future__ import annotations

import numpy as np
from scipy import signal

from healthgym_core.data.schema import Schema
from healthgym_core.data.transforms import CohortTransform

FISHER_CLIP = 0.999999
MAX_LAG = 12
CONSTANT_TOL = 1e-8


def pearson(x: np.ndarray) -> np.ndarray:
    """[M, D] -> [D, D] Pearson r between the columns, clipped to [-1, 1]; NaN in the row and column of a constant
    column (sd <= 1e-12), whose correlation is undefined."""
    x = np.asarray(x, dtype=np.float64)
    xc = x - x.mean(0)
    sd = np.sqrt((xc * xc).mean(0))
    ok = sd > 1e-12
    z = xc / np.where(ok, sd, 1.0)
    r = np.clip(z.T @ z / x.shape[0], -1.0, 1.0)
    r[~ok, :] = np.nan
    r[:, ~ok] = np.nan
    return r


def rowwise_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise Pearson r of [N, T] series; 0 where either row is constant."""
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    den = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    num = (a * b).sum(axis=1)
    return np.where(den > 1e-12, num / np.where(den > 1e-12, den, 1.0), 0.0)


def lower(m: np.ndarray) -> np.ndarray:
    """The strict lower triangle of a square matrix, as a vector."""
    return m[np.tril_indices(m.shape[0], -1)]


def matrix_l1(real: np.ndarray, fake: np.ndarray, fill: float = 0.0) -> float:
    """Mean |real - fake| over the lower triangle where the real entry is defined; an undefined synthetic entry
    counts as `fill` (so a never-emitted category is penalised rather than hidden)."""
    a, b = lower(real), lower(fake)
    ok = np.isfinite(a)
    if not ok.any():
        return float("nan")
    return float(np.abs(a[ok] - np.where(np.isfinite(b[ok]), b[ok], fill)).mean())


def static_corr_l1(real_model: np.ndarray, fake_model: np.ndarray) -> float:
    """`matrix_l1` of the static Pearson matrices over patient-month rows of [N, T, F] model-space sequences."""
    a = pearson(real_model.reshape(-1, real_model.shape[-1]))
    b = pearson(fake_model.reshape(-1, fake_model.shape[-1]))
    return matrix_l1(a, b) if np.isfinite(lower(a)).sum() else float("nan")


def variable_series(transform: CohortTransform, reals: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """[N, T, V]: one column per variable, reals in model space (Box-Cox + min-max), categoricals as their codes."""
    cols = [p.transform(reals[:, :, j]) for j, p in enumerate(transform.reals)]
    cols += [codes[:, :, j].astype(np.float64) for j in range(codes.shape[2])]
    return np.stack(cols, axis=-1)


def fisher_z_mean(r: np.ndarray, weights: np.ndarray | None = None, axis: int = 0) -> np.ndarray:
    """tanh of the weighted mean of atanh(clip(r, +-0.999999)); NaN entries and zero weights are skipped."""
    r = np.asarray(r, dtype=np.float64)
    w = np.ones_like(r) if weights is None else np.broadcast_to(np.asarray(weights, dtype=np.float64), r.shape)
    ok = np.isfinite(r) & (w > 0)
    z = np.arctanh(np.clip(np.where(ok, r, 0.0), -FISHER_CLIP, FISHER_CLIP))
    wsum = np.where(ok, w, 0.0).sum(axis=axis)
    num = np.where(ok, w * z, 0.0).sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(wsum > 0, np.tanh(num / np.where(wsum > 0, wsum, 1.0)), np.nan)


def trend_cycle(x: np.ndarray, axis: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Health Gym split: cycle = scipy.signal.detrend(x, type='linear') (the residual), trend = x - cycle."""
    x = np.asarray(x, dtype=np.float64)
    cycle = signal.detrend(x, axis=axis, type="linear")
    return x - cycle, cycle


def within_patient_corr(x: np.ndarray) -> np.ndarray:
    """[N, T, V] -> [N, V, V] Pearson r over time within each patient; NaN where either series is constant."""
    xc = x - x.mean(axis=1, keepdims=True)
    ss = (xc * xc).sum(axis=1)  # [N, V]
    sd_ok = np.sqrt(ss / x.shape[1]) > CONSTANT_TOL
    cov = np.einsum("ntv,ntw->nvw", xc, xc)
    den = np.sqrt(ss[:, :, None] * ss[:, None, :])
    ok = sd_ok[:, :, None] & sd_ok[:, None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ok, cov / np.where(ok, den, 1.0), np.nan)


def pooled_acf(x: np.ndarray, max_lag: int = MAX_LAG) -> np.ndarray:
    """[N, T, V] -> [V, max_lag] autocorrelation at lags 1..max_lag, pooling patients: per-patient-centred
    cross-products summed over patients over the pooled sum of squares. NaN for a variable that never varies."""
    xc = x - x.mean(axis=1, keepdims=True)
    den = (xc * xc).sum(axis=(0, 1))
    lags = range(1, min(max_lag, x.shape[1] - 1) + 1)
    num = (
        np.stack([(xc[:, :-k] * xc[:, k:]).sum(axis=(0, 1)) for k in lags], axis=1)
        if len(lags)
        else np.zeros((x.shape[2], 0))
    )
    ok = den > CONSTANT_TOL**2 * x.shape[0] * x.shape[1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ok[:, None], num / np.where(ok, den, 1.0)[:, None], np.nan)


def dynamic_correlations(x: np.ndarray) -> dict[str, np.ndarray]:
    """Health Gym trend/cycle correlation matrices of [N, T, V] series: per patient, linear detrend, within-
    patient Pearson r per variable pair (constant series skipped), Fisher-z mean over patients weighted by n - 3.
    Also `sign_agree`: per pair, the share of patients (both slopes non-zero) whose trend slopes agree in sign.
    (Trends are straight lines, so a within-patient trend r is +-1 and the Fisher-z mean saturates; the sign
    agreement is the unsaturated version. Concordance compares the majority direction per pair, each pair
    weighted by how decisive the real direction is, |agreement - 0.5|, so pairs near 0.5 do not add noise.)"""
    n, t, v = x.shape
    trend, cycle = trend_cycle(x, axis=1)
    w = np.full((n, v, v), float(t - 3))
    out = {
        "trend": fisher_z_mean(within_patient_corr(trend), w, axis=0),
        "cycle": fisher_z_mean(within_patient_corr(cycle), w, axis=0),
    }
    mc = np.arange(t) - (t - 1) / 2.0
    slope = np.einsum("ntv,t->nv", x, mc) / (mc * mc).sum()
    sign = np.where(np.abs(slope) * np.sqrt((mc * mc).mean()) > CONSTANT_TOL, np.sign(slope), 0.0)
    both = (sign[:, :, None] != 0) & (sign[:, None, :] != 0)
    agree = (sign[:, :, None] == sign[:, None, :]) & both
    cnt = both.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["sign_agree"] = np.where(cnt > 0, agree.sum(0) / np.maximum(cnt, 1), np.nan)
    return out


def dependence(schema: Schema, real_series: np.ndarray, fake_series: np.ndarray) -> dict[str, float]:
    out: dict[str, float] = {}
    names = [v.name for v in schema.variables]
    if real_series.shape[1] >= 4 and real_series.shape[2] >= 2:
        r, f = dynamic_correlations(real_series), dynamic_correlations(fake_series)
        for key in ("trend", "cycle"):
            d = matrix_l1(r[key], f[key])
            if np.isfinite(d):  # NaN: no pair varies together within any real patient
                out[f"{key}_l1"] = d
        a, b = lower(r["sign_agree"]), lower(f["sign_agree"])
        ok = np.isfinite(a)
        if ok.any():
            a, b = a[ok], np.where(np.isfinite(b), b, 0.5)[ok]  # no synthetic slopes: no direction
            w = np.abs(a - 0.5)  # how decisive the real direction is; near-0.5 pairs carry ~no weight
            match = np.sign(a - 0.5) == np.sign(b - 0.5)
            out["trend_sign_concordance"] = float((w * match).sum() / w.sum()) if w.sum() > 0 else float("nan")
            out["trend_sign_l1"] = float(np.abs(a - b).mean())
    if real_series.shape[1] >= 3:
        ra, fa = pooled_acf(real_series), pooled_acf(fake_series)
        diffs = []
        for j, name in enumerate(names):
            if np.isfinite(ra[j]).all() and ra.shape[1]:
                d = float(np.abs(ra[j] - np.nan_to_num(fa[j], nan=0.0)).mean())
                out[f"acf_diff/{name}"] = d
                diffs.append(d)
        if diffs:
            out["acf_diff"] = float(np.mean(diffs))
    return out
