"""Privacy of synthetic patients: distances to the closest record against a holdout, exact copies, and a
distance-threshold membership attack."""

from __future__ import annotations

import numpy as np

from healthgym_core.data.prepared import PreparedData
from healthgym_core.evaluation.classifiers import auc
from healthgym_core.evaluation.rng import metric_rng


def nearest_distances(a: np.ndarray, b: np.ndarray, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean distances between rows of a [n, D] and b [m, D]: (min over b for each a, min over a for each b).
    Nearest neighbours are found with the fast |x|^2 + |y|^2 - 2 x.y expansion, then their distances recomputed
    directly, so an exact copy is at distance 0."""
    bb = (b * b).sum(1)
    arg_a = np.empty(len(a), dtype=np.int64)
    best_b = np.full(len(b), np.inf)
    arg_b = np.zeros(len(b), dtype=np.int64)
    for i in range(0, len(a), chunk):
        x = a[i : i + chunk]
        d2 = (x * x).sum(1)[:, None] + bb[None, :] - 2.0 * x @ b.T
        arg_a[i : i + chunk] = d2.argmin(1)
        j = d2.argmin(0)
        col = d2[j, np.arange(len(b))]
        better = col < best_b
        best_b[better], arg_b[better] = col[better], j[better] + i
    return np.linalg.norm(a - b[arg_a], axis=1), np.linalg.norm(b - a[arg_b], axis=1)


def record_keys(reals: np.ndarray, codes: np.ndarray) -> list[bytes]:
    """One hashable key per patient: reals rounded to ~1e-6 relative (mantissa to 2^-20) and the codes."""
    m, e = np.frexp(np.asarray(reals, dtype=np.float64))
    parts = np.concatenate(
        [
            np.round(m * 2**20).astype(np.int64).reshape(len(reals), -1),
            e.astype(np.int64).reshape(len(reals), -1),
            np.asarray(codes, dtype=np.int64).reshape(len(reals), -1),
        ],
        axis=1,
    )
    return [row.tobytes() for row in np.ascontiguousarray(parts)]


def privacy_reference(data: PreparedData, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the training patients and of the test (holdout) patients used by the DCR and membership
    metrics: both of size min(P_train, P_test), drawn with the seed."""
    rng = metric_rng(seed, "privacy")
    m = min(data.train.shape[0], data.test.shape[0])
    tr = np.sort(rng.choice(data.train.shape[0], m, replace=False))
    ho = np.sort(rng.choice(data.test.shape[0], m, replace=False)) if m < data.test.shape[0] else np.arange(m)
    return tr, ho


def privacy(
    data: PreparedData, fake_model: np.ndarray, reals: np.ndarray, codes: np.ndarray, seed: int
) -> dict[str, float]:
    tr, ho = privacy_reference(data, seed)
    n = len(fake_model)
    f = fake_model.reshape(n, -1)
    enc = data.transform.encode_arrays  # float64, exactly as the synthetic records are encoded
    train_ref = enc(data.train_cohort.reals[tr], data.train_cohort.codes[tr]).reshape(len(tr), -1)
    hold_ref = enc(data.test_cohort.reals[ho], data.test_cohort.codes[ho]).reshape(len(ho), -1)
    dcr_tr, member = nearest_distances(f, train_ref)
    dcr_ho, nonmember = nearest_distances(f, hold_ref)
    train_keys = set(record_keys(data.train_cohort.reals, data.train_cohort.codes))
    copies = np.mean([k in train_keys for k in record_keys(reals, codes)])
    return {
        "dcr_train_median": float(np.median(dcr_tr)),
        "dcr_holdout_median": float(np.median(dcr_ho)),
        "p_dcr_train_closer": float((dcr_tr < dcr_ho).mean() + 0.5 * (dcr_tr == dcr_ho).mean()),
        "exact_copies": float(copies),
        "membership_auc": auc(
            -np.concatenate([member, nonmember]), np.r_[np.ones(len(member)), np.zeros(len(nonmember))]
        ),
    }
