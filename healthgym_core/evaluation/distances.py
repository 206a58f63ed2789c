"""Distances between whole samples of patients: sliced Wasserstein on sequences and kernel MMD."""

from __future__ import annotations

import numpy as np

N_DIRECTIONS = 256
N_QUANTILES = 256
MMD_MAX = 1000  # patients per side in the MMD (its cost is quadratic)


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
    return float(
        (kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2.0 * kxy.mean()
    )
