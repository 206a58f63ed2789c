"""Candidate fidelity signals: distances between real and synthetic patients over the whole standardised space of
per-patient summaries, meant to see what a classifier sees (month-to-month texture, tails, rare categories, the
joint table) where emd_feat's 8 leading components do not. `bench/fidelity_signals.py` measures them against
controlled damage and against what users read off a cohort.

Each takes the frozen `SignalSpace` (standardised on the real training patients) and two patient sets, and is 0 for
identical sets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.distance import cdist

from healthgym_core.data.schema import Schema
from healthgym_core.evaluation.features import detector_features
from healthgym_core.evaluation.marginals import joint_pairs

Patients = tuple[np.ndarray, np.ndarray]
ENERGY_MAX = 1000  # patients per side in the energy distance (its cost is quadratic)


def signal_features(schema: Schema, reals: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """`detector_features` and the one-hot first-month cell of the joint table (Gender x Ethnic): [N, D]."""
    cols = [detector_features(schema, reals, codes)]
    pair = joint_pairs(schema).get("joint")
    if pair is not None:
        ia, ib = pair
        kb = schema.categoricals[ib].num_classes
        cells = codes[:, 0, ia] * kb + codes[:, 0, ib]
        cols.append(np.eye(schema.categoricals[ia].num_classes * kb)[cells])
    return np.hstack(cols)


@dataclass(frozen=True)
class SignalSpace:
    schema: Schema
    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, schema: Schema, train: Patients) -> SignalSpace:
        x = signal_features(schema, *train)
        sd = x.std(0)
        return cls(schema, x.mean(0), np.where(sd > 1e-9, sd, 1.0))

    def embed(self, p: Patients) -> np.ndarray:
        return (signal_features(self.schema, *p) - self.mean) / self.scale


def feature_w1(x: np.ndarray, y: np.ndarray) -> float:
    """Mean over features of the 1-D Wasserstein-1 distance (in training-patient sds), from quantile functions."""
    q = np.linspace(0.0, 1.0, 201)[1:-1]
    return float(np.abs(np.quantile(x, q, axis=0) - np.quantile(y, q, axis=0)).mean())


def energy_distance(x: np.ndarray, y: np.ndarray, seed: int = 0) -> float:
    """2 E|X - Y| - E|X - X'| - E|Y - Y'| in the standardised space (at most ENERGY_MAX patients a side)."""
    rng = np.random.default_rng(seed)
    x = x[rng.choice(len(x), ENERGY_MAX, replace=False)] if len(x) > ENERGY_MAX else x
    y = y[rng.choice(len(y), ENERGY_MAX, replace=False)] if len(y) > ENERGY_MAX else y
    return float(2 * cdist(x, y).mean() - cdist(x, x).mean() - cdist(y, y).mean())


def moment_gap(x: np.ndarray, y: np.ndarray) -> float:
    """Mean over features of |mean difference| + |log sd ratio| (in training-patient sds)."""
    sx, sy = x.std(0), y.std(0)
    ok = sx > 1e-9
    log_ratio = np.abs(np.log(np.maximum(sy[ok], 1e-6) / sx[ok]))
    return float(np.abs(x.mean(0) - y.mean(0)).mean() + log_ratio.mean())


def classifier_gap(x: np.ndarray, y: np.ndarray, seed: int = 0) -> float:
    """log 2 minus the held-out log-loss of an L2 logistic regression telling x from y (2-fold, balanced): 0 when
    they cannot be told apart, larger the more surely they can."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss

    rng = np.random.default_rng(seed)
    n = min(len(x), len(y))
    a, b = x[rng.choice(len(x), n, replace=False)], y[rng.choice(len(y), n, replace=False)]
    z, t = np.vstack([a, b]), np.r_[np.ones(n), np.zeros(n)]
    fold = np.r_[rng.permutation(n) % 2, rng.permutation(n) % 2]
    losses = []
    for k in (0, 1):
        clf = LogisticRegression(C=0.1, max_iter=2000).fit(z[fold != k], t[fold != k])
        losses.append(log_loss(t[fold == k], clf.predict_proba(z[fold == k])[:, 1], labels=[0.0, 1.0]))
    return float(np.log(2) - np.mean(losses))


SIGNALS = {
    "feature_w1": feature_w1,
    "energy": energy_distance,
    "moment_gap": moment_gap,
    "classifier_gap": classifier_gap,
}

_SPACES: dict[str, SignalSpace] = {}


def energy_feat(data, fake: Patients, reference: Patients) -> float:
    """energy_feat, the ranking metric: `energy_distance` between `reference` and `fake` patients in the SignalSpace
    of `data`'s training patients (a PreparedData; the space is fitted once per data set and process)."""
    if data.fingerprint not in _SPACES:
        _SPACES[data.fingerprint] = SignalSpace.fit(data.schema, (data.train_cohort.reals, data.train_cohort.codes))
    space = _SPACES[data.fingerprint]
    return energy_distance(space.embed(reference), space.embed(fake))
