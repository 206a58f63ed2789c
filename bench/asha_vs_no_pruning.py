"""Does ASHA save compute here? The same space, seeds and trial count, once with ASHA and once without pruning.

    python bench/asha_vs_no_pruning.py [--space curriculum] [--preset cpu] [--storage DIR] [--json OUT]

Reports, for each arm: trial-epochs spent, generator steps spent, wall time, and the best final fd_feat among
trials that ran the full budget (the comparable metric; the trials' own critic gap is the pruning signal). The
target: ASHA reaches the no-pruning winner's quality within seed noise at 40% of the compute or less.
Seed noise is taken from the final fd_feat spread of seed replicates (trials with the same configuration).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent


def run(space: str, preset: str, storage: Path, name: str, extra: list[str]) -> tuple[pd.DataFrame, float]:
    cmd = [
        sys.executable,
        str(ROOT / "study" / "run.py"),
        "--space",
        space,
        "--preset",
        preset,
        "--storage",
        str(storage),
        "--name",
        name,
        "--no-dashboard",
        *extra,
    ]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{r.stderr[-3000:]}")
    return pd.read_parquet(storage / name / "leaderboard.parquet"), wall


def summary(board: pd.DataFrame, wall: float) -> dict:
    done = board[board["status"] == "completed"]
    best = done.sort_values("last_fd_feat").iloc[0]
    factors = [c for c in ("schedule", "n_critic", "gp_weight", "corr_weight", "corr_form") if c in board]
    return {
        "trials": len(board),
        "completed": len(done),
        "pruned": int(board["pruned"].sum()),
        "trial_epochs": int(board["epochs"].sum()),
        "g_steps": int(board["g_steps"].sum()),
        "wall_s": round(wall, 1),
        "best_final_fd_feat": float(best["last_fd_feat"]),
        "best_config": {f: best[f] for f in factors},
        "best_seed": int(best["seed"]),
    }


def seed_noise(board: pd.DataFrame) -> float:
    """Mean sd of final fd_feat among completed seed replicates of one configuration (NaN if none)."""
    factors = [c for c in ("schedule", "n_critic", "gp_weight", "corr_weight", "corr_form") if c in board]
    done = board[board["status"] == "completed"]
    sds = done.groupby(factors)["last_fd_feat"].std().dropna()
    return float(sds.mean()) if len(sds) else float("nan")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--space", default="curriculum")
    p.add_argument("--preset", default="cpu")
    p.add_argument("--storage", default="experiments/bench-asha")
    p.add_argument("--json", default=None)
    p.add_argument("--metric", default="wasserstein_gap", help="the ASHA arm's pruning signal (study/run.py --metric)")
    args = p.parse_args()
    storage = Path(args.storage).resolve()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    asha_board, asha_wall = run(args.space, args.preset, storage, f"asha-{stamp}", ["--metric", args.metric])
    full_board, full_wall = run(args.space, args.preset, storage, f"nopruning-{stamp}", ["--no-pruning"])
    out = {
        "space": args.space,
        "preset": args.preset,
        "metric": args.metric,
        "asha": summary(asha_board, asha_wall),
        "no_pruning": summary(full_board, full_wall),
        "seed_noise_fd_feat": seed_noise(full_board),
    }
    a, f = out["asha"], out["no_pruning"]
    out["compute_ratio"] = a["g_steps"] / f["g_steps"]
    out["fd_feat_gap"] = a["best_final_fd_feat"] - f["best_final_fd_feat"]
    print(json.dumps(out, indent=2, default=str))
    print(
        f"\nASHA spent {out['compute_ratio']:.0%} of the no-pruning compute (generator steps); its best final fd_feat "
        f"{a['best_final_fd_feat']:.4g} vs {f['best_final_fd_feat']:.4g} without pruning "
        f"(seed noise, sd of replicates: {out['seed_noise_fd_feat']:.3g})."
    )
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
