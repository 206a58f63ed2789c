"""The plain trainer CLI end to end on a tiny configuration."""

import json
import subprocess
import sys

import pandas as pd
import pytest

from healthgym_core.checkpoint import load_checkpoint
from healthgym_core.data.cohort import read_cohort

TINY = [
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
]


def train(*args):
    return subprocess.run(
        [sys.executable, "-m", "healthgym_core.train", *map(str, args)], capture_output=True, text=True
    )


@pytest.mark.slow
def test_train_writes_everything_then_refuses_to_overwrite_then_resumes(tmp_path):
    out = tmp_path / "run"
    r = train(*TINY, "--epochs", 2, "--out", out)
    assert r.returncode == 0, r.stderr
    for name in (
        "run.json",
        "steps.parquet",
        "epochs.csv",
        "synthetic.csv",
        "learning_dynamics.png",
        "real_vs_synthetic.png",
        "checkpoints/last.pt",
        "checkpoints/best.pt",
    ):
        assert (out / name).exists(), name
    assert "NOT the Health Gym dataset" in r.stderr
    steps = pd.read_parquet(out / "steps.parquet")
    assert steps["epoch"].tolist() == [1] * 6 + [2] * 6  # 42 training patients / 16 -> 3 batches x 2 lengths
    assert {"D_loss", "GP", "grad_norm", "D_real", "D_fake", "W_gap", "G_loss", "Corr", "L"} <= set(steps.columns)
    epochs = pd.read_csv(out / "epochs.csv")
    assert epochs["epoch"].tolist() == [1, 2] and {"fd_feat", "wasserstein_gap", "sliced_w"} <= set(epochs.columns)
    info = json.loads((out / "run.json").read_text())
    assert info["data"]["split"] == {"seed": 0, "train": 42, "val": 9, "test": 9}
    synthetic = read_cohort(out / "synthetic.csv", "demo7")
    assert synthetic.n_patients == 5

    before = (out / "checkpoints" / "last.pt").read_bytes()
    r = train(*TINY, "--epochs", 3, "--out", out)
    assert r.returncode == 2 and "already holds a run" in r.stderr
    assert (out / "checkpoints" / "last.pt").read_bytes() == before

    r = train(*TINY, "--epochs", 3, "--out", out, "--resume")
    assert r.returncode == 0, r.stderr
    steps = pd.read_parquet(out / "steps.parquet")
    assert steps["epoch"].max() == 3 and len(steps) == 18
    assert load_checkpoint(out / "checkpoints" / "last.pt")["meta"]["epoch"] == 3


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--n-critic", "0"], "n_critic=0"),
        (["--gp-weight", "-1"], "gp_weight=-1.0"),
        (["--schedule", "ladder:10-90"], "length 90 is longer than the data's 60 months"),
        (["--batch-size", "999"], "larger than the 42 training patients"),
        (["--schedule", "spiral:3"], "unknown schedule"),
        (["--data", "missing.csv"], "missing.csv: file not found"),
        (["--sample-out", "x.xlsx"], ".csv or .parquet"),
        (["--resume"], "no checkpoint"),
    ],
)
def test_bad_options_exit_2_and_write_nothing(tmp_path, args, needle):
    out = tmp_path / "run"
    base = [a for a in TINY]
    r = train(*base, "--epochs", 1, "--out", out, *args)
    assert r.returncode == 2, r.stderr
    assert needle in r.stderr and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert not out.exists()


def test_help_documents_every_option():
    r = train("--help")
    for opt in (
        "--data",
        "--schema",
        "--patients",
        "--epochs",
        "--batch-size",
        "--hidden",
        "--schedule",
        "--n-critic",
        "--gp-weight",
        "--corr-weight",
        "--seed",
        "--device",
        "--out",
        "--resume",
    ):
        assert opt in r.stdout
