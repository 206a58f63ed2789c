"""python study/report.py EXPERIMENT [--out FILE]: one self-contained HTML report of a finished study.

The report (EXPERIMENT/report.html by default) embeds every figure as a base64 PNG and its CSS and a few lines of
JavaScript inline, so it opens offline and can be mailed as one file. Sections: where the data came from, the
leaderboard, the search as pictures (per-epoch curves, best so far, factors, Optuna importances), whether the
trials' own Wasserstein gaps agree with the comparable fd_feat, the learning dynamics of the best and the upstream
trial, real vs synthetic patients from the best checkpoint, and the final evaluation when one was run.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import math
import re
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable without installing it
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import LogFormatter  # noqa: E402

from healthgym_core import cli  # noqa: E402
from healthgym_core.errors import ConfigError  # noqa: E402
from study.experiment import CHECKPOINT_FILE, OPTUNA_FILE, RANK_METRIC, STEPS_FILE, STUDY_FILE, study_data  # noqa: E402

FINAL_SUMMARY = "final_summary.csv"
STATUS_ORDER = ("completed", "pruned", "diverged", "error")
STATUS_COLOR = {"completed": "tab:blue", "pruned": "0.55", "diverged": "tab:red", "error": "k"}
TRAJECTORY_PATIENTS = 4
DPI = 100


def log(message: str) -> None:
    print(f"report: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------------------
# Loading the experiment folder
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class Experiment:
    folder: Path
    record: dict  # study.json
    board: pd.DataFrame  # the leaderboard, plus trial_number and trial_dir
    factors: list[str]
    histories: dict[str, pd.DataFrame] = field(default_factory=dict)  # trial_id -> per-epoch metrics (good epochs)

    @property
    def args(self) -> dict:
        return self.record.get("args", {})

    @property
    def preset(self) -> dict:
        return self.record.get("preset", {})

    @property
    def metric(self) -> str:
        return self.args.get("metric") or "wasserstein_gap"

    @property
    def name(self) -> str:
        return self.args.get("name") or self.folder.name

    def setting(self, key: str):
        """A study size: the command-line override, else the preset's value."""
        v = self.args.get(key)
        return v if v is not None else self.preset.get(key)

    def log_factors(self) -> set[str]:
        """Factors the space searches on a log scale (study.json describes them as `name in [lo, hi] (log)`)."""
        return {d.split(" in ")[0] for d in self.record.get("space", {}).get("factors", []) if str(d).endswith("(log)")}

    def best(self) -> pd.Series | None:
        done = self.board[self.board["status"] == "completed"]
        return done.iloc[0] if len(done) else None

    def upstream(self) -> pd.Series | None:
        if "upstream" not in self.board:
            return None
        up = self.board[self.board["upstream"].astype(bool)]
        return up.iloc[0] if len(up) else None


def _read_board(folder: Path) -> pd.DataFrame:
    for name, reader in (("leaderboard.parquet", pd.read_parquet), ("leaderboard.csv", pd.read_csv)):
        if (folder / name).is_file():
            try:
                return reader(folder / name)
            except Exception as e:  # a damaged file: try the other one
                log(f"cannot read {name} ({type(e).__name__}); trying the next")
    raise ConfigError(f"{folder}: no readable leaderboard.parquet or leaderboard.csv (has the study finished? "
                      "continue it with: python study/run.py --resume ...)")


def _factor_columns(board: pd.DataFrame) -> list[str]:
    """The factor columns sit between `pruned` and `seed` (study/leaderboard.py:trial_row)."""
    cols = list(board.columns)
    if "pruned" in cols and "seed" in cols and cols.index("seed") > cols.index("pruned"):
        return cols[cols.index("pruned") + 1:cols.index("seed")]
    return []


def trial_dir(folder: Path, row: pd.Series) -> Path | None:
    """The trial's folder: inside the experiment folder by name (it may have been moved), else as recorded."""
    recorded = str(row.get("path") or "")
    candidates = []
    if recorded:
        candidates += [folder / Path(recorded).name, Path(recorded)]
    candidates += sorted(folder.glob(f"*_{row['trial_id']}_*"))
    return next((c for c in candidates if c.is_dir()), None)


def checkpoint_file(folder: Path, row: pd.Series) -> Path | None:
    """The trial's recorded checkpoint, resolved relative to the experiment folder if the folder moved."""
    recorded = row.get("checkpoint")
    if not isinstance(recorded, str) or not recorded:
        return None
    tdir = trial_dir(folder, row)
    candidates = ([tdir / Path(recorded).name] if tdir else []) + [Path(recorded)]
    return next((c / CHECKPOINT_FILE for c in candidates if (c / CHECKPOINT_FILE).is_file()), None)


def _trial_number(tdir: Path | None, trial_id: str) -> int | None:
    """Tune's trial index from the folder name (train_healthgym_<id>_<index>_<params>_<date>)."""
    m = re.search(rf"_{re.escape(str(trial_id))}_(\d+)(?:_|$)", tdir.name) if tdir else None
    return int(m.group(1)) if m else None


def _read_history(tdir: Path | None) -> pd.DataFrame:
    """The trial's per-epoch reports without its diverged report; a restored trial's repeats keep the last."""
    if tdir is None or not (tdir / "result.json").is_file():
        return pd.DataFrame()
    rows = []
    for line in (tdir / "result.json").read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut short by a kill
    h = pd.DataFrame(rows)
    if not len(h) or "epoch" not in h:
        return pd.DataFrame()
    if "diverged" in h:
        h = h[h["diverged"].fillna(0) == 0]
    return h.drop_duplicates("epoch", keep="last").sort_values("epoch").reset_index(drop=True)


def read_steps(tdir: Path | None) -> pd.DataFrame:
    if tdir is None or not (tdir / STEPS_FILE).is_file():
        return pd.DataFrame()
    steps = pd.read_csv(tdir / STEPS_FILE)
    return steps.drop_duplicates(["epoch", "step"], keep="last").sort_values(["epoch", "step"]).reset_index(drop=True)


