"""The dashboard's web server: Python's own threading HTTP server (no dependency, nothing to configure), listening on
127.0.0.1, every request checked for the token, only its own routes served (no path from a request ever reaches
the file system), and nothing written into the experiment folder but the exports a user asks for, atomically."""

from __future__ import annotations

import hmac
import json
import math
import re
import secrets
import socket
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd

from healthgym_core.errors import ConfigError, HealthGymError
from study.experiment import RANK_FLOOR, RANK_METRIC, TRIAL_ID, companion_metric, plan_schedule_text, spent_text
from study.leaderboard import collapse_summary
from study.live import figures, pages
from study.live.state import LiveStudy, LiveTrial, best, read_live
from study.reporting.html import esc, fmt

PLOTLY_JS = "plotly.min.js"
EXPORTS = "exports"  # the only folder the dashboard writes into, inside the experiment folder
MAX_PATIENTS = 5000
LINKS = {"TensorBoard": 6006, "optuna-dashboard": 8080, "Ray dashboard": 8265}
BOARD_COLS = [
    "status",
    "epochs",
    "role",
    "collapse",
    f"last_{RANK_METRIC}",
    "last_emd_feat",
    "last_fd_feat",
    "last_critic_gap",
    "last_wasserstein_gap",
    "last_coverage",
    "last_diversity_ratio",
    "last_joint_tvd",
    "g_steps",
    "lineage",
]


def plotly_js() -> bytes:
    import plotly

    return (Path(plotly.__file__).parent / "package_data" / PLOTLY_JS).read_bytes()


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


class NotFound(Exception):
    """A trial or checkpoint the folder does not hold (HTTP 404)."""


