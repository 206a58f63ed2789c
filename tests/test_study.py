"""The Ray Tune study end to end, as a user runs it: python study/run.py ..."""

import json
import os
import re
import signal
import sqlite3

import pandas as pd
import pytest

from healthgym_core.config import defaults
from healthgym_core.data.cohort import read_cohort
from study.experiment import STUDY_VERSION
from study.spaces import load_space
from tests.study_helpers import kill_session, results, start_study, study, wait_for

UPSTREAM = defaults()  # upstream: every option at its default

pytestmark = pytest.mark.slow


def optuna_dashboard_get(db):
    """GET an optuna-dashboard API path through its WSGI app (what `optuna-dashboard sqlite:///...` serves)."""
    import io
    import json
    import sys

    import optuna
    from optuna_dashboard import wsgi

    app = wsgi(optuna.storages.RDBStorage(f"sqlite:///{db}"))

    def get(path):
        environ = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": path,
            "SERVER_NAME": "localhost",
            "SERVER_PORT": "80",
            "QUERY_STRING": "",
            "wsgi.input": io.BytesIO(),
            "wsgi.errors": sys.stderr,
            "wsgi.url_scheme": "http",
        }
        status = []
        body = b"".join(app(environ, lambda s, h, e=None: status.append(s)))
        assert status[0].startswith("200"), status
        return json.loads(body)

    return get


