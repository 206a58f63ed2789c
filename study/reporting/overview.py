"""The report's first screen: where the data came from, the headline, and the leaderboard."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from study.base import describe as describe_base
from study.experiment import EXPORT_FILE, RANK_FLOOR, RANK_METRIC, plan_schedule_text, spent_text
from study.leaderboard import collapse_summary
from study.reporting.html import esc, fmt, section, table_html
from study.reporting.loading import STATUS_ORDER, Experiment


def header_html(exp: Experiment) -> str:
    data, space, plan = exp.record.get("data", {}), exp.record.get("space", {}), exp.plan
    source = str(data.get("source", "unknown"))
    simulated = source.lower().startswith("simulated") or "not the health gym dataset" in source.lower()
    counts = exp.board["status"].value_counts()
    badges = "".join(f'<span class="badge {s}">{counts.get(s, 0)} {s}</span>' for s in STATUS_ORDER if counts.get(s, 0))
    factors = "<br>".join(f"<code>{esc(f.describe())}</code>: {esc(f.why)}" for f in exp.space_factors)
    factors = factors or "none (seed replicates of one configuration)"
    split = (
        f"{data.get('train', '?')}/{data.get('val', '?')}/{data.get('test', '?')} train/validation/test patients "
        f"x {data.get('months', '?')} months, split seed {data.get('split_seed', '?')}"
    )
    sizes = (
        f"<code>{esc(plan.preset)}</code>: hidden {esc(plan.trial_base['hidden'])}, "
        f"batch {esc(plan.trial_base['batch_size'])}, {esc(plan.patients)} patients, "
        f"{len(exp.board)} trials x up to {esc(plan.max_epochs)} epochs "
        f"(ASHA grace {esc(plan.grace_period)}, reduction factor {esc(plan.reduction_factor)}"
        f"{', pruning off' if plan.scheduler == 'none' else ''})"
    )
    facts = [
        (
            "data fingerprint",
            f"<code>{esc(data.get('fingerprint', '?'))}</code> (schema <code>{esc(data.get('schema', '?'))}</code>)",
        ),
        ("patients", esc(split)),
        ("search space", f"<code>{esc(space.get('name', '?'))}</code>: {esc(space.get('description', ''))}"),
        ("factors", factors),
        ("base", esc(describe_base(exp.record["base"])) if exp.record.get("base") else "the upstream configuration"),
        ("preset", sizes),
        ("scheduler", esc(plan_schedule_text(plan))),
        ("pruning metric", f"<code>{esc(exp.metric)}</code> (ASHA, lower is better)"),
        (
            "ranking metric",
            f"<code>{RANK_METRIC}</code>, final epoch, completed trials first, collapsed ones after the others (comparable across trials)",
        ),
        ("trials", badges),
        (
            "compute spent",
            spent_text(
                int(exp.board["epochs"].sum()),
                int(exp.board["g_steps"].sum()) if "g_steps" in exp.board else 0,
                plan.budget,
            ),
        ),
        ("created", esc(exp.record.get("created", "?"))),
    ]
    dl = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts)
    banner = f'<div class="banner {"simulated" if simulated else "real"}">Data: {esc(source)}</div>'
    toc = " ".join(
        f'<a href="#{a}">{t}</a>'
        for a, t in (
            ("leaderboard", "Leaderboard"),
            ("search", "Search"),
            ("agreement", f"Gap vs {RANK_METRIC}"),
            ("dynamics", "Learning dynamics"),
            ("real-vs-synthetic", "Real vs synthetic"),
            ("final", "Final evaluation"),
        )
    )
    return (
        f"<h1>Health Gym tuning study <code>{esc(exp.name)}</code></h1>{banner}{collapse_html(exp)}{card_banner(exp)}"
        f'<p class="lead">{headline(exp)}</p><dl class="facts">{dl}</dl><nav class="toc"><p>{toc}</p></nav>'
    )


def collapse_html(exp: Experiment) -> str:
    """The report's first words after the data source: whether the best trial, or every trial, is collapsed."""
    text = collapse_summary(exp.board, exp.record.get("base")) if "collapse" in exp.board else ""
    if not text:
        return ""
    cls = "banner real" if text.startswith("The best trial") and "meets the" in text else "banner simulated"
    return f'<div class="{cls}">{esc(text)}</div>'


