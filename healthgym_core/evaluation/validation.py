"""Per-epoch evaluation on held-out validation patients, with a fixed evaluation noise."""

from __future__ import annotations

import numpy as np
import torch

from healthgym_core.data.prepared import PreparedData
from healthgym_core.evaluation.collapse import collapse_metrics
from healthgym_core.evaluation.distances import emd_feat, fixed_directions, independent_critic_gap, sliced_wasserstein
from healthgym_core.evaluation.fidelity import energy_feat
from healthgym_core.evaluation.marginals import marginal_metrics
from healthgym_core.evaluation.wasserstein_gap import wasserstein_gap
from healthgym_core.nn.generator import Generator
from healthgym_core.sampling import generate

EVAL_NOISE_OFFSET = 1_000_003


def harden(data: PreparedData, soft: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Soft generator rows -> what a released dataset holds, in model space: the decoded codes as one-hot blocks."""
    out = soft.copy()
    for j, (s, e) in enumerate(data.schema.blocks()):
        out[..., s:e] = 0.0
        np.put_along_axis(out[..., s:e], codes[..., j : j + 1], 1.0, axis=-1)
    return out


_FLOORS: dict[str, dict[str, float]] = {}


def comparable_floors(data: PreparedData) -> dict[str, float]:
    """What real training patients score against the validation patients on the two comparable Wasserstein
    estimates (computed once per data set and process)."""
    if data.fingerprint not in _FLOORS:
        train = (data.train_cohort.reals, data.train_cohort.codes)
        val = (data.val_cohort.reals, data.val_cohort.codes)
        _FLOORS[data.fingerprint] = {
            "emd_feat_floor": emd_feat(data.features.embed(*val), data.features.embed(*train)),
            "critic_gap_floor": independent_critic_gap(data.val, data.train),
            "energy_feat_floor": energy_feat(data, train, val),
        }
    return _FLOORS[data.fingerprint]


def evaluate(
    generator: Generator, critic: torch.nn.Module, data: PreparedData, seed: int, n_samples: int
) -> dict[str, float]:
    """wasserstein_gap (own critic), fd_feat (+ its floor), sliced Wasserstein, mean KS, mean TVD, coverage, and how
    collapsed the patients are (diversity, distinct patients, the joint tables of category pairs)."""
    T = data.n_months
    device = generator.fc1.weight.device
    soft = generate(generator, n_samples, T, seed + EVAL_NOISE_OFFSET)
    n_val = data.val.shape[0]
    critic.eval()
    gap = wasserstein_gap(critic, data.tensor("val").to(device), soft[:n_val].to(device))
    critic.train()
    soft_np = soft.numpy()
    reals, codes = data.transform.decode(soft_np)
    hard = harden(data, soft_np, codes)
    real = (data.val_cohort.reals, data.val_cohort.codes)
    out = {
        "wasserstein_gap": gap,
        "fd_feat": data.features.distance(reals, codes),
        "fd_feat_floor": data.features.floor,
        "sliced_w": sliced_wasserstein(data.val, hard, fixed_directions(data.val[0].size)),
        # Wasserstein estimates no trial's own critic makes, on one scale for every trial (with their floors)
        "emd_feat": emd_feat(data.features.embed(*real), data.features.embed(reals, codes)),
        "energy_feat": energy_feat(data, (reals, codes), real),
        "critic_gap": independent_critic_gap(data.val, hard),
        **comparable_floors(data),
        **marginal_metrics(data.schema, real, (reals, codes)),
        **collapse_metrics(data.schema, data.features, real, (reals, codes)),
    }
    return {k: float(v) for k, v in out.items()}
