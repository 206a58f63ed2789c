import numpy as np
import pytest

from healthgym_core.config import TrainConfig
from healthgym_core.data.cohort import load_cohort
from healthgym_core.data.prepared import prepare_data


@pytest.fixture(scope="session")
def small_cohort():
    return load_cohort("simulated", "demo7", patients=120, seed=3)


@pytest.fixture(scope="session")
def small_data(small_cohort):
    return prepare_data(small_cohort, split_seed=0)


@pytest.fixture
def tiny_config():
    """A configuration small enough for an epoch in well under a second on one core."""
    return TrainConfig(batch_size=32, hidden=16, n_critic=2, schedule="ladder:5-10", seed=1, eval_samples=64, device="cpu")


@pytest.fixture
def rng():
    return np.random.default_rng(0)
