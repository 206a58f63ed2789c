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


def emd(a: np.ndarray, b: np.ndarray, n: int | None = None, seed: int = 0) -> float:
    """The exact earth mover's (Wasserstein-1) distance between two empirical distributions of equal size, as the
    mean Euclidean distance of the optimal one-to-one matching (an assignment problem, solved exactly). The larger
    sample is subsampled to the smaller's size (or both to `n`) with a fixed seed."""
    from scipy.optimize import linear_sum_assignment

    rng = np.random.default_rng(seed)
    m = min(len(a), len(b), n or len(a))
    a = a[np.sort(rng.choice(len(a), m, replace=False))] if len(a) > m else a
    b = b[np.sort(rng.choice(len(b), m, replace=False))] if len(b) > m else b
    cost = np.sqrt(np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T, 0.0))
    rows, cols = linear_sum_assignment(cost)
    return float(cost[rows, cols].mean())


# emd_feat uses the leading principal components of fd_feat's frozen space: in all 32 the sampling noise of a few
# hundred patients nearly hides collapse (floor 4.3 vs 5.8 for one average patient repeated; in 8: 2.0 vs 4.3).
EMD_COMPONENTS = 8


# The metric that ranks trained generators (the study's leaderboard, the plain trainer's best.pt): the energy distance
# over the whole standardised space of per-patient summaries (evaluation/fidelity.py). At its floor for real patients,
# it grows with every controlled damage, also where emd_feat's 8 leading components are blind: trajectories smoothed
# (15.7x its floor at strength 0.25, emd_feat 1.02x) and tails squashed (2.6x, emd_feat 0.99x) (bench/README.md).
RANK_METRIC = "energy_feat"
# What ranked trials before energy_feat did: a leaderboard written then has no energy_feat column and ranks by it.
EARLIER_RANK_METRIC = "emd_feat"


def emd_feat(real: np.ndarray, fake: np.ndarray, seed: int = 0) -> float:
    """emd_feat: `emd` between two sets of patients embedded in fd_feat's frozen space ([N, D] each, D >= 8),
    in its leading EMD_COMPONENTS components."""
    return emd(real[:, :EMD_COMPONENTS], fake[:, :EMD_COMPONENTS], seed=seed)


CRITIC_STEPS = 50
CRITIC_HIDDEN = 32
CRITIC_GP = 10.0


def independent_critic_gap(real: np.ndarray, fake: np.ndarray, seed: int = 0, steps: int = CRITIC_STEPS) -> float:
    """A Wasserstein gap that no trial's own critic measures: the same small critic (an MLP on the flattened
    [T * F] sequence, fixed initialisation seed, `steps` full-batch Adam steps of the WGAN-GP loss) trained on
    equal-sized samples, and its gap E[D(real)] - E[D(fake)] on them (0 for two copies of one sample; the same
    protocol for every trial, so its bias is shared). Deterministic for its inputs."""
    import torch

    rng = np.random.default_rng(seed)
    m = min(len(real), len(fake))
    r = real[rng.choice(len(real), m, replace=False)].reshape(m, -1)
    f = fake[rng.choice(len(fake), m, replace=False)].reshape(m, -1)
    half = m
    if half < 2:
        return float("nan")
    torch_rng = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        critic = torch.nn.Sequential(
            torch.nn.Linear(r.shape[1], CRITIC_HIDDEN),
            torch.nn.LeakyReLU(0.1),
            torch.nn.Linear(CRITIC_HIDDEN, CRITIC_HIDDEN),
            torch.nn.LeakyReLU(0.1),
            torch.nn.Linear(CRITIC_HIDDEN, 1),
        )
    opt = torch.optim.Adam(critic.parameters(), lr=1e-3, betas=(0.5, 0.9))
    rt, ft = torch.from_numpy(r[:half]).float(), torch.from_numpy(f[:half]).float()
    for _ in range(steps):
        alpha = torch.rand(half, 1, generator=torch_rng)
        x_hat = (alpha * rt + (1 - alpha) * ft).requires_grad_(True)
        (g,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
        gp = ((g.norm(dim=1) - 1) ** 2).mean()
        loss = critic(ft).mean() - critic(rt).mean() + CRITIC_GP * gp
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return float(critic(rt).mean() - critic(ft).mean())
