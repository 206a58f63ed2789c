"""Schedulers side by side at one compute budget: what each study spent and how good its winner is on test patients.

    python bench/schedulers.py experiments/sched-asha experiments/sched-pbt experiments/sched-none [--json OUT]
    python bench/schedulers.py bench/schedulers/sched-asha.json ...   # rows an earlier call wrote with --json

Each folder is a study run with `--budget` (`bench/campaign.sh` runs TPE with ASHA, PBT and TPE with no pruning on
one space and one budget) and evaluated with `study/evaluate.py --top 1`: the study's winner (the leaderboard's
first completed trial) re-trained from scratch with several seeds and scored on the test patients, beside the
upstream configuration and the base. A PBT winner is re-trained with its final configuration, without the schedule
of changes PBT gave it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from healthgym_core.evaluation.distances import EARLIER_RANK_METRIC  # noqa: E402
from study.leaderboard import completed_by_rank  # noqa: E402
from study.reporting.loading import load_experiment  # noqa: E402

# The test quality the committed records hold: emd_feat ranked trials when they were made.
RANK_METRIC = EARLIER_RANK_METRIC

QUALITY = (RANK_METRIC, "fd_feat", "joint_cell_coverage", "coverage", "diversity_ratio")


def winner_arm(best: pd.Series) -> str:
    """The evaluation arm that re-trained the study's best trial (`study/evaluate.py`'s names)."""
    if best.get("role") == "upstream reference" or (best.get("upstream") and not best.get("role")):
        return "upstream"
    return "base" if best.get("role") == "base" else "rank1"


def summary(folder: Path) -> dict:
    exp = load_experiment(folder)
    board = exp.board
    best = completed_by_rank(board).iloc[0]
    row = {
        "study": folder.name,
        "scheduler": exp.plan.scheduler,
        "budget": exp.plan.budget,
        "trials": len(board),
        "completed": int((board["status"] == "completed").sum()),
        "trial_epochs": int(board["epochs"].sum()),
        "winner": best["trial_id"],
        "winner_config": {f: best[f] for f in exp.factors},
        "arm": winner_arm(best),
    }
    evaluated = folder / "final_summary.csv"
    if evaluated.is_file():
        table = pd.read_csv(evaluated).set_index("metric")
        for m in QUALITY:
            for stat in ("mean", "sd"):
                col = f"{row['arm']}_{stat}"
                row[f"test_{m}_{stat}"] = float(table.loc[m, col]) if m in table.index and col in table else None
        runs = pd.read_csv(folder / "final_evaluation.csv")
        row["seeds"] = int((runs["arm"] == row["arm"]).sum())
    return row


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("sources", nargs="+", type=Path, help="study folders, or the JSON rows --json wrote of them")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    rows = []
    for f in args.sources:
        if f.is_file():  # an earlier call's rows: the table outlives the experiment folders
            try:
                read = json.loads(f.read_text())
                if not isinstance(read, list) or not all(isinstance(r, dict) and "study" in r for r in read):
                    raise ValueError("not a list of study rows")
            except (OSError, ValueError) as e:
                print(f"error: {f}: not the rows bench/schedulers.py --json writes ({e})", file=sys.stderr)
                return 2
            rows += read
        else:
            rows.append(summary(f.resolve()))
    print(
        "| study | scheduler | trials (completed) | trial-epochs | winner | seeds | "
        + " | ".join(f"test {m}" for m in QUALITY)
        + " |"
    )
    print("|---" * (6 + len(QUALITY)) + "|")
    for r in rows:
        cells = [
            f"{r.get(f'test_{m}_mean'):.3g} ± {r.get(f'test_{m}_sd'):.2g}" if r.get(f"test_{m}_mean") is not None
            else "not evaluated"
            for m in QUALITY
        ]  # fmt: skip
        config = ", ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in r["winner_config"].items()
        )
        print(
            f"| {r['study']} | {r['scheduler']} | {r['trials']} ({r['completed']}) | {r['trial_epochs']}"
            f"{' of ' + str(r['budget']) if r['budget'] else ''} | {r['winner']} ({r['arm']}: {config}) | "
            f"{r.get('seeds', 0)} | " + " | ".join(cells) + " |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, default=str))
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
