"""Final report for the best trials: synthetic patients scored against the held-out TEST patients.

`final_metrics(data, reals, codes, seed=...)` scores synthetic sequences (original units, [N, T, R] reals and
[N, T, C] internal codes, as `CohortTransform.decode` returns them) against the test patients; `real_floor(data)`
scores the real validation patients the same way, which is what real data achieves: report every metric next to
its floor (`format_report`). `METRIC_INFO` describes every key (per-variable keys such as ``ks/VL`` resolve to
their family ``ks/<variable>``).

The choices made here (see also each function):

* Marginals are pooled over patient-months; ``*_month_mean`` also averages the per-month statistic over months.
  W1 is on log10(x + 1) for every real variable (VL and CD4 are heavy-tailed). Joint coverage pools the
  patient-months too, so a generator that changes Gender mid-sequence is scored on every month it emits.
* Static correlation: Pearson over patient-month rows in model space (transformed reals in [0, 1], one-hot 0/1).
  Columns constant in the real test data are dropped from both matrices; a column constant only in the synthetic
  data is kept with correlation 0 (so a never-emitted category is penalised rather than hidden).
* Trend/cycle correlations and autocorrelations use one column per variable: the reals as their model-space
  (Box-Cox + min-max) value, each binary/categorical as its internal code (numeric, as upstream's heatmaps treat
  nominal codes; exact for binaries, an ordering artefact for multi-class variables). A pair that is undefined in
  the real data (e.g. Gender never changes within a patient) is left out; a pair defined in the real data but
  undefined in the synthetic data counts as correlation 0.
* Autocorrelation pools the patients: per-patient-centred cross-products summed over patients, divided by the
  pooled sum of squares (constant series contribute nothing).
* Detection: a one-hidden-layer MLP in numpy (32 ReLU units, L2, full-batch Adam) on standardised summary features,
  balanced classes (the larger group subsampled), two-fold cross-fitting: each half is scored by the model
  trained on the other half; accuracy and AUC are averaged over the two folds.
* Utility: label = the first real variable at the last month above 200 copies/mL when it is named VL (and both
  classes occur among the test patients), otherwise above the test patients' median there; inputs = summary features of the first 80% of months (48 of 60);
  L2-regularised logistic regression (Newton) on standardised features; the synthetic and the real training sets
  are subsampled to the same size so TSTR and TRTR differ only in where the training data came from. Also a
  ridge regression of log10(x + 1) at the last month (R^2 on the test patients).
* Privacy: records are whole sequences in model space, flattened (T * F values, the space of upstream's
  disclosure check); Euclidean distance. The training patients are subsampled to the holdout (test) size, so
  P(DCR_train < DCR_holdout) is 0.5 without memorisation (ties count one half). With equal sizes a synthetic copy
  of an arbitrary training patient only counts when that patient is in the subsample, so copying a share c of
  random training patients raises it to about 0.5 + 0.5 * c * m / P_train; `exact_copies` (against ALL training
  patients) and `membership_auc` are the direct signals. For a collapsed or far-off generator every synthetic
  patient has the same nearest reference patient, so P(DCR_train < DCR_holdout) jumps to 0 or 1 without any
  memorisation: read it with the DCR medians next to their floor.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import signal, special, stats

from healthgym_core.data.prepared import PreparedData
from healthgym_core.data.schema import Schema
from healthgym_core.evaluation.features import FeatureSpace, summary_features
from healthgym_core.evaluation.metrics import fixed_directions, ks_statistic, sliced_wasserstein

FISHER_CLIP = 0.999999
MAX_LAG = 12
MMD_MAX = 1000
VL_THRESHOLD = 200.0  # copies/mL: the usual virological-failure cut-off
UTILITY_FRACTION = 0.8
JOINT_MIN_MASS = 0.01
CONSTANT_TOL = 1e-8
JOINT_PAIRS = {"joint": ("Gender", "Ethnic"), "regimen_joint": ("Comp_NNRTI", "Base_Drug_Combo")}

# Fixed sub-streams so that adding a metric never changes another one's random draws.
_STREAM = {"mmd": 1, "detect": 2, "utility": 3, "privacy": 4}


class _MetricInfo(dict):
    """name -> (one-line description, lower_is_better). A per-variable key such as ``ks/VL`` resolves to its
    family entry ``ks/<variable>`` for indexing, ``in`` and ``get``."""

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


METRIC_INFO: dict[str, tuple[str, bool]] = _MetricInfo({
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
    "joint_max_cell": ("largest single-cell share of that joint in the data scored (upstream collapse 0.939, real 0.602)", True),
    "joint_cells_covered": ("number of real joint cells with >= 1% mass reproduced at >= 0.5x", False),
    "joint_cell_coverage": ("share of real joint cells with >= 1% mass reproduced at >= 0.5x", False),
    "regimen_joint_tvd": ("TVD of the Comp_NNRTI x Base_Drug_Combo joint", True),
    "regimen_joint_cells_covered": ("number of real NNRTI x Base cells with >= 1% mass reproduced at >= 0.5x", False),
    "regimen_joint_cell_coverage": ("share of real NNRTI x Base cells with >= 1% mass reproduced at >= 0.5x", False),
    "static_change_rate": ("share of patients in whom a variable that never changes within a real patient changes", True),
    # dependence
    "corr_l1": ("mean |difference| of the lower-triangle static Pearson matrices in one-hot model space", True),
    "trend_l1": ("mean |difference| of the Fisher-z mean within-patient trend correlation matrices", True),
    "cycle_l1": ("mean |difference| of the Fisher-z mean within-patient cycle (detrended) correlation matrices", True),
    "trend_sign_concordance": ("share of variable pairs whose majority slope-sign direction matches the real one, weighted by |real agreement - 0.5|", False),
    "trend_sign_l1": ("mean |difference| of the per-pair share of patients whose slopes agree in sign", True),
    "acf_diff/<variable>": ("mean |difference| of one variable's autocorrelation over lags 1-12", True),
    "acf_diff": ("mean |difference| of per-variable autocorrelations over lags 1-12", True),
    # distribution level
    "fd_feat": ("Frechet distance in the frozen summary-feature space, against the test patients", True),
    "mmd2": ("unbiased RBF-kernel MMD^2 on the frozen feature embeddings (median-heuristic bandwidth)", True),
    "sliced_w": ("sliced Wasserstein on flattened model-space sequences (256 fixed directions)", True),
    # detection
    "detect_accuracy": ("held-out accuracy of a balanced real-vs-synthetic MLP detector (0.5 = indistinguishable)", True),
    "detect_auc": ("held-out AUC of that detector (0.5 = indistinguishable)", True),
    "detect_advantage": ("|detect_accuracy - 0.5|", True),
    # utility
    "tstr_auc": ("AUC on test patients of a last-month VL>200 (or > median) classifier trained on the data scored", False),
    "trtr_auc": ("the same classifier trained on real training patients (same size): the reference", False),
    "utility_gap": ("trtr_auc - tstr_auc", True),
    "tstr_r2": ("R^2 on test patients of a ridge regression of last-month log10(x+1), trained on the data scored", False),
    "trtr_r2": ("the same regression trained on real training patients (same size): the reference", False),
    "utility_r2_gap": ("trtr_r2 - tstr_r2", True),
    # privacy
    "dcr_train_median": ("median distance from a scored patient to the closest training patient (subsample)", False),
    "dcr_holdout_median": ("median distance from a scored patient to the closest test (holdout) patient", True),
    "p_dcr_train_closer": ("P(DCR to training < DCR to an equal-sized holdout); 0.5 = no memorisation", True),
    "exact_copies": ("share of scored patients identical to a training patient (reals to 1e-6 relative, equal codes)", True),
    "membership_auc": ("AUC of a distance-threshold membership attack, train members vs holdout (0.5 = no leakage)", True),
})


# -- small helpers (tested by hand) ---------------------------------------------------------------------------


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties count one half); NaN when a class is empty."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).astype(bool).ravel()
    n1, n0 = int(labels.sum()), int((~labels).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    ranks = stats.rankdata(scores)
    return float((ranks[labels].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


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
    num = np.stack([(xc[:, :-k] * xc[:, k:]).sum(axis=(0, 1)) for k in lags], axis=1) if len(lags) else np.zeros((x.shape[2], 0))
    ok = den > CONSTANT_TOL**2 * x.shape[0] * x.shape[1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ok[:, None], num / np.where(ok, den, 1.0)[:, None], np.nan)


def mmd2_rbf(x: np.ndarray, y: np.ndarray, bandwidth: float | None = None) -> float:
    """Unbiased MMD^2 with k(a, b) = exp(-|a - b|^2 / (2 s^2)); s = the median pairwise distance of the pooled
    sample unless given."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
    n, m = len(x), len(y)
    if n < 2 or m < 2:
        return float("nan")
    z = np.vstack([x, y])
    sq = (z * z).sum(1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * z @ z.T, 0.0)
    if bandwidth is None:
        iu = np.triu_indices(len(z), 1)
        bandwidth = float(np.sqrt(np.median(d2[iu])))
    if not bandwidth > 0:
        bandwidth = 1.0
    k = np.exp(-d2 / (2.0 * bandwidth**2))
    kxx, kyy, kxy = k[:n, :n], k[n:, n:], k[:n, n:]
    return float((kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2.0 * kxy.mean())


def _log1p10(x: np.ndarray) -> np.ndarray:
    return np.log10(np.maximum(x, 0.0) + 1.0)


def _rng(seed: int, stream: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), _STREAM[stream]])


