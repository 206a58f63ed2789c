"""Controlled damage to real patients, at a strength in [0, 1]: what a measure of fidelity must see grow.

Each function takes (reals [N, T, R] in original units, codes [N, T, C] internal codes) and returns a damaged copy;
strength 0 returns the patients unchanged, 1 the full defect. Deterministic for a seed.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Patients = tuple[np.ndarray, np.ndarray]


def collapse(p: Patients, s: float, seed: int = 0) -> Patients:
    """Every patient pulled towards one patient: reals interpolated on a log scale, and a share s of the patients
    given that patient's categories, every month."""
    reals, codes = p
    rng = np.random.default_rng(seed)
    one = int(rng.integers(len(reals)))
    logs = np.log1p(reals)
    out = np.expm1((1 - s) * logs + s * logs[one])
    take = rng.random(len(codes)) < s
    return out, np.where(take[:, None, None], codes[one][None], codes)


def smooth(p: Patients, s: float, seed: int = 0) -> Patients:
    """Trajectories flattened towards each patient's own mean (log scale): month-to-month changes shrink by 1 - s."""
    reals, codes = p
    logs = np.log1p(reals)
    mean = logs.mean(axis=1, keepdims=True)
    return np.expm1(mean + (1 - s) * (logs - mean)), codes.copy()


def squash_tails(p: Patients, s: float, seed: int = 0) -> Patients:
    """Each real variable clipped at its quantiles 0.2 s and 1 - 0.2 s over all patient-months (s = 1: the middle
    60% left)."""
    reals, codes = p
    lo = np.quantile(reals, 0.2 * s, axis=(0, 1), keepdims=True)
    hi = np.quantile(reals, 1 - 0.2 * s, axis=(0, 1), keepdims=True)
    return np.clip(reals, lo, hi), codes.copy()


def drop_rare(p: Patients, s: float, seed: int = 0) -> Patients:
    """In every categorical, a share s of the patients who ever hold its rarest category (of at least 1% of
    patient-months) get the most common one instead, every month."""
    reals, codes = p
    rng = np.random.default_rng(seed)
    out = codes.copy()
    for j in range(codes.shape[2]):
        c = codes[:, :, j]
        counts = np.bincount(c.ravel())
        share = counts / c.size
        held = np.flatnonzero(share >= 0.01)
        if len(held) < 2:
            continue
        rare, common = held[np.argmin(share[held])], int(np.argmax(counts))
        who = np.flatnonzero((c == rare).any(axis=1))
        who = who[rng.random(len(who)) < s]
        col = out[who, :, j]
        col[col == rare] = common
        out[who, :, j] = col
    return reals.copy(), out


def scramble_joint(p: Patients, s: float, seed: int = 0) -> Patients:
    """The second categorical shuffled across a share s of patients: both marginals kept, their joint table (Gender x
    Ethnic in the demo schema) broken."""
    reals, codes = p
    rng = np.random.default_rng(seed)
    out = codes.copy()
    if codes.shape[2] < 2:
        return reals.copy(), out
    who = np.flatnonzero(rng.random(len(codes)) < s)
    out[who, :, 1] = codes[rng.permutation(who), :, 1]
    return reals.copy(), out


def flicker(p: Patients, s: float, seed: int = 0) -> Patients:
    """In a share 0.2 s of patient-months, every categorical some patient changes (the regimen columns in the demo
    schema) takes another patient's codes of that month: each month's shares kept, but categories that switch from
    month to month (s = 1: about 19 regimen changes a patient in 60 months, real patients about 1)."""
    reals, codes = p
    rng = np.random.default_rng(seed)
    out = codes.copy()
    if codes.shape[1] < 2:
        return reals.copy(), out
    moving = np.flatnonzero((codes[:, 1:] != codes[:, :-1]).any(axis=(0, 1)))
    n, t = codes.shape[:2]
    hit = rng.random((n, t)) < 0.2 * s
    donor = rng.integers(n, size=(n, t))
    for j in moving:
        out[:, :, j] = np.where(hit, codes[donor, np.arange(t)[None, :], j], codes[:, :, j])
    return reals.copy(), out


DAMAGES: dict[str, Callable[[Patients, float, int], Patients]] = {
    "collapse": collapse,
    "smooth": smooth,
    "squash_tails": squash_tails,
    "drop_rare": drop_rare,
    "scramble_joint": scramble_joint,
    "flicker": flicker,
}