class Dashboard:
    """The state behind the pages: the folder, the token, the prepared data (built once, on first need)."""

    def __init__(self, folder: Path, token: str | None = None) -> None:
        self.folder = Path(folder).resolve()
        read_live(self.folder)  # refuse a non-study folder before serving anything
        self.token = check_token(token) if token is not None else secrets.token_urlsafe(24)
        self._data = None
        self._lock = threading.Lock()
        self._sampling = threading.Lock()  # one cohort sampled at a time: a flood of pages costs one core, not all
        self._js = None

    # -- data ----------------------------------------------------------------------------------------------------

    def study(self) -> LiveStudy:
        return read_live(self.folder)

    def data(self):
        with self._lock:
            if self._data is None:
                from study.experiment import study_data

                study = self.study()
                self._data = study_data({**study.record, "preset": study.record.get("preset", {})})
            return self._data

    def trial(self, study: LiveStudy, trial_id: str) -> LiveTrial:
        if trial_id not in study.trials:
            raise NotFound(f"no such trial {trial_id[:40]!r}")
        return study.trials[trial_id]

    # -- pieces of pages ---------------------------------------------------------------------------------------

    def header(self, study: LiveStudy) -> str:
        source = str(study.record.get("data", {}).get("source", "unknown"))
        simulated = "not the health gym dataset" in source.lower() or source.lower().startswith("simulated")
        space = study.record.get("space", {})
        spent = int(study.board["g_steps"].sum()) if "g_steps" in study.board else 0
        epochs = int(study.board["epochs"].sum()) if "epochs" in study.board else 0
        counts = study.board["status"].value_counts().to_dict() if len(study.board) else {}
        badges = "".join(f'<span class="badge {s}">{n} {s}</span>' for s, n in counts.items())
        from study.base import describe as describe_base

        b = best(study)
        floor = float(b[RANK_FLOOR]) if b is not None and RANK_FLOOR in b else math.nan
        up = study.board[study.board.get("upstream", pd.Series(False, index=study.board.index)).astype(bool)]
        headline = "No trial has completed its epochs yet."
        if b is not None:
            headline = (
                f"Best completed trial <b>{esc(b['trial_id'])}</b>: final {RANK_METRIC} "
                f"<b>{fmt(b[f'last_{RANK_METRIC}'])}</b> (real-vs-real floor {fmt(floor)})"
            )
            if len(up):
                u = up.iloc[0]
                headline += (
                    f"; the upstream configuration ({esc(u['trial_id'])}, {esc(u['status'])}): "
                    f"{fmt(u[f'last_{RANK_METRIC}'])}"
                )
            headline += "."
        collapse = collapse_summary(study.board, study.record.get("base")) if "collapse" in study.board else ""
        factors = "<br>".join(f"<code>{esc(f.describe())}</code>: {esc(f.why)}" for f in study.factors) or "none"
        facts = [
            ("search space", f"<code>{esc(space.get('name', '?'))}</code>: {esc(space.get('description', ''))}"),
            ("factors", factors),
            ("base", esc(describe_base(study.record["base"])) if study.record.get("base") else "upstream"),
            (
                "scheduler",
                f"{esc(plan_schedule_text(study.plan))}; ranking metric <code>{RANK_METRIC}</code>",
            ),
            (
                "budget spent",
                f"{spent_text(epochs, spent, study.plan.budget)}; up to {study.max_epochs} epochs a trial",
            ),
            ("trials", badges),
        ]
        long_runs = self.long_runs_html()
        if long_runs:
            facts.append(("trained long", long_runs))
        dl = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts)
        cls = "simulated" if simulated else "real"
        warn = f'<div class="banner simulated">{esc(collapse)}</div>' if collapse else ""
        if study.skipped:
            warn += (
                '<div class="banner simulated">Left out of a damaged experiment folder: '
                + "; ".join(esc(x) for x in study.skipped[:10])
                + (f" (and {len(study.skipped) - 10} more)" if len(study.skipped) > 10 else "")
                + "</div>"
            )
        return (
            f'<div class="banner {cls}">Data: {esc(source)}</div><h1>Study <code>{esc(study.folder.name)}</code></h1>'
            f'{warn}<p class="lead">{headline}</p><dl class="facts">{dl}</dl>'
        )

    def board_html(self, study: LiveStudy) -> str:
        b = study.board
        names = [f.name for f in study.factors]
        cols = [c for c in dict.fromkeys([*BOARD_COLS[:4], *names, *BOARD_COLS[4:]]) if c in b]
        if "lineage" in cols and not b["lineage"].astype(bool).any():
            cols.remove("lineage")
        head = '<th>compare</th><th class="text">trial</th>' + "".join(f"<th>{esc(c)}</th>" for c in cols)
        rows = []
        for _, r in b.iterrows():
            tid = str(r["trial_id"])
            classes = [f"status-{r['status']}"]
            if bool(r.get("upstream", False)):
                classes.append("upstream")
            if r.get("role") == "base":
                classes.append("role-base")
            cells = [
                f'<td><input type="checkbox" class="pick" value="{esc(tid)}"></td>',
                f'<td class="text" data-v="{esc(tid)}"><a class="trial" data-href="/trial/{esc(tid)}" '
                f'href="#">{esc(tid)}</a></td>',
            ]
            for c in cols:
                v = r[c]
                raw = "" if v is None or (isinstance(v, float) and math.isnan(v)) else v
                extra = f' class="{esc(v)}"' if c == "collapse" else ""
                cells.append(f'<td{extra} data-v="{esc(raw)}">{esc(fmt(v))}</td>')
            rows.append(f'<tr class="{" ".join(classes)}">{"".join(cells)}</tr>')
        compare = (
            "<p><button onclick=\"const ids=[...document.querySelectorAll('input.pick:checked')].map(x=>x.value)"
            ".slice(0,3);if(ids.length)location.href=link('/compare?ids='+ids.join(','))\">compare the ticked "
            'trials</button> <span class="muted">highlighted: upstream; blue edge: the base point; green: '
            "running; grey: pruned</span></p>"
        )
        return (
            compare + f'<div class="scroll"><table class="data sortable"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></div>"
        )

    def long_runs_html(self) -> str:
        """The study's winners trained long (study/finalize.py), each with a link to its cohort's card."""
        from study.long_runs import TABLE

        out = []
        for table in sorted(self.folder.glob(f"long-e*/{TABLE}")):
            epochs = table.parent.name.removeprefix("long-e")
            try:
                runs = pd.read_csv(table)
            except (OSError, ValueError):
                continue
            links = [
                f'<a class="card" href="#" data-href="/long/{esc(epochs)}/{esc(r["trial_id"])}">{esc(r["trial_id"])} '
                f"({esc(r.get('role', ''))}, best at epoch {esc(fmt(r.get('best_epoch')))})</a>"
                for _, r in runs.iterrows()
                if isinstance(r.get("card"), str)
            ]
            if links:
                out.append(f"to {esc(epochs)} epochs: " + ", ".join(links))
        return "<br>".join(out)

    def long_card(self, epochs: str, trial_id: str) -> bytes:
        """The card of a long run's cohort (long-eN/synthetic_TRIAL.card.html), by validated names only."""
        if not epochs.isdigit() or not re.fullmatch(TRIAL_ID, trial_id):
            raise NotFound("no such long run")
        page = self.folder / f"long-e{int(epochs)}" / f"synthetic_{trial_id}.card.html"
        if not page.is_file() or page.is_symlink():
            raise NotFound(f"no card for {trial_id} trained to {int(epochs)} epochs")
        return page.read_bytes()

    def links_html(self) -> str:
        found = [f'<a href="http://127.0.0.1:{p}/">{n}</a>' for n, p in LINKS.items() if port_open(p)]
        return f"<p>Also running: {' '.join(found)}</p>" if found else ""

    def overview(self) -> dict:
        study = self.study()
        return {
            "header": self.header(study),
            "board": self.board_html(study),
            "links": self.links_html(),
            "curves": figures.curves(study, study.metric),
            "curves_rank": figures.curves(study, companion_metric(study.metric)),
            "best": figures.best_so_far(study),
            "factors": figures.factors(study),
            "rungs": figures.rung_decisions(study),
        }

    def trial_json(self, trial_id: str) -> dict:
        study = self.study()
        t = self.trial(study, trial_id)
        row = study.board[study.board["trial_id"].astype(str) == trial_id]
        lineage = row["lineage"].iloc[0] if len(row) and "lineage" in row and row["lineage"].iloc[0] else ""
        status = row["status"].iloc[0] if len(row) else t.status
        settings = "".join(f"<dt>{esc(k)}</dt><dd>{esc(fmt(v))}</dd>" for k, v in t.config.items())
        last = t.history.iloc[-1] if len(t.history) else {}
        facts = "".join(
            f"<dt>{esc(m)}</dt><dd>{esc(fmt(last.get(m)))}</dd>" for m in figures.HISTORY_METRICS if m in t.history
        )
        header = (
            f'<h1>Trial <code>{esc(trial_id)}</code> <span class="badge {esc(status)}">{esc(status)}</span></h1>'
            f'<p class="lead">{esc(figures.settings_text(study, t))}</p>'
            + (f"<p><b>Lineage</b> (population-based training): {esc(lineage)}</p>" if lineage else "")
            + f'<div class="cols"><div><h3>Settings</h3><dl class="facts">{settings}</dl></div>'
            f'<div><h3>Latest metrics</h3><dl class="facts">{facts}</dl></div></div>'
        )
        epochs = int(t.history["epoch"].max()) if len(t.history) else 0
        return {"header": header, "history": figures.history(t), "checkpoints": t.checkpoints, "epochs": epochs}

    def dynamics(self, trial_id: str, first: int | None, last: int | None) -> dict:
        return figures.dynamics(self.trial(self.study(), trial_id), first, last)

    def _sample(self, trial_id: str, checkpoint: str, n: int):
        study = self.study()
        t = self.trial(study, trial_id)
        path = t.checkpoint(checkpoint)
        if path is None:
            raise NotFound(f"no such checkpoint {checkpoint[:40]!r}")
        return study, t, path, max(10, min(int(n), MAX_PATIENTS))

    def patients(self, trial_id: str, checkpoint: str, n: int) -> str:
        """Real vs synthetic from one checkpoint, with the report's own figures."""
        from healthgym_core.checkpoint import generator_from_checkpoint, load_checkpoint
        from healthgym_core.sampling import generate
        from study.reporting.html import guarded
        from study.reporting.patients import (
            Comparison,
            correlations_html,
            fd_feat_figure,
            joint_table_html,
            marginals_figure,
            trajectories_figure,
        )

        study, t, path, n = self._sample(trial_id, checkpoint, n)
        data = self.data()
        with self._sampling:
            gen, transform, meta = generator_from_checkpoint(load_checkpoint(path), "cpu")
            soft = generate(gen, n, int(meta["n_months"]), study.plan.seed).numpy()
            fake = transform.decode(soft, study.plan.seed)  # the cohort its download holds
        comp = Comparison(
            data.schema,
            transform,
            (data.val_cohort.reals, data.val_cohort.codes),
            fake,
            pd.Series({"trial_id": trial_id}),
            data.features,
        )
        intro = (
            f"<p>{n} synthetic patients from {esc(checkpoint)} (epoch {meta['epoch']}) against the "
            f"{comp.real[0].shape[0]} validation patients.</p>"
        )
        return (
            intro
            + "<h3>Marginal distributions</h3>"
            + guarded("marginals", lambda: marginals_figure(comp))
            + "<h3>Gender x Ethnic</h3>"
            + guarded("joint", lambda: joint_table_html(comp))
            + "<h3>Correlations</h3>"
            + guarded("correlations", lambda: correlations_html(comp))
            + "<h3>Example patients</h3>"
            + guarded("trajectories", lambda: trajectories_figure(comp))
            + "<h3>Where fd_feat comes from</h3>"
            + guarded("fd_feat terms", lambda: fd_feat_figure(comp))
        )

    def export(self, trial_id: str, checkpoint: str, n: int) -> tuple[str, bytes]:
        """The synthetic cohort as the input's own CSV, written atomically under EXPERIMENT/exports with its card
        (NAME.card.json, NAME.card.html) and returned. One file per trial and checkpoint (the latest size asked for
        replaces the earlier), never through a link."""
        from healthgym_core.sampling import export_cohort

        study, t, path, n = self._sample(trial_id, checkpoint, n)
        folder = self.folder / EXPORTS
        if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
            raise ConfigError(f"{folder} is a link or a file; the dashboard writes exports only into a plain folder")
        name = safe_file_name(f"synthetic_{trial_id}_{checkpoint}.csv")
        out = folder / name
        if out.is_symlink():
            out.unlink()
        data = self.data()
        with self._sampling:
            made_by = {"study": str(self.folder), "trial_id": trial_id}
            export_cohort(path, n, out, data, study.plan.seed, made_by)
        return safe_file_name(f"synthetic_{trial_id}_{checkpoint}_{n}.csv"), out.read_bytes()

    def card(self, trial_id: str, checkpoint: str, n: int) -> bytes:
        """The card of the cohort `export` writes for this trial, checkpoint and size (exported afresh)."""
        from healthgym_core.evaluation.card import card_paths

        self.export(trial_id, checkpoint, n)
        out = self.folder / EXPORTS / safe_file_name(f"synthetic_{trial_id}_{checkpoint}.csv")
        return card_paths(out)[1].read_bytes()

    def js(self) -> bytes:
        if self._js is None:
            self._js = plotly_js()
        return self._js