def _lower(m: np.ndarray) -> np.ndarray:
    return m[np.tril_indices(m.shape[0], -1)]


def _matrix_l1(real: np.ndarray, fake: np.ndarray, fill: float = 0.0) -> float:
    """Mean |real - fake| over the lower triangle where the real entry is defined; an undefined synthetic entry
    counts as `fill`."""
    a, b = _lower(real), _lower(fake)
    ok = np.isfinite(a)
    if not ok.any():
        return float("nan")
    return float(np.abs(a[ok] - np.where(np.isfinite(b[ok]), b[ok], fill)).mean())


def _standardise(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    mu, sd = train.mean(0), train.std(0)
    sd = np.where(sd > 1e-12, sd, 1.0)
    return [(a - mu) / sd for a in (train, *others)]


# -- marginals ------------------------------------------------------------------------------------------------


def _shares(codes: np.ndarray, k: int) -> np.ndarray:
    """[N, T] codes -> [T, k] per-month shares."""
    return np.stack([np.bincount(codes[:, t], minlength=k) for t in range(codes.shape[1])]) / codes.shape[0]


def _joint_table(a: np.ndarray, b: np.ndarray, ka: int, kb: int) -> np.ndarray:
    return np.bincount((a * kb + b).ravel(), minlength=ka * kb).reshape(ka, kb) / a.size


def _marginals(schema: Schema, real: tuple[np.ndarray, np.ndarray], fake: tuple[np.ndarray, np.ndarray]) -> dict[str, float]:
    (rr, rc), (fr, fc) = real, fake
    out: dict[str, float] = {}
    ks, w1, ks_month = [], [], []
    for j, v in enumerate(schema.reals):
        a, b = rr[:, :, j], fr[:, :, j]
        out[f"ks/{v.name}"] = k = ks_statistic(a, b)
        la, lb = _log1p10(a), _log1p10(b)
        out[f"w1/{v.name}"] = w = float(stats.wasserstein_distance(la.ravel(), lb.ravel()))
        ks.append(k)
        w1.append(w)
        ks_month.append(np.mean([ks_statistic(a[:, t], b[:, t]) for t in range(a.shape[1])]))
    if ks:
        out["ks_mean"] = float(np.mean(ks))
        out["ks_month_mean"] = float(np.mean(ks_month))
        out["w1_mean"] = float(np.mean(w1))
    tvd, tvd_month, covered, present = [], [], 0, 0
    for j, v in enumerate(schema.categoricals):
        p_t, q_t = _shares(rc[:, :, j], v.num_classes), _shares(fc[:, :, j], v.num_classes)
        p, q = p_t.mean(0), q_t.mean(0)
        out[f"tvd/{v.name}"] = d = 0.5 * float(np.abs(p - q).sum())
        tvd.append(d)
        tvd_month.append(0.5 * float(np.abs(p_t - q_t).sum(1).mean()))
        mask = p > 0
        present += int(mask.sum())
        covered += int((q[mask] >= 0.5 * p[mask]).sum())
    if tvd:
        out["tvd_mean"] = float(np.mean(tvd))
        out["tvd_month_mean"] = float(np.mean(tvd_month))
        out["coverage"] = covered / present if present else 1.0
    names = [v.name for v in schema.categoricals]
    for prefix, (na, nb) in JOINT_PAIRS.items():
        if na in names and nb in names:
            ia, ib = names.index(na), names.index(nb)
        elif prefix == "joint" and len(names) >= 2:
            ia, ib = 0, 1  # generic fallback: the first two categorical variables
        else:
            continue
        ka, kb = schema.categoricals[ia].num_classes, schema.categoricals[ib].num_classes
        p = _joint_table(rc[:, :, ia], rc[:, :, ib], ka, kb)
        q = _joint_table(fc[:, :, ia], fc[:, :, ib], ka, kb)
        mask = p >= JOINT_MIN_MASS
        n_cov = int((q[mask] >= 0.5 * p[mask]).sum())
        out[f"{prefix}_tvd"] = 0.5 * float(np.abs(p - q).sum())
        if prefix == "joint":
            out["joint_max_cell"] = float(q.max())
        out[f"{prefix}_cells_covered"] = float(n_cov)
        out[f"{prefix}_cell_coverage"] = n_cov / int(mask.sum()) if mask.any() else 1.0
    if rc.shape[2] and rc.shape[1] > 1:
        static = (rc == rc[:, :1]).all(axis=(0, 1))  # [C]: never changes within any real patient
        if static.any():
            out["static_change_rate"] = float((fc[:, :, static] != fc[:, :1, static]).any(axis=(1, 2)).mean())
    return out


# -- dependence -----------------------------------------------------------------------------------------------


def _corr(x: np.ndarray) -> np.ndarray:
    """Pearson matrix of the columns of x [M, D]; a constant column correlates 0 with everything."""
    xc = x - x.mean(0)
    sd = np.sqrt((xc * xc).mean(0))
    ok = sd > 1e-12
    z = np.where(ok, xc / np.where(ok, sd, 1.0), 0.0)
    c = z.T @ z / x.shape[0]
    np.fill_diagonal(c, 1.0)
    return c


def _static_corr_l1(real_model: np.ndarray, fake_model: np.ndarray) -> float:
    a = real_model.reshape(-1, real_model.shape[-1])
    b = fake_model.reshape(-1, fake_model.shape[-1])
    keep = a.std(0) > 1e-12  # columns that vary in the real data, dropped from both matrices
    if keep.sum() < 2:
        return float("nan")
    return _matrix_l1(_corr(a[:, keep]), _corr(b[:, keep]))


def _variable_series(data: PreparedData, reals: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """[N, T, V]: one column per variable, reals in model space (Box-Cox + min-max), categoricals as codes."""
    cols = [p.transform(reals[:, :, j]) for j, p in enumerate(data.transform.reals)]
    cols += [codes[:, :, j].astype(np.float64) for j in range(codes.shape[2])]
    return np.stack(cols, axis=-1)


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


def _dependence(schema: Schema, real_series: np.ndarray, fake_series: np.ndarray) -> dict[str, float]:
    out: dict[str, float] = {}
    names = [v.name for v in schema.variables]
    if real_series.shape[1] >= 4 and real_series.shape[2] >= 2:
        r, f = dynamic_correlations(real_series), dynamic_correlations(fake_series)
        for key in ("trend", "cycle"):
            d = _matrix_l1(r[key], f[key])
            if np.isfinite(d):  # NaN: no pair varies together within any real patient
                out[f"{key}_l1"] = d
        a, b = _lower(r["sign_agree"]), _lower(f["sign_agree"])
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


# -- classifiers (numpy only, no scikit-learn) ----------------------------------------------------------------


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1.0, iters: int = 50) -> np.ndarray:
    """L2-penalised logistic regression by Newton's method (intercept unpenalised); returns [1 + D] weights."""
    X = np.hstack([np.ones((len(x), 1)), x])
    y = np.asarray(y, dtype=np.float64)
    reg = np.full(X.shape[1], float(l2))
    reg[0] = 0.0
    w = np.zeros(X.shape[1])
    for _ in range(iters):
        p = special.expit(X @ w)
        g = X.T @ (p - y) + reg * w
        h = (X * (p * (1 - p))[:, None]).T @ X + np.diag(reg + 1e-9)
        step = np.linalg.solve(h, g)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w


def fit_ridge(x: np.ndarray, y: np.ndarray, alpha: float = 1.0) -> tuple[np.ndarray, float]:
    """Ridge regression (intercept unpenalised): returns (coefficients, intercept)."""
    mx, my = x.mean(0), float(np.mean(y))
    xc = x - mx
    coef = np.linalg.solve(xc.T @ xc + alpha * np.eye(x.shape[1]), xc.T @ (y - my))
    return coef, my - float(mx @ coef)


def fit_mlp(x: np.ndarray, y: np.ndarray, seed: int, hidden: int = 32, steps: int = 300, lr: float = 1e-2, l2: float = 1e-3):
    """A one-hidden-layer ReLU MLP classifier in numpy: full-batch Adam on the mean BCE + l2 * |W|^2, He
    initialisation from `seed`. Returns a function mapping features to logits."""
    rng = np.random.default_rng(int(seed))
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n, d = x.shape
    params = [rng.standard_normal((d, hidden)) * math.sqrt(2.0 / d), np.zeros(hidden),
              rng.standard_normal(hidden) * math.sqrt(1.0 / hidden), np.zeros(())]
    m1 = [np.zeros_like(p) for p in params]
    m2 = [np.zeros_like(p) for p in params]
    b1, b2, eps = 0.9, 0.999, 1e-8
    for step in range(1, steps + 1):
        w1, c1, w2, c2 = params
        pre = x @ w1 + c1
        h = np.maximum(pre, 0.0)
        ds = (special.expit(h @ w2 + c2) - y) / n
        dh = np.outer(ds, w2) * (pre > 0)
        grads = [x.T @ dh + 2 * l2 * w1, dh.sum(0), h.T @ ds + 2 * l2 * w2, ds.sum()]
        for i, g in enumerate(grads):
            m1[i] = b1 * m1[i] + (1 - b1) * g
            m2[i] = b2 * m2[i] + (1 - b2) * g * g
            params[i] = params[i] - lr * (m1[i] / (1 - b1**step)) / (np.sqrt(m2[i] / (1 - b2**step)) + eps)
    w1, c1, w2, c2 = params

    def predict(a: np.ndarray) -> np.ndarray:
        return np.maximum(np.asarray(a, dtype=np.float64) @ w1 + c1, 0.0) @ w2 + c2

    return predict


def _detection(real_feats: np.ndarray, fake_feats: np.ndarray, seed: int) -> dict[str, float]:
    rng = _rng(seed, "detect")
    n = min(len(real_feats), len(fake_feats))
    if n < 4:
        return {}
    a = real_feats[rng.choice(len(real_feats), n, replace=False)]
    b = fake_feats[rng.choice(len(fake_feats), n, replace=False)]
    x = np.vstack([a, b])
    y = np.concatenate([np.ones(n), np.zeros(n)])
    fold = np.concatenate([rng.permutation(n) % 2, rng.permutation(n) % 2])  # stratified halves
    accs, aucs = [], []
    for k in (0, 1):
        tr, te = fold != k, fold == k
        xtr, xte = _standardise(x[tr], x[te])
        predict = fit_mlp(xtr, y[tr], seed=seed * 2 + k)
        s = predict(xte)
        accs.append(float(((s > 0) == (y[te] > 0.5)).mean()))
        aucs.append(auc(s, y[te]))
    acc = float(np.mean(accs))
    return {"detect_accuracy": acc, "detect_auc": float(np.mean(aucs)), "detect_advantage": abs(acc - 0.5)}


# -- utility --------------------------------------------------------------------------------------------------


def _utility(data: PreparedData, reals: np.ndarray, codes: np.ndarray, seed: int) -> dict[str, float]:
    schema, T = data.schema, data.n_months
    t_in = int(round(UTILITY_FRACTION * T))
    if schema.n_real == 0 or t_in < 2 or t_in >= T:
        return {}
    test, train = data.test_cohort, data.train_cohort
    last = test.reals[:, -1, 0]
    thr = VL_THRESHOLD if schema.reals[0].name == "VL" else float(np.median(last))
    if (last > thr).all() or not (last > thr).any():
        thr = float(np.median(last))  # VL > 200 gives one class among these test patients
    if (last > thr).all() or not (last > thr).any():
        return {}  # the first real variable barely varies at the last month: no classification task

    def xy(r: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return summary_features(schema, r[:, :t_in], c[:, :t_in]), r[:, -1, 0] > thr, _log1p10(r[:, -1, 0])

    rng = _rng(seed, "utility")
    n = min(len(reals), train.n_patients)
    fi = rng.choice(len(reals), n, replace=False)
    ti = rng.choice(train.n_patients, n, replace=False)
    x_te, y_te, v_te = xy(test.reals, test.codes)
    out: dict[str, float] = {}
    for tag, (r, c) in (("tstr", (reals[fi], codes[fi])), ("trtr", (train.reals[ti], train.codes[ti]))):
        x_tr, y_tr, v_tr = xy(r, c)
        a, b = _standardise(x_tr, x_te)
        if y_tr.all() or not y_tr.any():
            out[f"{tag}_auc"] = 0.5  # one class only: nothing to learn, a constant predictor
        else:
            w = fit_logistic(a, y_tr)
            out[f"{tag}_auc"] = auc(b @ w[1:] + w[0], y_te)
        coef, icpt = fit_ridge(a, v_tr)
        sst = float(((v_te - v_te.mean()) ** 2).sum())
        out[f"{tag}_r2"] = 1.0 - float(((v_te - b @ coef - icpt) ** 2).sum()) / sst if sst > 0 else float("nan")
    out["utility_gap"] = out["trtr_auc"] - out["tstr_auc"]
    out["utility_r2_gap"] = out["trtr_r2"] - out["tstr_r2"]
    return out


# -- privacy --------------------------------------------------------------------------------------------------


def nearest_distances(a: np.ndarray, b: np.ndarray, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean distances between rows of a [n, D] and b [m, D]: (min over b for each a, min over a for each b).
    Nearest neighbours are found with the fast |x|^2 + |y|^2 - 2 x.y expansion, then their distances recomputed
    directly, so an exact copy is at distance 0."""
    bb = (b * b).sum(1)
    arg_a = np.empty(len(a), dtype=np.int64)
    best_b = np.full(len(b), np.inf)
    arg_b = np.zeros(len(b), dtype=np.int64)
    for i in range(0, len(a), chunk):
        x = a[i:i + chunk]
        d2 = (x * x).sum(1)[:, None] + bb[None, :] - 2.0 * x @ b.T
        arg_a[i:i + chunk] = d2.argmin(1)
        j = d2.argmin(0)
        col = d2[j, np.arange(len(b))]
        better = col < best_b
        best_b[better], arg_b[better] = col[better], j[better] + i
    return np.linalg.norm(a - b[arg_a], axis=1), np.linalg.norm(b - a[arg_b], axis=1)


def record_keys(reals: np.ndarray, codes: np.ndarray) -> list[bytes]:
    """One hashable key per patient: reals rounded to ~1e-6 relative (mantissa to 2^-20) and the codes."""
    m, e = np.frexp(np.asarray(reals, dtype=np.float64))
    parts = np.concatenate([
        np.round(m * 2**20).astype(np.int64).reshape(len(reals), -1),
        e.astype(np.int64).reshape(len(reals), -1),
        np.asarray(codes, dtype=np.int64).reshape(len(reals), -1),
    ], axis=1)
    return [row.tobytes() for row in np.ascontiguousarray(parts)]


def privacy_reference(data: PreparedData, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the training patients and of the test (holdout) patients used by the DCR and membership
    metrics: both of size min(P_train, P_test), drawn with the seed."""
    rng = _rng(seed, "privacy")
    m = min(data.train.shape[0], data.test.shape[0])
    tr = np.sort(rng.choice(data.train.shape[0], m, replace=False))
    ho = np.sort(rng.choice(data.test.shape[0], m, replace=False)) if m < data.test.shape[0] else np.arange(m)
    return tr, ho


def _privacy(data: PreparedData, fake_model: np.ndarray, reals: np.ndarray, codes: np.ndarray, seed: int) -> dict[str, float]:
    tr, ho = privacy_reference(data, seed)
    n = len(fake_model)
    f = fake_model.reshape(n, -1)
    enc = data.transform.encode_arrays  # float64, exactly as the synthetic records are encoded
    train_ref = enc(data.train_cohort.reals[tr], data.train_cohort.codes[tr]).reshape(len(tr), -1)
    hold_ref = enc(data.test_cohort.reals[ho], data.test_cohort.codes[ho]).reshape(len(ho), -1)
    dcr_tr, member = nearest_distances(f, train_ref)
    dcr_ho, nonmember = nearest_distances(f, hold_ref)
    train_keys = set(record_keys(data.train_cohort.reals, data.train_cohort.codes))
    copies = np.mean([k in train_keys for k in record_keys(reals, codes)])
    return {
        "dcr_train_median": float(np.median(dcr_tr)),
        "dcr_holdout_median": float(np.median(dcr_ho)),
        "p_dcr_train_closer": float((dcr_tr < dcr_ho).mean() + 0.5 * (dcr_tr == dcr_ho).mean()),
        "exact_copies": float(copies),
        "membership_auc": auc(-np.concatenate([member, nonmember]), np.r_[np.ones(len(member)), np.zeros(len(nonmember))]),
    }


# -- public API -----------------------------------------------------------------------------------------------


def _check(data: PreparedData, reals: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    schema = data.schema
    reals = np.asarray(reals, dtype=np.float64)
    codes = np.asarray(codes)
    if reals.ndim != 3 or codes.ndim != 3 or reals.shape[:2] != codes.shape[:2]:
        raise ValueError(f"expected reals [N, T, R] and codes [N, T, C] with equal N, T; got {reals.shape} and {codes.shape}")
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
    reals, codes = _check(data, reals, codes)
    schema, test = data.schema, data.test_cohort
    out: dict[str, float] = {}
    out.update(_marginals(schema, (test.reals, test.codes), (reals, codes)))

    fake_model = data.transform.encode_arrays(np.maximum(reals, 0.0), codes)  # decode may give -1e-16
    if not np.isfinite(fake_model).all():
        raise ValueError("synthetic reals do not map to finite model-space values")
    real_model = data.test.astype(np.float64)
    corr = _static_corr_l1(real_model, fake_model)
    if np.isfinite(corr):  # NaN: fewer than two columns vary in the real data
        out["corr_l1"] = corr
    out.update(_dependence(schema, _variable_series(data, test.reals, test.codes), _variable_series(data, reals, codes)))

    space = FeatureSpace.fit(data.train_cohort, test)
    out["fd_feat"] = space.distance(reals, codes)
    rng = _rng(seed, "mmd")
    er, ef = space.embed(test.reals, test.codes), space.embed(reals, codes)
    er = er[np.sort(rng.choice(len(er), MMD_MAX, replace=False))] if len(er) > MMD_MAX else er
    ef = ef[np.sort(rng.choice(len(ef), MMD_MAX, replace=False))] if len(ef) > MMD_MAX else ef
    out["mmd2"] = mmd2_rbf(er, ef)
    out["sliced_w"] = sliced_wasserstein(real_model, fake_model, fixed_directions(real_model[0].size))

    out.update(_detection(summary_features(schema, test.reals, test.codes), summary_features(schema, reals, codes), seed))
    out.update(_utility(data, reals, codes, seed))
    out.update(_privacy(data, fake_model, reals, codes, seed))
    return {k: float(v) for k, v in out.items()}


def real_floor(data: PreparedData, *, seed: int = 0) -> dict[str, float]:
    """The same metrics for real held-out patients: the validation patients scored as if synthetic against the
    test patients. What real data scores; report each metric next to it. (Sample-size-dependent metrics such as
    KS, fd_feat and MMD^2 have a floor measured at the validation size.)"""
    return final_metrics(data, data.val_cohort.reals, data.val_cohort.codes, seed=seed)


def format_report(metrics: dict[str, float], floor: dict[str, float] | None = None) -> str:
    """A plain-text table: metric, value, real floor, which direction is better, description."""
    lines = [f"{'metric':<30} {'value':>10} {'real floor':>10}  better  description"]
    for k, v in metrics.items():
        desc, lower = METRIC_INFO.get(k, ("", True))
        fl = floor.get(k, float("nan")) if floor else float("nan")
        lines.append(f"{k:<30} {v:>10.4g} {fl:>10.4g}  {'lower' if lower else 'higher':<6}  {desc}")
    return "\n".join(lines)