def card_note(cohort: Path, lead: str = "Its card") -> str:
    """The exported cohort's card in one line and a link, when the study wrote one (healthgym_core/evaluation/card.py)."""
    from healthgym_core.evaluation.card import card_paths
    from healthgym_core.sampling import card_summary

    js, page = card_paths(cohort)
    try:
        card = json.loads(js.read_text())
        line = card_summary(card)
    except (OSError, ValueError, KeyError, TypeError):
        return ""
    return f'<p><b>{esc(lead)}</b> (<a href="{esc(page.name)}">{esc(page.name)}</a>, beside it): {esc(line)}.</p>'


def card_banner(exp: Experiment) -> str:
    """The exported cohort's verdict from its card (fidelity targets missed, privacy), on the report's first screen."""
    note = card_note(exp.folder / EXPORT_FILE, f"The exported cohort {EXPORT_FILE}: its card")
    return f'<div class="banner simulated">{note}</div>' if note else ""


def _describe_trial(exp: Experiment, row: pd.Series) -> str:
    factors = ", ".join(f"{f}={fmt(row[f])}" for f in exp.factors) or f"seed {fmt(row.get('seed'))}"
    return f"<code>{esc(row['trial_id'])}</code> ({esc(factors)})"


def headline(exp: Experiment) -> str:
    best, up = exp.best(), exp.upstream()
    if best is None:
        return "No trial completed its epochs, so there is no best trial; the statuses below say why."
    floor = best.get(RANK_FLOOR, math.nan)
    text = (
        f"Best completed trial: {_describe_trial(exp, best)}, final {RANK_METRIC} "
        f"<b>{fmt(best[f'last_{RANK_METRIC}'])}</b> (real-vs-real floor {fmt(floor)})."
    )
    if up is not None and up["trial_id"] != best["trial_id"]:
        state = "completed" if up["status"] == "completed" else f"{up['status']} after {fmt(up['epochs'])} epochs"
        text += (
            f" The upstream default {_describe_trial(exp, up)} {state}, final {RANK_METRIC} "
            f"{fmt(up[f'last_{RANK_METRIC}'])}."
        )
    elif up is not None:
        text += " The best trial is the upstream default configuration."
    return text


def leaderboard_html(exp: Experiment) -> str:
    b = exp.board
    cols = [
        "trial_id",
        "status",
        "epochs",
        *exp.factors,
        "seed",
        f"last_{RANK_METRIC}",
        f"best_{RANK_METRIC}",
        f"last_{exp.metric}",
        "last_fd_feat",
        "last_wasserstein_gap",
        "last_sliced_w",
        "last_ks_mean",
        "last_tvd_mean",
        "last_coverage",
        "last_diversity_ratio",
        "last_distinct_share",
        "last_joint_tvd",
        "last_emd_feat",
        "last_critic_gap",
        "collapse",
        "g_steps",
        "role",
        "upstream",
        "lineage",
    ]
    cols = [c for c in dict.fromkeys(cols) if c in b and not (c == "lineage" and not b[c].astype(bool).any())]
    classes = [
        f"status-{s}" + (" upstream" if bool(u) else "")
        for s, u in zip(b["status"], b.get("upstream", [False] * len(b)))
    ]
    titles = {
        "last_energy_feat": "final-epoch energy distance to validation patients over every standardised per-patient "
        "summary (the ranking metric; lower is better)",
        "last_emd_feat": "final-epoch earth mover's distance to validation patients in fd_feat's frozen feature space "
        "(8 leading components; lower is better)",
        "last_fd_feat": "final-epoch Frechet distance in the frozen feature space (lower is better)",
        "fd_feat_floor": "fd_feat between real training and validation patients: what a perfect generator scores",
        "last_wasserstein_gap": "the trial's own critic: E[D(real)] - E[D(fake)] at full length, validation patients",
        "last_coverage": "share of real categories with at least half their real frequency (higher is better)",
        "g_steps": "generator steps spent (compute)",
        "upstream": "the upstream default configuration",
    }
    intro = (
        "<p>Completed trials first, collapsed ones after the others, then by their final "
        f"<code>{RANK_METRIC}</code>; then trials ASHA pruned (their metrics are from the epoch they stopped at, so "
        "compare them with care), diverged and errored ones. "
        "<span style='background:#fff7cc;font-weight:600;padding:0 4px'>Highlighted</span>: the upstream default. "
        "<i>Grey italics</i>: pruned. Click a column header to sort. Every column is in "
        "<code>leaderboard.csv</code>.</p>"
    )
    return section("leaderboard", "Leaderboard", intro + table_html(b[cols], classes, titles=titles))