def test_smoke_study_prunes_records_and_exports(tmp_path):
    r = study(
        "--space",
        "curriculum",
        "--smoke",
        "--num-samples",
        6,
        "--max-epochs",
        4,
        "--grace-period",
        1,
        "--storage",
        tmp_path,
        "--no-dashboard",
        timeout=400,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    folder = tmp_path / "curriculum"
    assert "smoke preset" in r.stderr and "NOT the Health Gym dataset" in r.stderr
    assert "scheduler: ASHA, pruning at epoch 1 and every x2 after on emd_feat: the exact Wasserstein" in r.stderr
    board = pd.read_parquet(folder / "leaderboard.parquet")
    assert len(board) == 6 and set(board["status"]) <= {"completed", "pruned"}
    # ASHA really prunes, and the leaderboard marks it.
    pruned = board[board["pruned"]]
    assert len(pruned) >= 1 and (pruned["epochs"] < 4).all()
    assert (board.loc[board["status"] == "completed", "epochs"] == 4).all()
    # The upstream configuration is the first point of every search (trial seed = --seed + 0).
    first = board[board["seed"] == 0]
    assert first["schedule"].tolist() == [UPSTREAM["schedule"]] and bool(first["upstream"].iloc[0])
    for col in ("last_fd_feat", "best_fd_feat", "last_wasserstein_gap", "last_sliced_w", "g_steps", "checkpoint"):
        assert col in board
    # Budget counters: a completed trial ran 4 epochs of 6 steps (one batch per length) with n_critic 5.
    done = board[board["status"] == "completed"].iloc[0]
    assert done["g_steps"] == 4 * 6 and done["d_steps"] == 4 * 6 * 5
    # Optuna study in SQLite, with every trial and its intermediate values.
    con = sqlite3.connect(folder / "optuna.db")
    n_trials = con.execute("select count(*) from trials").fetchone()[0]
    n_inter = con.execute("select count(*) from trial_intermediate_values").fetchone()[0]
    con.close()
    # Tune hands a trial's last result to Optuna as its final value, the others as intermediate values.
    assert n_trials == 6 and n_inter == (board["epochs"] - 1).sum()
    # Synthetic cohort from the best trial, in the input format.
    best = read_cohort(folder / "synthetic_best.csv", "demo7")
    assert best.n_patients == 1000 and best.n_months == 60
    # Its card's verdict is the first thing the study prints once trials end, ahead of the leaderboard.
    ended = r.stdout[r.stdout.index("the best trial's cohort (synthetic_best.csv): ") :]
    assert re.match(r"the best trial's cohort \(synthetic_best.csv\): (NOT YET FAITHFUL|the cohort meets)", ended)
    assert ended.index("privacy") < ended.index("Leaderboard (")
    assert "tensorboard --logdir" in r.stdout and "optuna-dashboard sqlite:///" in r.stdout
    # TensorBoard event files per trial.
    assert len(list(folder.glob("*/events.out.tfevents.*"))) == 6
    # optuna-dashboard serves the study with every trial and its intermediate values.
    dashboard = optuna_dashboard_get(folder / "optuna.db")
    summaries = dashboard("/api/studies")["study_summaries"]
    assert [s["study_name"] for s in summaries] == ["curriculum"]
    trials = dashboard(f"/api/studies/{summaries[0]['study_id']}")["trials"]
    assert len(trials) == 6 and sum(len(t["intermediate_values"]) for t in trials) == n_inter
    # TensorBoard logs every per-epoch metric and loss under clear names.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(next(folder.glob("*/events.out.tfevents.*"))))
    ea.Reload()
    tags = set(ea.Tags()["scalars"])
    assert {
        f"ray/tune/{m}" for m in ("wasserstein_gap", "fd_feat", "sliced_w", "D_loss", "G_loss", "GP", "Corr", "g_steps")
    } <= tags
    # Per-step learning dynamics per trial.
    steps = pd.read_csv(next(folder.glob("*/steps.csv")))
    assert {"epoch", "L", "D_loss", "G_loss"} <= set(steps.columns)

    # The same command again must not overwrite the study.
    before = (folder / "leaderboard.parquet").read_bytes()
    again = study("--space", "curriculum", "--smoke", "--storage", tmp_path, "--no-dashboard", timeout=60)
    assert again.returncode == 2 and "already holds a study" in again.stderr
    assert (folder / "leaderboard.parquet").read_bytes() == before


def test_a_smoke_study_trains_every_remedy(tmp_path):
    """Every remedy for too-smooth trajectories at once, through Ray (the texture space searches them)."""
    space = tmp_path / "remedies.toml"
    space.write_text(
        'description = "every remedy on"\n[[factor]]\nname = "noise_prior"\nchoices = ["uniform", "buffer"]\n'
        'why = "x"\n[fixed]\ncritic_reach = "every_month"\ncritic_diffs = true\ncritic_hidden = 12\n'
        "texture_weight = 10.0\nswitch_weight = 10.0\nsummary_weight = 10.0\nshare_weight = 10.0\n"
        'real_head = "linear"\n'
    )
    r = study("--space", space, "--smoke", "--num-samples", 2, "--storage", tmp_path, "--no-dashboard", timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    board = pd.read_parquet(tmp_path / "remedies" / "leaderboard.parquet")
    assert (board["status"] == "completed").any() and board["last_energy_feat"].notna().all()
    record = json.loads((tmp_path / "remedies" / "study.json").read_text())
    base = record["plan"]["trial_base"]
    assert base["critic_hidden"] == 12 and base["texture_weight"] == 10 and base["switch_weight"] == 10
    assert base["summary_weight"] == 10 and base["share_weight"] == 10 and base["real_head"] == "linear"


@pytest.mark.parametrize("space", ["critic", "baseline", "all", "texture"])
def test_spaces_run(tmp_path, space):
    """Through Ray: the budget path (critic), the seeds-only space (baseline) and the space holding every factor of
    the others (all). Every point of every space is checked as a configuration, without Ray, in test_spaces.py."""
    # The critic space is given its trials as a budget instead: 2 trial-epochs hold 2 trials of 1 epoch.
    trials = ["--budget", 2] if space == "critic" else ["--num-samples", 2]
    r = study(
        "--space", space, "--smoke", *trials, "--max-epochs", 1, "--storage", tmp_path, "--no-dashboard",
        timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    if space == "critic":
        assert "compute: 2 trial-epochs of its --budget of 2, 12 generator steps" in r.stdout
        # the smoke preset's first rung (1) is the last epoch here, so nothing is pruned and the console says so
        assert "scheduler: no pruning: every trial to the end; a budget of 2 trial-epochs" in r.stderr
    board = pd.read_parquet(tmp_path / space / "leaderboard.parquet")
    assert len(board) == 2 and (board["status"] == "completed").all()
    factors = [f.name for f in load_space(space).factors]
    if space == "baseline":
        assert sorted(board["seed"]) == [0, 1]  # one trial per seed, upstream configuration
    else:
        up = board[board["seed"] == 0].iloc[0]
        assert all(up[f] == UPSTREAM[f] for f in factors)


def test_driver_killed_then_resumed_finishes_every_trial_once(tmp_path, monkeypatch):
    # Tune saves its experiment state every 10 s, longer than three smoke epochs (about a second each); the presets'
    # epochs take 30 s and more, three of them far longer than that period, which is what keeping a trial's latest
    # three checkpoints relies on (study/tuning.py, latest_checkpoints). A 1 s period keeps that ratio here.
    monkeypatch.setenv("TUNE_GLOBAL_CHECKPOINT_S", "1")
    args = (
        "--space",
        "critic",
        "--smoke",
        "--num-samples",
        4,
        "--max-epochs",
        6,  # enough epochs left after each interruption that the next one lands mid-study on an idle machine
        "--no-pruning",
        "--storage",
        tmp_path,
        "--no-dashboard",
    )
    folder = tmp_path / "critic"
    # Ctrl-C once some epochs have been reported: Tune stops, and the driver writes no leaderboard or cohort for a
    # study that has not ended, says how to continue and exits 130.
    p = start_study(*args)
    try:
        assert wait_for(lambda: sum(len(x) for x in results(folder)) >= 2, timeout=240), (
            p.stderr.read() if p.poll() else ""
        )
        os.kill(p.pid, signal.SIGINT)
        _, err = p.communicate(timeout=120)
    finally:
        kill_session(p.pid)
    assert p.returncode == 130, err[-3000:]
    assert f"Continue with: python study/run.py --space critic --name critic --storage {tmp_path} --resume" in err
    assert not (folder / "leaderboard.parquet").exists() and not (folder / "synthetic_best.csv").exists()
    # Then SIGKILL mid-study (a session that ends), after the resumed study has reported more epochs.
    before = sum(len(x) for x in results(folder))
    p = start_study(*args, "--resume")
    try:
        assert wait_for(lambda: sum(len(x) for x in results(folder)) >= before + 2, timeout=240), (
            p.stderr.read() if p.poll() else ""
        )
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=30)
    finally:
        kill_session(p.pid)
    assert not (folder / "leaderboard.parquet").exists()
    r = study(*args, "--resume", timeout=400)
    if r.returncode != 0:
        (tmp_path / "resume-stderr.txt").write_text(r.stderr)
    assert r.returncode == 0, r.stderr[-3000:]
    board = pd.read_parquet(folder / "leaderboard.parquet")
    assert len(board) == 4 and (board["status"] == "completed").all() and (board["epochs"] == 6).all()
    assert board["trial_id"].is_unique and sorted(board["seed"]) == [0, 1, 2, 3]

    # A damaged experiment folder gives one clear line, never a traceback from Ray.
    import shutil

    damaged = tmp_path / "damaged"
    shutil.copytree(folder, damaged / "critic")
    for state in [*(damaged / "critic").glob("experiment_state-*.json"), damaged / "critic" / "tuner.pkl"]:
        state.unlink()
    r = study(*args[:-3], "--storage", damaged, "--no-dashboard", "--resume", timeout=120)
    assert r.returncode == 2 and "experiment state is missing or damaged" in r.stderr and "Traceback" not in r.stderr
    record = (damaged / "critic" / "study.json").read_text()
    (damaged / "critic" / "study.json").write_text(record[: len(record) // 2])
    r = study(*args[:-3], "--storage", damaged, "--no-dashboard", "--resume", timeout=120)
    assert r.returncode == 2 and "damaged or truncated" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    (damaged / "critic" / "study.json").write_text(record.replace(f'"version": {STUDY_VERSION}', '"version": 99'))
    r = study(*args[:-3], "--storage", damaged, "--no-dashboard", "--resume", timeout=120)
    assert r.returncode == 2 and "version 99 is not supported" in r.stderr


def test_bad_options_exit_2_before_ray_starts(tmp_path):
    for args, needle in [
        (["--space", "nosuch"], "unknown space 'nosuch'"),
        (["--num-samples", "0"], "--num-samples must be at least 1"),
        (["--batch-size", "5000"], "larger than the"),
        (["--resume"], "--resume: no study"),
        (["--cpus-per-trial", "0"], "--cpus-per-trial must be positive"),
    ]:
        r = study("--smoke", "--storage", tmp_path, "--no-dashboard", *args, timeout=120)
        assert r.returncode == 2 and needle in r.stderr, (args, r.stderr[-2000:])
        assert "Started a local Ray" not in r.stderr
    assert not any(tmp_path.iterdir())


def test_gpus_per_trial_default():
    from study.presets import DEFAULT_GPUS_PER_TRIAL, gpus_per_trial

    assert gpus_per_trial(None, 0) == 0.0  # no GPUs: trials ask for none
    assert gpus_per_trial(None, 8) == DEFAULT_GPUS_PER_TRIAL == 0.25  # placeholder until measured on a GPU
    assert gpus_per_trial(0.0, 8) == 0.0  # an explicit 0 is kept, not replaced by the default
    assert gpus_per_trial(0.5, 0) == 0.5


def test_quick_runs_the_base_and_the_upstream_reference_to_the_end(tmp_path):
    """--quick at a tiny size: two trials, the base and the upstream reference, each to --max-epochs (no pruning,
    although the quick preset's first rung would lie past it), and the console says what differs from the preset."""
    r = study(
        "--space", "curriculum", "--quick", "--patients", 92, "--hidden", 8, "--batch-size", 64, "--max-epochs", 2,
        "--storage", tmp_path, "--no-dashboard", timeout=400,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    assert "quick preset" in r.stderr and "scheduler: no pruning: every trial to the end" in r.stderr
    assert "this study differs from the preset: 2 epochs at most, hidden 8, batch 64, 92 patients" in r.stderr
    board = pd.read_parquet(tmp_path / "curriculum" / "leaderboard.parquet")
    assert sorted(board["role"]) == ["base", "upstream reference"]
    assert (board["status"] == "completed").all() and (board["epochs"] == 2).all()
