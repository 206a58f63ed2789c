"""The built-in search spaces as data: every factor explained, upstream inside, every point a valid configuration.
(Fast: no Ray. `tests/test_study.py` runs the critic, baseline and all spaces end to end.)"""

import optuna
import pytest

from healthgym_core.config import TrainConfig, defaults
from healthgym_core.configs import load_config
from study.presets import PRESETS
from study.spaces import BUILTIN, load_space
from study.trainable import trial_config

UPSTREAM = defaults()  # upstream: every option at its default


@pytest.mark.parametrize("name", BUILTIN)
def test_every_point_of_a_space_is_a_configuration_a_trial_runs(name):
    space = load_space(name)
    assert all(len(f.why) > 20 for f in space.factors), "every factor says why it is searched"
    assert space.upstream_point() == {f.name: UPSTREAM[f.name] for f in space.factors}
    dists = space.optuna_distributions()
    rng = optuna.samplers.RandomSampler(seed=0)
    study = optuna.create_study(sampler=rng)
    for _ in range(40):
        trial = study.ask(dists)
        config = trial_config({**trial.params, "seed": 3}, load_config(PRESETS["cpu"].base).full())
        assert isinstance(config, TrainConfig) and config.seed == 3
        for f in space.factors:
            assert getattr(config, f.name) == trial.params[f.name]
            assert f.contains(trial.params[f.name])
        study.tell(trial, 0.0)


def test_the_all_space_holds_every_factor_of_the_others():
    every = {f.name for name in BUILTIN for f in load_space(name).factors}
    assert every == {f.name for f in load_space("all").factors}
    assert {f.name for f in load_space("all").factors} >= {"lr_g", "beta1", "fresh_real_batch", "noise_prior"}


def test_a_seeds_only_space_is_never_pruned_by_default():
    from study.plan import default_scheduler

    cpu = PRESETS["cpu"]
    assert cpu.pruning
    # baseline: one configuration, one trial per seed; ASHA would stop the unlucky seeds and hide the spread
    assert default_scheduler(load_space("baseline"), cpu.pruning, rungs_given=False) == "none"
    assert default_scheduler(load_space("baseline"), cpu.pruning, rungs_given=True) == "none"
    assert default_scheduler(load_space("critic"), cpu.pruning, rungs_given=False) == "asha"
    assert default_scheduler(load_space("critic"), False, rungs_given=False) == "none"
    assert default_scheduler(load_space("critic"), False, rungs_given=True) == "asha"