def load_experiment(folder: Path) -> Experiment:
    if not folder.exists():
        raise ConfigError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise ConfigError(f"{folder}: not a folder")
    if not (folder / STUDY_FILE).is_file():
        raise ConfigError(f"{folder}: not a study folder (no {STUDY_FILE}; expected the folder python study/run.py wrote)")
    try:
        record = json.loads((folder / STUDY_FILE).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{folder / STUDY_FILE}: not readable JSON ({e})") from None
    board = _read_board(folder)
    if not len(board) or "trial_id" not in board or "status" not in board:
        raise ConfigError(f"{folder}: the leaderboard is empty or lacks trial_id/status columns")
    board = board.copy()
    board["trial_id"] = board["trial_id"].astype(str)
    dirs = [trial_dir(folder, row) for _, row in board.iterrows()]
    numbers = [_trial_number(d, t) for d, t in zip(dirs, board["trial_id"])]
    if any(n is None for n in numbers):  # fall back on the seed order (trial k trains with seed + k)
        numbers = list(pd.Series(board.get("seed", pd.Series(range(len(board))))).rank(method="first").astype(int))
    board["trial_number"] = numbers
    board["trial_dir"] = dirs
    exp = Experiment(folder, record, board, _factor_columns(board))
    exp.histories = {t: _read_history(d) for t, d in zip(board["trial_id"], dirs)}
    return exp


# ---------------------------------------------------------------------------------------------------------------
# HTML helpers
# ---------------------------------------------------------------------------------------------------------------

CSS = """
body{font-family:-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;margin:0 auto;max-width:1400px;
     padding:0 24px 48px;color:#1d2430;line-height:1.45}
h1{font-size:1.7em;margin:.8em 0 .3em} h2{border-bottom:2px solid #d7dde6;padding-bottom:4px;margin-top:2em}
h3{margin:1.4em 0 .4em}
.banner{padding:12px 16px;border-radius:6px;font-size:1.1em;margin:10px 0 14px;border:2px solid}
.banner.simulated{background:#fff4e5;border-color:#e67e22;color:#7a3d00;font-weight:600}
.banner.real{background:#eaf3fb;border-color:#4a90c8;color:#163a5a}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:4px 18px;margin:0}
dl.facts dt{font-weight:600;color:#4a5566} dl.facts dd{margin:0}
code{background:#f1f3f6;padding:1px 4px;border-radius:3px;font-size:.92em}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:.9em;margin-right:6px;color:#fff}
.badge.completed{background:#2e7d32} .badge.pruned{background:#8a8f98} .badge.diverged{background:#c62828}
.badge.error{background:#222}
.note{background:#f6f7f9;border-left:4px solid #a0a8b5;padding:8px 12px;margin:10px 0;color:#3a4350}
.note.warn{border-left-color:#e67e22;background:#fff8ef}
.lead{font-size:1.05em;margin:6px 0 10px}
table.data{border-collapse:collapse;font-size:13px;margin:8px 0;font-variant-numeric:tabular-nums}
table.data th,table.data td{border:1px solid #d7dde6;padding:3px 7px;text-align:right;white-space:nowrap}
table.data td.text,table.data th.text{text-align:left}
table.data thead th{background:#eef1f5;position:sticky;top:0}
table.sortable thead th{cursor:pointer;user-select:none}
table.sortable thead th:hover{background:#dde3ea}
table.sortable th[data-dir=asc]::after{content:' \\25B2'} table.sortable th[data-dir=desc]::after{content:' \\25BC'}
tr.status-pruned td{color:#6b7280;background:#f7f7f8;font-style:italic}
tr.status-diverged td{background:#fdecea;color:#8e1b1b} tr.status-error td{background:#eee;color:#555}
tr.upstream td{background:#fff7cc;font-weight:600} tr.upstream td:first-child{border-left:4px solid #e0a800}
.scroll{overflow-x:auto;max-width:100%}
img.fig{max-width:100%;height:auto;display:block;margin:8px 0 4px;border:1px solid #eef0f3}
.caption{color:#4a5566;font-size:.95em;margin:0 0 14px}
nav.toc a{margin-right:14px}
.side{display:flex;gap:28px;flex-wrap:wrap;align-items:flex-start}
"""

SORT_JS = """
document.querySelectorAll('table.sortable').forEach(function (table) {
  var heads = table.tHead.rows[0].cells;
  Array.prototype.forEach.call(heads, function (th, col) {
    th.title = th.title || 'click to sort';
    th.addEventListener('click', function () {
      var asc = th.getAttribute('data-dir') !== 'asc';
      Array.prototype.forEach.call(heads, function (h) { h.removeAttribute('data-dir'); });
      th.setAttribute('data-dir', asc ? 'asc' : 'desc');
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      function key(row) { var c = row.cells[col]; return c.hasAttribute('data-v') ? c.getAttribute('data-v') : c.textContent; }
      rows.sort(function (a, b) {
        var x = key(a), y = key(b), nx = x === '' ? NaN : Number(x), ny = y === '' ? NaN : Number(y);
        if (x === '' || y === '') { return (x === '') - (y === ''); }  // blanks last either way
        var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : String(x).localeCompare(String(y));
        return asc ? c : -c;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""


def esc(x: object) -> str:
    return html.escape(str(x))


def note(text: str, warn: bool = False) -> str:
    return f'<p class="note{" warn" if warn else ""}">{text}</p>'


def figure_html(fig: plt.Figure, alt: str, caption: str = "") -> str:
    """The figure as an embedded PNG (and closed)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return image_html(buf.getvalue(), alt, caption)


def image_html(png: bytes, alt: str, caption: str = "") -> str:
    data = base64.b64encode(png).decode("ascii")
    cap = f'<p class="caption">{caption}</p>' if caption else ""
    return f'<img class="fig" alt="{esc(alt)}" src="data:image/png;base64,{data}">{cap}'


def fmt(v: object) -> str:
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (float, np.floating)):
        if not math.isfinite(v):
            return "" if math.isnan(v) else str(v)
        return f"{v:.4g}"
    return "" if v is None else str(v)


