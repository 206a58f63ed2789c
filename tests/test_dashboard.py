"""The live study dashboard, in a real headless Chromium: it follows a running study, the leaderboard sorts, a
trial page opens with its figures and no script error, the download is a cohort the validator accepts, and
requests without the token get 401."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from study.live.state import read_live
from tests.browser import CHROMIUM, Browser, errors, new_page, wait_js
from tests.study_helpers import ROOT, env, kill_session

DASHBOARD = [sys.executable, str(ROOT / "study" / "dashboard.py")]
SHOTS = os.environ.get("HEALTHGYM_SCREENSHOTS")  # a folder: also save the screenshots there (docs/)


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def start_dashboard(folder: Path) -> tuple[subprocess.Popen, str]:
    p = subprocess.Popen(
        [*DASHBOARD, str(folder)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
        start_new_session=True,
    )
    line = p.stdout.readline()
    m = re.search(r"(http://127\.0\.0\.1:\d+)/\?token=(\S+)", line)
    assert m, line + p.stderr.read()
    return p, m.group(0)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """A smoke study with the live page beside it; yields (study process, page address, experiment folder)."""
    store = tmp_path_factory.mktemp("dash")
    cmd = [
        sys.executable,
        str(ROOT / "study" / "run.py"),
        "--space",
        "critic",
        "--smoke",
        "--num-samples",
        "4",
        "--max-epochs",
        "8",
        "--max-concurrent",
        "1",
        "--no-pruning",
        "--storage",
        str(store),
        "--no-dashboard",
        "--live-page",
    ]
    p = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(), start_new_session=True
    )
    address = None
    end = time.monotonic() + 240
    while time.monotonic() < end and address is None:
        line = p.stdout.readline()
        m = re.search(r"live study page: (\S+)", line)
        address = m.group(1) if m else None
        assert line or p.poll() is None, p.stderr.read()[-3000:]
    assert address, "no live page address"
    yield p, address, store / "critic"
    kill_session(p.pid)


async def _follow_and_inspect(port: int, address: str, folder: Path, study: subprocess.Popen, shots: Path) -> dict:
    import aiohttp

    out: dict = {}
    async with aiohttp.ClientSession() as http:
        ws, s = await new_page(port, http)
        try:
            await s.call("Page.navigate", url=address)
            count = "document.querySelectorAll('#board tbody tr:not(.status-pending)').length"
            first = await wait_js(s, count, 240)
            seen = [first]
            end = time.monotonic() + 400
            while study.poll() is None and time.monotonic() < end:  # the page updates itself as trials start
                seen.append(await s.js(count))
                await asyncio.sleep(1)
            await asyncio.sleep(3)
            seen.append(await s.js(count))
            out["counts"], out["errors_live"] = seen, errors(s)
        finally:
            await ws.close()
    return out


async def _pages(port: int, address: str, shots: Path) -> dict:
    import aiohttp

    base, token = address.split("/?token=")
    out: dict = {}
    async with aiohttp.ClientSession() as http:
        ws, s = await new_page(port, http)
        try:
            await s.call("Page.navigate", url=address)
            await wait_js(
                s,
                "document.querySelectorAll('#board tbody tr').length >= 4 && "
                "document.querySelectorAll('.js-plotly-plot').length >= 3",
                120,
            )
            heads = "document.querySelectorAll('#board thead th')"
            col = await s.js(f"Array.from({heads}).findIndex(h => h.textContent === 'last_fd_feat')")
            read = f"Array.from(document.querySelectorAll('#board tbody tr')).map(r => r.cells[{col}].getAttribute('data-v'))"
            await s.js(f"{heads}[{col}].click()")
            out["ascending"] = await s.js(read)
            await s.js(f"{heads}[{col}].click()")
            out["descending"] = await s.js(read)
            out["first_line"] = await s.js("document.querySelector('.banner').textContent")
            shot = await s.call("Page.captureScreenshot", format="png")
            (shots / "dashboard_overview.png").write_bytes(__import__("base64").b64decode(shot["data"]))
            trial = await s.js("document.querySelector('#board tbody a.trial').getAttribute('data-href')")
            await s.call("Page.navigate", url=f"{base}{trial}?token={token}")
            await wait_js(
                s,
                "document.querySelectorAll('#patients img').length >= 3 && "
                "Array.from(document.querySelectorAll('#patients img')).every(i => i.complete && i.naturalWidth > 0)"
                " && document.querySelectorAll('.js-plotly-plot').length >= 2",
                180,
            )
            out["trial_images"] = await s.js("document.querySelectorAll('#patients img').length")
            out["download"] = await s.js("document.getElementById('download').href")
            shot = await s.call("Page.captureScreenshot", format="png")
            (shots / "dashboard_trial.png").write_bytes(__import__("base64").b64decode(shot["data"]))
            out["errors"] = errors(s)
        finally:
            await ws.close()
    return out


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="needs chromium on PATH (Debian: apt-get install -y chromium)")
def test_the_dashboard_follows_a_study_and_serves_its_trials(live, tmp_path):
    study, address, folder = live
    browser = Browser(tmp_path / "profile")
    try:
        port = browser.port()
        followed = asyncio.run(asyncio.wait_for(_follow_and_inspect(port, address, folder, study, tmp_path), 600))
    finally:
        browser.close()
    assert study.wait(timeout=120) == 0
    counts = followed["counts"]
    assert counts[-1] == 4 and min(counts) < 4, counts  # trials appeared while the page was open, no reload
    assert not followed["errors_live"], followed["errors_live"]

    # the finished study, served again on its own (the study stopped its page)
    p, addr = start_dashboard(folder)
    try:
        base, token = addr.split("/?token=")
        assert get(f"{base}/")[0] == 401 and get(f"{base}/api/overview")[0] == 401
        assert get(f"{base}/api/overview?token=wrong")[0] == 401
        assert get(f"{base}/static/../../etc/passwd?token={token}")[0] == 404  # only its own routes
        assert get(f"{base}/trial/nosuch?token={token}")[0] == 404
        browser = Browser(tmp_path / "profile2")
        try:
            shots = Path(SHOTS) if SHOTS else tmp_path
            pages = asyncio.run(asyncio.wait_for(_pages(browser.port(), addr, shots), 600))
        finally:
            browser.close()
        assert not pages["errors"], pages["errors"]
        assert pages["first_line"].startswith("Data: Simulated") and "NOT the Health Gym dataset" in pages["first_line"]
        numbers = [float(v) for v in pages["ascending"] if v]
        assert (
            numbers == sorted(numbers)
            and [v for v in pages["descending"] if v] == [v for v in pages["ascending"] if v][::-1]
        )
        assert pages["trial_images"] >= 3
        code, body = get(pages["download"])
        assert code == 200 and body.startswith(b"VL,")
        exported = list((folder / "exports").glob("synthetic_*.csv"))
        assert len(exported) == 1 and exported[0].read_bytes() == body  # the only write, atomically
        r = subprocess.run(
            [sys.executable, "-m", "healthgym_core.data", "validate", str(exported[0])],
            capture_output=True,
            text=True,
            env=env(),
        )
        assert r.returncode == 0 and "(schema demo7)" in r.stdout, r.stderr
    finally:
        kill_session(p.pid)
    assert len(read_live(folder).trials) == 4


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="needs chromium on PATH (Debian: apt-get install -y chromium)")
def test_files_being_written_show_the_last_complete_state(live, tmp_path):
    """A report line, a per-step row and a checkpoint each cut off as if their writer were mid-write: the trial
    shows the epochs, steps and checkpoints that were complete, never a half-written value."""
    study, _, folder = live
    assert study.wait(timeout=600) == 0
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    (copy / "leaderboard.parquet").unlink()  # as while the study runs
    whole = read_live(copy)
    trial = next(iter(whole.trials.values()))
    n_epochs, steps, ckpts = len(trial.history), trial.steps(), list(trial.checkpoints)
    assert n_epochs >= 2 and len(ckpts) >= 2
    for name, keep in (("result.json", 0.5), ("steps.csv", 0.5)):
        f = trial.folder / name
        lines = f.read_text().splitlines(keepends=True)
        f.write_text("".join(lines[:-1]) + lines[-1][: int(len(lines[-1]) * keep)])
    cut = trial.folder / ckpts[-1] / "state.pt"
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    now = read_live(copy).trials[trial.trial_id]
    assert len(now.history) == n_epochs - 1
    assert now.checkpoints == ckpts[:-1]
    pd.testing.assert_frame_equal(now.steps(), steps.iloc[:-1])
