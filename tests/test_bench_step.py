"""Smoke test of bench/step_time.py: the faithful upstream step and the project's step give the same losses."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_quick(tmp_path, *flags):
    out = tmp_path / "step_time.json"
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "step_time.py"), "--quick", "--json", str(out), *flags],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(out.read_text())


@pytest.mark.slow
def test_step_time_quick(tmp_path):
    r = run_quick(tmp_path)

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
    # float32 against float64 on the same draws: float rounding only (the correlation is float32 in both)
    acc = r["accuracy_vs_cpu_float64"]
    assert set(acc) == {"cpu float32", "cpu float64"}
    assert all(v == 0 for v in acc["cpu float64"].values())
    assert 0 < acc["cpu float32"]["GP"] < 1e-5 and 0 < acc["cpu float32"]["worst_grad"] < 1e-3


@pytest.mark.slow
def test_step_time_graph_columns(tmp_path):
    """The CUDA-graph columns of the script, run with the emulated backend on CPU: same losses and gradients."""
    r = run_quick(tmp_path, "--emulate-graphs")
    assert r["losses_agree"] and r["grads_agree"]
    graphs = {k: v for k, v in r["loss_rel_diff"].items() if k.endswith("(graphs)")}
    assert len(graphs) == 6 and all(v < 1e-4 for v in graphs.values())
    assert r["grad_rel_diff"]["critic_graphs"] == r["grad_rel_diff"]["critic"]  # same kernels, same numbers
    assert len(r["times_s"]["graphs_critic"]) == 1 and r["ratios"]["full_step_graphs"] > 0
    assert r["accuracy_vs_cpu_float64"]["cpu float32 + emulated graphs"] == r["accuracy_vs_cpu_float64"]["cpu float32"]


@pytest.mark.slow
def test_step_time_keeps_the_eager_numbers_when_graphs_fail(tmp_path, monkeypatch, capsys):
    """A GPU session is short: a failed capture must not cost the rest of the measurements."""
    import importlib.util

    import torch

    from healthgym_core.step_graphs import StepGraphs

    spec = importlib.util.spec_from_file_location("step_time_under_test", ROOT / "bench" / "step_time.py")
    step_time = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(step_time)

    def fail(self, call, params):
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(StepGraphs, "_record", fail)
    threads = torch.get_num_threads()
    out = tmp_path / "r.json"
    try:
        with pytest.warns(UserWarning, match="CUDA graphs turned off"):
            assert step_time.main(["--quick", "--emulate-graphs", "--json", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    r = json.loads(out.read_text())
    assert "operation not permitted when stream is capturing" in r["graphs_off_reason"]
    assert "graphs_critic" not in r["times_s"] and "full_step_graphs" not in r["ratios"]
    assert set(r["accuracy_vs_cpu_float64"]) == {"cpu float32", "cpu float64"}
    assert r["losses_agree"] and r["ratios"]["full_step"] > 0
    assert "no graph columns" in capsys.readouterr().err


@pytest.mark.slow
def test_step_time_fused_columns(tmp_path):
    """The fused kernel's columns: checked against nn.LSTM from one state (to 1e-5 or float32's own floor), and
    far fewer dispatched operators per critic update than nn.LSTM, which needs fewer than the upstream loop."""
    from healthgym_core.nn import fused

    if fused.available() is not None:
        pytest.skip(fused.available())
    r = run_quick(tmp_path)
    exact = r["fused_vs_native"]
    assert exact["agree"] and exact["critic gradients"] < 1e-5 and exact["gradient-penalty gradients"] < 1e-5
    assert all(v < 1e-4 for v in r["loss_rel_diff_fused"].values())
    ops = r["ops_per_critic_update"]
    assert ops["fused"] < ops["project"] < ops["reference"]
    assert r["ratios"]["full_step_fused"] > 0 and r["ratios"]["full_step_fused_vs_native"] > 0
    assert "cpu float32, fused kernel" in r["accuracy_fused_vs_cpu_float64"]
