"""study/report.py: a self-contained HTML report of a study, checked as text and in a real headless Chromium.

The browser is driven over the Chrome DevTools protocol (aiohttp, which Ray already brings): every script error,
console error and network request of the page is recorded, images must decode, and a header click must sort the
leaderboard. Chromium comes from the system (Debian: apt-get install chromium); without it the browser test is
skipped with a reason, and nothing is installed here.
"""

from __future__ import annotations

import asyncio
import base64
import html
import json
import re
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection

from healthgym_core.evaluation import dependence
from healthgym_core.evaluation.collapse import FAITHFUL
from study import report as report_mod
from study.experiment import RANK_METRIC, RUNS_TABLE, SUMMARY_TABLE
from study.reporting.final import PANELS, final_figure, final_html
from study.reporting.search import dynamics_windows
from tests.browser import CHROMIUM, Browser, Session
from tests.study_helpers import ROOT, env, study

REPORT = [sys.executable, str(ROOT / "study" / "report.py")]
DATA_IMG = re.compile(r'<img[^>]*\ssrc="data:image/png;base64,([A-Za-z0-9+/=]+)"')


async def _inspect(port: int, page: Path, width: int, height: int) -> dict:
    import aiohttp

    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}/json/list") as r:
            target = next(t for t in await r.json() if t["type"] == "page")
        async with http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            s = Session(ws)
            for domain in ("Runtime", "Page", "Log", "Network"):
                await s.call(f"{domain}.enable")
            await s.call(
                "Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False
            )
            url = page.resolve().as_uri()
            await s.call("Page.navigate", url=url)
            end = time.monotonic() + 60
            while not await s.js(f"location.href === {json.dumps(url)} && document.readyState === 'complete'"):
                assert time.monotonic() < end, "the report did not finish loading"
                await asyncio.sleep(0.2)
            out = {
                "images": await s.js(
                    "Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight])"
                ),
                "rows": await s.js(
                    "Array.from(document.querySelectorAll('#leaderboard tbody tr')).map(r => r.className)"
                ),
                "dom": await s.js("document.documentElement.outerHTML"),
            }
            # click the final-fd_feat header twice: ascending, then descending
            heads, rows = (
                "document.querySelectorAll('#leaderboard thead th')",
                "document.querySelectorAll('#leaderboard tbody tr')",
            )
            col = await s.js(f"Array.from({heads}).findIndex(h => h.textContent === 'last_fd_feat')")
            read = f"Array.from({rows}).map(r => r.cells[{col}].getAttribute('data-v'))"
            click = f"{heads}[{col}].click()"
            await s.js(click)
            out["ascending"] = await s.js(read)
            await s.js(click)
            out["descending"] = await s.js(read)
            await s.js("window.scrollTo(0, 0)")
            shot = await s.call("Page.captureScreenshot", format="png")
            out["screenshot"] = base64.b64decode(shot["data"])
            out["exceptions"] = [e["exceptionDetails"] for e in s.of("Runtime.exceptionThrown")]
            out["console_errors"] = [
                e for e in s.of("Runtime.consoleAPICalled") if e.get("type") in ("error", "assert")
            ]
            out["log_errors"] = [e["entry"] for e in s.of("Log.entryAdded") if e["entry"].get("level") == "error"]
            out["requests"] = [e["request"]["url"] for e in s.of("Network.requestWillBeSent")]
            return out


def inspect_in_chromium(page: Path, profile: Path, width: int = 1400, height: int = 2400) -> dict:
    """Load `page` in headless Chromium; what the page did, its DOM after scripts, a screenshot and Chromium's log."""
    browser = Browser(profile, width, height)
    try:
        result = asyncio.run(asyncio.wait_for(_inspect(browser.port(), page, width, height), 120))
    finally:
        browser.close()
    result["chromium_log"] = browser.log.read_text(errors="replace")
    return result


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


# ---------------------------------------------------------------------------------------------------------------
# The smoke study and its report
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def experiment(tmp_path_factory) -> Path:
    """A smoke study, then moved elsewhere: the leaderboard's absolute paths no longer exist, as after a copy."""
    storage = tmp_path_factory.mktemp("report_study")
    r = study(
        "--space",
        "curriculum",
        "--smoke",
        "--num-samples",
        3,
        "--max-epochs",
        2,
        "--grace-period",
        1,
        "--storage",
        storage,
        "--no-dashboard",
    )
    assert r.returncode == 0, r.stderr[-4000:]
    moved = tmp_path_factory.mktemp("moved") / "curriculum"
    shutil.move(storage / "curriculum", moved)
    # what a final evaluation will write; its columns are not fixed, so any table must render
    pd.DataFrame(
        {"trial_id": ["t1", "t2"], "metric": ["fd_feat", "mmd2"], "value": [1.23456, 0.5], "floor": [0.1, None]}
    ).to_csv(moved / "final_summary.csv", index=False)
    return moved


