"""A space's evaluation as the Markdown table docs/results.md shows, from its committed summary.

    python bench/results_table.py docs/results/critic.final_summary.csv [--figure PNG]

With the study's leaderboard beside it (docs/results/critic.leaderboard.csv, as bench/campaign.sh keeps it), the
study's trials come first, one row each.

Rows: the ranking metric and what a user reads off a cohort; columns: the real-vs-real floor, each arm's mean ± sd
over its seeds, and how the best arm compares with upstream and the found configuration with the base ("beyond"
when the difference of the means exceeds the sum of the two sds, as study/evaluate.py decides it). --figure also
draws the report's picture of every run (from the final_evaluation.csv beside the summary) where no study folder is
left to draw it from.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from healthgym_core.atomic import atomic_write  # noqa: E402
from healthgym_core.evaluation.distances import EARLIER_RANK_METRIC, RANK_METRIC  # noqa: E402
from healthgym_core.evaluation.verdicts import NEAREST_REAL, beats  # noqa: E402
from study.experiment import RUNS_TABLE, SUMMARY_TABLE  # noqa: E402
from study.reporting.final import final_figure  # noqa: E402
from study.reporting.html import DPI  # noqa: E402
from study.spaces import load_space  # noqa: E402

ROWS = {  # metric -> its name on the page (a summary written before energy_feat existed has no such row)
    RANK_METRIC: f"**{RANK_METRIC}** (ranking metric)",
    EARLIER_RANK_METRIC: EARLIER_RANK_METRIC,
    "fd_feat": "fd_feat",
    "coverage": "category coverage",
    "joint_tvd": "Gender x Ethnic TVD",
    "joint_cell_coverage": "joint cell coverage",
    "diversity_ratio": "diversity ratio",
    "ks_mean": "mean KS",
    "tvd_mean": "mean TVD",
    "corr_l1": "static correlation L1",
    "detect_auc": "detection AUC",
}


def decimals(x: float) -> int:
    """Decimals that show `x` to about three significant figures (0 from 100 up)."""
    a = abs(x)
    return 0 if a >= 100 else 1 if a >= 10 else 2 if a >= 1 else 3


def cell(mean: float, sd: float, bold: bool) -> str:
    d = decimals(mean)
    text = f"{mean:.{d}f} ± {sd:.{d}f}" if pd.notna(sd) else f"{mean:.{d}f}"
    return f"**{text}**" if bold else text


def compare(better: str, worse: str, advantage: float, spread: float, word: str = "better") -> str:
    """'base 0.47 better, beyond the spread' (a negative advantage: the other one is better). Beyond the spread: the
    difference of the means exceeds `spread`, the sum of the two arms' seed sds, whichever arm is ahead (the summary's
    own flags say only whether the first arm is ahead beyond it)."""
    who = better if advantage > 0 else worse if advantage < 0 else "equal"
    size = f" {abs(advantage):.{decimals(advantage)}f} {word}" if advantage else ""
    return f"{who}{size}, {'beyond' if abs(advantage) > spread else 'within'} the spread"


def spread(row: pd.Series, *arms: str) -> float:
    """The sum of the arms' seed sds on one metric's summary row (a missing sd counts 0)."""
    return sum(float(row[f"{a}_sd"]) for a in arms if pd.notna(row.get(f"{a}_sd")))


BOARD_COLUMNS = {  # leaderboard column -> its name on the page (final-epoch values on validation patients)
    f"last_{RANK_METRIC}": RANK_METRIC,
    f"last_{EARLIER_RANK_METRIC}": EARLIER_RANK_METRIC,
    "last_fd_feat": "fd_feat",
    "last_coverage": "coverage",
    "last_joint_tvd": "Gender x Ethnic TVD",
    "last_diversity_ratio": "diversity",
    "last_ks_mean": "mean KS",
    "last_tvd_mean": "mean TVD",
}


def trials_table(board: pd.DataFrame) -> str:
    """The study's trials in leaderboard order: their factors, role, verdict and final-epoch validation metrics."""
    factors = [f.name for f in load_space("all").factors if f.name in board and board[f.name].notna().any()]
    # a board written before energy_feat existed has no such column: no empty column for it
    columns = {c: n for c, n in BOARD_COLUMNS.items() if c in board or c != f"last_{RANK_METRIC}"}
    head = ["trial", *factors, "seed", "role", "verdict", *columns.values()]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in board.iterrows():
        role = r.get("role") if isinstance(r.get("role"), str) else ""
        if r["status"] != "completed":
            role = f"{role}, {r['status']} at {int(r['epochs'])}".lstrip(", ")
        values = [r[f] for f in factors] + [int(r["seed"]) if pd.notna(r.get("seed")) else ""]
        values = [f"{v:.3g}" if isinstance(v, float) else str(v) for v in values]
        metrics = [f"{r[c]:.{decimals(r[c])}f}" if pd.notna(r.get(c)) else "" for c in columns]
        lines.append("| " + " | ".join([str(r["trial_id"]), *values, role, str(r["collapse"]), *metrics]) + " |")
    return "\n".join(lines)


