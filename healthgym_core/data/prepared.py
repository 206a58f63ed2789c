"""Everything training and evaluation need, built once per study: split, transforms, tensors, frozen features.

`PreparedData` is plain numpy and dataclasses, so a study driver can put it in Ray's object store once and every
trial reads it without rebuilding it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from healthgym_core.data.cohort import Cohort
from healthgym_core.data.schema import Schema
from healthgym_core.data.split import DEFAULT_FRACTIONS, Split, split_patients
from healthgym_core.data.transforms import CohortTransform
from healthgym_core.errors import ConfigError, DataError
from healthgym_core.evaluation.features import FeatureSpace

if TYPE_CHECKING:
    import torch


@dataclass
class PreparedData:
    schema: Schema
    source: str
    fingerprint: str
    split: Split
    transform: CohortTransform
    train: np.ndarray  # [P_train, T, F] float32, model space
    val: np.ndarray
    test: np.ndarray
    train_cohort: Cohort  # original units, for real-vs-synthetic metrics
    val_cohort: Cohort
    test_cohort: Cohort
    features: FeatureSpace  # fitted on training patients, frozen

    def tensor(self, part: str) -> torch.Tensor:
        """A read-only view of the train/val/test array as a tensor, without copying. Arrays shared through
        Ray's object store are not writable; nothing here writes to them."""
        import torch

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            return torch.from_numpy(getattr(self, part))

    @property
    def n_months(self) -> int:
        return int(self.train.shape[1])

    @property
    def width(self) -> int:
        return int(self.train.shape[2])

    def describe(self) -> str:
        return (
            f"{self.source}; schema {self.schema.name} (width {self.schema.width}); "
            f"{len(self.split.train)}/{len(self.split.val)}/{len(self.split.test)} train/val/test patients "
            f"x {self.n_months} months (split seed {self.split.seed}); data {self.fingerprint}"
        )


def prepare_data(
    cohort: Cohort,
    split_seed: int = 0,
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
) -> PreparedData:
    """Split patients, fit the transforms and the frozen feature space on training patients only, encode."""
    split = split_patients(cohort.n_patients, seed=split_seed, fractions=fractions)
    for part, ix in (("training", split.train), ("validation", split.val)):
        if len(ix) < 2:  # the feature space and its reference need a covariance over patients
            raise ConfigError(
                f"{cohort.n_patients} patients are too few: the split leaves {len(ix)} {part} patient(s), and the "
                "metrics need at least 2 (use 10 or more patients)"
            )
    train_c, val_c, test_c = (cohort.subset(ix) for ix in (split.train, split.val, split.test))
    transform = CohortTransform.fit(train_c)
    with np.errstate(over="ignore", invalid="ignore"):
        tensors = [transform.encode(c) for c in (train_c, val_c, test_c)]
    for name, t in zip(("train", "validation", "test"), tensors):
        bad = ~np.isfinite(t).all(axis=(0, 1))
        if bad.any():
            j = int(np.flatnonzero(bad)[0])
            column = cohort.schema.reals[j].column if j < cohort.schema.n_real else None
            raise DataError(
                cohort.source,
                f"values too large to train on (not finite after the Box-Cox and min-max "
                f"transform of the {name} patients)",
                column=column,
            )
    features = FeatureSpace.fit(train_c, val_c)
    return PreparedData(
        cohort.schema, cohort.source, cohort.fingerprint(), split, transform, *tensors, train_c, val_c, test_c, features
    )