@pytest.fixture(scope="module")
def written(experiment) -> tuple[Path, subprocess.CompletedProcess]:
    figures = experiment.parent / "figures"
    r = subprocess.run(
        [*REPORT, str(experiment), "--figures", str(figures)], capture_output=True, text=True, timeout=600, env=env()
    )
    return experiment / "report.html", r


@pytest.mark.slow
def test_report_is_one_self_contained_file(experiment, written):
    page, r = written
    assert r.returncode == 0, r.stderr[-4000:]
    assert "warning:" not in r.stderr, r.stderr  # every section drew
    assert page.is_file()
    text = page.read_text(encoding="utf-8")
    # nothing loaded from elsewhere: no remote src/href, no remote CSS
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", text, re.I)
    assert not re.search(r"url\(\s*['\"]?\s*(?:https?:)?//|@import", text, re.I)
    images = DATA_IMG.findall(text)
    assert len(images) >= 6
    for data in images:
        assert png_size(base64.b64decode(data))[0] > 100
    record = json.loads((experiment / "study.json").read_text())
    assert html.escape(record["data"]["source"]) in text
    assert "NOT the Health Gym dataset" in text
    assert record["data"]["fingerprint"] in text
    board = pd.read_parquet(experiment / "leaderboard.parquet")
    assert not Path(board["checkpoint"].iloc[0]).exists()  # the recorded paths are stale after the move ...
    assert "Static correlations" in text or "static correlations" in text  # ... yet the best checkpoint was found
    assert 'id="leaderboard"' in text and 'class="data sortable"' in text
    first_screen = text[: text.index('id="leaderboard"')]  # the exported cohort's verdict leads, with its card linked
    assert 'href="synthetic_best.card.html"' in first_screen
    assert "NOT YET FAITHFUL" in first_screen or "meets all" in first_screen
    for trial in board["trial_id"]:
        assert f'data-v="{trial}"' in text
    assert text.count('class="status-') == len(board)
    assert ("upstream" in text) and re.search(r'<tr class="status-\w+ upstream">', text)
    final = text[text.index('id="final"') :]
    assert "mmd2" in final and "1.235" in final and "<table" in final
    # --figures: every embedded figure once more as a PNG file, byte for byte, named from its description
    files = sorted((experiment.parent / "figures").glob("*.png"))
    assert len(files) == len(images)
    assert sorted(f.read_bytes() for f in files) == sorted(base64.b64decode(d) for d in images)
    assert (experiment.parent / "figures" / f"best_{RANK_METRIC}_so_far.png").is_file()


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="needs chromium on PATH (Debian: apt-get install -y chromium)")
def test_report_in_headless_chromium(experiment, written, tmp_path):
    page, r = written
    assert r.returncode == 0, r.stderr[-4000:]
    seen = inspect_in_chromium(page, tmp_path / "profile")
    assert seen["exceptions"] == [], seen["exceptions"]
    assert seen["console_errors"] == [], seen["console_errors"]
    assert seen["log_errors"] == [], seen["log_errors"]
    assert "Uncaught" not in seen["chromium_log"]
    assert all(u.startswith(("file:", "data:")) for u in seen["requests"]), seen["requests"]
    # every embedded figure decodes in the browser
    assert len(seen["images"]) >= 6
    assert all(done and w > 100 and h > 50 for done, w, h in seen["images"]), seen["images"]
    assert seen["dom"].count("<img") == len(seen["images"])
    # the leaderboard: one row per trial, statuses as classes, the upstream row highlighted
    board = pd.read_parquet(experiment / "leaderboard.parquet")
    assert len(seen["rows"]) == len(board)
    assert [c.split()[0] for c in seen["rows"]] == [f"status-{s}" for s in board["status"]]
    assert sum("upstream" in c.split() for c in seen["rows"]) == int(board["upstream"].sum())
    for trial in board["trial_id"]:
        assert trial in seen["dom"]
    # clicking a header sorts by number, blanks last
    values = [float(v) for v in seen["ascending"] if v]
    assert values == sorted(values) and len(values) == board["last_fd_feat"].notna().sum()
    values = [float(v) for v in seen["descending"] if v]
    assert values == sorted(values, reverse=True)
    # a screenshot of the first screen
    assert png_size(seen["screenshot"]) == (1400, 2400)
    assert len(seen["screenshot"]) > 50_000
    (tmp_path / "report.png").write_bytes(seen["screenshot"])


# ---------------------------------------------------------------------------------------------------------------
# Errors and the small pieces (fast)
# ---------------------------------------------------------------------------------------------------------------


def _run_main(argv, capsys) -> tuple[int, str]:
    from healthgym_core import cli

    code = cli.run(report_mod.main, argv)
    return code, capsys.readouterr().err


