"""The whole report page: every section in order, the HTML document."""

from __future__ import annotations

import time

from study.reporting.final import final_html, long_runs_html
from study.reporting.html import CSS, SORT_JS, esc, guarded
from study.reporting.loading import Experiment
from study.reporting.overview import header_html, leaderboard_html
from study.reporting.patients import real_vs_synthetic_html
from study.reporting.search import agreement_html, dynamics_html, search_html


def render(exp: Experiment) -> str:
    parts = [
        guarded("header", lambda: header_html(exp)),
        guarded("leaderboard", lambda: leaderboard_html(exp)),
        search_html(exp),
        guarded("agreement", lambda: agreement_html(exp)),
        dynamics_html(exp),
        real_vs_synthetic_html(exp),
        guarded("final evaluation", lambda: final_html(exp.folder)),
        guarded("long runs", lambda: long_runs_html(exp.folder)),
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
