"""Study overhead: the share of each trial's time spent outside the core's epoch and evaluation functions
(Tune reporting, checkpoint writes, restoring, data shipping), from the trial logs of a finished study.

    python bench/study_overhead.py EXPERIMENT [EXPERIMENT ...]

For each trial: Tune's time_total_s (wall time inside the trial, first iteration including its set-up) against
the sum of train_seconds + eval_seconds the trainable reported. Also the size of the checkpoints on disk: with
num_to_keep, a trial's checkpoint folder does not grow with the number of epochs it ran.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd


def trial_overhead(folder: Path) -> pd.DataFrame:
    rows = []
    for result in sorted(folder.glob("*/result.json")):
        r = pd.read_json(result, lines=True)
        if r.empty or "train_seconds" not in r:
            continue
        inside = float((r["train_seconds"] + r["eval_seconds"]).sum())
        total = float(r["time_total_s"].iloc[-1])
        ckpts = sorted(result.parent.glob("checkpoint_*"))
        rows.append(
            {
                "trial": str(r["trial_id"].iloc[-1]) if "trial_id" in r else result.parent.name,
                "epochs": int(r["epoch"].max()),
                "total_s": total,
                "epoch_and_eval_s": inside,
                "overhead_s": total - inside,
                "overhead_pct": 100 * (total - inside) / total,
                "checkpoints_kept": len(ckpts),
                "checkpoint_MB": sum(f.stat().st_size for c in ckpts for f in c.rglob("*")) / 1e6,
            }
        )
    return pd.DataFrame(rows)


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    for exp in argv:
        t = trial_overhead(Path(exp))
        if t.empty:
            print(f"{exp}: no trials with timing")
            continue
        print(f"\n{exp}")
        print(t.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
        total = t["total_s"].sum()
        print(
            f"overall: {100 * t['overhead_s'].sum() / total:.1f}% of {total:.0f} trial-seconds outside the epoch and "
            f"evaluation; median per trial {t['overhead_pct'].median():.1f}%; checkpoints kept per trial "
            f"max {t['checkpoints_kept'].max()} ({t['checkpoint_MB'].max():.2f} MB) for up to {t['epochs'].max()} epochs"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
