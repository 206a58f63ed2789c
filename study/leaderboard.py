"""The study's leaderboard: one row per trial with its configuration, status and last/best of every metric."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from study.experiment import METRICS, RANK_METRIC

REPORTED = METRICS + ("ks_mean", "tvd_mean", "coverage", "D_loss", "G_loss", "GP", "Corr", "W_gap")
LOWER_IS_BETTER = {"coverage": False}


def trial_status(epochs: int, max_epochs: int, diverged: bool, error: bool) -> str:
    if error:
        return "error"
    if diverged:
        return "diverged"
    return "completed" if epochs >= max_epochs else "pruned"


def trial_row(
    trial_id: str,
    config: dict,
    factors: list[str],
    history: pd.DataFrame,
    max_epochs: int,
    error: bool = False,
    checkpoint: str | None = None,
    path: str | None = None,
) -> dict:
    """A leaderboard row from a trial's per-epoch metrics (`history`: one row per report)."""
    diverged = bool("diverged" in history and (history["diverged"].fillna(0) > 0).any())
    good = (
        history[history.get("diverged", pd.Series(0, index=history.index)).fillna(0) == 0] if len(history) else history
    )
    epochs = int(good["epoch"].max()) if len(good) and "epoch" in good else 0
    row = {"trial_id": trial_id, "status": trial_status(epochs, max_epochs, diverged, error), "epochs": epochs}
    row["pruned"] = row["status"] == "pruned"
    for f in factors:
        row[f] = config.get(f)
    row["seed"] = config.get("seed")
    for m in REPORTED:
        if m in good and len(good):
            col = good[m].astype(float)
            row[f"last_{m}"] = float(col.iloc[-1])
            row[f"best_{m}"] = float(col.max() if LOWER_IS_BETTER.get(m) is False else col.min())
        else:
            row[f"last_{m}"] = row[f"best_{m}"] = math.nan
    for k in ("g_steps", "d_steps", "sequence_months"):
        row[k] = int(good[k].iloc[-1]) if k in good and len(good) else 0
    row["fd_feat_floor"] = float(good["fd_feat_floor"].iloc[-1]) if "fd_feat_floor" in good and len(good) else math.nan
    row["checkpoint"] = checkpoint
    row["path"] = path
    return row


def rank(board: pd.DataFrame) -> pd.DataFrame:
    """Completed trials first, by their final comparable metric; then pruned, diverged, errored."""
    order = {"completed": 0, "pruned": 1, "diverged": 2, "error": 3}
    board = board.assign(_o=board["status"].map(order), _m=board[f"last_{RANK_METRIC}"].fillna(np.inf))
    return board.sort_values(["_o", "_m"]).drop(columns=["_o", "_m"]).reset_index(drop=True)


def format_board(board: pd.DataFrame, factors: list[str], metric: str, top: int = 20) -> str:
    cols = [
        "trial_id",
        "status",
        "epochs",
        *factors,
        f"last_{RANK_METRIC}",
        f"last_{metric}" if metric != RANK_METRIC else None,
        "last_coverage",
    ]
    cols = [c for c in dict.fromkeys(cols) if c and c in board]
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_colwidth", 32):
        return board[cols].head(top).to_string(index=False, float_format=lambda v: f"{v:.4g}")
