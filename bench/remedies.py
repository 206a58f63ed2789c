"""What makes trajectories too smooth and rare groups vanish: controlled runs at the CPU preset, each arm a named
configuration plus trainer options, with several seeds, scored on test patients by what a user reads off the cohort
(healthgym_core/evaluation/realism.py) and by the fidelity signals.

    python bench/remedies.py --root RUNS [--arms a,b] [--seeds 1000,1001] [--jobs 2] [--epochs 36] [--csv OUT]

Each run is the plain trainer (`python -m healthgym_core.train`) in RUNS/ARM-sSEED; an interrupted run resumes, a
finished one is only scored. Its last checkpoint samples 1,000 patients (seed 7), scored against the 300 test
patients. Prints mean ± sd per arm; --csv keeps one row per run; --plot draws each arm's validation curves (mean
over seeds, their range shaded).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from healthgym_core.data.cohort import load_cohort  # noqa: E402
from healthgym_core.data.prepared import prepare_data  # noqa: E402
from healthgym_core.evaluation.classifiers import detection  # noqa: E402
from healthgym_core.evaluation.distances import emd_feat  # noqa: E402
from healthgym_core.evaluation.features import FeatureSpace  # noqa: E402
from healthgym_core.evaluation.fidelity import SIGNALS, SignalSpace  # noqa: E402
from healthgym_core.evaluation.marginals import log1p10  # noqa: E402
from healthgym_core.evaluation.realism import realism  # noqa: E402
from healthgym_core.sampling import sample_arrays  # noqa: E402

CPU_PRESET = ["--hidden", "32", "--batch-size", "140", "--patients", "2000", "--eval-samples", "1000"]
ARMS = {  # name -> trainer options (each starts from a named configuration)
    "upstream": ["--config", "upstream"],
    "cpu_base": ["--config", "cpu_base"],
    "uniform_prior": ["--config", "cpu_base", "--noise-prior", "uniform"],
    "every_month": ["--config", "cpu_base", "--critic-reach", "every_month"],
    "critic_diffs": ["--config", "cpu_base", "--critic-diffs"],
    "critic_h64": ["--config", "cpu_base", "--critic-hidden", "64"],
    "texture_loss": ["--config", "cpu_base", "--texture-weight", "10"],
    "texture_w3": ["--config", "cpu_base", "--texture-weight", "3"],
    "texture_w30": ["--config", "cpu_base", "--texture-weight", "30"],
    "stronger_critic": ["--config", "stronger_critic"],
    "strong_every_month": ["--config", "stronger_critic", "--critic-reach", "every_month"],
    "strong_diffs": ["--config", "stronger_critic", "--critic-diffs"],
    "strong_texture": ["--config", "stronger_critic", "--texture-weight", "10"],
    "texture_switch": ["--config", "cpu_base", "--texture-weight", "10", "--switch-weight", "10"],
    "summary_w10": ["--config", "textured", "--summary-weight", "10"],
    "summary_w30": ["--config", "textured", "--summary-weight", "30"],
    "linear_head": ["--config", "textured", "--real-head", "linear"],
    "linear_summary": ["--config", "textured", "--real-head", "linear", "--summary-weight", "30"],  # = matched
    "share_w10": ["--config", "matched", "--share-weight", "10"],  # = balanced
    "share_w30": ["--config", "matched", "--share-weight", "30"],
}
NAMED_AS = {
    "texture_switch": "textured",
    "linear_head": "textured + linear head",
    "linear_summary": "matched",
    "share_w10": "balanced",
}
SAMPLES = 1000


def raw_months(reals: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """[N, T, R] reals and [N, T, C] codes -> [N, T * (R + C)]: every month's log10 values and category codes."""
    return np.hstack([log1p10(reals).reshape(len(reals), -1), codes.reshape(len(codes), -1).astype(np.float64)])


def command(arm: str, seed: int, folder: Path, epochs: int) -> list[str]:
    cmd = [sys.executable, "-m", "healthgym_core.train", *ARMS[arm], *CPU_PRESET, "--epochs", str(epochs)]
    cmd += ["--seed", str(seed), "--threads", "1", "--quiet", "--out", str(folder)]
    return cmd + (["--resume"] if (folder / "checkpoints" / "last.pt").exists() else [])


def finished(folder: Path, epochs: int) -> bool:
    f = folder / "epochs.csv"
    return f.is_file() and len(pd.read_csv(f)) >= epochs and (folder / "checkpoints" / "last.pt").is_file()


