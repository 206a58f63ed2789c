"""Helpers for the study tests: run the driver as a user would, and clean up every Ray process it started."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
RUN = [sys.executable, str(ROOT / "study" / "run.py")]


def env() -> dict:
    e = dict(os.environ)
    e.setdefault("RAY_DISABLE_USAGE_STATS", "1")
    e["PYTHONUNBUFFERED"] = "1"
    return e


def kill_session(sid: int) -> None:
    """SIGKILL every process of a session: the driver and the local Ray it started."""
    for pid in [int(p) for p in os.listdir("/proc") if p.isdigit()]:
        try:
            if os.getsid(pid) == sid and pid != os.getpid():
                os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError, ValueError):
            pass


def study(*args, timeout: float = 300, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run `python study/run.py ARGS` in its own session; whatever Ray it leaves behind is killed."""
    p = subprocess.Popen(
        [*RUN, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env=env(),
        cwd=cwd,
    )
    try:
        out, err = p.communicate(timeout=timeout)
    finally:
        kill_session(p.pid)
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


def start_study(*args, cwd: Path | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [*RUN, *map(str, args)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env=env(),
        cwd=cwd,
    )


def results(folder: Path) -> list[pd.DataFrame]:
    """Per-trial result.json contents found under an experiment folder."""
    out = []
    for f in sorted(folder.glob("*/result.json")):
        try:
            out.append(pd.read_json(f, lines=True))
        except ValueError:
            pass
    return out


def wait_for(predicate, timeout: float, poll: float = 0.5) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(poll)
    return False