def table(summary: pd.DataFrame) -> str:
    s = summary.set_index("metric")
    arms = [c[: -len("_mean")] for c in s.columns if c.endswith("_mean")]
    found = [a for a in arms if a not in ("upstream", "base")]
    head = ["metric (test patients)", "real floor", *arms, "best vs upstream"]
    if found and "base" in arms:
        head.append(f"{found[0]} vs base")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m, name in ROWS.items():
        if m not in s.index:
            continue
        r = s.loc[m]
        floor = r["real_floor"]
        # every verdict judged by healthgym_core.evaluation.verdicts, also in summaries written before NEAREST_REAL
        # existed (they called a diversity ratio above real better than one as far below it)
        mean = pd.Series({a: r[f"{a}_mean"] for a in arms})
        sd = pd.Series({a: r.get(f"{a}_sd") for a in arms}).astype(float).fillna(0.0)
        word = "nearer real" if m in NEAREST_REAL else "better"
        best = mean[beats(m, mean, sd, arms, arms[0], floor)[0]]
        row = [name, f"{floor:.{decimals(floor)}f}"] + [cell(mean[a], r.get(f"{a}_sd"), mean[a] == best) for a in arms]
        best_arm, advantage, _ = beats(m, mean, sd, [a for a in arms if a != "upstream"], "upstream", floor)
        row.append(compare(best_arm, "upstream", advantage, spread(r, best_arm, "upstream"), word))
        if len(head) > len(row):
            over_base = beats(m, mean, sd, found[:1], "base", floor)[1]
            row.append(compare(found[0], "base", over_base, spread(r, found[0], "base"), word))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python bench/results_table.py", description=__doc__.split("\n\n")[0])
    p.add_argument("summary", type=Path, help="a final_summary.csv (study/evaluate.py's, or docs/results/SPACE.*)")
    p.add_argument("--figure", type=Path, default=None, help="also draw every run of the evaluation into this PNG")
    args = p.parse_args(argv)
    try:
        summary = pd.read_csv(args.summary)
    except (OSError, ValueError) as e:
        print(f"error: {args.summary}: not readable as a final summary ({e})", file=sys.stderr)
        return 2
    missing = {"metric", "lower_is_better", "real_floor", "best_arm", "advantage"} - set(summary.columns)
    if missing:
        print(f"error: {args.summary}: not a final summary (no column {sorted(missing)[0]})", file=sys.stderr)
        return 2
    runs_path = args.summary.with_name(args.summary.name.replace(SUMMARY_TABLE, RUNS_TABLE))
    if args.figure and (runs_path == args.summary or not runs_path.is_file()):
        print(f"error: --figure needs {runs_path.name} beside {args.summary}", file=sys.stderr)
        return 2
    board_path = args.summary.with_name(args.summary.name.replace(SUMMARY_TABLE, "leaderboard"))
    if board_path != args.summary and board_path.is_file():
        print(f"The study's trials ({board_path.name}; final epoch, validation patients):\n")
        print(trials_table(pd.read_csv(board_path)) + "\n\nThe evaluation (test patients):\n")
    print(table(summary))
    if args.figure:
        fig = final_figure(pd.read_csv(runs_path), summary)
        atomic_write(args.figure, lambda p: fig.savefig(p, format="png", dpi=DPI, bbox_inches="tight"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
