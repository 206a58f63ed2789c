#!/usr/bin/env python
"""One epoch of the study's unit of work (`healthgym_core.epoch.run_epoch`: training plus validation metrics) with
the fused kernel against nn.LSTM, same seed and data, at the CPU preset's size; and how far their per-step
records drift apart, next to the drift that one ulp changed in one nn.LSTM weight causes.

    python bench/epoch_kernels.py --epochs 3 --json bench/epoch_kernels.cpu.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from healthgym_core.config import TrainConfig
from healthgym_core.data.cohort import load_cohort
from healthgym_core.data.prepared import prepare_data
from healthgym_core.epoch import run_epoch
from healthgym_core.state import build_state
from study.presets import PRESETS

KEYS = ("D_loss", "GP", "D_real", "D_fake", "G_loss", "Corr")


def drift(a: list[dict], b: list[dict]) -> list[float]:
    """Per step, the largest relative difference of the logged losses (relative to max(|b|, 1e-3))."""
    return [max(abs(x[k] - y[k]) / max(abs(y[k]), 1e-3) for k in KEYS) for x, y in zip(a, b)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--seed", type=int, default=2)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    preset = PRESETS["cpu"]
    data = prepare_data(load_cohort("simulated", "demo7", patients=preset.patients, seed=0), split_seed=0)
    states = {}
    for name, kernel in (("native", "native"), ("fused", "fused"), ("native, one ulp", "native")):
        cfg = TrainConfig(
            hidden=preset.hidden,
            batch_size=preset.batch_size,
            eval_samples=preset.eval_samples,
            kernel=kernel,
            seed=args.seed,
        )
        states[name] = build_state(cfg, data)
    with torch.no_grad():
        states["native, one ulp"].critic.lstm.lstm.weight_hh_l0[0, 0] *= 1 + 2**-23
    records = {k: [] for k in states}
    seconds = {k: [] for k in states}
    summaries = {k: [] for k in states}
    for epoch in range(args.epochs):
        for name, st in states.items():  # interleaved: load from other processes hits every kernel alike
            t0 = time.perf_counter()
            recs, summary = run_epoch(st, data)
            seconds[name].append(time.perf_counter() - t0)
            records[name] += recs
            summaries[name].append(
                {k: summary[k] for k in ("fd_feat", "wasserstein_gap", "coverage", "train_seconds", "eval_seconds")}
            )
        print(f"epoch {epoch + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in seconds.items()), file=sys.stderr)
    steps_per_epoch = len(records["native"]) // args.epochs
    out = {
        "config": {
            "preset": "cpu",
            "hidden": preset.hidden,
            "batch": preset.batch_size,
            "patients": preset.patients,
            "eval_samples": preset.eval_samples,
            "epochs": args.epochs,
            "seed": args.seed,
            "threads": 1,
            "steps_per_epoch": steps_per_epoch,
        },
        "epoch_seconds": seconds,
        "median_epoch_seconds": {k: statistics.median(v) for k, v in seconds.items()},
        "speedup_fused_vs_native": statistics.median(seconds["native"]) / statistics.median(seconds["fused"]),
        "drift_fused_vs_native": drift(records["fused"], records["native"]),
        "drift_one_ulp_vs_native": drift(records["native, one ulp"], records["native"]),
        "summaries": summaries,
    }
    print(
        f"median epoch (training + validation metrics): native {out['median_epoch_seconds']['native']:.2f} s, "
        f"fused {out['median_epoch_seconds']['fused']:.2f} s: {out['speedup_fused_vs_native']:.2f}x"
    )
    for name in ("fused_vs_native", "one_ulp_vs_native"):
        d = out[f"drift_{name}"]
        print(
            f"drift {name:18s} first step {d[0]:.1e}, step 4 {d[min(3, len(d) - 1)]:.1e}, "
            f"end of epoch 1 {d[steps_per_epoch - 1]:.1e}, last {d[-1]:.1e}"
        )
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
