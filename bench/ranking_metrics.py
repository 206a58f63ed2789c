"""Which comparable metric moves with what a user sees in the cohort? Over every epoch of every trial of a study.

    python bench/ranking_metrics.py EXPERIMENT [--from-epoch N] [--out bench/ranking_metrics.NAME.csv]

For each metric every trial measures on one scale (fd_feat, emd_feat, critic_gap, sliced_w) and the trials' own
critic gap, the Spearman correlation with each collapse and fidelity measure a user reads off a cohort (category
coverage, the Gender x Ethnic TVD, the diversity ratio, mean KS, mean TVD, joint cell coverage), across all
trial-epochs (from --from-epoch on). A ranking metric should be large in size against all of them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from study.experiment import METRICS  # noqa: E402

SEEN = ("coverage", "joint_tvd", "diversity_ratio", "ks_mean", "tvd_mean", "joint_cell_coverage")


def trial_epochs(folder: Path) -> pd.DataFrame:
    frames = [pd.read_json(f, lines=True).assign(trial=f.parent.name) for f in sorted(folder.glob("*/result.json"))]
    if not frames:
        raise SystemExit(f"error: {folder}: no trial results (*/result.json)")
    return pd.concat(frames, ignore_index=True)


def table(epochs: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for m in METRICS:
        if m not in epochs:
            continue
        row = {"metric": m, "n": int(epochs[m].notna().sum())}
        for s in SEEN:
            ok = epochs[[m, s]].dropna()
            row[s] = spearmanr(ok[m], ok[s]).statistic if len(ok) >= 3 else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("experiment", type=Path)
    p.add_argument("--from-epoch", type=int, default=1)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    epochs = trial_epochs(args.experiment)
    epochs = epochs[epochs["epoch"] >= args.from_epoch]
    t = table(epochs)
    print(
        f"{args.experiment}: {epochs['trial'].nunique()} trials, {len(epochs)} trial-epochs from epoch {args.from_epoch}"
    )
    print(t.to_string(index=False, float_format=lambda v: f"{v:+.2f}"))
    if args.out:
        t.to_csv(args.out, index=False, float_format="%.4f")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
