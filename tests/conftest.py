import numpy as np
import pytest
import torch

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
    return TrainConfig(
        batch_size=32, hidden=16, n_critic=2, schedule="ladder:5-10", seed=1, eval_samples=64, device="cpu"
    )


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="module")
def tripwires():
    """For in-process runs of the CLIs on bad input: training, Ray and the study fail the test if they start."""
    import healthgym_core.train as train
    from study import tuning

    def tripped(what):
        def f(*a, **k):
            raise AssertionError(f"{what} started although the input should have been refused")

        return f

    mp = pytest.MonkeyPatch()
    mp.setattr(train, "run_epoch", tripped("training"))
    mp.setattr(tuning, "start_ray", tripped("Ray"))
    mp.setattr(tuning, "run_study", tripped("the study"))
    threads = torch.get_num_threads()  # the trainer's --threads sets this process's torch threads
    yield
    mp.undo()
    torch.set_num_threads(threads)
