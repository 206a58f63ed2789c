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
import pandas as pd

from healthgym_core.data.cohort import Cohort
from healthgym_core.data.describe import REGIMEN
from healthgym_core.data.schema import Schema
from healthgym_core.evaluation.dependence import rowwise_pearson
from healthgym_core.evaluation.marginals import log1p10

N_COMPONENTS = 32


def regimen_changes(schema: Schema, codes: np.ndarray) -> np.ndarray:
    """[N, T, C] internal codes -> [N]: the months in which a patient's regimen (any of its columns; without them,
    any categorical) differs from the month before."""
    idx = [j for j, v in enumerate(schema.categoricals) if v.name in REGIMEN] or list(range(codes.shape[2]))
    reg = codes[:, :, idx]
    return (reg[:, 1:] != reg[:, :-1]).any(axis=2).sum(axis=1).astype(np.float64)


def value_columns(schema: Schema, reals: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """The named per-patient summaries of the real variables (log10(x + 1)): mean, sd, first, last, OLS slope, sd
    of the monthly change, lag-1 autocorrelation."""
    n, t = reals.shape[:2]
    cols: list[tuple[str, np.ndarray]] = []
    months = np.arange(t, dtype=np.float64)
    mc = months - months.mean()
    logs = log1p10(reals)
    for j, v in enumerate(schema.reals):
        x = logs[:, :, j]
        cols += [(f"{v.name} mean", x.mean(1)), (f"{v.name} sd", x.std(1))]
        cols += [(f"{v.name} first", x[:, 0]), (f"{v.name} last", x[:, -1])]
        cols.append((f"{v.name} slope", (x * mc).sum(1) / max((mc * mc).sum(), 1e-12)))  # OLS slope per month
        if t > 1:
            cols.append((f"{v.name} sd of monthly change", np.diff(x, axis=1).std(1)))
            cols.append(
                (f"{v.name} lag-1 autocorrelation", rowwise_pearson(x[:, :-1], x[:, 1:]) if t > 2 else np.zeros(n))
            )
        else:
            cols += [(f"{v.name} sd of monthly change", np.zeros(n)), (f"{v.name} lag-1 autocorrelation", np.zeros(n))]
    return cols


def _summary_columns(schema: Schema, reals: np.ndarray, codes: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """The named per-patient features, in their fixed order."""
    t = reals.shape[1]
    logs = log1p10(reals)
    cols = value_columns(schema, reals)
    for j, v in enumerate(schema.categoricals):
        shares = np.eye(v.num_classes)[codes[:, :, j]].mean(axis=1)
        labels = v.labels or tuple(str(c) for c in v.codes)
        cols += [(f"{v.name}={labels[k]} share", shares[:, k]) for k in range(v.num_classes)]
    if codes.shape[2] and t > 1:
        cols.append(("regimen changes", regimen_changes(schema, codes)))
    if logs.shape[2] >= 2:
        cols.append(
            (
                f"{schema.reals[0].name}-{schema.reals[1].name} correlation",
                rowwise_pearson(logs[:, :, 0], logs[:, :, 1]),
            )
        )
    return cols


def summary_features(schema: Schema, reals: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """[N, T, R] original-unit reals and [N, T, C] internal codes -> [N, n_features]."""
    return np.stack([c for _, c in _summary_columns(schema, reals, codes)], axis=1)


def detector_features(schema: Schema, reals: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """What a detector sees of each patient: `summary_features`, each real variable's min and max (log10(x + 1)) and
    the first month's category codes. [N, n_features]"""
    logs = log1p10(reals)
    extra = [logs.min(axis=1), logs.max(axis=1), codes[:, 0, :].astype(np.float64)]
    return np.hstack([summary_features(schema, reals, codes), *extra])


def feature_names(schema: Schema, months: int) -> list[str]:
    """The names of summary_features' columns, in order."""
    n_codes = len(schema.categoricals)
    dummy = (np.ones((1, months, len(schema.reals))), np.zeros((1, months, n_codes), dtype=np.int64))
    return [name for name, _ in _summary_columns(schema, *dummy)]


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

    def explain(self, real: tuple[np.ndarray, np.ndarray], fake: tuple[np.ndarray, np.ndarray]) -> pd.DataFrame:
        """Where fd_feat comes from: per summary feature, the synthetic-minus-real mean in training-patient standard
        deviations (`shift`; fd_feat's mean term is about the sum of their squares) and the synthetic-to-real
        standard deviation ratio (`sd_ratio`; near 0 where the patients are collapsed). Largest shifts first."""
        x_real = (summary_features(self.schema, *real) - self.mean) / self.scale
        x_fake = (summary_features(self.schema, *fake) - self.mean) / self.scale
        sd_real = x_real.std(0)
        table = pd.DataFrame(
            {
                "feature": feature_names(self.schema, real[0].shape[1]),
                "shift": x_fake.mean(0) - x_real.mean(0),
                "sd_ratio": x_fake.std(0) / np.where(sd_real > 1e-12, sd_real, np.nan),
            }
        )
        return table.reindex(table["shift"].abs().sort_values(ascending=False).index).reset_index(drop=True)

    def terms(self, reals: np.ndarray, codes: np.ndarray) -> tuple[float, float]:
        """fd_feat split into its mean term |mu - mu_ref|^2 and its spread term (at most tr(S_ref) + tr(S): a
        generator that repeats one patient pays tr(S_ref) there, however far its mean is)."""
        mu, cov = _moments(self.embed(reals, codes))
        mean_term = float(((mu - self.ref_mu) ** 2).sum())
        return mean_term, frechet_distance(mu, cov, self.ref_mu, self.ref_cov) - mean_term
