"""A study resolved once (study/plan.py): one merge of command line, preset, base, the space's fixed values and --set,
recorded in study.json and read back by everything after, also from records written before plans were."""

import json
from pathlib import Path

import pytest

from healthgym_core.errors import ConfigError
from study.base import study_base
from study.plan import StudyPlan, plan_of, resolve
from study.presets import PRESETS
from study.spaces import load_space

ROOT = Path(__file__).resolve().parent.parent


def args(**kw) -> dict:
    return {"name": "s", "space": "critic", "metric": "emd_feat", "seed": 0} | kw


def test_command_line_over_preset_over_base_over_fixed_values_over_set():
    space, preset = load_space("critic"), PRESETS["cpu"].to_dict()
    base = study_base(None, ["corr_weight=2.0"], [f.name for f in space.factors], preset)
    plan = resolve(args(hidden=16, max_epochs=20), preset, space, base)
    assert plan.trial_base["hidden"] == 16 and plan.trial_base["batch_size"] == 140  # command line, then preset
    assert plan.trial_base["lr_g"] == 2e-4 and plan.trial_base["noise_prior"] == "buffer"  # the preset's cpu_base
    assert plan.trial_base["corr_weight"] == 2.0  # --set last
    assert (plan.max_epochs, plan.grace_period, plan.scheduler, plan.trials) == (20, 8, "asha", 4)
    assert StudyPlan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan


def test_rungs_and_budget_are_resolved_once():
    space, preset = load_space("critic"), PRESETS["cpu"].to_dict()
    base = study_base(None, None, [], preset)
    assert resolve(args(grace_period=36), preset, space, base).scheduler == "none"  # the first rung is the last epoch
    assert resolve(args(budget=80), preset, space, base).trials == 10  # 80 trial-epochs / a grace period of 8
    with pytest.raises(ConfigError, match="grace period 40 is more than --max-epochs 36"):
        resolve(args(grace_period=40), preset, space, base)
    with pytest.raises(ConfigError, match="--budget 10 is less than one trial's 36 epochs"):
        resolve(args(budget=10), preset, space, base)


def test_every_committed_record_gives_the_plan_its_trials_ran():
    for path in sorted((ROOT / "docs" / "results").glob("*/study.json")):
        record = json.loads(path.read_text())
        plan = plan_of(record, str(path))
        assert plan.max_epochs == (record["args"].get("max_epochs") or record["preset"]["max_epochs"]), path
        assert plan.trial_base["hidden"] == (record["args"].get("hidden") or record["preset"]["hidden"]), path
        for k, v in record["base"]["config"].items():
            assert plan.trial_base[k] == v or k in {f["name"] for f in record["space"]["factors"]}, (path, k)


@pytest.mark.parametrize("field, value", [("max_epochs", "abc"), ("trials", -1), ("space", 3), ("trial_base", [])])
def test_a_damaged_plan_is_refused_naming_the_field(field, value):
    space, preset = load_space("critic"), PRESETS["smoke"].to_dict()
    plan = resolve(args(), preset, space, study_base(None, None, [], preset)).to_dict()
    with pytest.raises(ConfigError, match=f"plan field '{field}' is damaged"):
        plan_of({"plan": {**plan, field: value}})