def table_html(frame: pd.DataFrame, row_classes: Sequence[str] | None = None, sortable: bool = True,
               titles: dict[str, str] | None = None) -> str:
    """An HTML table; every cell carries its raw value in data-v so the inline script sorts numbers as numbers."""
    titles = titles or {}
    heads = []
    for c in frame.columns:
        numeric = pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])
        t = f' title="{esc(titles[c])}"' if c in titles else ""
        heads.append(f'<th class="{"num" if numeric else "text"}"{t}>{esc(c)}</th>')
    body = []
    for i, rec in enumerate(frame.itertuples(index=False)):
        cls = f' class="{row_classes[i]}"' if row_classes else ""
        cells = []
        for v in rec:
            raw = "" if v is None or (isinstance(v, float) and math.isnan(v)) else v
            kind = "num" if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_)) else "text"
            cells.append(f'<td class="{kind}" data-v="{esc(raw)}">{esc(fmt(v))}</td>')
        body.append(f"<tr{cls}>{''.join(cells)}</tr>")
    sort = " sortable" if sortable else ""
    return (f'<div class="scroll"><table class="data{sort}"><thead><tr>{"".join(heads)}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{esc(title)}</h2>{body}</section>'


def guarded(name: str, build: Callable[[], str]) -> str:
    """Run one section; a failure becomes a visible note (and a warning on stderr), never a lost report."""
    log(name)
    try:
        return build()
    except Exception as e:  # noqa: BLE001 - the report must still be written
        message = f"{type(e).__name__}: {e}".splitlines()[0][:300]
        print(f"warning: report section '{name}' failed: {message}", file=sys.stderr)
        plt.close("all")
        return note(f"This part could not be drawn ({esc(message)}).", warn=True)


# ---------------------------------------------------------------------------------------------------------------
# Plot helpers
# ---------------------------------------------------------------------------------------------------------------


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
    handles += [Line2D([], [], color="k", ls="-", lw=1.6, label="completed"),
                Line2D([], [], color="k", ls="--", lw=1.0, alpha=0.5, marker="x", label="pruned (x: ASHA stopped it)")]
    if board["status"].isin(["diverged", "error"]).any():
        handles.append(Line2D([], [], color="tab:red", ls="", marker="X", label="diverged or error"))
    if upstream is not None and exp.factors:
        handles.append(Line2D([], [], color="k", lw=2.6, label=f"thick: upstream default ({upstream['trial_id']})"))
    return styles, handles


def asha_rungs(exp: Experiment) -> list[int]:
    if exp.args.get("no_pruning"):
        return []
    grace, rf, max_t = exp.setting("grace_period"), exp.setting("reduction_factor"), exp.setting("max_epochs")
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
                ax.annotate(str(r["trial_id"]), (r[x], r[y]), fontsize=7, xytext=(4, 3), textcoords="offset points",
                            color="0.3")


# ---------------------------------------------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------------------------------------------


def header_html(exp: Experiment) -> str:
    data, space, preset = exp.record.get("data", {}), exp.record.get("space", {}), exp.preset
    source = str(data.get("source", "unknown"))
    simulated = source.lower().startswith("simulated") or "not the health gym dataset" in source.lower()
    counts = exp.board["status"].value_counts()
    badges = "".join(f'<span class="badge {s}">{counts.get(s, 0)} {s}</span>' for s in STATUS_ORDER if counts.get(s, 0))
    factors = "<br>".join(esc(f) for f in space.get("factors", [])) or "none (seed replicates of one configuration)"
    split = (f"{data.get('train', '?')}/{data.get('val', '?')}/{data.get('test', '?')} train/validation/test patients "
             f"x {data.get('months', '?')} months, split seed {data.get('split_seed', '?')}")
    sizes = (f"<code>{esc(preset.get('name', '?'))}</code>: hidden {esc(exp.setting('hidden'))}, "
             f"batch {esc(exp.setting('batch_size'))}, {esc(exp.setting('patients'))} patients, "
             f"{len(exp.board)} trials x up to {esc(exp.setting('max_epochs'))} epochs "
             f"(ASHA grace {esc(exp.setting('grace_period'))}, reduction factor {esc(exp.setting('reduction_factor'))}"
             f"{', pruning off' if exp.args.get('no_pruning') else ''})")
    facts = [
        ("data fingerprint", f"<code>{esc(data.get('fingerprint', '?'))}</code> (schema <code>{esc(data.get('schema', '?'))}</code>)"),
        ("patients", esc(split)),
        ("search space", f"<code>{esc(space.get('name', '?'))}</code>: {esc(space.get('description', ''))}"),
        ("factors", factors),
        ("preset", sizes),
        ("pruning metric", f"<code>{esc(exp.metric)}</code> (ASHA, lower is better)"),
        ("ranking metric", f"<code>{RANK_METRIC}</code>, final epoch, completed trials first (comparable across trials)"),
        ("trials", badges),
        ("created", esc(exp.record.get("created", "?"))),
    ]
    dl = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts)
    banner = (f'<div class="banner {"simulated" if simulated else "real"}">Data: {esc(source)}</div>')
    toc = " ".join(f'<a href="#{a}">{t}</a>' for a, t in (
        ("leaderboard", "Leaderboard"), ("search", "Search"), ("agreement", "Gap vs fd_feat"),
        ("dynamics", "Learning dynamics"), ("real-vs-synthetic", "Real vs synthetic"), ("final", "Final evaluation")))
    return (f"<h1>Health Gym tuning study <code>{esc(exp.name)}</code></h1>{banner}"
            f'<p class="lead">{headline(exp)}</p><dl class="facts">{dl}</dl><nav class="toc"><p>{toc}</p></nav>')


def _describe_trial(exp: Experiment, row: pd.Series) -> str:
    factors = ", ".join(f"{f}={fmt(row[f])}" for f in exp.factors) or f"seed {fmt(row.get('seed'))}"
    return f"<code>{esc(row['trial_id'])}</code> ({esc(factors)})"


def headline(exp: Experiment) -> str:
    best, up = exp.best(), exp.upstream()
    if best is None:
        return "No trial completed its epochs, so there is no best trial; the statuses below say why."
    floor = best.get("fd_feat_floor", math.nan)
    text = (f"Best completed trial: {_describe_trial(exp, best)}, final {RANK_METRIC} "
            f"<b>{fmt(best[f'last_{RANK_METRIC}'])}</b> (real-vs-real floor {fmt(floor)}).")
    if up is not None and up["trial_id"] != best["trial_id"]:
        state = "completed" if up["status"] == "completed" else f"{up['status']} after {fmt(up['epochs'])} epochs"
        text += (f" The upstream default {_describe_trial(exp, up)} {state}, final {RANK_METRIC} "
                 f"{fmt(up[f'last_{RANK_METRIC}'])}.")
    elif up is not None:
        text += " The best trial is the upstream default configuration."
    return text


def leaderboard_html(exp: Experiment) -> str:
    b = exp.board
    cols = ["trial_id", "status", "epochs", *exp.factors, "seed", f"last_{RANK_METRIC}", f"best_{RANK_METRIC}",
            f"last_{exp.metric}", "last_wasserstein_gap", "last_sliced_w", "last_ks_mean",
            "last_tvd_mean", "last_coverage", "g_steps", "upstream"]
    cols = [c for c in dict.fromkeys(cols) if c in b]
    classes = [f"status-{s}" + (" upstream" if bool(u) else "") for s, u in zip(b["status"], b.get("upstream", [False] * len(b)))]
    titles = {f"last_{RANK_METRIC}": "final-epoch Frechet distance in the frozen feature space (lower is better)",
              "fd_feat_floor": "fd_feat between real training and validation patients: what a perfect generator scores",
              "last_wasserstein_gap": "the trial's own critic: E[D(real)] - E[D(fake)] at full length, validation patients",
              "last_coverage": "share of real categories with at least half their real frequency (higher is better)",
              "g_steps": "generator steps spent (compute)", "upstream": "the upstream default configuration"}
    intro = ("<p>Completed trials first, by their final <code>fd_feat</code>; then trials ASHA pruned (their metrics are "
             "from the epoch they stopped at, so compare them with care), diverged and errored ones. "
             "<span style='background:#fff7cc;font-weight:600;padding:0 4px'>Highlighted</span>: the upstream default. "
             "<i>Grey italics</i>: pruned. Click a column header to sort. Every column is in "
             "<code>leaderboard.csv</code>.</p>")
    return section("leaderboard", "Leaderboard", intro + table_html(b[cols], classes, titles=titles))


