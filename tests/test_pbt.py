"""Population-based training: a smoke PBT study perturbs and exploits, records each trial's lineage, and resumes
after its driver is killed."""

from __future__ import annotations

import json
import os
import signal

import pandas as pd
import pytest

from study.experiment import RANK_METRIC
from study.spaces import load_space
from study.tuning import ClampToSpace, pbt_metric
from tests.study_helpers import kill_session, results, start_study, study, wait_for


def test_perturbations_stay_inside_the_space():
    clamp = ClampToSpace(load_space("critic"))
    out = clamp({"n_critic": 11.6, "gp_weight": 1e4, "seed": 3})
    assert out == {"n_critic": 10, "gp_weight": 100.0, "seed": 3}
    assert clamp({"n_critic": 0.4, "gp_weight": 0.05})["n_critic"] == 1
    assert isinstance(clamp({"n_critic": 4.4})["n_critic"], int)


def test_pbt_exploits_on_a_comparable_metric():
    class Args:
        metric = "wasserstein_gap"

    assert pbt_metric(Args) == RANK_METRIC != "wasserstein_gap"  # never a trial's own critic gap
    Args.metric = "sliced_w"
    assert pbt_metric(Args) == "sliced_w"


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


@pytest.mark.slow
def test_a_pbt_study_perturbs_exploits_records_lineage_and_resumes(tmp_path):
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
    try:  # kill the driver mid-study, once some epochs are in
        assert wait_for(lambda: sum(len(x) for x in results(folder)) >= 3, timeout=300), (
            p.stderr.read() if p.poll() else ""
        )
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=30)
    finally:
        kill_session(p.pid)
    assert not (folder / "leaderboard.parquet").exists()
    r = study(*args, "--resume", timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads((folder / "study.json").read_text())["args"]["scheduler"] == "pbt"
    board = pd.read_parquet(folder / "leaderboard.parquet")
    assert len(board) == 4 and board["trial_id"].is_unique and (board["status"] == "completed").all()
    exploited = board[board["lineage"].str.contains("from trial")]
    assert len(exploited) >= 1, board[["trial_id", "lineage"]]
    # an exploit copies another trial's weights at a later epoch (a trial killed and resumed keeps the segments
    # after the kill; the configuration it had before is in its first report)
    for line in exploited["lineage"]:
        took = [seg for seg in line.split(" | ") if "from trial" in seg]
        assert took and all(int(seg.split("-")[0].split(" ")[0]) > 1 for seg in took), line
    donors = set(board["trial_id"])
    for line in exploited["lineage"]:
        assert any(f"from trial {d}" in line for d in donors)
    # An exploit is named in the first report after it; a trial that cloned a finished one trains no further
    # epoch, reports nothing after it, and its lineage comes from the final state Tune hands back.
    reported = pd.concat(results(folder), ignore_index=True)
    if "exploited_from" not in reported:
        reported["exploited_from"] = None
    for trial, line in exploited[["trial_id", "lineage"]].itertuples(index=False):
        own = reported[reported["trial_id"] == trial]
        for seg in (seg for seg in line.split(" | ") if "from trial" in seg):
            first, donor = int(seg.split("-")[0].split(" ")[0]), seg.split("from trial ")[1].split(" ")[0]
            named = own.loc[own["epoch"] == first, "exploited_from"].eq(donor).any()
            final_clone = first == 4 and not (own["epoch"] == 4).any()
            assert named or final_clone, (trial, seg, own[["epoch", "exploited_from"]])
    # PBT ranked on a comparable metric
    assert RANK_METRIC in r.stdout and "PopulationBasedTraining" in r.stdout + r.stderr  # Tune's configuration box
