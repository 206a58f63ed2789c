#!/usr/bin/env python
"""Learning curves: how many generator steps each configuration needs to stop collapsing, on validation patients.

    python bench/learning_curves.py run NAME [--epochs N] [--out runs/curves]   # train one named configuration
    python bench/learning_curves.py run NAME --resume                             # continue an interrupted one
    python bench/learning_curves.py plot [--runs runs/curves] [--out docs]       # figures + table + CSVs

Each run is the plain trainer (`python -m healthgym_core.train`, the core's one training loop) at the CPU preset's
size (hidden 32, batch 140, 2,000 simulated patients: 60 generator steps an epoch), evaluated after every epoch on
the 300 validation patients with every collapse and fidelity metric. `plot` copies each run's epochs.csv into
bench/curves/ (what docs/learning_curves.md is drawn from) and draws docs/learning_curves.png.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
# The trainer's options, written as on a command line.
SIZE = "--data simulated --schema demo7 --patients 2000 --hidden 32 --batch-size 140 --eval-samples 1000 --threads 1 "
SIZE = (SIZE + "--quiet --sample-patients 500").split()
WGAN = "--lr-g 2e-4 --lr-d 2e-4 --beta1 0 --beta2 0.9 --corr-weight 1 --fresh-real-batch --align-reverse".split()
FULL, BUFFER = ["--schedule", "full"], ["--noise-prior", "buffer"]
TTUR = "--n-critic 1 --lr-g 1e-4 --lr-d 4e-4 --beta1 0 --beta2 0.9 --corr-weight 1 --align-reverse".split()
CONFIGS = {  # name -> (what it tests, the trainer's options)
    "upstream": ("the upstream v1 configuration", []),
    "upstream_buffer": ("upstream plus Health Gym v2's buffer noise prior", BUFFER),
    "ttur1": ("one critic step per generator step, a 4x faster critic (two time-scales)", [*TTUR, *FULL]),
    "wgan": (
        "WGAN-GP practice: lr 2e-4, betas (0, 0.9), fresh batches, aligned biLSTM, correlation 1, no curriculum",
        [*WGAN, *FULL],
    ),
    "wgan_buffer": ("wgan plus the buffer prior", [*WGAN, *FULL, *BUFFER]),
    "wgan_buffer_ladder": (
        "wgan_buffer on the upstream ladder curriculum (the CPU preset's base)",
        [*WGAN, "--schedule", "ladder:10-20-30-40-50-60", *BUFFER],
    ),
    "wgan_buffer_ladder_h64": (
        "wgan_buffer_ladder with twice the hidden size (64): does a larger generator learn the month-to-month change?",
        [*WGAN, "--schedule", "ladder:10-20-30-40-50-60", *BUFFER, "--hidden", "64"],
    ),
}
TARGETS = {"coverage": 0.9, "joint_tvd": 0.10, "diversity_ratio": 0.5}  # the default study's, but fd_feat (5x floor)
SHOWN = ("coverage", "diversity_ratio", "joint_tvd", "fd_feat", "ks_mean", "tvd_mean")


def run(args: argparse.Namespace) -> int:
    _, options = CONFIGS[args.name]
    out = Path(args.out) / args.name
    cmd = [
        sys.executable,
        "-m",
        "healthgym_core.train",
        *SIZE,
        *options,
        "--epochs",
        str(args.epochs),
        "--out",
        str(out),
    ]
    if args.resume:
        cmd.append("--resume")
    print(" ".join(cmd), file=sys.stderr)
    return subprocess.call(cmd, cwd=ROOT)


def first_reaching(e: pd.DataFrame) -> float:
    """Generator steps at the first evaluation meeting every target in TARGETS (NaN if none does)."""
    ok = pd.Series(True, index=e.index)
    for k, v in TARGETS.items():
        ok &= e[k] <= v if k == "joint_tvd" else e[k] >= v
    return float(e.loc[ok, "g_steps"].iloc[0]) if ok.any() else float("nan")


def plot(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keep = ROOT / "bench" / "curves"
    keep.mkdir(exist_ok=True)
    curves = {}
    for n in CONFIGS:  # a run here updates its committed copy; a run made elsewhere is drawn from that copy
        run = Path(args.runs) / n / "epochs.csv"
        if run.is_file():
            shutil.copy(run, keep / f"{n}.csv")
        if (keep / f"{n}.csv").is_file():
            curves[n] = pd.read_csv(keep / f"{n}.csv")
    fig, axes = plt.subplots(2, 3, figsize=(16, 8.5), layout="constrained")
    for ax, m in zip(axes.ravel(), SHOWN):
        for n, e in curves.items():
            ax.plot(e["g_steps"], e[m], label=n, lw=1.6)
        if m in TARGETS:
            ax.axhline(TARGETS[m], color="k", ls=":", lw=1)
        if m == "fd_feat":
            ax.axhline(5 * e["fd_feat_floor"].median(), color="k", ls=":", lw=1)
            ax.set_yscale("log")
        ax.set_title(m + (" (dotted: the target)" if m in TARGETS or m == "fd_feat" else ""))
        ax.set_xlabel("generator steps")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(
        "Learning curves on 300 validation patients (CPU preset size: hidden 32, batch 140, 2,000 simulated patients; "
        "_h64: hidden 64)"
    )
    out = Path(args.out)
    fig.savefig(out / "learning_curves.png", dpi=90)
    rows = []
    for n, e in curves.items():
        last = e.iloc[-1]
        rows.append(
            {
                "configuration": n,
                "what": CONFIGS[n][0],
                "generator steps run": int(last["g_steps"]),
                "steps to coverage>=0.9, joint TVD<=0.10, diversity>=0.5": first_reaching(e),
                **{f"final {m}": round(float(last[m]), 3) for m in SHOWN},
                "best fd_feat / floor": round(float(e["fd_feat"].min() / e["fd_feat_floor"].median()), 1),
                "seconds per generator step": round(float(e["train_seconds"].sum() / last["g_steps"]), 2),
            }
        )
    table = pd.DataFrame(rows)
    table.to_csv(keep / "summary.csv", index=False)
    print(table.to_string(index=False))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run")
    r.add_argument("name", choices=sorted(CONFIGS))
    r.add_argument("--epochs", type=int, default=50)
    r.add_argument("--out", default=str(ROOT / "runs" / "curves"))
    r.add_argument("--resume", action="store_true")
    q = sub.add_parser("plot")
    q.add_argument("--runs", default=str(ROOT / "runs" / "curves"))
    q.add_argument("--out", default=str(ROOT / "docs"))
    args = p.parse_args(argv)
    return run(args) if args.command == "run" else plot(args)


if __name__ == "__main__":
    sys.exit(main())
