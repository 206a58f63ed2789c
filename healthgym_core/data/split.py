"""Patient-level train / validation / test split, reproducible from a seed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from healthgym_core.errors import ConfigError

DEFAULT_FRACTIONS = (0.70, 0.15, 0.15)


@dataclass(frozen=True)
class Split:
    """Positions (0..P-1, sorted) of the patients in each part."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    seed: int
    fractions: tuple[float, float, float]

    def to_dict(self) -> dict:
        return {
            "train": self.train.tolist(),
            "val": self.val.tolist(),
            "test": self.test.tolist(),
            "seed": self.seed,
            "fractions": list(self.fractions),
        }

    @classmethod
    def from_dict(cls, d: dict) -> Split:
        return cls(
            *(np.asarray(d[k], dtype=np.int64) for k in ("train", "val", "test")), int(d["seed"]), tuple(d["fractions"])
        )


def split_patients(n_patients: int, seed: int = 0, fractions: tuple[float, float, float] = DEFAULT_FRACTIONS) -> Split:
    """Shuffle patients with `seed` and cut them into train/validation/test by `fractions` (rounded)."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-9:
        raise ConfigError(f"split fractions must be three non-negative numbers summing to 1, got {fractions}")
    n_val = int(round(n_patients * fractions[1]))
    n_test = int(round(n_patients * fractions[2]))
    n_train = n_patients - n_val - n_test
    if n_train < 1 or (fractions[1] > 0 and n_val < 1) or (fractions[2] > 0 and n_test < 1):
        raise ConfigError(
            f"{n_patients} patients are too few to split {fractions[0]:.0%}/{fractions[1]:.0%}/{fractions[2]:.0%}"
            " (each part needs at least one patient)"
        )
    perm = np.random.default_rng(seed).permutation(n_patients)
    parts = np.split(perm, [n_train, n_train + n_val])
    return Split(*(np.sort(p) for p in parts), seed=seed, fractions=tuple(float(f) for f in fractions))
