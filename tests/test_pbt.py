"""Population-based training: a smoke PBT study perturbs and exploits, records each trial's lineage, and resumes
after its driver is killed."""

from __future__ import annotations

import json
import os
import signal

import pandas as pd
import pytest

from study.experiment import PBT_LOG, RANK_METRIC, exploit_metric
from study.leaderboard import donors, keep_pbt_log, lineage, pbt_exploits, pbt_log_lines
from study.search import ClampToSpace
from study.spaces import load_space
from tests.study_helpers import kill_session, start_study, study, wait_for


def test_perturbations_stay_inside_the_space():
    clamp = ClampToSpace(load_space("critic"))
    out = clamp({"n_critic": 11.6, "gp_weight": 1e4, "seed": 3})
    assert out == {"n_critic": 10, "gp_weight": 100.0, "seed": 3}
    assert clamp({"n_critic": 0.4, "gp_weight": 0.05})["n_critic"] == 1
    assert isinstance(clamp({"n_critic": 4.4})["n_critic"], int)


def test_pbt_exploits_on_a_comparable_metric():
    assert exploit_metric("wasserstein_gap") == RANK_METRIC != "wasserstein_gap"  # never a trial's own critic gap
    assert exploit_metric("sliced_w") == "sliced_w"


def test_pbt_needs_a_mutable_factor(tmp_path):
    r = study(
        "--space", "curriculum", "--smoke", "--scheduler", "pbt", "--storage", tmp_path, "--no-dashboard", timeout=120
    )
    assert r.returncode == 2 and "has no factor PBT may change mid-run" in r.stderr
    r = study(
        "--space",
        "critic",
        "--smoke",
        "--scheduler",
        "pbt",
        "--no-pruning",
        "--storage",
        tmp_path,
        "--no-dashboard",
        timeout=120,
    )
    assert r.returncode == 2 and "--no-pruning contradicts --scheduler pbt" in r.stderr


def test_lineage_takes_exploits_from_pbt_s_log_when_their_report_is_missing(tmp_path):
    for name in (
        "train_healthgym_6344f_00001_1_gp_weight=0.6447,n_critic=7,seed=307829_2026-12-03_13-13-53",
        "train_healthgym_6344f_00003_3_gp_weight=54.7352,n_critic=9,seed=503626_2026-12-03_13-13-59",
    ):
        (tmp_path / name).mkdir()
    line = [
        "3_gp_weight=54.7352,n_critic=9,seed=503626",
        "1_gp_weight=0.6447,n_critic=7,seed=307829",
        2,
        2,
        {"n_critic": 7, "gp_weight": 0.6447, "seed": 307829},
        {"n_critic": 8, "gp_weight": 0.5158, "seed": 307829},
    ]  # as Ray 2.60 writes it: trial 3 at epoch 2 took trial 1's epoch-2 weights
    (tmp_path / "pbt_global.txt").write_text(json.dumps(line) + "\n" + '["3_gp_wei')  # a line cut short by a kill
    logged = pbt_exploits(tmp_path)
    assert logged == {"6344f_00003": [(3, "6344f_00001", line[5])]}
    history = pd.DataFrame(  # epoch 3's report, the first after the exploit, was lost
        {"epoch": [1, 2, 4], "config/n_critic": [9, 9, 8], "config/gp_weight": [54.7352, 54.7352, 0.5158]}
    )
    factors = ["n_critic", "gp_weight"]
    assert lineage(history, factors) == "1-2: n_critic=9, gp_weight=54.7 | 4: n_critic=8, gp_weight=0.516"
    assert lineage(history, factors, logged["6344f_00003"]) == (
        "1-2: n_critic=9, gp_weight=54.7 | 3-4 from trial 6344f_00001 (its epoch-2 weights): n_critic=8, gp_weight=0.516"
    )
    # a report that names the donor itself gives the same lineage
    named = pd.concat([history, pd.DataFrame([{"epoch": 3, "config/n_critic": 8, "config/gp_weight": 0.5158}])])
    named["exploited_from"] = [None, None, None, "6344f_00001"]
    assert lineage(named, factors) == lineage(history, factors, logged["6344f_00003"])


