"""The dashboard's interactive charts, as plotly.js figure specifications (plain dicts the page hands to Plotly).
Every trace that belongs to a trial carries its id in `customdata`, so a click opens the trial's page."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from study.experiment import RANK_METRIC
from study.live.state import LiveStudy, LiveTrial

STATUS_COLOR = {
    "pending": "#cccccc",
    "completed": "#1f77b4",
    "running": "#2ca02c",
    "pruned": "#9aa0a6",
    "diverged": "#d62728",
    "error": "#222222",
    "stopped": "#9aa0a6",
}
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
HISTORY_METRICS = (
    "energy_feat",
    "fd_feat",
    "emd_feat",
    "critic_gap",
    "wasserstein_gap",
    "sliced_w",
    "coverage",
    "diversity_ratio",
    "joint_tvd",
    "ks_mean",
    "tvd_mean",
)


def _clean(v):
    if isinstance(v, (float, np.floating)):
        return None if not math.isfinite(float(v)) else float(v)
    if isinstance(v, (np.integer,)):
        return int(v)
    return v


def _col(frame: pd.DataFrame, name: str) -> list:
    return [_clean(v) for v in frame[name]] if name in frame else []


def _layout(title: str, x: str, y: str, **extra) -> dict:
    return {
        "title": {"text": title, "font": {"size": 14}},
        "xaxis": {"title": {"text": x}},
        "yaxis": {"title": {"text": y}},
        "margin": {"l": 60, "r": 20, "t": 40, "b": 50},
        "hovermode": "closest",
        "legend": {"font": {"size": 10}},
        **extra,
    }


def settings_text(study: LiveStudy, t: LiveTrial) -> str:
    names = [f.name for f in study.factors]
    cfg = t.config
    shown = ", ".join(f"{n}={_fmt(cfg.get(n))}" for n in names) or f"seed {cfg.get('seed')}"
    return f"trial {t.trial_id}: {shown}" + (" (upstream reference)" if cfg.get("reference") else "")


def _fmt(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def curves(study: LiveStudy, metric: str) -> dict:
    """Every trial's `metric` per epoch; the line of a stopped trial ends where ASHA stopped it."""
    status = dict(zip(study.board["trial_id"].astype(str), study.board["status"]))
    traces = []
    for i, t in enumerate(sorted(study.trials.values(), key=lambda t: t.number)):
        if metric not in t.history or not len(t.history):
            continue
        s = status.get(t.trial_id, t.status)
        traces.append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": t.trial_id,
                "x": _col(t.history, "epoch"),
                "y": _col(t.history, metric),
                "customdata": [t.trial_id] * len(t.history),
                "line": {
                    "color": PALETTE[i % len(PALETTE)],
                    "dash": "solid" if s in ("completed", "running") else "dot",
                },
                "marker": {"size": 5},
                "opacity": 1.0 if s in ("completed", "running") else 0.55,
                "hovertemplate": f"{settings_text(study, t)}<br>status {s}<br>epoch %{{x}}<br>{metric} %{{y:.4g}}<extra></extra>",
            }
        )
    floor = _floor(study, metric)
    shapes = (
        []
        if floor is None
        else [
            {
                "type": "line",
                "xref": "paper",
                "x0": 0,
                "x1": 1,
                "y0": floor,
                "y1": floor,
                "line": {"color": "#2ca02c", "dash": "dashdot", "width": 1},
            }
        ]
    )
    return {
        "data": traces,
        "layout": _layout(f"{metric} per epoch (click a line for its trial)", "epoch", metric, shapes=shapes),
    }


def _floor(study: LiveStudy, metric: str) -> float | None:
    col = f"{metric}_floor"
    vals = [float(t.history[col].iloc[-1]) for t in study.trials.values() if col in t.history and len(t.history)]
    return float(np.median(vals)) if vals else None


def best_so_far(study: LiveStudy) -> dict:
    """The best final ranking metric of the completed trials against the generator steps spent so far, in the order the
    trials started."""
    b = study.board.copy()
    if "trial_number" not in b or not len(b):
        return {"data": [], "layout": _layout(f"best {RANK_METRIC} so far", "generator steps spent", RANK_METRIC)}
    b = b.sort_values("trial_number")
    spent = b["g_steps"].astype(float).cumsum()
    last = b[f"last_{RANK_METRIC}"].astype(float)
    done = np.where(b["status"] == "completed", last, np.inf)
    best = np.minimum.accumulate(done)
    traces = [
        {
            "type": "scatter",
            "mode": "markers",
            "name": "each trial (final or latest)",
            "x": _col(pd.DataFrame({"x": spent}), "x"),
            "y": _col(pd.DataFrame({"y": last}), "y"),
            "customdata": list(b["trial_id"].astype(str)),
            "marker": {"color": [STATUS_COLOR.get(s, "#999") for s in b["status"]], "size": 9},
            "text": list(b["status"]),
            "hovertemplate": "trial %{customdata} (%{text})<br>" + RANK_METRIC + " %{y:.4g}<extra></extra>",
        },
        {
            "type": "scatter",
            "mode": "lines",
            "line": {"shape": "hv", "width": 2},
            "name": "best completed so far",
            "x": _col(pd.DataFrame({"x": spent}), "x"),
            "y": [None if not math.isfinite(v) else float(v) for v in best],
        },
    ]
    return {
        "data": traces,
        "layout": _layout(
            f"Best {RANK_METRIC} so far against compute",
            "generator steps spent by the trials so far",
            f"final {RANK_METRIC}",
        ),
    }


