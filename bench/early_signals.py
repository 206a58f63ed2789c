"""Which signal, at an early epoch, ranks runs as their final test quality does: read from finished plain-trainer
runs (the arms of `bench/remedies.py`), not from a study, so that signals a study did not yet report can be judged.

    python bench/early_signals.py --root RUNS --scores bench/remedies.head.csv [--arms a,b] [--epochs 4,8,12,24]

Each run's per-epoch validation signals (RUNS/ARM-sSEED/epochs.csv) against its final test scores (the rows of a
`remedies.py --csv`): for each signal every run recorded, each epoch and each quality, the Spearman correlation
over runs with a bootstrap 95% interval (runs resampled), oriented as `bench/pruning_signals.py` orients them (+1:
a better value at the rung goes with a better run at the end). The runs are several configurations with several
seeds each, so the ranking is both between and within configurations.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from pruning_signals import BOOTSTRAP, spearman_rows  # noqa: E402

from healthgym_core.evaluation.verdicts import badness  # noqa: E402

SIGNALS = ("energy_feat", "emd_feat", "fd_feat", "critic_gap")
# final test qualities (lower is better): the ranking signal, the earlier one, and what a classifier sees
QUALITIES = {"energy": "energy_feat", "emd_feat": "emd_feat", "classifier_gap": "classifier_gap"}


def correlations(root: Path, scores: pd.DataFrame, epochs: list[int], seed: int = 0) -> pd.DataFrame:
    runs = [(f"{a}-s{s}", row) for (a, s), row in scores.set_index(["arm", "seed"]).iterrows()]
    curves = {name: pd.read_csv(root / name / "epochs.csv").set_index("epoch") for name, _ in runs}
    boot = np.random.default_rng(seed).integers(0, len(runs), size=(BOOTSTRAP, len(runs)))
    rows = []
    for col, label in QUALITIES.items():
        q = np.array([float(row[col]) for _, row in runs])
        for signal in [s for s in SIGNALS if all(s in c for c in curves.values())]:
            for e in epochs:
                x = badness(signal, np.array([float(curves[name].at[e, signal]) for name, _ in runs]))
                rho = float(spearman_rows(x[None], q[None])[0])
                lo, hi = np.nanpercentile(spearman_rows(x[boot], q[boot]), [2.5, 97.5])
                rows.append({"quality": f"test {label}", "signal": signal, "epoch": e, "runs": len(runs), "rho": rho,
                             "lo": lo, "hi": hi})  # fmt: skip
    return pd.DataFrame(rows)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", type=Path, required=True, help="the folder holding the runs (ARM-sSEED)")
    p.add_argument("--scores", type=Path, required=True, help="a remedies.py --csv: one row per run, final test scores")
    p.add_argument("--arms", default=None, help="only these arms (comma-separated); default: every row of --scores")
    p.add_argument("--epochs", default="4,8,12,24")
    p.add_argument("--csv", type=Path, default=None)
    args = p.parse_args()
    scores = pd.read_csv(args.scores)
    if args.arms:
        scores = scores[scores["arm"].isin(args.arms.split(","))]
    table = correlations(args.root, scores, [int(e) for e in args.epochs.split(",")])
    if args.csv:
        table.to_csv(args.csv, index=False, float_format="%.4g")
    wide = table.assign(cell=[f"{r:+.2f} [{lo:+.2f}, {hi:+.2f}]" for r, lo, hi in zip(table.rho, table.lo, table.hi)])
    wide = wide.pivot_table(index=["quality", "signal"], columns="epoch", values="cell", aggfunc="first", sort=False)
    print(f"Spearman with the final test quality over {table['runs'].iloc[0]} runs, 95% bootstrap interval:")
    lines = ["| quality | signal | " + " | ".join(f"epoch {e}" for e in wide.columns) + " |"]
    lines.append("|---|---|" + "---|" * len(wide.columns))
    lines += [f"| {q} | {s} | " + " | ".join(row) + " |" for (q, s), row in wide.iterrows()]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
