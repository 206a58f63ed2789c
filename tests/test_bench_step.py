"""Smoke test of bench/step_time.py: the faithful upstream step and the project's step give the same losses."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_step_time_quick(tmp_path):
    out = tmp_path / "step_time.json"
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "step_time.py"), "--quick", "--json", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    r = json.loads(out.read_text())

    assert r["config"]["quick"] and r["config"]["threads"] == 1
    assert r["losses_agree"] and r["grads_agree"] and r["forwards_agree"]
    assert set(r["loss_rel_diff"]) == {"D_loss", "GP", "D_real", "D_fake", "G_loss", "Corr"}
    assert all(d < 1e-4 for d in r["loss_rel_diff"].values()), r["loss_rel_diff"]
    assert r["max_loss_rel_diff"] < 1e-4

    steps = ("reference_critic", "project_critic", "reference_generator", "project_generator")
    for k in steps:
        assert len(r["times_s"][k]) == r["config"]["repeats"] == 1
        assert r["median_s"][k] > 0
    for k in ("critic", "generator", "full_step"):
        assert r["ratios"][k] > 0
    assert r["gflops"]["project_critic_useful"] > 0
    assert r["matmul_peak_gflops"]["mm_1024"] > 0