def curves_figure(exp: Experiment) -> str:
    """The pruning metric (and fd_feat) per epoch for every trial; pruned trials dashed, ending where ASHA stopped them."""
    metrics = [exp.metric] + ([RANK_METRIC] if exp.metric != RANK_METRIC else [])
    styles, handles = trial_styles(exp)
    fig, axes = plt.subplots(1, len(metrics), figsize=(6.4 * len(metrics) + 2.6, 4.4), squeeze=False, layout="constrained")
    for ax, m in zip(axes[0], metrics):
        ends = []
        for _, row in exp.board.iterrows():
            h, st = exp.histories.get(row["trial_id"], pd.DataFrame()), styles[row["trial_id"]]
            if m not in h or not len(h):
                continue
            ax.plot(h["epoch"], h[m], ls=st.ls, color=st.color, alpha=st.alpha, lw=st.lw, marker="." if len(h) < 15 else None)
            ends += list(h[m])
            if row["status"] == "pruned":
                ax.plot(h["epoch"].iloc[-1], h[m].iloc[-1], "x", color=st.color, ms=7, mew=1.6, alpha=0.8)
            elif row["status"] in ("diverged", "error"):
                ax.plot(h["epoch"].iloc[-1], h[m].iloc[-1], "X", color="tab:red", ms=8)
        for r in asha_rungs(exp):
            ax.axvline(r, color="0.75", lw=0.8, ls=":", zorder=0)
        if m == RANK_METRIC and "fd_feat_floor" in exp.board:
            ax.axhline(exp.board["fd_feat_floor"].median(), color="tab:green", lw=1, ls="-.", label="real-vs-real floor")
            ax.legend(loc="upper right", fontsize=8)
        if spans_decades(ends):
            log_axis(ax, "y")
        ax.set_xlabel("epoch")
        ax.set_ylabel(m)
        role = "pruning metric" if m == exp.metric else "ranking metric"
        ax.set_title(f"{m} per epoch ({role}, lower is better)")
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.legend(handles=handles, loc="outside right upper", fontsize=8, frameon=False)
    rungs = asha_rungs(exp)
    cap = ("Every trial's per-epoch report. Dashed, faded lines are trials ASHA stopped; each ends (x) at the epoch it "
           "was stopped." + (f" Dotted verticals: ASHA rungs (epochs {', '.join(map(str, rungs))})." if rungs else ""))
    return figure_html(fig, f"{exp.metric} per epoch for every trial", cap)


def best_so_far_figure(exp: Experiment) -> str:
    b = exp.board.sort_values("trial_number").reset_index(drop=True)
    last, best = b[f"last_{RANK_METRIC}"].astype(float), b[f"best_{RANK_METRIC}"].astype(float)
    done = np.where((b["status"] == "completed") & np.isfinite(last), last, np.inf)
    board_best = np.minimum.accumulate(done)
    any_best = np.minimum.accumulate(np.where(np.isfinite(best), best, np.inf))
    b = b.assign(compute=b["g_steps"].astype(float).cumsum() if "g_steps" in b else np.arange(1, len(b) + 1))
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.3), layout="constrained")
    for ax, x, label in ((axes[0], "trial_number", "trial number (order Tune started them)"),
                         (axes[1], "compute", "cumulative generator steps spent by trials 1..k")):
        status_scatter(ax, b, x, f"last_{RANK_METRIC}")
        ax.step(b[x], np.where(np.isfinite(board_best), board_best, np.nan), where="post", color="tab:blue", lw=2,
                label="best completed trial so far (leaderboard)")
        ax.step(b[x], np.where(np.isfinite(any_best), any_best, np.nan), where="post", color="tab:purple", lw=1.2, ls="--",
                label="best at any epoch of any trial so far")
        if "fd_feat_floor" in b:
            ax.axhline(b["fd_feat_floor"].median(), color="tab:green", lw=1, ls="-.", label="real-vs-real floor")
        if spans_decades(list(last) + list(best)):
            log_axis(ax, "y")
        ax.set_xlabel(label)
        ax.set_ylabel(f"final {RANK_METRIC}")
    axes[0].xaxis.get_major_locator().set_params(integer=True)
    axes[0].set_title(f"Best {RANK_METRIC} so far, by trial")
    axes[1].set_title(f"Best {RANK_METRIC} so far, by compute")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize=8, frameon=False)
    return figure_html(fig, "best fd_feat so far", "Points: each trial's final fd_feat (hollow: pruned, measured at the "
                       "epoch it stopped). Lower is better; the floor is what real patients score against real patients.")


def factors_figure(exp: Experiment) -> str:
    b, y = exp.board, f"last_{RANK_METRIC}"
    if not exp.factors:  # a baseline study: one configuration, its spread over seeds
        b = b.assign(configuration="upstream default")
    factors = exp.factors or ["configuration"]
    n = len(factors)
    cols = min(n, 2)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(7.2 * cols, 0.9 + 3.6 * rows), squeeze=False, layout="constrained")
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    logy = spans_decades(b[y])
    for ax, f in zip(axes.ravel(), factors):
        frame = b[[f, y, "status", "trial_id"]].dropna(subset=[y])
        if is_categorical(b[f]):
            _categorical_panel(ax, frame.assign(**{f: frame[f].astype(str)}), f, y, logy)
        else:
            status_scatter(ax, frame, f, y)
            if f in exp.log_factors() or spans_decades(frame[f], ratio=30):
                log_axis(ax, "x")
            elif pd.api.types.is_integer_dtype(b[f]):
                ax.xaxis.get_major_locator().set_params(integer=True)
            ax.set_xlabel(f)
            ax.set_ylabel(f"final {RANK_METRIC}")
            if logy:
                log_axis(ax, "y")
        ax.set_title(f"{f} vs final {RANK_METRIC}" if exp.factors else f"final {RANK_METRIC} over seeds (no factors)")
    handles, labels = axes.ravel()[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize=8, frameon=False)
    return figure_html(fig, "factors against the final metric",
                       "Lower is better. Hollow points: pruned trials, whose fd_feat is from an earlier epoch; boxes are "
                       "drawn over completed trials where a level has at least 3.")


