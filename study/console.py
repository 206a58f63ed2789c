"""What a finished study leaves: the best trial's synthetic cohort exported with its card's verdict first, its
leaderboard written and printed, the collapse verdict, and the commands that open it."""

from __future__ import annotations

import sys
from pathlib import Path

from ray import tune

from healthgym_core.atomic import write_table
from healthgym_core.data.prepared import PreparedData
from healthgym_core.evaluation.card import card_paths
from healthgym_core.sampling import card_summary, export_cohort
from study.base import is_upstream
from study.experiment import CHECKPOINT_FILE, EXPORT_FILE, OPTUNA_FILE, RANK_FLOOR, RANK_METRIC, spent_text
from study.leaderboard import board_from_results, collapse_summary, format_board, mark_roles
from study.plan import StudyPlan
from study.search import first_points
from study.spaces import SearchSpace


def finish(results: tune.ResultGrid, plan: StudyPlan, space: SearchSpace, folder: Path, data: PreparedData) -> int:
    factors, base = [f.name for f in space.factors], plan.base
    points, _ = first_points(space, plan.trial_base, base, quiet=True)
    board = mark_roles(
        board_from_results(results, factors, plan.max_epochs), factors, points[0] if points else None, is_upstream(base)
    )
    write_table(board, folder / "leaderboard.parquet")
    write_table(board, folder / "leaderboard.csv")
    best = board[board["status"] == "completed"].head(1)
    row, card = (best.iloc[0] if len(best) else None), None
    out = folder / EXPORT_FILE
    if row is not None and row["checkpoint"]:  # exported first, so that its verdict leads what the study prints
        with tune.Checkpoint(row["checkpoint"]).as_directory() as d:
            made_by = {"study": str(folder), "trial_id": str(row["trial_id"])}
            card = export_cohort(Path(d) / CHECKPOINT_FILE, plan.export_patients, out, data, plan.seed, made_by)
        print(f"\nthe best trial's cohort ({out.name}): {card_summary(card)}")
    print(
        f"\nLeaderboard (completed trials first, collapsed ones after the others, then by final {RANK_METRIC}; "
        "pruned = stopped early by ASHA):"
    )
    print(format_board(board, factors + (["seed"] if not factors else []), plan.metric))
    counts = board["status"].value_counts().to_dict()
    print(f"\ntrials: {len(board)} ({', '.join(f'{v} {k}' for k, v in counts.items())})")
    print(f"compute: {spent_text(int(board['epochs'].sum()), int(board['g_steps'].sum()), plan.budget)}")
    for line in error_lines(board, folder):
        print(line, file=sys.stderr)
    summary = collapse_summary(board, base)
    if summary:
        print("\n" + summary)
    if card is not None:
        print(
            f"best trial: {row['trial_id']} (final {RANK_METRIC} {row[f'last_{RANK_METRIC}']:.4g}; "
            f"floor {row[RANK_FLOOR]:.4g})"
        )
        print(f"best checkpoint: {row['checkpoint']}/{CHECKPOINT_FILE}")
        print(f"synthetic cohort from the best trial: {out} (its card: {card_paths(out)[1]})")
    elif row is None:
        print("no trial completed its epochs; see the leaderboard statuses", file=sys.stderr)
    print(f"leaderboard: {folder / 'leaderboard.parquet'}")
    print("\nInspect it:")
    print(f"  python study/dashboard.py {folder}     # the study dashboard in a browser (live while a study runs)")
    print(f"  python study/report.py {folder}        # report.html")
    print(f"  python study/evaluate.py {folder}      # re-train the best with seeds, score on test patients")
    print(f"  tensorboard --logdir {results.experiment_path}")
    if space.factors:
        print(f"  optuna-dashboard sqlite:///{folder / OPTUNA_FILE}")
    print(
        "  Ray dashboard: http://127.0.0.1:8265 while Ray runs (token: `ray get-auth-token`); on a cluster: ray dashboard cluster.yaml"
    )
    return 0 if counts.get("error", 0) < len(board) else 1


def error_lines(board, folder: Path) -> list[str]:
    """One line per trial that ended in error, with the last line of the traceback Ray kept in its folder (for
    example a resume that found the trial's checkpoints deleted), so that the reason is not only in Ray's log."""
    out = []
    for _, r in board[board["status"] == "error"].iterrows():
        error = folder / Path(str(r.get("path") or "")).name / "error.txt" if r.get("path") else None
        lines = (
            [x for x in error.read_text(errors="replace").splitlines() if x.strip()]
            if error and error.is_file()
            else []
        )
        text = lines[-1][:300] if lines else ""
        out.append(f"trial {r['trial_id']} ended in error: {text or 'no error.txt left in its folder'}")
    return out
