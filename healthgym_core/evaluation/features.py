"""fd_feat: Frechet distance in a frozen space of per-patient summary features.

Per patient: for each real variable (on a log10(x + 1) scale) its mean, sd, first, last, OLS slope, sd of the
month-to-month change and lag-1 autocorrelation; for each categorical block the time-averaged category shares; the
number of regimen changes; the within-patient correlation of the first two real variables. The features are
standardised and projected by a PCA fitted once on the real training patients, then frozen, so every trial and
every epoch is measured on the same scale. The floor is the distance between training and validation patients.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from healthgym_core.data.cohort import Cohort
from healthgym_core.data.describe import REGIMEN
from healthgym_core.data.schema import Schema
from healthgym_core.evaluation.dependence import rowwise_pearson
from healthgym_core.evaluation.marginals import log1p10

N_COMPONENTS = 32


def summary_features(schema: Schema, reals: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """[N, T, R] original-unit reals and [N, T, C] internal codes -> [N, n_features]."""
    n, t = reals.shape[:2]
    cols = []
    months = np.arange(t, dtype=np.float64)
    mc = months - months.mean()
    logs = log1p10(reals)
    for j in range(logs.shape[2]):
        x = logs[:, :, j]
        cols += [x.mean(1), x.std(1), x[:, 0], x[:, -1]]
        cols.append((x * mc).sum(1) / max((mc * mc).sum(), 1e-12))  # OLS slope per month
        if t > 1:
            d = np.diff(x, axis=1)
            cols.append(d.std(1))
            cols.append(rowwise_pearson(x[:, :-1], x[:, 1:]) if t > 2 else np.zeros(n))
        else:
            cols += [np.zeros(n), np.zeros(n)]
    for j, v in enumerate(schema.categoricals):
        onehot = np.eye(v.num_classes)[codes[:, :, j]]
        cols += list(onehot.mean(axis=1).T)
    idx = [j for j, v in enumerate(schema.categoricals) if v.name in REGIMEN] or list(range(codes.shape[2]))
    if idx and t > 1:
        reg = codes[:, :, idx]
        cols.append((reg[:, 1:] != reg[:, :-1]).any(axis=2).sum(axis=1).astype(np.float64))
    if logs.shape[2] >= 2:
        cols.append(rowwise_pearson(logs[:, :, 0], logs[:, :, 1]))
    return np.stack(cols, axis=1)


def frechet_distance(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray) -> float:
    """|mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)), the trace of the root from the eigenvalues of S1 S2."""
    eig = np.linalg.eigvals(s1 @ s2)
    root_trace = np.sqrt(np.clip(eig.real, 0.0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2.0 * root_trace)


def _moments(e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return e.mean(axis=0), np.atleast_2d(np.cov(e, rowvar=False))


@dataclass
class FeatureSpace:
    """Standardiser + PCA fitted on training patients, and the embedded validation reference."""

    schema: Schema
    mean: np.ndarray
    scale: np.ndarray
    components: np.ndarray  # [k, n_features]
    ref_mu: np.ndarray
    ref_cov: np.ndarray
    floor: float  # fd_feat(train, validation): what real data scores

    @classmethod
    def fit(cls, train: Cohort, reference: Cohort, n_components: int = N_COMPONENTS) -> FeatureSpace:
        x = summary_features(train.schema, train.reals, train.codes)
        mean, scale = x.mean(0), x.std(0)
        scale = np.where(scale > 1e-12, scale, 1.0)
        z = (x - mean) / scale
        k = max(1, min(n_components, z.shape[1], max(z.shape[0] - 1, 1)))
        _, _, vt = np.linalg.svd(z - z.mean(0), full_matrices=False)
        space = cls(train.schema, mean, scale, vt[:k], np.zeros(k), np.eye(k), 0.0)
        space.ref_mu, space.ref_cov = _moments(space.embed(reference.reals, reference.codes))
        space.floor = space.distance(train.reals, train.codes)
        return space

    def embed(self, reals: np.ndarray, codes: np.ndarray) -> np.ndarray:
        x = summary_features(self.schema, reals, codes)
        return ((x - self.mean) / self.scale) @ self.components.T

    def distance(self, reals: np.ndarray, codes: np.ndarray) -> float:
        """fd_feat of these sequences against the frozen validation reference."""
        mu, cov = _moments(self.embed(reals, codes))
        return frechet_distance(mu, cov, self.ref_mu, self.ref_cov)
