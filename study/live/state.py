"""An experiment folder read as it is now, while a study writes it or after: the record, every trial's settings,
per-epoch history, checkpoints and status. Never fails on a half-written file: a line or file still being written
is left out until it is complete, and a trial shows its last complete state."""

from __future__ import annotations

import json
import re
import time
import zipfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import pandas as pd

from healthgym_core.errors import ConfigError
from study.experiment import (
    BOARD_FILE,
    CHECKPOINT_FILE,
    PBT_LOG,
    PBT_LOG_KEPT,
    STUDY_FILE,
    TRIAL_DIR,
    read_leaderboard,
    read_study_record,
    result_lines,
)
from study.leaderboard import (
    REPORTED,
    Exploit,
    completed_by_rank,
    mark_roles,
    pbt_exploits,
    rank,
    trial_row,
    with_rank_columns,
)
from study.plan import StudyPlan, plan_of
from study.reporting.loading import _read_history, read_steps
from study.spaces import Factor

RUNNING_S = 90  # a trial that reported within this many seconds (and has not finished) is shown as running


@dataclass
class LiveTrial:
    trial_id: str
    number: int
    folder: Path
    config: dict
    history: pd.DataFrame
    status: str
    checkpoints: list[str] = field(default_factory=list)  # checkpoint folder names holding a complete state.pt

    def steps(self) -> pd.DataFrame:
        return read_steps(self.folder)

    def checkpoint(self, name: str) -> Path | None:
        return self.folder / name / CHECKPOINT_FILE if name in self.checkpoints else None


@dataclass
class LiveStudy:
    folder: Path
    record: dict
    trials: dict[str, LiveTrial]
    board: pd.DataFrame  # the final leaderboard when the study finished, else one built from the trials so far
    finished: bool
    version: str  # changes whenever anything the page shows changes
    skipped: list[str] = field(default_factory=list)  # what was left out of a damaged folder, in words

    @cached_property
    def plan(self) -> StudyPlan:
        return plan_of(self.record, str(self.folder / STUDY_FILE))

    @property
    def factors(self) -> list[Factor]:
        return [Factor.from_dict(f) for f in self.record.get("space", {}).get("factors", [])]

    @property
    def max_epochs(self) -> int:
        return self.plan.max_epochs

    @property
    def metric(self) -> str:
        return self.plan.metric

    @property
    def scheduler(self) -> str:
        return self.plan.scheduler


def _json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None  # not there yet, or being written


CHECKPOINT_NAME = re.compile(r"checkpoint_\d{1,9}")  # Tune's checkpoint folders; any other name is not listed


def _checkpoints(tdir: Path) -> list[str]:
    """The trial's checkpoint folders holding a complete state.pt: Tune's names only (a name reaches pages, headers
    and file names), and neither links nor files behind links (they could point outside the experiment)."""
    out = []
    for c in sorted(tdir.glob("checkpoint_*")):
        f = c / CHECKPOINT_FILE
        try:
            if not CHECKPOINT_NAME.fullmatch(c.name) or c.is_symlink() or f.is_symlink():
                continue
            # torch.save writes a zip, whose directory comes last: a file still being copied in is not one yet
            if f.is_file() and not list(c.glob(".*.tmp")) and zipfile.is_zipfile(f):
                out.append(c.name)
        except OSError:
            continue
    return out


def _status(history: pd.DataFrame, mtime: float, max_epochs: int) -> str:
    if not len(history):
        return "pending"  # Tune made its folder; it has not reported an epoch yet
    if len(history) and "diverged" in history and (history["diverged"].fillna(0) > 0).any():
        return "diverged"
    epochs = int(history["epoch"].max()) if len(history) and "epoch" in history else 0
    if epochs >= max_epochs > 0:
        return "completed"
    return "running" if time.time() - mtime < RUNNING_S else "stopped"


