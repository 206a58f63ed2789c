"""Studies that build on studies: --base EXPERIMENT and --set KEY=VALUE, their checks, and what a study on another
base runs first (its base point, then the upstream configuration as a reference trial)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from healthgym_core import cli
from study.base import BASE_OPTIONS, base_from_study, describe, parse_set, study_base, upstream_options
from study.experiment import RANK_METRIC
from tests.study_helpers import ROOT, study

BAD = {
    "no equals": (["--set", "lr_g"], "write KEY=VALUE"),
    "unknown option": (["--set", "learning_rate=1e-3"], "'learning_rate' is not a training option"),
    "a size": (["--set", "hidden=16"], "a size: use --batch-size, --hidden or --eval-samples"),
    "not a number": (["--set", "lr_g=fast"], "lr_g takes a float value, got 'fast'"),
    "not a whole number": (["--set", "n_critic=2.5"], "n_critic takes a int value, got '2.5'"),
    "against its rule": (["--set", "n_critic=0"], "n_critic=0: must be a whole number of 1-100"),
    "not a bool": (["--set", "fresh_real_batch=maybe"], "fresh_real_batch takes a bool value"),
    "a bad schedule": (["--set", "schedule=zigzag:3", "--space", "critic"], "unknown schedule 'zigzag:3'"),
    "a searched factor": (["--set", "schedule=full"], "the space searches schedule"),
    "base is no study": (["--base", "{dir}"], "not a study folder (no study.json)"),
    "unknown configuration name": (["--base", "strongest"], "--base 'strongest': unknown configuration; one of"),
    "configuration file missing": (["--base", "{dir}/nope.toml"], "nope.toml: configuration file not found"),
    "configuration with a bad value": (["--base", "{dir}/bad.toml"], "[options]: n_critic=0: must be a whole number"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_base_and_set_exit_2_with_one_line_and_write_nothing(case, tmp_path, monkeypatch, capsys, tripwires):
    from study.driver import main

    args, needle = BAD[case]
    args = [a.replace("{dir}", str(tmp_path)) for a in args]
    (tmp_path / "bad.toml").write_text("[options]\nn_critic = 0\n")
    monkeypatch.chdir(tmp_path)
    code = cli.run(main, ["--smoke", "--no-dashboard", "--storage", str(tmp_path / "store"), *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and needle in err[0], err
    assert not (tmp_path / "store").exists()


def test_parse_set_types_values():
    assert parse_set("lr_g=2e-4") == ("lr_g", 2e-4)
    assert parse_set("n-critic=3") == ("n_critic", 3)
    assert parse_set("fresh_real_batch=true") == ("fresh_real_batch", True)
    assert parse_set("noise_prior=buffer") == ("noise_prior", "buffer")
    assert set(upstream_options()) == set(BASE_OPTIONS) and "hidden" not in BASE_OPTIONS and "seed" not in BASE_OPTIONS


def test_base_from_a_study_folder_takes_its_best_completed_trial(tmp_path):
    folder = tmp_path / "earlier"
    folder.mkdir()
    record = json.loads((ROOT / "docs" / "results" / "critic" / "study.json").read_text())  # a real record ...
    record["space"]["factors"] = [{"name": "n_critic", "low": 1, "high": 10, "why": "x"}]  # ... searching n_critic
    record["base"] = {"from": "upstream", "set": {"lr_g": 2e-4}, "config": {**upstream_options(), "lr_g": 2e-4}}
    (folder / "study.json").write_text(json.dumps(record))
    board = pd.DataFrame(
        {
            "trial_id": ["a", "b", "c"],
            "status": ["completed", "completed", "pruned"],
            "n_critic": [7, 2, 1],
            f"last_{RANK_METRIC}": [50.0, 40.0, 10.0],
        }
    )
    board.to_parquet(folder / "leaderboard.parquet")
    options, origin = base_from_study(folder)
    assert options["n_critic"] == 2 and options["lr_g"] == 2e-4  # the best completed trial, on its study's base
    assert origin == {"study": str(folder), "trial_id": "b", RANK_METRIC: 40.0}
    base = study_base(str(folder), ["gp_weight=3"], ["schedule"])
    assert base["config"]["gp_weight"] == 3.0 and base["config"]["n_critic"] == 2 and base["set"] == {"gp_weight": 3.0}
    board.assign(status="pruned").to_parquet(folder / "leaderboard.parquet")
    with pytest.raises(Exception, match="no trial of that study completed"):
        base_from_study(folder)


@pytest.mark.slow
def test_a_study_on_an_earlier_studys_base(tmp_path):
    """Study 1 searches the critic; study 2 searches the schedule on study 1's best critic settings with one option
    fixed by --set, evaluates its base point first and the upstream configuration as a reference trial."""
    store = tmp_path / "store"
    r = study(
        "--space",
        "critic",
        "--smoke",
        "--no-pruning",
        "--num-samples",
        "3",
        "--storage",
        store,
        "--no-dashboard",
        timeout=400,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    first = store / "critic"
    best = pd.read_parquet(first / "leaderboard.parquet").query("status == 'completed'").iloc[0]
    r = study(
        "--space",
        "curriculum",
        "--smoke",
        "--no-pruning",
        "--num-samples",
        "3",
        "--storage",
        store,
        "--no-dashboard",
        "--base",
        first,
        "--set",
        "corr_weight=1",
        timeout=400,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    second = store / "curriculum"
    record = json.loads((second / "study.json").read_text())
    assert record["base"]["from"]["trial_id"] == best["trial_id"] and record["base"]["set"] == {"corr_weight": 1.0}
    assert record["base"]["config"]["n_critic"] == int(best["n_critic"])
    assert f"the best trial {best['trial_id']} of {first}" in r.stderr  # the console names the base
    params = [json.loads(p.read_text()) for p in second.glob("*/params.json")]
    assert len(params) == 3 and sum(p.get("reference") == "upstream" for p in params) == 1
    board = pd.read_parquet(second / "leaderboard.parquet")
    base_row = board[board["role"] == "base"]
    ref_row = board[board["role"] == "upstream reference"]
    assert len(ref_row) == 1 and bool(ref_row["upstream"].iloc[0]) and ref_row["reference"].iloc[0] == "upstream"
    assert len(base_row) >= 1 and (base_row["schedule"] == "ladder:10-20-30-40-50-60").all()
    # the reference trial ends at its verdict: collapsed at the first rung (epoch 1 of the smoke preset's 3)
    assert ref_row["collapse"].iloc[0] == "collapsed" and int(ref_row["epochs"].iloc[0]) == 1
    assert ref_row["status"].iloc[0] == "completed" and (base_row["epochs"] == 3).all(), board[
        ["status", "epochs", "role"]
    ]
    # the trials train on the base: the earlier study's critic settings and the --set value (the reference: upstream)
    import torch

    for ckpt in second.glob("*/checkpoint_*/state.pt"):
        meta = json.loads(torch.load(ckpt, weights_only=True)["meta"])["config"]
        expected = (5, 10.0, 10.0) if meta["corr_weight"] == 10.0 else (int(best["n_critic"]), best["gp_weight"], 1.0)
        assert (meta["n_critic"], meta["gp_weight"], meta["corr_weight"]) == pytest.approx(expected), meta
    from study.reporting.loading import load_experiment

    exp = load_experiment(second)
    assert exp.record["base"]["from"]["trial_id"] == best["trial_id"]
    assert Path(second / "leaderboard.csv").is_file()


def test_the_console_names_what_a_study_changes_of_its_preset():
    from study.driver import preset_overrides
    from study.presets import PRESETS

    cpu = PRESETS["cpu"]
    assert preset_overrides({"num_samples": None, "hidden": None}, cpu) == ""
    assert preset_overrides({"num_samples": cpu.num_samples, "hidden": cpu.hidden}, cpu) == ""
    assert preset_overrides({"num_samples": 24, "hidden": 64, "max_epochs": 10}, cpu) == (
        "24 trials, 10 epochs at most, hidden 64"
    )


def test_quick_runs_the_cpu_base_against_upstream_without_pruning():
    from study.driver import choose_preset, parser
    from study.presets import PRESETS

    quick = choose_preset(parser().parse_args(["--quick"]), cluster_gpus=0)
    assert quick is choose_preset(parser().parse_args(["--preset", "quick"]), cluster_gpus=4)
    # two trials: the base, then the upstream reference; both to the end (the first rung is the last epoch)
    assert quick.num_samples == 2 and quick.grace_period == quick.max_epochs == 12
    assert quick.base == PRESETS["cpu"].base and quick.hidden == PRESETS["cpu"].hidden
    assert choose_preset(parser().parse_args([]), cluster_gpus=0).name == "cpu"


def test_the_upstream_reference_is_kept_out_of_the_samplers_model(tmp_path):
    """The reference trial carries the base's factor values but runs upstream's configuration: Optuna hears none of
    its results (no intermediate values, state FAIL, which TPE and the importances skip) and records why and what it
    scored; the other trials are told as usual."""
    import optuna

    from study.presets import PRESETS
    from study.search import DefineByRun, ResumableOptunaSearch, first_points
    from study.spaces import load_space

    space = load_space("critic")
    base = study_base(None, None, [f.name for f in space.factors], {"name": "cpu", "base": PRESETS["cpu"].base})
    points, reference = first_points(space, base["config"], base, quiet=True)
    assert reference == 1 and points[1] == points[0]  # upstream's critic settings are the base's
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    storage = optuna.storages.RDBStorage(url)
    search = ResumableOptunaSearch(
        space=DefineByRun(space, 0, reference), metric=RANK_METRIC, mode="min",
        sampler=optuna.samplers.TPESampler(seed=0), storage=storage, study_name="s", points_to_evaluate=points,
    )  # fmt: skip
    configs = {t: search.suggest(t) for t in ("base", "ref", "other")}
    assert "reference" not in configs["base"] and configs["ref"]["reference"] == "upstream"
    scores = {"base": [3.5, 3.0], "ref": [6.0, 5.0], "other": [4.0, 3.8]}
    for t, values in scores.items():
        for epoch, v in enumerate(values, 1):
            search.on_trial_result(t, {RANK_METRIC: v, "training_iteration": epoch})
        search.on_trial_complete(t, {RANK_METRIC: values[-1], "training_iteration": len(values)})
    trials = optuna.load_study(study_name="s", storage=url).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "COMPLETE"]
    assert [t.value for t in trials] == [3.0, None, 3.8]
    assert trials[1].intermediate_values == {} and trials[0].intermediate_values == {1: 3.5, 2: 3.0}
    assert trials[1].user_attrs[RANK_METRIC] == 5.0 and "outside the space" in trials[1].user_attrs["reference"]
    search.on_trial_complete("ref", {RANK_METRIC: 5.0})  # told again after a restore: no error, no change
    assert optuna.load_study(study_name="s", storage=url).trials[1].state.name == "FAIL"


def test_base_from_a_named_configuration_and_from_the_preset():
    strong = study_base("stronger_critic", ["corr_weight=2.0"], ["schedule"])
    assert strong["config"]["n_critic"] == 10 and strong["config"]["corr_form"] == "2022"
    assert strong["config"]["corr_weight"] == 2.0 and strong["set"] == {"corr_weight": 2.0}
    assert strong["from"]["config"] == "stronger_critic"
    cpu = study_base(None, None, ["schedule"], {"name": "cpu", "base": "cpu_base"})
    # the CPU preset's base before named configurations existed (its dict in study/presets.py), option for option
    assert cpu["config"] == {
        **upstream_options(),
        "lr_g": 2e-4,
        "lr_d": 2e-4,
        "beta1": 0.0,
        "beta2": 0.9,
        "corr_weight": 1.0,
        "fresh_real_batch": True,
        "align_reverse": True,
        "noise_prior": "buffer",
    }
    assert "cpu preset's configuration cpu_base" in describe(cpu)
    assert study_base(None, None, [], {"name": "gpu", "base": "upstream"})["from"] == "upstream"


def test_asha_leaves_the_upstream_reference_out_of_its_rungs():
    """A collapsed reference scoring best at the first rung must not set the bar: plain ASHA stops the base's
    trials behind it (what a default study on `textured` did at epoch 8), the study's ASHA does not."""
    from types import SimpleNamespace

    from ray.tune.schedulers import ASHAScheduler

    from study.search import StudyASHA

    actions = {}
    for cls in (ASHAScheduler, StudyASHA):
        s = cls(time_attr="epoch", metric="m", mode="min", max_t=36, grace_period=8, reduction_factor=3, brackets=1)
        ref = SimpleNamespace(trial_id="ref", config={"reference": "upstream"})
        a, b = SimpleNamespace(trial_id="a", config={}), SimpleNamespace(trial_id="b", config={})
        for t in (ref, a, b):
            s.on_trial_add(None, t)
        results = [(ref, 1.0), (a, 5.0), (b, 6.0)]
        actions[cls] = [s.on_trial_result(None, t, {"epoch": 8, "m": m}) for t, m in results]
        s.on_trial_complete(None, ref, {"epoch": 8, "m": 1.0})
    assert actions[ASHAScheduler] == ["CONTINUE", "STOP", "STOP"]
    assert actions[StudyASHA] == ["CONTINUE", "CONTINUE", "STOP"]  # b is behind a, the first at the rung
