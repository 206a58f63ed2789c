"""A tiny Chrome DevTools protocol client for the browser tests: headless Chromium from the system (Debian:
apt-get install chromium), driven over its DevTools websocket with aiohttp (which Ray already brings)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from pathlib import Path

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


class Browser:
    """Headless Chromium on a private profile, driven over the DevTools protocol; closed by `close()`."""

    def __init__(self, profile: Path, width: int = 1400, height: int = 2400) -> None:
        self.profile, self.width, self.height = profile, width, height
        self.log = profile.parent / f"{profile.name}-chromium.log"
        self.proc = subprocess.Popen(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-default-apps",
                f"--user-data-dir={profile}",
                "--remote-debugging-port=0",
                "--enable-logging=stderr",
                "--v=0",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(self.log, "wb"),
            start_new_session=True,
        )

    def port(self, timeout: float = 60) -> int:
        marker = self.profile / "DevToolsActivePort"
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if marker.is_file() and marker.read_text().strip():
                return int(marker.read_text().split()[0])
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"chromium exited with {self.proc.returncode}: {self.log.read_text(errors='replace')[-2000:]}"
                )
            time.sleep(0.1)
        raise TimeoutError("chromium did not open its DevTools port")

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 9)
        self.proc.wait(timeout=30)


class Session:
    def __init__(self, ws) -> None:
        self.ws, self.next_id, self.events = ws, 0, []

    async def call(self, method: str, **params) -> dict:
        self.next_id += 1
        await self.ws.send_json({"id": self.next_id, "method": method, "params": params})
        while True:
            msg = await asyncio.wait_for(self.ws.receive_json(), 60)
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    async def js(self, expression: str):
        r = await self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expression}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def of(self, method: str) -> list[dict]:
        return [e["params"] for e in self.events if e.get("method") == method]


async def new_page(port: int, http, width: int = 1400, height: int = 2400):
    """The first page target's websocket and a Session with Runtime, Page, Log and Network enabled."""
    async with http.get(f"http://127.0.0.1:{port}/json/list") as r:
        target = next(t for t in await r.json() if t["type"] == "page")
    ws = await http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0)
    s = Session(ws)
    for domain in ("Runtime", "Page", "Log", "Network"):
        await s.call(f"{domain}.enable")
    await s.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
    return ws, s


async def wait_js(s: Session, expression: str, timeout: float = 60) -> object:
    """Evaluate `expression` until it is truthy; its value."""
    end = time.monotonic() + timeout
    while True:
        v = await s.js(expression)
        if v:
            return v
        if time.monotonic() > end:
            raise TimeoutError(expression)
        await asyncio.sleep(0.25)


def errors(s: Session) -> list:
    """Script exceptions and console errors the page produced."""
    return [e["exceptionDetails"] for e in s.of("Runtime.exceptionThrown")] + [
        e for e in s.of("Runtime.consoleAPICalled") if e.get("type") in ("error", "assert")
    ]