def train_all(runs: list[tuple[str, int, Path]], epochs: int, jobs: int) -> None:
    todo = [r for r in runs if not finished(r[2], epochs)]
    live: list[tuple[subprocess.Popen, str]] = []
    while todo or live:
        while todo and len(live) < jobs:
            arm, seed, folder = todo.pop(0)
            folder.parent.mkdir(parents=True, exist_ok=True)
            log = open(folder.parent / f"{folder.name}.log", "a")  # noqa: SIM115 - closed with the process
            live.append((subprocess.Popen(command(arm, seed, folder, epochs), stdout=log, stderr=log), folder.name))
            print(f"started {folder.name}", file=sys.stderr, flush=True)
        time.sleep(5)
        for proc, name in list(live):
            if proc.poll() is not None:
                live.remove((proc, name))
                print(f"{name}: exit {proc.returncode}", file=sys.stderr, flush=True)


def score(folder: Path, data, space: SignalSpace, features: FeatureSpace) -> dict:
    fake = sample_arrays(folder / "checkpoints" / "last.pt", SAMPLES, seed=7)[:2]
    test = (data.test_cohort.reals, data.test_cohort.codes)
    ref = space.embed(test)
    out = realism(data.schema, test, fake)
    # A check the summary loss cannot game: the same detector on each month's raw values and codes.
    out["detect_auc_raw"] = detection(raw_months(*test), raw_months(*fake), 0)["detect_auc"]
    out.update({name: f(ref, space.embed(fake)) for name, f in SIGNALS.items()})
    out["emd_feat"] = emd_feat(features.embed(*test), features.embed(*fake))
    return out


CURVES = {  # validation signal per epoch -> its label; what the runs' curves show
    "energy_feat": "energy_feat (ranks trials; lower is better)",
    "emd_feat": "emd_feat (prunes trials; lower is better)",
    "value_diversity": "value diversity (real 1; collapse below 0.1)",
}


def plot_curves(runs: list[tuple[str, int, Path]], out: Path) -> None:
    """Each arm's validation curves over epochs: the mean over its seeds, with their range shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = {(a, s): pd.read_csv(f / "epochs.csv").set_index("epoch") for a, s, f in runs}
    arms = list(dict.fromkeys(a for a, _, _ in runs))
    fig, axes = plt.subplots(1, len(CURVES), figsize=(5 * len(CURVES), 3.8))
    for ax, (signal, label) in zip(axes, CURVES.items()):
        for arm in arms:
            got = [c[signal] for (a, _), c in curves.items() if a == arm and signal in c]
            if not got:
                continue
            frame = pd.concat(got, axis=1)
            name = NAMED_AS.get(arm, arm)
            line = ax.plot(frame.index, frame.mean(axis=1), label=f"{name} ({frame.shape[1]} seeds)")[0]
            ax.fill_between(frame.index, frame.min(axis=1), frame.max(axis=1), color=line.get_color(), alpha=0.15)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("epoch (60 generator steps each)")
        ax.set_yscale("log" if signal != "value_diversity" else "linear")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", type=Path, required=True)
    p.add_argument("--arms", default=",".join(ARMS))
    p.add_argument("--seeds", default="1000,1001")
    p.add_argument("--epochs", type=int, default=36)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--csv", type=Path, default=None)
    p.add_argument("--score-only", action="store_true", help="score the finished runs, train nothing")
    p.add_argument("--plot", type=Path, default=None, help="also draw each arm's validation curves to this PNG")
    args = p.parse_args()
    arms = args.arms.split(",")
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        p.error(f"unknown arm {unknown[0]!r}; one of {', '.join(ARMS)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    runs = [(a, s, args.root / f"{a}-s{s}") for a in arms for s in seeds]
    if not args.score_only:
        train_all(runs, args.epochs, args.jobs)
    torch.set_num_threads(1)
    data = prepare_data(load_cohort("simulated", "demo7", patients=2000, seed=0), split_seed=0)
    space = SignalSpace.fit(data.schema, (data.train_cohort.reals, data.train_cohort.codes))
    features = FeatureSpace.fit(data.train_cohort, data.test_cohort)
    rows = [{"arm": a, "seed": s, **score(f, data, space, features)} for a, s, f in runs if finished(f, args.epochs)]
    table = pd.DataFrame(rows)
    if args.csv:
        table.to_csv(args.csv, index=False, float_format="%.5g")
    if args.plot:
        plot_curves([(a, s, f) for a, s, f in runs if finished(f, args.epochs)], args.plot)
    cols = [c for c in table.columns if c not in ("arm", "seed")]
    g = table.groupby("arm")[cols]
    mean, sd = g.mean(), g.std(ddof=1)
    n = table.groupby("arm").size()
    lines = ["| arm | runs | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 2)]
    for arm in [a for a in arms if a in mean.index]:
        cells = [
            f"{mean.at[arm, c]:.3g}" + (f" ± {sd.at[arm, c]:.2g}" if np.isfinite(sd.at[arm, c]) else "") for c in cols
        ]
        lines.append(f"| {arm} | {n[arm]} | " + " | ".join(cells) + " |")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
