"""Plot helpers shared by the report's figures: log axes, per-trial styles, ASHA rungs, status markers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.ticker import LogFormatter

from study.reporting.loading import STATUS_ORDER, Experiment

STATUS_COLOR = {"completed": "tab:blue", "pruned": "0.55", "diverged": "tab:red", "error": "k"}


def spans_decades(values: Sequence[float], ratio: float = 10.0) -> bool:
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    return bool(len(v) > 1 and (v > 0).all() and v.max() / v.min() >= ratio)


def log_axis(ax: plt.Axes, which: str) -> None:
    """A log scale labelled with plain numbers (200, 500, 1000) rather than 2 x 10^2."""
    getattr(ax, f"set_{which}scale")("log")
    axis = ax.xaxis if which == "x" else ax.yaxis
    axis.set_major_formatter(LogFormatter())
    axis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(1.2, 0.6)))


def is_categorical(series: pd.Series) -> bool:
    return not pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)


@dataclass
class TrialStyle:
    color: object
    ls: str
    alpha: float
    lw: float


def trial_styles(exp: Experiment) -> tuple[dict[str, TrialStyle], list[Line2D]]:
    """Line styles per trial and legend handles. With one categorical factor the colour is its value;
    otherwise each completed trial gets its own colour and the others are grey."""
    board = exp.board
    handles: list[Line2D] = []
    by_value = len(exp.factors) == 1 and is_categorical(board[exp.factors[0]]) and board[exp.factors[0]].nunique() <= 10
    styles = {}
    if by_value:
        f = exp.factors[0]
        values = list(dict.fromkeys(board[f].astype(str)))
        palette = {v: plt.get_cmap("tab10")(i) for i, v in enumerate(values)}
        handles += [Line2D([], [], color=palette[v], lw=2, label=f"{f} = {v}") for v in values]
    else:
        done = board[board["status"] == "completed"]["trial_id"].tolist()
        palette = {t: plt.get_cmap("tab10")(i % 10) for i, t in enumerate(done)}
        handles += [Line2D([], [], color=palette[t], lw=2, label=f"trial {t}") for t in done[:10]]
    upstream = exp.upstream()
    for _, row in board.iterrows():
        key = str(row[exp.factors[0]]) if by_value else row["trial_id"]
        color = palette.get(key, "0.6")
        is_up = upstream is not None and row["trial_id"] == upstream["trial_id"]
        if row["status"] == "completed":
            styles[row["trial_id"]] = TrialStyle(color, "-", 0.95, 2.6 if is_up else 1.6)
        else:
            styles[row["trial_id"]] = TrialStyle(color, "--", 0.5, 1.0)
    handles.append(Line2D([], [], color="k", ls="-", lw=1.6, label="completed"))
    if (board["status"] == "pruned").any():  # a PBT study or one without pruning has none to mark
        handles.append(
            Line2D([], [], color="k", ls="--", lw=1, alpha=0.5, marker="x", label="pruned (x: ASHA stopped it)")
        )
    if board["status"].isin(["diverged", "error"]).any():
        handles.append(Line2D([], [], color="tab:red", ls="", marker="X", label="diverged or error"))
    if upstream is not None and exp.factors:
        handles.append(Line2D([], [], color="k", lw=2.6, label=f"thick: upstream default ({upstream['trial_id']})"))
    return styles, handles


def asha_rungs(exp: Experiment) -> list[int]:
    if exp.plan.scheduler != "asha":
        return []
    grace, rf, max_t = exp.plan.grace_period, exp.plan.reduction_factor, exp.plan.max_epochs
    if not grace or not rf or not max_t or rf < 2:
        return []
    rungs, r = [], int(grace)
    while r < int(max_t):
        rungs.append(r)
        r *= int(rf)
    return rungs


def status_scatter(ax: plt.Axes, frame: pd.DataFrame, x: str, y: str, annotate: bool = False) -> None:
    """Points marked by status: completed filled, pruned hollow, diverged/error crosses."""
    for status in STATUS_ORDER:
        part = frame[frame["status"] == status]
        if not len(part):
            continue
        kw = dict(s=42, zorder=3, label=f"{status} ({len(part)})")
        if status == "pruned":
            ax.scatter(part[x], part[y], facecolors="none", edgecolors=STATUS_COLOR[status], **kw)
        elif status == "completed":
            ax.scatter(part[x], part[y], color=STATUS_COLOR[status], edgecolors="k", linewidths=0.5, **kw)
        else:
            ax.scatter(part[x], part[y], color=STATUS_COLOR[status], marker="X", **kw)
    if annotate:
        for _, r in frame.iterrows():
            if np.isfinite(r[x]) and np.isfinite(r[y]):
                ax.annotate(
                    str(r["trial_id"]), (r[x], r[y]), fontsize=7, xytext=(4, 3), textcoords="offset points", color="0.3"
                )