MIN_TOKEN = 16  # characters; the default token has 32
TOKEN_IN_URL = re.compile(r"(token=)[^&\s\"]*", re.IGNORECASE)


def check_token(token: str) -> str:
    """A token given by the user: long enough not to be guessed, printable (it travels in URLs and cookies)."""
    if len(token) < MIN_TOKEN or not token.isprintable() or any(c.isspace() for c in token):
        raise ConfigError(f"--token must be at least {MIN_TOKEN} printable characters without spaces")
    return token


def safe_file_name(name: str) -> str:
    """A name for a download or export: letters, digits, '.', '_' and '-' only (anything else becomes '_')."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def _token_bytes(token: str) -> bytes:
    return token.encode("utf-8", "surrogateescape")


class Handler(BaseHTTPRequestHandler):
    app: Dashboard  # set on the subclass `serve` makes
    server_version = "healthgym-dashboard"
    timeout = 20  # seconds a connection may sit idle or half-sent before it is closed

    def log_message(self, fmt_: str, *args) -> None:  # quiet: one line per error only, never the token
        if len(args) > 1 and str(args[1]).startswith(("4", "5")):
            super().log_message(fmt_, *(TOKEN_IN_URL.sub(r"\1<hidden>", str(a)) for a in args))

    def log_error(self, fmt_: str, *args) -> None:
        super().log_message(fmt_, *(TOKEN_IN_URL.sub(r"\1<hidden>", str(a)) for a in args))

    def _send(self, code: int, body: bytes, kind: str, headers: dict | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, obj) -> None:
        self._send(200, json.dumps(obj, default=_jsonable).encode(), "application/json")

    def _authorised(self, query: dict) -> bool:
        """The token from the query or the cookie (percent-encoded there), compared as bytes in constant time."""
        given = (query.get("token") or [""])[0]
        if not given:
            for part in self.headers.get("Cookie", "").split(";"):
                k, _, v = part.strip().partition("=")
                if k == "hg_token":
                    given = urllib.parse.unquote(v)
        return hmac.compare_digest(_token_bytes(given), _token_bytes(self.app.token))

    def do_GET(self) -> None:  # noqa: N802 - the http.server interface
        """Every request gets an answer: 401 without the token, 404 for what is not there, 400 for a bad value,
        500 (with the kind of fault, logged) for a folder damaged in a way nothing checked."""
        try:
            url = urllib.parse.urlsplit(self.path)
            query = urllib.parse.parse_qs(url.query, errors="surrogateescape")
            if not self._authorised(query):
                self._send(401, b"401: open the address the dashboard printed (it carries the token)\n", "text/plain")
                return
            parts = [p for p in url.path.split("/") if p]
            self._route(parts, query)
        except NotFound as e:
            self._send(404, f"404: {e}\n".encode(errors="replace"), "text/plain")
        except (HealthGymError, ValueError) as e:
            self._send(400, f"400: {str(e)[:300]}\n".encode(errors="replace"), "text/plain")
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception as e:  # noqa: BLE001 - never leave a request without a response
            self.log_error("%s on %s", type(e).__name__, self.path)
            self._send(
                500, f"500: the experiment folder could not be read ({type(e).__name__})\n".encode(), "text/plain"
            )

    def _route(self, parts: list[str], q: dict) -> None:
        app = self.app
        cookie = {"Set-Cookie": f"hg_token={urllib.parse.quote(app.token, safe='')}; HttpOnly; SameSite=Strict; Path=/"}

        def one(key: str, default: str | None = None) -> str | None:
            return (q.get(key) or [default])[0]

        if not parts:
            self._send(200, pages.overview_page().encode(), "text/html; charset=utf-8", cookie)
        elif parts == ["static", PLOTLY_JS]:
            self._send(200, app.js(), "application/javascript", {"Cache-Control": "max-age=86400"})
        elif len(parts) == 2 and parts[0] == "trial":
            app.trial(app.study(), parts[1])
            self._send(200, pages.trial_page().encode(), "text/html; charset=utf-8", cookie)
        elif parts == ["compare"]:
            self._send(200, pages.compare_page().encode(), "text/html; charset=utf-8", cookie)
        elif parts == ["api", "version"]:
            s = app.study()
            self._json({"version": s.version, "finished": s.finished, "trials": len(s.trials)})
        elif parts == ["api", "overview"]:
            self._json(app.overview())
        elif len(parts) == 3 and parts[:2] == ["api", "trial"]:
            self._json(app.trial_json(parts[2]))
        elif len(parts) == 4 and parts[:2] == ["api", "trial"] and parts[3] == "dynamics":
            first, last = one("first"), one("last")
            self._json(app.dynamics(parts[2], int(first) if first else None, int(last) if last else None))
        elif len(parts) == 4 and parts[:2] == ["api", "trial"] and parts[3] == "patients":
            html = app.patients(parts[2], one("checkpoint", ""), int(one("n", "1000")))
            self._send(200, html.encode(), "text/html; charset=utf-8")
        elif len(parts) == 3 and parts[0] == "long":
            self._send(200, app.long_card(parts[1], parts[2]), "text/html; charset=utf-8")
        elif len(parts) == 2 and parts[0] == "card":
            page = app.card(parts[1], one("checkpoint", ""), int(one("n", "1000")))
            self._send(200, page, "text/html; charset=utf-8")
        elif len(parts) == 2 and parts[0] == "download":
            name, body = app.export(parts[1], one("checkpoint", ""), int(one("n", "1000")))
            self._send(200, body, "text/csv", {"Content-Disposition": f'attachment; filename="{name}"'})
        else:
            self._send(404, b"404: no such page\n", "text/plain")


def _jsonable(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return None if not math.isfinite(float(o)) else float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def serve(
    folder: Path, port: int = 0, host: str = "127.0.0.1", token: str | None = None
) -> tuple[ThreadingHTTPServer, str]:
    """Start the server (port 0: a free one); returns it and the address with the token."""
    app = Dashboard(folder, token)
    handler = type("BoundHandler", (Handler,), {"app": app})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    address = f"http://{host}:{server.server_address[1]}/?token={urllib.parse.quote(app.token, safe='')}"
    return server, address
