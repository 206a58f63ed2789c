"""study/evaluate.py on a finished smoke study: re-training with seeds and scoring on test patients."""

import shutil

import pandas as pd
import pytest

from tests.study_helpers import ROOT, env

pytestmark = pytest.mark.slow


def evaluate(*args, timeout=400):
    import subprocess
    import sys

    from tests.study_helpers import kill_session

    p = subprocess.Popen(
        [sys.executable, str(ROOT / "study" / "evaluate.py"), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env=env(),
    )
    try:
        out, err = p.communicate(timeout=timeout)
    finally:
        kill_session(p.pid)
    return p.returncode, out, err


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory):
    """A finished smoke study (3 trials, 2 epochs each), run once; each test evaluates its own copy."""
    from tests.study_helpers import study

    store = tmp_path_factory.mktemp("study")
    r = study(
        "--space", "critic", "--smoke", "--num-samples", 3, "--max-epochs", 2, "--no-pruning", "--storage", store,
        "--no-dashboard", timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    return store / "critic"


def copy_of(folder, tmp_path):
    import shutil

    return shutil.copytree(folder, tmp_path / "critic")


def test_evaluate_retrains_top_and_upstream_with_seeds(finished_study, tmp_path):
    folder = copy_of(finished_study, tmp_path)
    code, out, err = evaluate(folder, "--top", 1, "--seeds", 2, "--epochs", 1, "--no-dashboard")
    assert code == 0, err[-3000:]
    runs = pd.read_parquet(folder / "final_evaluation.parquet")
    assert sorted(runs["arm"].unique()) == ["rank1", "upstream"]
    assert sorted(runs["seed"].unique()) == [1000, 1001] and len(runs) == 4 and not runs["error"].any()
    up = runs[runs["arm"] == "upstream"].iloc[0]
    assert (up["n_critic"], up["gp_weight"]) == (5, 10.0)
    board = pd.read_parquet(folder / "leaderboard.parquet")
    from study.leaderboard import completed_by_rank

    done = completed_by_rank(board)
    best = done[~done["upstream"]].iloc[0]  # the leaderboard's order: collapsed trials last, then fd_feat
    rank1 = runs[runs["arm"] == "rank1"].iloc[0]
    assert (rank1["n_critic"], rank1["gp_weight"]) == (best["n_critic"], pytest.approx(best["gp_weight"]))
    for m in (
        "ks_mean",
        "tvd_mean",
        "joint_max_cell",
        "corr_l1",
        "trend_l1",
        "fd_feat",
        "emd_feat",
        "mmd2",
        "detect_auc",
        "tstr_auc",
        "p_dcr_train_closer",
        "exact_copies",
        "membership_auc",
    ):
        assert m in runs and runs[m].notna().all(), m
    summary = pd.read_csv(folder / "final_summary.csv")
    assert {
        "metric",
        "real_floor",
        "upstream_mean",
        "upstream_sd",
        "rank1_mean",
        "rank1_sd",
        "beyond_seed_spread",
    } <= set(summary.columns)
    row = summary.set_index("metric").loc["fd_feat"]
    assert row["upstream_mean"] == pytest.approx(runs[runs["arm"] == "upstream"]["fd_feat"].mean())
    assert "real_floor" in out or "fd_feat" in out
    assert (runs["reused_from"] == "").all()

    # --keep-done scores the finished runs as the evaluation did: the same table, and a second call scores nothing
    kept_done = tmp_path / "critic.runs_so_far.csv"
    code, out, err = evaluate(folder, "--keep-done", kept_done, timeout=200)
    assert code == 0 and "4 finished runs scored and added, 4 in all" in out, err[-2000:]
    final = pd.read_csv(folder / "final_evaluation.csv").sort_values(["arm", "seed"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(pd.read_csv(kept_done).reset_index(drop=True), final[list(pd.read_csv(kept_done))])
    code, out, _ = evaluate(folder, "--keep-done", kept_done, timeout=200)
    assert code == 0 and "0 finished runs scored and added, 4 in all" in out
    code, _, err = evaluate(folder, "--keep-done", tmp_path / "runs.txt", timeout=60)
    assert code == 2 and "--keep-done" in err and len(err.strip().splitlines()) == 1

    # Another copy of the study, evaluated with a third seed: the four runs the first evaluation made are taken
    # over exactly (same options, seeds, epochs, data and code), only seed 1002 trains.
    other = shutil.copytree(finished_study, tmp_path / "other" / "critic")
    code, out, err = evaluate(other, "--top", 1, "--seeds", 3, "--epochs", 1, "--reuse", folder, "--no-dashboard")
    assert code == 0, err[-3000:]
    assert "4 of 6 runs were run before exactly so" in out + err
    again = pd.read_parquet(other / "final_evaluation.parquet")
    assert sorted(again["seed"]) == [1000, 1000, 1001, 1001, 1002, 1002]
    reused = again["reused_from"] != ""
    assert (reused == (again["seed"] < 1002)).all() and again["reused_from"].str.startswith("critic/final-").sum() == 4
    key = ["arm", "seed"]
    metrics = [c for c in runs.columns if c not in ("reused_from", "error") and pd.api.types.is_numeric_dtype(runs[c])]
    pd.testing.assert_frame_equal(
        again[reused].sort_values(key)[metrics].reset_index(drop=True),
        runs.sort_values(key)[metrics].reset_index(drop=True),
    )

    # Only the first evaluation's table, its folder gone (a fresh clone keeps the CSV, not the folder): the same four
    # runs' test scores are taken over, nothing re-scored
    third = shutil.copytree(finished_study, tmp_path / "third" / "critic")
    table = tmp_path / "kept.final_evaluation.csv"
    shutil.copy(folder / "final_evaluation.csv", table)
    code, out, err = evaluate(third, "--top", 1, "--seeds", 3, "--epochs", 1, "--reuse", table, "--no-dashboard")
    assert code == 0, err[-3000:]
    assert "4 of 6 runs were run before exactly so" in out + err
    kept = pd.read_parquet(third / "final_evaluation.parquet")
    from_table = kept["reused_from"].str.startswith("kept.final_evaluation.csv:")
    assert (from_table == (kept["seed"] < 1002)).all() and kept.loc[~from_table, "fd_feat"].notna().all()
    pd.testing.assert_frame_equal(
        kept[from_table].sort_values(key)[metrics].reset_index(drop=True),
        runs.sort_values(key)[metrics].reset_index(drop=True),
        check_exact=False, rtol=1e-12,
    )  # fmt: skip
    old_table = tmp_path / "old.csv"
    pd.read_csv(table).drop(columns="run_key").to_csv(old_table, index=False)
    code, _, err = evaluate(third, "--reuse", old_table, "--no-dashboard", timeout=60)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--reuse" in err and "run_key" in err


def test_evaluate_refuses_a_folder_that_is_not_a_study(tmp_path):
    code, _, err = evaluate(tmp_path, timeout=60)
    assert code == 2 and "not a study folder" in err and len(err.strip().splitlines()) == 1


def test_an_interrupted_evaluation_resumes_with_its_own_plan(finished_study, tmp_path):
    import os
    import signal
    import subprocess
    import sys

    from tests.study_helpers import kill_session, wait_for

    EPOCHS = 20  # smoke epochs take well under a second: 3 let a fast machine finish before the interrupt arrived
    folder = copy_of(finished_study, tmp_path)
    code, _, err = evaluate(folder, "--resume", "--no-dashboard", timeout=120)
    assert (
        code == 2 and "holds no evaluation yet (run it without --resume)" in err and len(err.strip().splitlines()) == 1
    )
    log = tmp_path / "evaluate.log"
    with log.open("w") as sink:
        p = subprocess.Popen(
            [sys.executable, str(ROOT / "study" / "evaluate.py"), folder, "--top", "1", "--seeds", "1"]
            + ["--epochs", str(EPOCHS), "--no-dashboard"],
            stdout=sink,
            stderr=sink,
            start_new_session=True,
            env=env(),
        )
    try:  # Ctrl-C once the first run has reported, long before the evaluation ends
        assert wait_for(lambda: any(folder.glob("final-*/*/result.json")) or p.poll() is not None, timeout=300)
        assert p.poll() is None, "the evaluation ended before it could be interrupted"
        os.kill(p.pid, signal.SIGINT)
        assert p.wait(timeout=120) == 130
    finally:
        kill_session(p.pid)
    assert "nothing written. Continue with: python study/evaluate.py" in log.read_text()
    assert not (folder / "final_evaluation.parquet").exists() and not (folder / "final_summary.csv").exists()
    code, out, _ = evaluate(folder, "--keep-done", tmp_path / "kept.csv", timeout=120)  # no run finished yet
    assert code == 0 and "0 finished runs scored and added, 0 in all" in out and not (tmp_path / "kept.csv").exists()
    code, out, _ = evaluate(folder, "--status", timeout=120)  # how far it got, from its files alone
    assert code == 0 and "runs done" in out and "running or paused" in out and f"/{EPOCHS}" in out
    code, out, err = evaluate(folder, "--resume", "--seeds", "5", "--no-dashboard")  # the plan's 1 seed, not 5
    assert code == 0, err[-3000:]
    assert len(list(folder.glob("final-*"))) == 1 and "--seeds ignored" in err
    runs = pd.read_parquet(folder / "final_evaluation.parquet")
    assert len(runs) == 2 and runs["seed"].tolist() == [1000, 1000] and not runs["error"].any()
    assert sorted(runs["arm"]) == ["rank1", "upstream"]
    assert (runs["epochs"] == EPOCHS).all() and runs["fd_feat"].notna().all()
    code, out, _ = evaluate(folder, "--status", timeout=120)
    assert code == 0 and "2 of 2 runs done" in out and out.count(f"{EPOCHS}/{EPOCHS}") == 2
    code, out, _ = evaluate(folder, "--keep-done", tmp_path / "kept.csv", timeout=120)  # the resumed runs count
    assert code == 0 and "2 finished runs scored and added, 2 in all" in out


def test_pruning_signals_scores_the_trials_and_replays_asha(finished_study, tmp_path):
    """bench/pruning_signals.py on a no-pruning study: every trial scored on test patients once (cached), its
    no-pruning winner the leaderboard's best, and ASHA's replay spending less."""
    import json
    import subprocess
    import sys

    from study.leaderboard import completed_by_rank
    from study.reporting.loading import load_experiment

    folder = copy_of(finished_study, tmp_path)
    out = tmp_path / "signals.json"
    cmd = [sys.executable, str(ROOT / "bench" / "pruning_signals.py"), str(folder), "--graces", "1", "--factors", "2"]
    spread = tmp_path / "final_summary.csv"
    pd.DataFrame({"metric": ["fd_feat", "emd_feat"], "base_sd": [9.0, 0.05]}).to_csv(spread, index=False)
    record = tmp_path / "signals-1.csv"
    r = subprocess.run(
        [*cmd, "--json", str(out), "--seed-spread", str(spread), "--export", str(record)],
        capture_output=True, text=True, env=env(), timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads(out.read_text())
    scores = pd.read_csv(folder / "test_scores.csv", dtype={"trial_id": str})
    board = completed_by_rank(load_experiment(folder).board)
    assert sorted(scores["trial_id"]) == sorted(board["trial_id"]) and len(scores) == 3
    assert (scores["emd_feat"] > 0).all() and scores["joint_cell_coverage"].between(0, 1).all()
    assert result["no_pruning_winner"] == board["trial_id"].iloc[0]
    replay = pd.DataFrame(result["asha_replay"])
    # grace 1, factor 2, 3 trials of 2 epochs, two at a time: the first trial always runs both epochs, the others
    # one or two, so ASHA runs 4 to 6 of the 6 trial-epochs
    assert replay["trial_epochs"].between(4, 6).all() and (replay["share"] == replay["trial_epochs"] / 6).all()
    assert {c["signal"] for c in result["correlations"]} >= {"emd_feat", "wasserstein_gap", "coverage"}
    # a replayed winner counts as the no-pruning one's equal within two seed sds of the test emd_feat (0.05 here)
    assert result["seed_sd"] == 0.05
    assert (replay["within_seed_spread"] == (replay["gap_to_no_pruning"] <= 0.1)).all()
    bad = subprocess.run([*cmd, "--seed-spread", str(tmp_path / "none.csv")], capture_output=True, text=True, env=env())
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--seed-spread" in bad.stderr
    again = subprocess.run(cmd, capture_output=True, text=True, env=env(), timeout=600)
    assert again.returncode == 0 and "scored" not in again.stderr  # the cached scores, not scored again
    # the exported record, read without the experiment folder, gives the same tables
    shutil.rmtree(folder)
    from_record = tmp_path / "from_record.json"
    cmd[2] = str(record)
    cmd += ["--seed-spread", str(spread)]
    r = subprocess.run([*cmd, "--json", str(from_record)], capture_output=True, text=True, env=env(), timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    again = json.loads(from_record.read_text())
    assert again["no_pruning_winner"] == "signals-1/" + result["no_pruning_winner"]
    for key in ("correlations", "asha_replay"):
        a, b = pd.DataFrame(result[key]), pd.DataFrame(again[key])
        pd.testing.assert_frame_equal(a.select_dtypes("number"), b.select_dtypes("number"))