def test_not_a_study_folder_is_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "something.txt").write_text("x")
    code, err = _run_main([str(tmp_path)], capsys)
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and "study.json" in err
    code, err = _run_main([str(tmp_path / "missing")], capsys)
    assert code == 2 and err.startswith("error: ") and "no such folder" in err


def test_study_without_leaderboard_is_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "study.json").write_text("{}")
    code, err = _run_main([str(tmp_path)], capsys)
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and "leaderboard" in err


def test_script_error_path(tmp_path):
    r = subprocess.run([*REPORT, str(tmp_path)], capture_output=True, text=True, timeout=120, env=env())
    assert r.returncode == 2
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, r.stderr


def test_final_evaluation_draws_every_run(tmp_path):
    """The final evaluation's picture from the committed curriculum tables: one dot per run and panel, the
    references first, the real floor and the targets drawn."""
    for table in (RUNS_TABLE, SUMMARY_TABLE):
        shutil.copy(ROOT / "docs" / "results" / f"curriculum.{table}.csv", tmp_path / f"{table}.csv")
    runs = pd.read_csv(tmp_path / f"{RUNS_TABLE}.csv")
    summary = pd.read_csv(tmp_path / f"{SUMMARY_TABLE}.csv")
    fig = final_figure(runs, summary)
    axes = fig.axes
    drawn = [p for p in PANELS if p != "energy_feat"]  # the committed evaluation was made before energy_feat existed
    assert [a.get_title().splitlines()[0] for a in axes] == drawn
    assert [t.get_text() for t in axes[0].get_xticklabels()] == ["upstream", "base", "rank1"]
    emd = axes[0]
    dots = np.concatenate([c.get_offsets()[:, 1] for c in emd.collections if isinstance(c, PathCollection)])
    assert sorted(np.round(dots, 6)) == sorted(np.round(runs["emd_feat"].dropna(), 6)) and len(dots) == 15
    floor = summary.set_index("metric").at["emd_feat", "real_floor"]
    assert any(np.allclose(line.get_ydata(), floor) for line in emd.get_lines())
    coverage = axes[drawn.index("coverage")]
    assert any(np.allclose(line.get_ydata(), FAITHFUL["coverage"][1]) for line in coverage.get_lines())
    page = final_html(tmp_path)
    assert len(DATA_IMG.findall(page)) == 1 and "<table" in page
    (tmp_path / f"{RUNS_TABLE}.csv").unlink()  # the summary alone: the table, no figure
    page = final_html(tmp_path)
    assert not DATA_IMG.findall(page) and "<table" in page


def test_dynamic_correlations_follow_the_health_gym_recipe():
    t = np.arange(60, dtype=float)
    wave = np.sin(t / 3)
    a = 2 * t + wave
    b = -t - wave  # opposite trend, opposite cycle
    c = np.full_like(t, 4.0)  # constant: every pair with it is skipped
    x = np.stack([np.stack([a, b, c], axis=1)] * 3)  # 3 patients [P, T, V]
    dyn = dependence.dynamic_correlations(x)
    trend, cycle = dyn["trend"], dyn["cycle"]
    assert trend[0, 1] == pytest.approx(-1, abs=1e-5)
    assert cycle[0, 1] == pytest.approx(-1, abs=1e-5)
    assert cycle[0, 0] == pytest.approx(1, abs=1e-5)
    assert np.isnan(trend[0, 2]) and np.isnan(cycle[2, 2])


def test_pearson_matrix_marks_constant_columns():
    rng = np.random.default_rng(0)
    x = np.column_stack([rng.normal(size=200), np.zeros(200), rng.normal(size=200)])
    r = dependence.pearson(x)
    assert np.isnan(r[1]).all() and np.isnan(r[:, 1]).all()
    assert r[0, 2] == pytest.approx(np.corrcoef(x[:, 0], x[:, 2])[0, 1])


def test_dynamics_windows():
    assert dynamics_windows(1) == [(1, 1)]
    assert dynamics_windows(4) == [(1, 2), (3, 4)]
    assert dynamics_windows(200) == [(1, 20), (181, 200)]


def test_the_trial_legend_marks_pruning_only_where_a_trial_was_pruned():
    from types import SimpleNamespace

    from study.reporting.plotting import trial_styles

    def labels(statuses: list[str]) -> list[str]:
        board = pd.DataFrame({"trial_id": [f"t{i}" for i in range(len(statuses))], "status": statuses, "lr_g": 1e-4})
        exp = SimpleNamespace(board=board, factors=["lr_g", "lr_d"], upstream=lambda: None)
        return [h.get_label() for h in trial_styles(exp)[1]]

    assert "pruned (x: ASHA stopped it)" in labels(["completed", "pruned"])
    pbt = labels(["completed", "completed"])  # PBT and no pruning run every trial to the end
    assert "completed" in pbt and not any("pruned" in label for label in pbt)
