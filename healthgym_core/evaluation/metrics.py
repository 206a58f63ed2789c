"""Cheap distribution metrics shared by every trial: sliced Wasserstein, KS, TVD, category coverage."""

from __future__ import annotations

import numpy as np

from healthgym_core.data.schema import Schema

N_DIRECTIONS = 256
N_QUANTILES = 256


def fixed_directions(dim: int, n: int = N_DIRECTIONS, seed: int = 0) -> np.ndarray:
    d = np.random.default_rng(seed).standard_normal((n, dim))
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def sliced_wasserstein(a: np.ndarray, b: np.ndarray, directions: np.ndarray | None = None) -> float:
    """Mean over fixed random directions of W1 between the projected samples (quantile approximation).

    a, b: [N, ...] samples flattened to vectors; sizes may differ.
    """
    a = a.reshape(a.shape[0], -1).astype(np.float64)
    b = b.reshape(b.shape[0], -1).astype(np.float64)
    if directions is None:
        directions = fixed_directions(a.shape[1])
    q = (np.arange(N_QUANTILES) + 0.5) / N_QUANTILES
    pa = np.quantile(a @ directions.T, q, axis=0)
    pb = np.quantile(b @ directions.T, q, axis=0)
    return float(np.abs(pa - pb).mean())


def ks_statistic(x: np.ndarray, y: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic."""
    x, y = np.sort(np.ravel(x)), np.sort(np.ravel(y))
    grid = np.concatenate([x, y])
    cx = np.searchsorted(x, grid, side="right") / x.size
    cy = np.searchsorted(y, grid, side="right") / y.size
    return float(np.abs(cx - cy).max())


def category_shares(schema: Schema, codes: np.ndarray) -> list[np.ndarray]:
    return [np.bincount(codes[:, :, j].ravel(), minlength=v.num_classes) / codes[:, :, j].size for j, v in enumerate(schema.categoricals)]


def marginal_metrics(schema: Schema, real: tuple[np.ndarray, np.ndarray], fake: tuple[np.ndarray, np.ndarray]) -> dict[str, float]:
    """Mean KS over reals, mean TVD over categoricals (pooled over months), and category coverage: the share of
    categories present in the real data whose synthetic frequency is at least half the real one."""
    (r_reals, r_codes), (f_reals, f_codes) = real, fake
    ks = [ks_statistic(r_reals[:, :, j], f_reals[:, :, j]) for j in range(r_reals.shape[2])]
    tvd, covered, present = [], 0, 0
    for p, q in zip(category_shares(schema, r_codes), category_shares(schema, f_codes)):
        tvd.append(0.5 * float(np.abs(p - q).sum()))
        mask = p > 0
        present += int(mask.sum())
        covered += int((q[mask] >= 0.5 * p[mask]).sum())
    return {
        "ks_mean": float(np.mean(ks)) if ks else 0.0,
        "tvd_mean": float(np.mean(tvd)) if tvd else 0.0,
        "coverage": covered / present if present else 1.0,
    }