def _categorical_panel(ax: plt.Axes, frame: pd.DataFrame, f: str, y: str, logy: bool) -> None:
    """Levels on the y axis (long schedule strings stay readable), metric on x; jittered points, boxes where n >= 3."""
    levels = list(dict.fromkeys(frame.sort_values(f)[f]))
    pos = {v: i for i, v in enumerate(levels)}
    done = frame[frame["status"] == "completed"]
    boxes = [(pos[v], g[y].to_numpy()) for v, g in done.groupby(f) if len(g) >= 3]
    if boxes:
        ax.boxplot([d for _, d in boxes], positions=[p for p, _ in boxes], vert=False, widths=0.5, showfliers=False,
                   medianprops=dict(color="tab:blue"), boxprops=dict(color="0.5"), whiskerprops=dict(color="0.5"))
    jitter = np.random.default_rng(0).uniform(-0.15, 0.15, len(frame))
    status_scatter(ax, frame.assign(_y=[pos[v] for v in frame[f]] + jitter), y, "_y")
    ax.set_yticks(range(len(levels)), levels, fontsize=8)
    ax.set_ylim(-0.6, len(levels) - 0.4)
    ax.invert_yaxis()
    ax.set_xlabel(f"final {RANK_METRIC}")
    ax.set_ylabel(f)
    if logy:
        log_axis(ax, "x")
    ax.grid(axis="x", alpha=0.3)


def importance_html(exp: Experiment) -> str:
    """Optuna's parameter importances: for the objective Optuna saw (the pruning metric) and for the final fd_feat."""
    db = exp.folder / OPTUNA_FILE
    if not exp.factors:
        return note("Parameter importances: the space has no factors.")
    if not db.is_file():
        return note(f"Parameter importances: no {OPTUNA_FILE} in the experiment folder.")
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=exp.name, storage=f"sqlite:///{db}")
    except Exception as e:  # noqa: BLE001 - a damaged or foreign database must not end the report
        return note(f"Parameter importances skipped: cannot load the Optuna study {esc(exp.name)} "
                    f"({esc(type(e).__name__)}: {esc(e)}).")
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE and t.value is not None]
    results, notes = [], []
    results.append(_importances(optuna, complete, lambda t: t.value, f"{exp.metric} as Optuna recorded it", notes))
    seed0 = int(exp.args.get("seed") or 0)
    done = exp.board[exp.board["status"] == "completed"]
    final = done.set_index("seed")[f"last_{RANK_METRIC}"] if "seed" in done else pd.Series(dtype=float)
    results.append(_importances(optuna, [t for t in complete if seed0 + t.number in final.index],
                                lambda t: float(final[seed0 + t.number]), f"final {RANK_METRIC}, completed trials", notes))
    results = [r for r in results if r]
    text = "".join(note(n) for n in notes)
    if not results:
        return "<h3>Parameter importances</h3>" + text
    fig, axes = plt.subplots(1, len(results), figsize=(5.6 * len(results), 0.9 + 0.45 * max(len(r[1]) for r in results)),
                             squeeze=False, layout="constrained")
    for ax, (title, imp) in zip(axes[0], results):
        names = list(imp)[::-1]
        ax.barh(names, [imp[k] for k in names], color="tab:blue")
        ax.set_xlim(0, 1.05)
        ax.set_xlabel("importance (sums to 1)")
        ax.set_title(title, fontsize=10)
    cap = ("Optuna records the last value each trial reported for the pruning metric (pruned trials: an earlier "
           "epoch's)." + (" With one factor the importance is 1 by construction." if len(exp.factors) == 1 else ""))
    return "<h3>Parameter importances</h3>" + figure_html(fig, "Optuna parameter importances", cap) + text


def _importances(optuna, trials: list, target: Callable, title: str, notes: list[str]) -> tuple[str, dict] | None:
    """Importances over `trials` (needs >= 2 and a varying parameter), via an in-memory copy of the study."""
    if len(trials) < 2:
        notes.append(f"Importances for {esc(title)} skipped: {len(trials)} trial(s) to learn from; need at least 2.")
        return None
    varying = {k for t in trials for k in t.params if len({str(u.params.get(k)) for u in trials}) > 1}
    if not varying:
        notes.append(f"Importances for {esc(title)} skipped: the parameters do not vary across these trials.")
        return None
    try:
        copy = optuna.create_study(direction="minimize")
        copy.add_trials([optuna.trial.create_trial(params=t.params, distributions=t.distributions, value=target(t))
                         for t in trials])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:  # fANOVA, Optuna's default, needs scikit-learn
                evaluator, how = optuna.importance.FanovaImportanceEvaluator(seed=0), "fANOVA"
            except ImportError:
                evaluator, how = optuna.importance.PedAnovaImportanceEvaluator(), "PED-ANOVA; fANOVA needs scikit-learn"
            imp = optuna.importance.get_param_importances(copy, evaluator=evaluator)
        return f"{title}\n({how})", imp
    except Exception as e:  # noqa: BLE001 - importances are an extra; never end the report for them
        notes.append(f"Importances for {esc(title)} skipped ({esc(type(e).__name__)}: {esc(e)}).")
        return None


def search_html(exp: Experiment) -> str:
    if any(len(h) for h in exp.histories.values()):
        curves = guarded("search curves", lambda: curves_figure(exp))
    else:
        curves = note("No trial folder with a result.json was found next to study.json (remote storage? copy the "
                      "trial folders here), so the per-epoch curves are missing.", warn=True)
    parts = [
        "<h3>Every trial per epoch</h3>", curves,
        "<h3>Best so far</h3>", guarded("best so far", lambda: best_so_far_figure(exp)),
        "<h3>Factors against the final metric</h3>", guarded("factors", lambda: factors_figure(exp)),
        guarded("parameter importances", lambda: importance_html(exp)),
    ]
    return section("search", "The search", "".join(parts))


def agreement_html(exp: Experiment) -> str:
    """Does the trials' own Wasserstein gap rank them like the comparable fd_feat?"""
    from scipy.stats import spearmanr

    gap, fd = "last_wasserstein_gap", f"last_{RANK_METRIC}"
    frame = exp.board[["trial_id", "status", gap, fd]].replace([np.inf, -np.inf], np.nan).dropna()
    rho, p = math.nan, math.nan
    if len(frame) >= 3:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a constant column: rho is undefined (nan)
            rho, p = spearmanr(frame[gap], frame[fd])
    fig, ax = plt.subplots(figsize=(7.5, 4.8), layout="constrained")
    status_scatter(ax, frame, gap, fd, annotate=len(frame) <= 15)
    if spans_decades(frame[fd]):
        log_axis(ax, "y")
    ax.set_xlabel("final Wasserstein gap (the trial's own critic; lower = closer by its own account)")
    ax.set_ylabel(f"final {RANK_METRIC} (shared feature space; lower is better)")
    shown = (f"Spearman rho = {rho:.2f} (p = {p:.2g}, n = {len(frame)})" if np.isfinite(rho)
             else f"n = {len(frame)}: too few for a rank correlation")
    ax.set_title(shown)
    ax.legend(fontsize=8, loc="best")
    body = (figure_html(fig, "Wasserstein gap vs fd_feat across trials")
            + f'<p class="lead">{agreement_sentence(rho, len(frame))}</p>')
    return section("agreement", "Does the trial's own Wasserstein gap agree with the comparable metric?",
                   body + per_epoch_agreement(exp))