def test_a_trial_that_copies_a_finished_trial_says_so():
    # PBT may exploit a donor that has reached the last epoch: the trial restores the donor's final weights and stops
    # without training (seen in the smoke PBT study: two leaderboard rows with the same emd_feat). Its lineage said
    # "4 from trial X (its epoch-3 weights) | 5 from trial X (its epoch-4 weights)" for a 4-epoch study.
    factors = ["n_critic"]
    history = pd.DataFrame({"epoch": [1, 2, 3], "config/n_critic": [5, 5, 5]})
    logged = [(5, "21a23_00002", {"n_critic": 2})]  # the donor at epoch 4 of 4
    expected = (
        "1-3: n_critic=5 | 4 a copy of trial 21a23_00002 (its final epoch-4 weights, not trained further): n_critic=2"
    )
    assert lineage(history, factors, logged, max_epochs=4) == expected
    # the leaderboard's row for the copy (the trial's last metrics are the donor's) is the same event
    copy = pd.DataFrame([{"epoch": 4, "config/n_critic": 2, "exploited_from": "21a23_00002", "cloned": True}])
    assert lineage(pd.concat([history, copy]), factors, logged, max_epochs=4) == expected
    assert lineage(pd.concat([history, copy]), factors) == expected
    # an exploit before the end is not a copy
    trained_on = lineage(history, factors, [(3, "21a23_00002", {"n_critic": 2})], max_epochs=4)
    assert trained_on == "1-2: n_critic=5 | 3 from trial 21a23_00002 (its epoch-2 weights): n_critic=5"
    # both name the donor for the tests and tables that ask whose weights a trial took
    assert donors(expected) == donors(trained_on) == ["21a23_00002"]
    assert donors("1-4: n_critic=5") == []


def test_exploits_logged_before_a_resume_stay_in_the_log(tmp_path):
    # Ray writes its PBT log in the driver's staging folder and syncs it over the experiment's copy: a resumed driver
    # starts with an empty log, so a study keeps the old lines before it resumes (seen: a killed study lost trial
    # 3's exploit of trial 1, whose first report went with the driver, and its lineage showed none).
    for name in (
        "train_healthgym_ef090_00001_1_x_2026-12-05_08-14-46",
        "train_healthgym_ef090_00002_2_x_2026",
        "train_healthgym_ef090_00003_3_x_2026-12-05_08-14-57",
    ):
        (tmp_path / name).mkdir()
    before = ["3_gp_weight=54.7", "1_gp_weight=0.64", 1, 1, {"n_critic": 7}, {"n_critic": 6, "gp_weight": 0.77}]
    after = ["2_gp_weight=0.11", "3_gp_weight=54.7@perturbed[gp_weight=0.77]", 3, 3, {}, {"n_critic": 1}]
    log = tmp_path / PBT_LOG
    log.write_text(json.dumps(before) + "\n")
    keep_pbt_log(tmp_path)
    log.write_text(json.dumps(after) + "\n")  # the resumed driver's log, synced over the first one
    expected = {"ef090_00003": [(2, "ef090_00001", before[5])], "ef090_00002": [(4, "ef090_00003", after[5])]}
    assert pbt_exploits(tmp_path) == expected
    keep_pbt_log(tmp_path)  # resumed again, before the next driver logged anything: no line twice
    keep_pbt_log(tmp_path)
    assert pbt_exploits(tmp_path) == expected
    log.unlink()
    assert pbt_exploits(tmp_path) == expected


