"""The whole report page: every section in order, the final evaluation table, the HTML document."""

from __future__ import annotations

import time

import pandas as pd

from study.reporting.html import CSS, SORT_JS, esc, guarded, note, section, table_html
from study.reporting.loading import FINAL_SUMMARY, Experiment
from study.reporting.overview import header_html, leaderboard_html
from study.reporting.patients import real_vs_synthetic_html
from study.reporting.search import agreement_html, dynamics_html, search_html


def final_html(exp: Experiment) -> str:
    path = exp.folder / FINAL_SUMMARY
    if not path.is_file():
        return section(
            "final",
            "Final evaluation",
            note(f"No final evaluation yet ({FINAL_SUMMARY} is written by the final evaluation of the best trials)."),
        )
    try:
        frame = pd.read_csv(path)
    except Exception as e:  # noqa: BLE001
        return section("final", "Final evaluation", note(f"{FINAL_SUMMARY} is not readable ({esc(e)}).", warn=True))
    extra = (
        " Per-run numbers: <code>final_evaluation.csv</code>."
        if (exp.folder / "final_evaluation.csv").is_file()
        else ""
    )
    return section(
        "final",
        "Final evaluation",
        f"<p>From <code>{FINAL_SUMMARY}</code> (held-out test patients).{extra}</p>" + table_html(frame),
    )


def render(exp: Experiment) -> str:
    parts = [
        guarded("header", lambda: header_html(exp)),
        guarded("leaderboard", lambda: leaderboard_html(exp)),
        search_html(exp),
        guarded("agreement", lambda: agreement_html(exp)),
        dynamics_html(exp),
        real_vs_synthetic_html(exp),
        guarded("final evaluation", lambda: final_html(exp)),
    ]
    footer = (
        f'<p class="caption">Written by <code>study/report.py</code> on {time.strftime("%Y-%m-%d %H:%M:%S")} from '
        f"<code>{esc(exp.folder)}</code>.</p>"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>Study {esc(exp.name)}</title>'
        f"<style>{CSS}</style></head><body>{''.join(parts)}{footer}<script>{SORT_JS}</script></body></html>\n"
    )