def agreement_sentence(rho: float, n: int) -> str:
    if not np.isfinite(rho):
        if n >= 3:
            return "One of the two metrics is the same for every trial, so their rank correlation is undefined."
        return (f"With {n} trial(s) the question cannot be answered; a study with more trials (at least 3 with "
                "finite metrics) can.")
    if rho >= 0.7:
        verdict = ("they agree well: a trial the critic says is close is usually close in the shared feature space, "
                   "so ranking or pruning on the gap keeps roughly the trials fd_feat would keep")
    elif rho >= 0.3:
        verdict = ("they agree only loosely: the gap orders trials somewhat like fd_feat, but pruning on it "
                   "can stop trials fd_feat would keep")
    elif rho > -0.3:
        verdict = ("they do not agree: the ordering by the trials' own critics is nearly unrelated to fd_feat, so "
                   "pruning on the gap picks trials close to at random with respect to fd_feat")
    else:
        verdict = ("they disagree: trials whose critic reports a smaller gap tend to have a worse fd_feat, as expected "
                   "if weaker critics report smaller gaps")
    small = " With this few trials the estimate is very uncertain." if n < 10 else ""
    return (f"Across {n} trials the rank correlation between the final Wasserstein gap and the final fd_feat is "
            f"{rho:.2f}: {verdict}.{small} Pruned trials' final values come from the epoch they stopped at; the table "
            "below compares trials at the same epoch, as ASHA does.")


def per_epoch_agreement(exp: Experiment) -> str:
    from scipy.stats import spearmanr

    rows = []
    frames = [h.assign(trial_id=t) for t, h in exp.histories.items() if len(h)]
    if not frames:
        return ""
    allh = pd.concat(frames, ignore_index=True)
    if "wasserstein_gap" not in allh or RANK_METRIC not in allh:
        return ""
    for epoch, g in allh.groupby("epoch"):
        g = g[["wasserstein_gap", RANK_METRIC]].replace([np.inf, -np.inf], np.nan).dropna()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rho = spearmanr(g["wasserstein_gap"], g[RANK_METRIC])[0] if len(g) >= 3 else math.nan
        rows.append({"epoch": int(epoch), "trials reporting": len(g), "Spearman rho (gap vs fd_feat)": rho})
    table = table_html(pd.DataFrame(rows), sortable=False)
    return ("<h3>At the same epoch</h3><p>Rank correlation across the trials that reached each epoch "
            f"(blank: fewer than 3).</p>{table}")


def dynamics_html(exp: Experiment) -> str:
    best, up = exp.best(), exp.upstream()
    trials = []
    if best is not None:
        trials.append(("best trial", best))
    if up is not None and (best is None or up["trial_id"] != best["trial_id"]):
        trials.append(("upstream default", up))
    if not trials:
        return section("dynamics", "Learning dynamics", note("No completed or upstream trial to show."))
    intro = ("<p>Per training step, in the upstream blog's style: D_loss solid (red at the shortest length L to blue at "
             "the longest), G_loss dashed. The curriculum makes a saw-tooth; the losses are not a quality metric "
             "(the critic's gap grows with L). Early and late windows of each trial.</p>")
    if best is not None and up is not None and up["trial_id"] == best["trial_id"]:
        intro += note("The best trial is the upstream default configuration, shown once.")
    figs = [guarded(f"learning dynamics {what}", lambda what=what, row=row: _dynamics_figure(exp, what, row))
            for what, row in trials]
    return section("dynamics", "Learning dynamics", intro + "".join(figs))


def dynamics_windows(last: int, width: int = 20) -> list[tuple[int, int]]:
    """Early and late windows of up to `width` epochs each (one window when the trial is that short)."""
    if last <= 1:
        return [(1, max(last, 1))]
    w = min(width, math.ceil(last / 2))
    return [(1, w), (last - w + 1, last)]


def _dynamics_figure(exp: Experiment, what: str, row: pd.Series) -> str:
    from healthgym_core.plots import learning_dynamics_axes

    steps = read_steps(row["trial_dir"])
    if not len(steps):
        return note(f"{esc(what)} {_describe_trial(exp, row)}: no {STEPS_FILE} in its folder.")
    windows = dynamics_windows(int(steps["epoch"].max()))
    fig, axes = plt.subplots(1, len(windows), figsize=(7.2 * len(windows), 4.2), squeeze=False, sharey=True, layout="constrained")
    for ax, (a, b) in zip(axes[0], windows):
        part = steps[(steps["epoch"] >= a) & (steps["epoch"] <= b)].reset_index(drop=True)
        learning_dynamics_axes(ax, part, f"{what} {row['trial_id']}: epochs {a}-{b}")
        ax.get_legend().remove()
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize=7, frameon=False)
    status = f"{row['status']}, {fmt(row['epochs'])} epochs"
    return (f"<h3>{esc(what.capitalize())}: {_describe_trial(exp, row)} ({esc(status)})</h3>"
            + figure_html(fig, f"learning dynamics of the {what}"))


# --- real vs synthetic ---------------------------------------------------------------------------------------------


@dataclass
class Comparison:
    schema: object
    transform: object
    real: tuple[np.ndarray, np.ndarray]  # held-out validation patients: reals [P, T, R], codes [P, T, C]
    fake: tuple[np.ndarray, np.ndarray]
    trial: pd.Series


def build_comparison(exp: Experiment) -> Comparison | str:
    """Rebuild the prepared data, check its fingerprint, sample from the best checkpoint. A note string if it cannot."""
    from healthgym_core.checkpoint import generator_from_checkpoint, load_checkpoint
    from healthgym_core.errors import HealthGymError
    from healthgym_core.sampling import generate

    best = exp.best()
    if best is None:
        return note("No trial completed its epochs: there is no best checkpoint to sample from.")
    ckpt_path = checkpoint_file(exp.folder, best)
    if ckpt_path is None:
        return note(f"The best trial's checkpoint ({esc(best.get('checkpoint'))}) is not in the experiment folder "
                    "(remote storage? copy the trial folders next to study.json).", warn=True)
    args = exp.args
    try:
        data = study_data({**exp.record, "preset": exp.preset})
    except (HealthGymError, OSError, ValueError, KeyError) as e:
        return note(f"Could not rebuild the study's data ({esc(e)}); real-vs-synthetic figures skipped.", warn=True)
    ckpt = load_checkpoint(ckpt_path)
    gen, transform, meta = generator_from_checkpoint(ckpt, "cpu")
    n = int(args.get("export_patients") or 1000)
    soft = generate(gen, n, int(meta["n_months"]), int(args.get("seed") or 0)).numpy()
    fake = transform.decode(soft)
    return Comparison(data.schema, transform, (data.val_cohort.reals, data.val_cohort.codes), fake, best)


