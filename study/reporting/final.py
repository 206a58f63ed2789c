"""The final evaluation: every seed of every arm on test patients as a picture, then the summary table."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from healthgym_core.evaluation.collapse import FAITHFUL
from healthgym_core.evaluation.distances import EARLIER_RANK_METRIC, RANK_METRIC
from healthgym_core.evaluation.verdicts import direction
from study.experiment import RUNS_TABLE, SUMMARY_TABLE
from study.reporting.html import esc, figure_html, note, section, table_html

# The panels: the ranking metric (an evaluation made before it existed: the one that ranked then), then what a user
# reads off a cohort.
PANELS = (RANK_METRIC, EARLIER_RANK_METRIC, "coverage", "joint_tvd", "diversity_ratio", "ks_mean", "tvd_mean")
ARM_COLOURS = {"upstream": "tab:orange", "base": "tab:blue"}  # found configurations: tab:green, tab:purple, ...


def final_figure(runs: pd.DataFrame, summary: pd.DataFrame) -> plt.Figure:
    """One panel per metric: each arm's runs as dots (one per seed), their mean as a bar, the real-vs-real floor
    dashed and the faithfulness target dotted."""
    seen = list(dict.fromkeys(runs["arm"]))
    arms = [a for a in ARM_COLOURS if a in seen] + [a for a in seen if a not in ARM_COLOURS]  # references first
    info = summary.set_index("metric")
    panels = [m for m in PANELS if m in runs]
    fig, axes = plt.subplots(1, len(panels), figsize=(2.3 * len(panels) + 0.6, 3.2), layout="constrained")
    others = iter(["tab:green", "tab:purple", "tab:brown", "tab:pink", "tab:gray"])
    colours = {a: ARM_COLOURS.get(a) or next(others, "tab:gray") for a in arms}
    for ax, m in zip(np.atleast_1d(axes), panels):
        for i, arm in enumerate(arms):
            v = runs.loc[runs["arm"] == arm, m].dropna().to_numpy(float)
            if not len(v):
                continue
            x = i + np.linspace(-0.18, 0.18, len(v)) if len(v) > 1 else np.array([float(i)])
            ax.scatter(x, v, s=16, color=colours[arm], zorder=3)
            ax.hlines(v.mean(), i - 0.3, i + 0.3, color=colours[arm], lw=2.5, zorder=2)
        if m in info.index and np.isfinite(info.at[m, "real_floor"]):
            ax.axhline(info.at[m, "real_floor"], color="k", ls="--", lw=1, label="real vs real")
        if m in FAITHFUL:
            ax.axhline(FAITHFUL[m][1], color="tab:red", ls=":", lw=1.2, label="target")
        ax.set_title(f"{m}\n({direction(m)} is better)", fontsize=9)
        ax.set_xticks(range(len(arms)), arms, rotation=30, fontsize=8)
        ax.set_xlim(-0.6, len(arms) - 0.4)
        ax.grid(axis="y", alpha=0.3)
    handles, labels = [], []
    for ax in np.atleast_1d(axes):
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncol=len(handles), fontsize=8)
    return fig


def final_html(folder: Path) -> str:
    summary_path, runs_path = folder / f"{SUMMARY_TABLE}.csv", folder / f"{RUNS_TABLE}.csv"
    if not summary_path.is_file():
        return section(
            "final",
            "Final evaluation",
            note(
                f"No final evaluation yet ({summary_path.name} is written by the final evaluation of the best trials)."
            ),
        )
    try:
        summary = pd.read_csv(summary_path)
        runs = pd.read_csv(runs_path) if runs_path.is_file() else None
    except Exception as e:  # noqa: BLE001 - a damaged table must not end the report
        return section(
            "final", "Final evaluation", note(f"The final evaluation is not readable ({esc(e)}).", warn=True)
        )
    body = f"<p>From <code>{summary_path.name}</code> (held-out test patients)."
    if runs is not None and "arm" in runs:
        body += f" Per-run numbers: <code>{runs_path.name}</code>.</p>" + figure_html(
            final_figure(runs, summary),
            "final evaluation on test patients, every seed",
            "Each dot is one seed's run scored on the test patients; the bar is the arm's mean. Dashed: two "
            "samples of real patients against each other; dotted: the faithfulness target.",
        )
    else:
        body += "</p>"
    return section("final", "Final evaluation", body + table_html(summary))


def long_runs_html(folder: Path) -> str:
    """The study's winners trained long (study/finalize.py): each long-eN/long_runs.csv with links to the cards."""
    from study.long_runs import TABLE

    parts = []
    for table_file in sorted(folder.glob(f"long-e*/{TABLE}")):
        runs = pd.read_csv(table_file)
        link = [
            f'<a href="{esc(table_file.parent.name)}/{esc(c)}">{esc(c)}</a>' if isinstance(c, str) else ""
            for c in runs.get("card", pd.Series([None] * len(runs)))
        ]
        cols = [
            c
            for c in ("trial_id", "role", "best_epoch", f"best_{RANK_METRIC}", f"last_{RANK_METRIC}", "verdict")
            if c in runs
        ]
        rows = "".join(
            "<tr>" + "".join(f"<td>{esc(r[c])}</td>" for c in cols) + f"<td>{link[i]}</td></tr>"
            for i, (_, r) in enumerate(runs.iterrows())
        )
        head = "".join(f"<th>{esc(c)}</th>" for c in cols) + "<th>card</th>"
        parts.append(
            f"<h3>To {esc(table_file.parent.name.removeprefix('long-e'))} epochs (<code>{esc(table_file.parent.name)}"
            f'</code>)</h3><table class="data"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'
        )
    if not parts:
        return ""
    intro = note(
        "Trials continued from their last checkpoints by <code>python study/finalize.py</code>; each cohort comes "
        "from the run's best checkpoint by the ranking metric, its card beside it."
    )
    return section("long-runs", "The winners trained long", intro + "".join(parts))