def read_live(folder: Path) -> LiveStudy:
    """The experiment folder now. A ConfigError if it is no study folder at all."""
    folder = Path(folder)
    if not (folder / STUDY_FILE).is_file():
        raise ConfigError(
            f"{folder}: not a study folder (no {STUDY_FILE}; expected the folder python study/run.py writes)"
        )
    record = read_study_record(folder)
    factors = [f["name"] for f in record.get("space", {}).get("factors", [])]
    max_epochs = plan_of(record, str(folder / STUDY_FILE)).max_epochs
    stamp, skipped = [], []
    trials: dict[str, LiveTrial] = {}
    for tdir in sorted(p for p in folder.iterdir() if p.is_dir()):
        m = TRIAL_DIR.search(tdir.name)
        result = tdir / "result.json"
        if not m or not result.is_file():
            continue
        if tdir.is_symlink() or result.is_symlink():
            skipped.append(f"{tdir.name}: a link, not followed")
            continue
        stat = result.stat()
        stamp.append(f"{tdir.name}:{stat.st_size}:{stat.st_mtime_ns}")
        raw = _read_history(tdir)  # complete, well-formed lines only
        bad = result_lines(tdir)[1]
        if bad:
            skipped.append(f"{tdir.name}/result.json: {bad} damaged line{'s' if bad > 1 else ''} left out")
        config = _json(tdir / "params.json") or {}
        status = _status(raw, stat.st_mtime, max_epochs)
        trials[m.group(1)] = LiveTrial(m.group(1), int(m.group(2)), tdir, config, raw, status, _checkpoints(tdir))
    for log in (PBT_LOG, PBT_LOG_KEPT):
        if (folder / log).is_file():
            stamp.append(f"{log}:{(folder / log).stat().st_size}")
    board_file = folder / BOARD_FILE
    finished = board_file.is_file()
    board = None
    if finished:
        stamp.append(f"board:{board_file.stat().st_mtime_ns}")
        try:
            board = read_leaderboard(folder)
        except ConfigError as e:  # being replaced right now, or damaged: show the trials as they are
            skipped.append(f"{BOARD_FILE}: {str(e).split(': ', 1)[-1]}; the leaderboard is rebuilt from the trials")
    if board is None:
        board = live_board(trials, factors, max_epochs, record, pbt_exploits(folder))
    else:
        board = rank(with_rank_columns(board)).reset_index(drop=True)  # in today's order, as the report shows it
        for t in trials.values():  # the final statuses; the trial numbers from the folders
            board.loc[board["trial_id"] == t.trial_id, "trial_number"] = t.number
    return LiveStudy(folder, record, trials, board, finished, str(hash(tuple(stamp))), skipped)


def live_board(
    trials: dict[str, LiveTrial],
    factors: list[str],
    max_epochs: int,
    record: dict,
    exploits: dict[str, list[Exploit]] | None = None,
) -> pd.DataFrame:
    """A leaderboard from the trials' own files (and PBT's log of exploits), the same columns as the final one."""
    rows = []
    for t in trials.values():
        hist = t.history.copy()
        for f in factors:
            if f"config/{f}" not in hist and "config" in hist:
                hist[f"config/{f}"] = [c.get(f) if isinstance(c, dict) else None for c in hist["config"]]
        row = trial_row(t.trial_id, t.config, factors, hist, max_epochs, exploits=(exploits or {}).get(t.trial_id, ()))
        if t.status in ("running", "stopped", "pending"):
            row["status"] = "pruned" if t.status == "stopped" else t.status
        row["trial_number"] = t.number
        rows.append(row)
    if not rows:
        cols = ["trial_id", "status", "epochs", *factors, "seed", *[f"last_{m}" for m in REPORTED]]
        return pd.DataFrame(columns=cols)
    from study.base import is_upstream

    board = rank(pd.DataFrame(rows))
    base = record.get("base")
    up = base is None or is_upstream(base)
    base_point = {f: base["config"][f] for f in factors if f in base["config"]} if base else None
    return mark_roles(board, factors, base_point if base_point and len(base_point) == len(factors) else None, up)


def best(study: LiveStudy) -> pd.Series | None:
    """The best completed trial so far, in the leaderboard's order (collapsed trials after the others)."""
    done = completed_by_rank(study.board)
    return done.iloc[0] if len(done) else None