def real_vs_synthetic_html(exp: Experiment) -> str:
    log("real vs synthetic: rebuilding the data and sampling the best checkpoint")
    try:
        comp = build_comparison(exp)
    except Exception as e:  # noqa: BLE001
        print(f"warning: real vs synthetic: {type(e).__name__}: {e}", file=sys.stderr)
        comp = note(f"Real-vs-synthetic figures skipped ({esc(type(e).__name__)}: {esc(e)}).", warn=True)
    if isinstance(comp, str):
        return section("real-vs-synthetic", "Real vs synthetic patients", comp)
    n_real, n_fake = comp.real[0].shape[0], comp.fake[0].shape[0]
    intro = (f"<p>{n_fake} synthetic patients from the best trial {_describe_trial(exp, comp.trial)} (the same sample as "
             f"<code>synthetic_best.csv</code>) against the {n_real} held-out validation patients, "
             f"{comp.real[0].shape[1]} months each.</p>")
    parts = [
        intro,
        "<h3>Marginal distributions</h3>", guarded("marginals", lambda: marginals_figure(comp)),
        "<h3>Joint distribution</h3>", guarded("joint table", lambda: joint_table_html(comp)),
        "<h3>Correlations</h3>", guarded("correlations", lambda: correlations_html(comp)),
        "<h3>Example patients</h3>", guarded("trajectories", lambda: trajectories_figure(comp)),
    ]
    return section("real-vs-synthetic", "Real vs synthetic patients", "".join(parts))


def marginals_figure(comp: Comparison) -> str:
    from healthgym_core.plots import real_vs_synthetic

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "marginals.png"
        real_vs_synthetic(comp.schema, comp.real, comp.fake, out, title="Held-out validation patients vs synthetic")
        png = out.read_bytes()
    return image_html(png, "real vs synthetic marginal distributions",
                      "Pooled over patient-months. Reals on a log10 scale (densities), categoricals as shares.")


def _joint_variables(schema) -> tuple[int, int] | None:
    names = [v.name for v in schema.categoricals]
    if "Gender" in names and "Ethnic" in names:
        return names.index("Gender"), names.index("Ethnic")
    return (0, 1) if len(names) >= 2 else None


def joint_table_html(comp: Comparison) -> str:
    pair = _joint_variables(comp.schema)
    if pair is None:
        return note("The schema has fewer than two categorical variables: no joint table.")
    a, b = (comp.schema.categoricals[i] for i in pair)
    tables = {}
    for label, (_, codes) in (("Real", comp.real), ("Synthetic", comp.fake)):
        counts = np.zeros((a.num_classes, b.num_classes))
        np.add.at(counts, (codes[:, :, pair[0]].ravel(), codes[:, :, pair[1]].ravel()), 1)
        tables[label] = 100 * counts / max(counts.sum(), 1)
    head = "".join(f"<th>{esc(s)}</th>" for s in b.labels)
    rows = []
    for label, t in tables.items():
        for i, s in enumerate(a.labels):
            cells = "".join(f'<td style="background:rgba(74,144,200,{min(v / 100, 1) * 0.85 + 0.03:.2f})">{v:.1f}</td>'
                            for v in t[i])
            rows.append(f'<tr><th class="text">{esc(label)}, {esc(s)}</th>{cells}</tr>')
    corner = f"% of patient-months: {esc(a.name)} (rows) &times; {esc(b.name)}"
    table = (f'<table class="data"><thead><tr><th class="text">{corner}</th>{head}'
             f"</tr></thead><tbody>{''.join(rows)}</tbody></table>")
    real, fake = tables["Real"], tables["Synthetic"]
    missed = int(((real >= 1.0) & (fake < 0.1)).sum())
    text = (f"<p>Largest cell: {real.max():.1f}% of real patient-months, {fake.max():.1f}% of synthetic ones "
            f"(the upstream v1 demo collapsed to 93.9% against 60.2% in its data). Cells holding at least 1% of real "
            f"patient-months that the synthetic data all but misses (&lt; 0.1%): {missed} of {int((real >= 1.0).sum())}. "
            f"Total variation distance between the tables: {0.5 * np.abs(real - fake).sum():.1f} percentage points.</p>")
    return table + text


def _one_hot_labels(schema) -> list[str]:
    labels = [v.name for v in schema.reals]
    for v in schema.categoricals:
        labels += [f"{v.name[:12]}={str(s)[:14]}" for s in v.labels]
    return labels


def pearson_matrix(x: np.ndarray) -> np.ndarray:
    """Pearson r between the columns of x [N, K]; NaN where a column is constant."""
    x = x - x.mean(axis=0)
    sd = np.sqrt((x * x).mean(axis=0))
    ok = sd > 1e-12 * (1 + np.abs(x).max(axis=0))
    r = (x.T @ x) / len(x) / np.outer(np.where(ok, sd, 1), np.where(ok, sd, 1))
    r[~ok, :] = np.nan
    r[:, ~ok] = np.nan
    return np.clip(r, -1, 1)