@pytest.mark.slow
def test_a_pbt_study_perturbs_exploits_records_lineage_and_resumes(tmp_path, monkeypatch):
    # Ray writes results in the driver's staging folder and copies them to the study's folder with each snapshot of
    # the experiment, at most every 10 s by default: about half this study's run, so a kill meant for mid-study came
    # after it ended (seen twice in 6 runs). A snapshot every second lets the test see the epochs as they come.
    monkeypatch.setenv("TUNE_GLOBAL_CHECKPOINT_S", "1")
    args = (
        "--space",
        "critic",
        "--smoke",
        "--scheduler",
        "pbt",
        "--num-samples",
        4,
        "--max-epochs",
        4,
        "--perturbation-interval",
        1,
        "--storage",
        tmp_path,
        "--no-dashboard",
    )
    folder = tmp_path / "critic"
    p = start_study(*args)
    # Kill the driver mid-study, once 3 epochs have been reported. Counted as ever seen: an exploit restarts the
    # exploiting trial's result.json, so the files' total can fall.
    seen: set[tuple[str, int]] = set()

    def epochs_seen() -> int:
        for f in folder.glob("*/result.json"):
            try:
                reported = pd.read_json(f, lines=True).get("training_iteration", [])
            except ValueError:  # a line being written
                continue
            seen.update((f.parent.name, int(i)) for i in reported)
        return len(seen)

    try:
        assert wait_for(lambda: epochs_seen() >= 3, timeout=300), p.stderr.read() if p.poll() else ""
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=30)
    finally:
        kill_session(p.pid)
    logged_before = pbt_log_lines(folder)  # the killed driver's exploits, as far as Ray synced its log
    assert not (folder / "leaderboard.parquet").exists(), f"the study finished before the kill ({len(seen)} epochs)"
    r = study(*args, "--resume", timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads((folder / "study.json").read_text())["args"]["scheduler"] == "pbt"
    board = pd.read_parquet(folder / "leaderboard.parquet")
    assert len(board) == 4 and board["trial_id"].is_unique and (board["status"] == "completed").all()
    # A trial took another's weights and trained on, or became a copy of a donor that had finished (seen in CI).
    exploited = board[board["lineage"].map(donors).astype(bool)]
    assert len(exploited) >= 1, board[["trial_id", "lineage"]]
    # an exploit copies another trial's weights at a later epoch (a trial killed and resumed keeps the segments
    # after the kill; the configuration it had before is in its first report)
    for line in exploited["lineage"]:
        took = [seg for seg in line.split(" | ") if donors(seg)]
        assert took and all(int(seg.split("-")[0].split(" ")[0]) > 1 for seg in took), line
        assert set(donors(line)) <= set(board["trial_id"]), line
    # Every exploit Ray's PBT logged is in the exploiting trial's lineage with its donor, even where the first report
    # after it was lost with the killed driver.
    logged = pbt_exploits(folder)
    assert logged, "PBT logged no exploit"
    assert set(logged_before) <= set(pbt_log_lines(folder)), "exploits logged before the resume were lost"
    lineages = dict(zip(board["trial_id"], board["lineage"]))
    for trial, events in logged.items():
        for _, donor, _ in events:
            assert donor in donors(lineages[trial]), (trial, donor, lineages[trial])
    # No checkpoint is removed: a paused trial restores from its donor's checkpoint only when a slot frees, and
    # keeping each trial's best three once removed it before then. A trial that never exploited keeps one per epoch;
    # one that did numbers its own on from the donor's, with no gaps either.
    own = {t for t, line in lineages.items() if not donors(line)}
    for tdir in folder.glob("train_healthgym_*"):
        kept = sorted(int(c.name.split("_")[1]) for c in tdir.glob("checkpoint_*"))
        assert kept == list(range(len(kept))), (tdir.name, kept)
        if any(f"_{t}_" in tdir.name for t in own):
            assert len(kept) == 4, (tdir.name, kept)
    # PBT ranked on a comparable metric
    assert RANK_METRIC in r.stdout and "PopulationBasedTraining" in r.stdout + r.stderr  # Tune's configuration box


def test_a_pbt_population_holds_upstreams_point_as_a_member_and_says_there_is_no_reference(capsys):
    from study.base import study_base
    from study.presets import PRESETS
    from study.search import pbt_first_points

    space = load_space("optimizer")
    factors = [f.name for f in space.factors]
    base = study_base(None, None, factors, {"name": "cpu", "base": PRESETS["cpu"].base})
    points = pbt_first_points(space, base["config"], base)
    assert points == [
        {"lr_g": 2e-4, "lr_d": 2e-4, "beta1": 0.0, "beta2": 0.9},  # the CPU base
        {"lr_g": 1e-3, "lr_d": 1e-3, "beta1": 0.9, "beta2": 0.99},  # upstream's optimiser, as an ordinary member
    ]
    assert "PBT runs no upstream reference trial" in capsys.readouterr().err
    upstream = study_base(None, None, factors, {"name": "smoke", "base": {}})
    assert len(pbt_first_points(space, upstream["config"], upstream)) == 1  # the base is upstream: nothing to say
    assert "reference" not in capsys.readouterr().err
