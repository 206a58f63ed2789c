"""The README's dashboard screenshots, taken in headless Chromium from a finished (or running) study:

    python -m tests.screenshots experiments/curriculum docs

writes docs/dashboard_overview.png (the overview), docs/dashboard_trial.png (the best trial's page) and
docs/report.png (the top of study/report.py's page).
"""

from __future__ import annotations

import asyncio
import base64
import sys
import tempfile
from pathlib import Path

from tests.browser import Browser, errors, new_page, wait_js
from tests.study_helpers import kill_session
from tests.test_dashboard import start_dashboard

WIDTH, HEIGHT = 1400, 2000


async def capture(s, url: str, ready: str, timeout: float, path: Path) -> None:
    """Open `url`, wait until the expression `ready` holds, let the layout settle, save the viewport as PNG."""
    await s.call("Page.navigate", url=url)
    await wait_js(s, ready, timeout)
    await asyncio.sleep(2)  # let plotly finish its layout
    shot = await s.call("Page.captureScreenshot", format="png")
    path.write_bytes(base64.b64decode(shot["data"]))


async def shoot(port: int, address: str, report: Path, out: Path) -> list:
    import aiohttp

    base, token = address.split("/?token=")
    async with aiohttp.ClientSession() as http:
        ws, s = await new_page(port, http, WIDTH, HEIGHT)
        try:
            plots = "document.querySelectorAll('.js-plotly-plot').length >= 3"
            await capture(s, address, plots, 120, out / "dashboard_overview.png")
            trial = await s.js("document.querySelector('#board tbody a.trial').getAttribute('data-href')")
            images = (
                "document.querySelectorAll('#patients img').length >= 3 && "
                "Array.from(document.querySelectorAll('#patients img')).every(i => i.complete && i.naturalWidth > 0)"
            )
            await capture(s, f"{base}{trial}?token={token}", images, 300, out / "dashboard_trial.png")
            complete = "document.readyState === 'complete'"
            await capture(s, report.resolve().as_uri(), complete, 120, out / "report.png")
            return errors(s)
        finally:
            await ws.close()


def main(folder: str, out: str) -> int:
    import subprocess

    dashboard, address = start_dashboard(Path(folder))
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.html"
        subprocess.run([sys.executable, "study/report.py", folder, "--out", str(report)], check=True)
        browser = Browser(Path(tmp) / "profile", WIDTH, HEIGHT)
        try:
            problems = asyncio.run(shoot(browser.port(), address, report, Path(out)))
        finally:
            browser.close()
            kill_session(dashboard.pid)
    for p in problems:
        print(f"page error: {p}", file=sys.stderr)
    print(f"wrote {out}/dashboard_overview.png, {out}/dashboard_trial.png and {out}/report.png")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
