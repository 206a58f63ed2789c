"""Faults during training and studies, each caused for real: diverging losses, a full disk, a driver killed with
SIGKILL at random points, paths that try to leave their folder."""

import os
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from healthgym_core.checkpoint import load_checkpoint, restore_state, save_checkpoint
from healthgym_core.epoch import train_epoch
from healthgym_core.errors import HealthGymError
from healthgym_core.sampling import sample
from healthgym_core.state import build_state
from study.experiment import DEFAULT_METRIC
from study.trainable import DIVERGED_SCORE
from tests.study_helpers import kill_session, results, start_study, study, wait_for

# lr_d = 4e11 with this schedule at the smoke size: epoch 1 (all at L=2) trains, epoch 2 (L=60) goes NaN for seed 0
# and not for seed 1 (measured; CPU, one thread).
DIVERGING_SPACE = """
description = "The upstream configuration with an absurd critic learning rate: seed 0 diverges in its second epoch."
[fixed]
lr_d = 4e11
schedule = "staged:1:2-60"
"""


@pytest.mark.slow
def test_a_diverging_trial_is_marked_keeps_its_checkpoint_and_the_study_goes_on(tmp_path):
    space = tmp_path / "diverging.toml"
    space.write_text(DIVERGING_SPACE)
    r = study(
        "--space",
        space,
        "--smoke",
        "--num-samples",
        2,
        "--max-epochs",
        3,
        "--no-pruning",
        "--storage",
        tmp_path / "store",
        "--no-dashboard",
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    board = pd.read_parquet(tmp_path / "store" / "diverging" / "leaderboard.parquet").set_index("seed")
    assert board.loc[0, "status"] == "diverged" and board.loc[0, "epochs"] == 1
    assert board.loc[1, "status"] == "completed" and board.loc[1, "epochs"] == 3
    # Tune's record of the trial says so too, with the reason.
    trial = [h for h in results(tmp_path / "store" / "diverging") if (h["diverged"] == 1).any()]
    assert len(trial) == 1
    last = trial[0].iloc[-1]
    assert "non-finite loss at epoch 2" in last["diverged_reason"] and last[DEFAULT_METRIC] == DIVERGED_SCORE
    # The last good checkpoint (epoch 1) is kept and loads.
    ckpt = Path(board.loc[0, "checkpoint"]) / "state.pt"
    assert load_checkpoint(ckpt)["meta"]["epoch"] == 1


@pytest.fixture
def tiny_disk(tmp_path):
    """A 2 MiB tmpfs: writes past it fail with ENOSPC, as on a full disk."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(folder: Path, leave: int) -> None:
    """Fill the file system of `folder` until fewer than `leave` bytes are free."""
    st = os.statvfs(folder)
    free = st.f_bavail * st.f_frsize
    with open(folder / "filler", "wb") as f:
        f.write(b"\0" * max(free - leave, 0))
        f.flush()
        os.fsync(f.fileno())


def test_disk_full_during_a_checkpoint_keeps_the_previous_one(tiny_disk, small_data, tiny_config):
    state = build_state(tiny_config, small_data)
    train_epoch(state, small_data)
    path = save_checkpoint(tiny_disk / "last.pt", state, small_data)
    before = path.read_bytes()
    fill(tiny_disk, leave=4096)
    train_epoch(state, small_data)
    with pytest.raises(HealthGymError, match="No space left on device.*previous file, if any, is intact"):
        save_checkpoint(path, state, small_data)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tiny_disk.iterdir()) == ["filler", "last.pt"]  # no temporary left behind
    assert restore_state(load_checkpoint(path), small_data).epoch == 1
    # The synthetic export fails the same way and leaves nothing half-written.
    with pytest.raises(HealthGymError, match="No space left on device"):
        sample(path, 500, out=tiny_disk / "synthetic.csv")
    assert not (tiny_disk / "synthetic.csv").exists()


@pytest.mark.slow
def test_trainer_on_a_full_disk_exits_2_and_keeps_its_checkpoint(tiny_disk):
    tiny = [
        "--patients",
        "60",
        "--hidden",
        "8",
        "--batch-size",
        "16",
        "--n-critic",
        "1",
        "--schedule",
        "ladder:4-8",
        "--eval-samples",
        "32",
        "--sample-patients",
        "5",
        "--threads",
        "1",
        "--quiet",
        "--out",
        tiny_disk / "run",
    ]
    train = [sys.executable, "-m", "healthgym_core.train", *map(str, tiny)]
    assert subprocess.run([*train, "--epochs", "1"], capture_output=True).returncode == 0
    last = tiny_disk / "run" / "checkpoints" / "last.pt"
    before = last.read_bytes()
    fill(tiny_disk, leave=2048)
    r = subprocess.run([*train, "--epochs", "2", "--resume"], capture_output=True, text=True)
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert r.returncode == 2 and len(errors) == 1 and "No space left on device" in errors[0], r.stderr
    assert r.stderr.strip().splitlines()[-1] == errors[0] and "Traceback" not in r.stderr
    assert last.read_bytes() == before
    assert load_checkpoint(last)["meta"]["epoch"] == 1


@pytest.mark.slow
def test_driver_killed_at_random_points_then_resumed_matches_an_uninterrupted_study(tmp_path):
    args = ["--space", "baseline", "--smoke", "--num-samples", 2, "--max-epochs", 4, "--no-pruning", "--no-dashboard"]
    reference = study(*args, "--storage", tmp_path / "reference", timeout=300)
    assert reference.returncode == 0, reference.stderr[-2000:]
    store = tmp_path / "killed"
    folder = store / "baseline"
    rng = random.Random(7)
    kills = []
    for i in range(5):
        # A driver killed before it wrote its study record leaves nothing to resume; `--resume` says so, and the
        # user runs the command again as it was.
        p = start_study(*args, "--storage", store, *(["--resume"] if (folder / "study.json").exists() else []))
        try:
            if i == 0:  # kill as Tune writes tuner.pkl, before its first experiment state (the search space is in
                # neither: a resume must be given it again)
                wait_for(lambda p=p: (folder / "tuner.pkl").exists() or p.poll() is not None, 120, poll=0.005)
                kills.append("at tuner.pkl")
            elif i == 2:  # kill while a checkpoint is being written: the moment a new checkpoint folder appears
                n0 = len(list(folder.glob("*/checkpoint_*")))
                wait_for(
                    lambda n0=n0, p=p: len(list(folder.glob("*/checkpoint_*"))) > n0 or p.poll() is not None,
                    120,
                    poll=0.02,
                )
                kills.append("at a checkpoint write")
            else:
                delay = rng.uniform(6, 20)
                wait_for(lambda p=p: p.poll() is not None, delay)
                kills.append(f"after {delay:.1f} s")
            finished = p.poll() is not None
            os.kill(p.pid, signal.SIGKILL) if not finished else None
            p.wait(timeout=30)
        finally:
            kill_session(p.pid)  # the machine goes down with the driver: its Ray goes too
        if finished:
            break
    r = study(*args, "--storage", store, "--resume", timeout=300)
    assert r.returncode == 0, (kills, r.stderr[-3000:])
    got = pd.read_parquet(folder / "leaderboard.parquet").set_index("seed").sort_index()
    want = pd.read_parquet(tmp_path / "reference" / "baseline" / "leaderboard.parquet").set_index("seed").sort_index()
    assert len(got) == 2 and got["trial_id"].is_unique  # every trial present once
    assert (got["status"] == "completed").all() and (got["epochs"] == 4).all()
    for col in (
        "last_fd_feat",
        "last_wasserstein_gap",
        "last_sliced_w",
        "last_D_loss",
        "last_G_loss",
        "g_steps",
        "d_steps",
    ):
        np.testing.assert_allclose(
            got[col].to_numpy(float), want[col].to_numpy(float), rtol=1e-6, err_msg=f"{col} {kills}"
        )


@pytest.mark.slow
def test_a_driver_killed_while_tune_wrote_its_first_state_resumes_from_the_start(tmp_path):
    """tuner.pkl truncated and no trial reported yet (the kill test's first point, when the kill lands mid-write):
    --resume starts the study again rather than refusing it."""
    args = ("--space", "critic", "--smoke", "--no-dashboard", "--num-samples", "2", "--max-concurrent", "1")
    args += ("--storage", tmp_path)
    first = study(*args, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    folder = tmp_path / "critic"
    want = pd.read_parquet(folder / "leaderboard.parquet").set_index("seed").sort_index()
    for trial in folder.glob("train_healthgym_*"):
        shutil.rmtree(trial)
    for f in [*folder.glob("experiment_state*"), *folder.glob("basic-variant-state*"), *folder.glob("searcher-state*")]:
        f.unlink()
    (folder / "leaderboard.parquet").unlink()
    (folder / "tuner.pkl").write_bytes(b"")  # the kill landed while Tune wrote it
    r = study(*args, "--resume", timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "starts again from the beginning" in r.stdout
    got = pd.read_parquet(folder / "leaderboard.parquet").set_index("seed").sort_index()
    assert got.index.tolist() == want.index.tolist()
    assert np.allclose(got["last_emd_feat"], want["last_emd_feat"])  # the same study as run uninterrupted


def test_paths_from_options_cannot_leave_their_folder(tmp_path):
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "healthgym_core.train",
            "--out",
            str(tmp_path / "run"),
            "--sample-out",
            "../escape.csv",
            "--epochs",
            "1",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "must be a plain name" in r.stderr and not (tmp_path / "escape.csv").exists()
    r = study("--smoke", "--name", "../outside", "--storage", tmp_path / "store", "--no-dashboard", timeout=120)
    assert r.returncode == 2 and "must be a plain name" in r.stderr
    assert not (tmp_path / "outside").exists() and not (tmp_path / "store").exists()


def test_exported_patients_copy_no_training_row(small_data, tiny_config, tmp_path):
    state = build_state(tiny_config, small_data)
    for _ in range(2):
        train_epoch(state, small_data)
    path = save_checkpoint(tmp_path / "c.pt", state, small_data)
    export = sample(path, 300, seed=3)
    train = small_data.train_cohort.to_frame()
    cols = small_data.schema.columns
    matches = export[cols].merge(train[cols].drop_duplicates(), on=cols, how="inner")
    assert len(matches) == 0
    # The check itself catches a copy.
    leaked = pd.concat([export[cols], train[cols].iloc[:1]])
    assert len(leaked.merge(train[cols].drop_duplicates(), on=cols, how="inner")) == 1
