"""Classifiers that judge synthetic patients, in numpy (no scikit-learn): a balanced real-vs-synthetic detector
and train-on-synthetic/test-on-real utility."""

from __future__ import annotations

import math

import numpy as np
from scipy import special, stats

from healthgym_core.data.prepared import PreparedData
from healthgym_core.evaluation.features import summary_features
from healthgym_core.evaluation.marginals import log1p10
from healthgym_core.evaluation.rng import metric_rng

VL_THRESHOLD = 200.0  # copies/mL: the usual virological-failure cut-off
UTILITY_FRACTION = 0.8  # the utility task's inputs: the first 80% of months


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties count one half); NaN when a class is empty."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).astype(bool).ravel()
    n1, n0 = int(labels.sum()), int((~labels).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    ranks = stats.rankdata(scores)
    return float((ranks[labels].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def standardise(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    mu, sd = train.mean(0), train.std(0)
    sd = np.where(sd > 1e-12, sd, 1.0)
    return [(a - mu) / sd for a in (train, *others)]


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


def fit_mlp(
    x: np.ndarray, y: np.ndarray, seed: int, hidden: int = 32, steps: int = 300, lr: float = 1e-2, l2: float = 1e-3
):
    """A one-hidden-layer ReLU MLP classifier in numpy: full-batch Adam on the mean BCE + l2 * |W|^2, He
    initialisation from `seed`. Returns a function mapping features to logits."""
    rng = np.random.default_rng(int(seed))
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n, d = x.shape
    params = [
        rng.standard_normal((d, hidden)) * math.sqrt(2.0 / d),
        np.zeros(hidden),
        rng.standard_normal(hidden) * math.sqrt(1.0 / hidden),
        np.zeros(()),
    ]
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


def detection(real_feats: np.ndarray, fake_feats: np.ndarray, seed: int) -> dict[str, float]:
    rng = metric_rng(seed, "detect")
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
        xtr, xte = standardise(x[tr], x[te])
        predict = fit_mlp(xtr, y[tr], seed=seed * 2 + k)
        s = predict(xte)
        accs.append(float(((s > 0) == (y[te] > 0.5)).mean()))
        aucs.append(auc(s, y[te]))
    acc = float(np.mean(accs))
    return {"detect_accuracy": acc, "detect_auc": float(np.mean(aucs)), "detect_advantage": abs(acc - 0.5)}


def utility(data: PreparedData, reals: np.ndarray, codes: np.ndarray, seed: int) -> dict[str, float]:
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
        return summary_features(schema, r[:, :t_in], c[:, :t_in]), r[:, -1, 0] > thr, log1p10(r[:, -1, 0])

    rng = metric_rng(seed, "utility")
    n = min(len(reals), train.n_patients)
    fi = rng.choice(len(reals), n, replace=False)
    ti = rng.choice(train.n_patients, n, replace=False)
    x_te, y_te, v_te = xy(test.reals, test.codes)
    out: dict[str, float] = {}
    for tag, (r, c) in (("tstr", (reals[fi], codes[fi])), ("trtr", (train.reals[ti], train.codes[ti]))):
        x_tr, y_tr, v_tr = xy(r, c)
        a, b = standardise(x_tr, x_te)
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