def factors(study: LiveStudy) -> list[dict]:
    """One chart per factor: its value against each trial's final (or latest) ranking metric."""
    out = []
    b = study.board
    y = f"last_{RANK_METRIC}"
    for f in study.factors:
        if f.name not in b or y not in b:
            continue
        x = [str(v) if f.choices is not None else _clean(v) for v in b[f.name]]
        out.append(
            {
                "data": [
                    {
                        "type": "scatter",
                        "mode": "markers",
                        "x": x,
                        "y": _col(b, y),
                        "customdata": list(b["trial_id"].astype(str)),
                        "text": list(b["status"]),
                        "marker": {"color": [STATUS_COLOR.get(s, "#999") for s in b["status"]], "size": 10},
                        "hovertemplate": "trial %{customdata} (%{text})<br>"
                        + f.name
                        + f" %{{x}}<br>{RANK_METRIC} %{{y:.4g}}<extra></extra>",
                    }
                ],
                "layout": _layout(
                    f"{f.name} against the final {RANK_METRIC}",
                    f.name,
                    f"final {RANK_METRIC}",
                    xaxis={"title": {"text": f.name}, "type": "log" if f.log else "-"},
                ),
            }
        )
    return out


def rung_decisions(study: LiveStudy) -> dict | None:
    """ASHA's decisions: at every rung, each trial that reached it, its pruning metric there, and whether it went on."""
    if study.scheduler != "asha":
        return None
    grace, rf = study.plan.grace_period, study.plan.reduction_factor
    if not grace or not rf:
        return None
    rungs, r = [], int(grace)
    while r < study.max_epochs:
        rungs.append(r)
        r *= int(rf)
    metric = study.metric
    traces = []
    for kept in (True, False):
        xs, ys, ids = [], [], []
        for t in study.trials.values():
            h = t.history
            if metric not in h or not len(h):
                continue
            last = int(h["epoch"].max())
            for rung in rungs:
                at = h[h["epoch"] == rung]
                if not len(at):
                    continue
                went_on = last > rung or t.status == "running"
                if went_on == kept:
                    xs.append(rung)
                    ys.append(_clean(at[metric].iloc[0]))
                    ids.append(t.trial_id)
        traces.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": "went on" if kept else "stopped here",
                "x": xs,
                "y": ys,
                "customdata": ids,
                "marker": {"symbol": "circle" if kept else "x", "size": 11, "color": "#1f77b4" if kept else "#d62728"},
                "hovertemplate": "trial %{customdata}<br>rung %{x}<br>" + metric + " %{y:.4g}<extra></extra>",
            }
        )
    return {
        "data": traces,
        "layout": _layout(
            f"ASHA's rung decisions on {metric}",
            "rung (epoch)",
            metric,
            xaxis={"title": {"text": "rung (epoch)"}, "tickvals": rungs},
        ),
    }


def history(t: LiveTrial) -> dict:
    """The trial's metrics per epoch, each on its own axis scale (normalised to its first value's sign kept)."""
    traces = []
    for i, m in enumerate(HISTORY_METRICS):
        if m in t.history:
            traces.append(
                {
                    "type": "scatter",
                    "mode": "lines+markers",
                    "name": m,
                    "x": _col(t.history, "epoch"),
                    "y": _col(t.history, m),
                    "line": {"color": PALETTE[i % len(PALETTE)]},
                    "visible": True if m in (RANK_METRIC, "coverage", "diversity_ratio") else "legendonly",
                }
            )
    return {
        "data": traces,
        "layout": _layout(
            "Metrics per epoch (click the legend to show others)",
            "epoch",
            "value",
            yaxis={"title": {"text": "value"}, "type": "log"},
        ),
    }


def dynamics(t: LiveTrial, first: int | None = None, last: int | None = None) -> dict:
    """Losses per training step in the upstream blog's style: D_loss solid and G_loss dashed, coloured by the
    curriculum length L, over epochs first..last (default: the last 20)."""
    steps = t.steps()
    if not len(steps):
        return {"data": [], "layout": _layout("No per-step losses yet", "step", "loss")}
    top = int(steps["epoch"].max())
    last = min(last or top, top)
    first = max(1, first or max(1, last - 19))
    part = steps[(steps["epoch"] >= first) & (steps["epoch"] <= last)].reset_index(drop=True)
    x = list(range(len(part)))
    lengths = sorted(part["L"].unique())
    traces = []
    for col, dash in (("D_loss", "solid"), ("G_loss", "dash")):
        traces.append(
            {
                "type": "scatter",
                "mode": "lines",
                "name": col,
                "x": x,
                "y": _col(part, col),
                "line": {"color": "#444" if col == "D_loss" else "#a0522d", "dash": dash, "width": 1},
                "hoverinfo": "skip",
            }
        )
        for i, L in enumerate(lengths):
            sel = part["L"] == L
            traces.append(
                {
                    "type": "scatter",
                    "mode": "markers",
                    "name": f"{col} L={L}",
                    "showlegend": col == "D_loss",
                    "legendgroup": f"L{L}",
                    "x": [xi for xi, s in zip(x, sel) if s],
                    "y": _col(part[sel], col),
                    "marker": {
                        "size": 5,
                        "color": PALETTE[i % len(PALETTE)],
                        "symbol": "circle" if col == "D_loss" else "triangle-up",
                    },
                    "customdata": _col(part[sel], "epoch"),
                    "hovertemplate": f"{col} %{{y:.3f}}<br>L={L}, epoch %{{customdata}}<extra></extra>",
                }
            )
    return {
        "data": traces,
        "layout": _layout(
            f"Learning dynamics, epochs {first}-{last} (D_loss solid, G_loss dashed)",
            f"training step (epochs {first}-{last})",
            "loss",
        ),
        "range": [first, last, top],
    }