def dynamic_correlations(series: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Health Gym trend and cycle correlation matrices of [P, T, V] series (the final evaluation's own)."""
    from healthgym_core.evaluation.final import dynamic_correlations as trend_and_cycle

    out = trend_and_cycle(np.asarray(series, dtype=np.float64))
    return out["trend"], out["cycle"]


def _series(reals: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Per-variable series as upstream correlates them: reals in their units, categoricals as their codes."""
    return np.concatenate([reals, codes.astype(np.float64)], axis=2)


def _l1(a: np.ndarray, b: np.ndarray) -> float:
    tri = np.tril(np.ones_like(a, dtype=bool), k=-1)
    m = tri & np.isfinite(a) & np.isfinite(b)
    return float(np.abs(a[m] - b[m]).mean()) if m.any() else math.nan


def _heatmap(ax: plt.Axes, r: np.ndarray, labels: list[str], title: str, annotate: bool) -> object:
    shown = np.where(np.triu(np.ones_like(r, dtype=bool), k=1), np.nan, r)
    cmap = plt.get_cmap("coolwarm").copy()
    cmap.set_bad("#eeeeee")
    im = ax.imshow(np.ma.masked_invalid(shown), cmap=cmap, vmin=-1, vmax=1)
    k = len(labels)
    size = 8 if k <= 10 else 7 if k <= 25 else 6
    ax.set_xticks(range(k), labels, rotation=90, fontsize=size)
    ax.set_yticks(range(k), labels, fontsize=size)
    ax.set_title(title, fontsize=10)
    if annotate:
        for i in range(k):
            for j in range(i + 1):
                if np.isfinite(shown[i, j]):
                    ax.text(j, i, f"{shown[i, j]:.2f}", ha="center", va="center", fontsize=7,
                            color="white" if abs(shown[i, j]) > 0.6 else "black")
    return im


def correlations_html(comp: Comparison) -> str:
    schema = comp.schema
    # static: Pearson over patient-months on the one-hot model-space columns
    static = [pearson_matrix(comp.transform.encode_arrays(r, c).reshape(-1, schema.width)) for r, c in (comp.real, comp.fake)]
    labels = _one_hot_labels(schema)
    fig, axes = plt.subplots(1, 2, figsize=(16, 8.4), layout="constrained")
    for ax, r, who in zip(axes, static, ("Real (validation)", "Synthetic")):
        im = _heatmap(ax, r, labels, f"Static correlation: {who}", annotate=len(labels) <= 10)
    fig.colorbar(im, ax=axes, shrink=0.7, label="Pearson r")
    fig.suptitle(f"Static correlations of the one-hot columns: mean |real - synthetic| = {_l1(*static):.3f}")
    out = figure_html(fig, "static correlations real vs synthetic",
                      "Pearson r over all patient-months of the model-space columns (reals after Box-Cox and min-max, "
                      "categories one-hot). Grey: undefined (a column that never varies); the mean |real - synthetic| is over "
                      "the pairs defined in both.")
    # trend and cycle: upstream's dynamic correlations
    names = [v.name for v in schema.variables]
    dyn = [dynamic_correlations(_series(r, c)) for r, c in (comp.real, comp.fake)]
    fig, axes = plt.subplots(2, 2, figsize=(12, 11), layout="constrained")
    for row, kind in enumerate(("Trend", "Cycle")):
        mats = [dyn[0][row], dyn[1][row]]
        for col, who in enumerate(("Real (validation)", "Synthetic")):
            im = _heatmap(axes[row][col], mats[col], names, f"{kind}: {who}", annotate=len(names) <= 10)
        axes[row][0].set_ylabel(f"{kind}: mean |real - synthetic| = {_l1(*mats):.3f}", fontsize=10)
    fig.colorbar(im, ax=axes, shrink=0.6, label="Fisher-z mean of within-patient r")
    out += figure_html(fig, "trend and cycle correlations real vs synthetic",
                       "Health Gym's dynamic correlations: per patient and variable a linear detrend (trend = fitted line, "
                       "cycle = residual), the within-patient Pearson r of each pair, averaged over patients by Fisher z "
                       "(weights n - 3). Categoricals enter as their codes, as upstream; pairs with a constant series "
                       "are skipped (grey: never defined; the mean |real - synthetic| is over the pairs defined in both). Trends "
                       "are lines, so their r saturates near +-1.")
    return out


def _trajectory_variables(schema) -> list[int]:
    names = [v.name for v in schema.reals]
    wanted = [names.index(n) for n in ("VL", "CD4") if n in names]
    return wanted or list(range(min(2, len(names))))


def trajectories_figure(comp: Comparison) -> str:
    idx = _trajectory_variables(comp.schema)
    if not idx:
        return note("The schema has no real-valued variables to draw over time.")
    k = TRAJECTORY_PATIENTS
    rng = np.random.default_rng(0)
    picks = [rng.choice(len(d[0]), size=min(k, len(d[0])), replace=False) for d in (comp.real, comp.fake)]
    fig, axes = plt.subplots(len(idx), 2, figsize=(12, 3.4 * len(idx)), squeeze=False, sharex=True, layout="constrained")
    for r, j in enumerate(idx):
        name = comp.schema.reals[j].name
        real_vals = comp.real[0][:, :, j]
        lo = max(real_vals[real_vals > 0].min() / 2 if (real_vals > 0).any() else 1e-2, 1e-3)
        both = []
        for c, ((reals, _), pick, who) in enumerate(zip((comp.real, comp.fake), picks, ("Real (validation)", "Synthetic"))):
            ax = axes[r][c]
            for i, p in enumerate(pick):
                y = np.clip(reals[p, :, j], lo, None)
                both.append(y)
                ax.plot(np.arange(len(y)), y, lw=1.3, color=plt.get_cmap("tab10")(i), label=f"patient {p}")
            ax.set_yscale("log")
            ax.set_title(f"{name}: {who}")
            ax.set_ylabel(f"{name} (log scale)")
            ax.grid(alpha=0.3, which="both")
        lim = (min(y.min() for y in both) / 1.3, max(y.max() for y in both) * 1.3)
        for ax in axes[r]:
            ax.set_ylim(*lim)
    for ax in axes[-1]:
        ax.set_xlabel("month")
    return figure_html(fig, "example patient trajectories",
                       f"{k} random held-out real patients and {k} random synthetic patients; both rows share each "
                       "variable's y axis (values at or below 0 drawn at half the smallest real value).")


def final_html(exp: Experiment) -> str:
    path = exp.folder / FINAL_SUMMARY
    if not path.is_file():
        return section("final", "Final evaluation", note(f"No final evaluation yet ({FINAL_SUMMARY} is written by the "
                                                         "final evaluation of the best trials)."))
    try:
        frame = pd.read_csv(path)
    except Exception as e:  # noqa: BLE001
        return section("final", "Final evaluation", note(f"{FINAL_SUMMARY} is not readable ({esc(e)}).", warn=True))
    extra = " Per-run numbers: <code>final_evaluation.csv</code>." if (exp.folder / "final_evaluation.csv").is_file() else ""
    return section("final", "Final evaluation",
                   f"<p>From <code>{FINAL_SUMMARY}</code> (held-out test patients).{extra}</p>" + table_html(frame))


# ---------------------------------------------------------------------------------------------------------------
# The page
# ---------------------------------------------------------------------------------------------------------------


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
    footer = (f'<p class="caption">Written by <code>study/report.py</code> on {time.strftime("%Y-%m-%d %H:%M:%S")} from '
              f"<code>{esc(exp.folder)}</code>.</p>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>Study {esc(exp.name)}</title>"
            f"<style>{CSS}</style></head><body>{''.join(parts)}{footer}<script>{SORT_JS}</script></body></html>\n")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python study/report.py",
                                description="Write one self-contained HTML report (figures embedded) of a study folder.")
    p.add_argument("experiment", help="the experiment folder (the one with study.json, e.g. experiments/curriculum)")
    p.add_argument("--out", default=None, help="the HTML file to write (default: EXPERIMENT/report.html)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    folder = Path(args.experiment).expanduser().resolve()
    exp = load_experiment(folder)
    out = Path(args.out).expanduser() if args.out else folder / "report.html"
    log(f"{len(exp.board)} trials in {folder}")
    page = render(exp)
    from healthgym_core.atomic import atomic_write

    atomic_write(out, lambda p: p.write_text(page, encoding="utf-8"))
    log(f"wrote {out} ({len(page) / 1e6:.1f} MB)")
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
