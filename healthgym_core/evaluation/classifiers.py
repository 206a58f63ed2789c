"""Classifiers that judge synthetic patients, with scikit-learn: a balanced real-vs-synthetic detector (gradient
boosting on per-patient summaries, as the field judges synthetic sequences) and train-on-synthetic/test-on-real
utility (a logistic regression and a ridge regression)."""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from healthgym_core.data.prepared import PreparedData
from healthgym_core.evaluation.features import summary_features
from healthgym_core.evaluation.marginals import log1p10
from healthgym_core.evaluation.rng import metric_rng

VL_THRESHOLD = 200.0  # copies/mL: the usual virological-failure cut-off
UTILITY_FRACTION = 0.8  # the utility task's inputs: the first 80% of months


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (ties count one half); NaN when a class is empty."""
    labels = np.asarray(labels).astype(bool).ravel()
    if labels.all() or not labels.any():
        return float("nan")
    return float(roc_auc_score(labels, np.asarray(scores, dtype=np.float64).ravel()))


def detector(seed: int) -> HistGradientBoostingClassifier:
    """The detector: gradient-boosted trees, small enough for a few hundred patients a class, fixed by `seed`."""
    return HistGradientBoostingClassifier(max_iter=200, learning_rate=0.1, max_leaf_nodes=15, random_state=seed)


def detection(real_feats: np.ndarray, fake_feats: np.ndarray, seed: int, model=detector) -> dict[str, float]:
    """A balanced real-vs-synthetic detector scored by 2-fold cross-validation (stratified halves): its held-out
    accuracy and AUC (0.5: indistinguishable)."""
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
        clf = model(seed * 2 + k).fit(x[tr], y[tr])
        p = clf.predict_proba(x[te])[:, 1]
        accs.append(float(((p > 0.5) == (y[te] > 0.5)).mean()))
        aucs.append(auc(p, y[te]))
    acc = float(np.mean(accs))
    return {
        "detect_accuracy": acc,
        "detect_auc": float(np.mean(aucs)),
        "detect_advantage": abs(acc - 0.5),
    }


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
        scale = StandardScaler().fit(x_tr)
        a, b = scale.transform(x_tr), scale.transform(x_te)
        if y_tr.all() or not y_tr.any():
            out[f"{tag}_auc"] = 0.5  # one class only: nothing to learn, a constant predictor
        else:
            clf = LogisticRegression(C=1.0, max_iter=1000).fit(a, y_tr)
            out[f"{tag}_auc"] = auc(clf.decision_function(b), y_te)
        sst = float(((v_te - v_te.mean()) ** 2).sum())
        pred = Ridge(alpha=1.0).fit(a, v_tr).predict(b)
        out[f"{tag}_r2"] = 1.0 - float(((v_te - pred) ** 2).sum()) / sst if sst > 0 else float("nan")
    out["utility_gap"] = out["trtr_auc"] - out["tstr_auc"]
    out["utility_r2_gap"] = out["trtr_r2"] - out["tstr_r2"]
    return out
