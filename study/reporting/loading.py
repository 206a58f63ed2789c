"""Loading an experiment folder: the study record, the leaderboard, each trial's folder, history and steps."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import pandas as pd

from healthgym_core.errors import ConfigError
from study.experiment import (
    BOARD_COLUMNS,
    CHECKPOINT_FILE,
    STEPS_COLUMNS,
    STEPS_FILE,
    STUDY_FILE,
    read_study_record,
    result_lines,
)
from study.leaderboard import rank, with_rank_columns
from study.plan import StudyPlan, plan_of
from study.reporting.html import log
from study.spaces import Factor

STATUS_ORDER = ("completed", "pruned", "diverged", "error")


@dataclass
class Experiment:
    folder: Path
    record: dict  # study.json
    board: pd.DataFrame  # the leaderboard, plus trial_number and trial_dir
    histories: dict[str, pd.DataFrame] = field(default_factory=dict)  # trial_id -> per-epoch metrics (good epochs)
    exported: str | None = None  # the trial synthetic_best.csv was sampled from: the best when the study ended

    @cached_property
    def plan(self) -> StudyPlan:
        """The study as it was resolved (study/plan.py): sizes, epochs, rungs, scheduler, the trials' base."""
        return plan_of(self.record, str(self.folder / STUDY_FILE))

    @property
    def metric(self) -> str:
        return self.plan.metric

    @property
    def name(self) -> str:
        return self.plan.name or self.folder.name

    @property
    def space_factors(self) -> list[Factor]:
        """The searched factors as study.json records them."""
        return [Factor.from_dict(f) for f in self.record.get("space", {}).get("factors", [])]

    @property
    def factors(self) -> list[str]:
        return [f.name for f in self.space_factors]

    def log_factors(self) -> set[str]:
        """Factors the space searches on a log scale."""
        return {f.name for f in self.space_factors if f.log}

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
    raise ConfigError(
        f"{folder}: no readable leaderboard.parquet or leaderboard.csv (has the study finished? "
        "continue it with: python study/run.py --resume ...)"
    )


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
    rows, _ = result_lines(tdir)  # lines cut short by a kill, or damaged, are left out
    h = pd.DataFrame(rows)
    if not len(h) or "epoch" not in h:
        return pd.DataFrame()
    if "diverged" in h:
        h = h[h["diverged"].fillna(0) == 0]
    return h.drop_duplicates("epoch", keep="last").sort_values("epoch").reset_index(drop=True)


def read_steps(tdir: Path | None) -> pd.DataFrame:
    """A trial's per-step losses (steps.csv), its complete rows; empty when there are none or the file is damaged
    (unreadable, or without the numeric STEPS_COLUMNS), which is logged."""
    if tdir is None or not (tdir / STEPS_FILE).is_file():
        return pd.DataFrame()
    text = (tdir / STEPS_FILE).read_bytes().decode("utf-8", errors="replace")
    if not text.endswith("\n"):  # the trial is appending a row: read the complete ones
        text = text[: text.rfind("\n") + 1]
    if not text.strip():
        return pd.DataFrame()
    try:
        steps = pd.read_csv(io.StringIO(text))
        col = next((c for c in STEPS_COLUMNS if c not in steps or not pd.api.types.is_numeric_dtype(steps[c])), None)
        bad = None if col is None else f"no numeric {col!r} column"
    except (ValueError, pd.errors.ParserError) as e:
        bad = type(e).__name__
    if bad is not None:
        log(f"{tdir / STEPS_FILE}: damaged ({bad}); its per-step losses are left out")
        return pd.DataFrame()
    return steps.drop_duplicates(["epoch", "step"], keep="last").sort_values(["epoch", "step"]).reset_index(drop=True)


def load_experiment(folder: Path) -> Experiment:
    if not folder.exists():
        raise ConfigError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise ConfigError(f"{folder}: not a folder")
    if not (folder / STUDY_FILE).is_file():
        raise ConfigError(
            f"{folder}: not a study folder (no {STUDY_FILE}; expected the folder python study/run.py wrote)"
        )
    board = _read_board(folder)
    record = read_study_record(folder)
    if not len(board) or any(c not in board for c in BOARD_COLUMNS):
        raise ConfigError(f"{folder}: the leaderboard is empty or lacks its {'/'.join(BOARD_COLUMNS)} columns")
    board = board.copy()
    board["trial_id"] = board["trial_id"].astype(str)
    done = board[board["status"] == "completed"]
    exported = str(done["trial_id"].iloc[0]) if len(done) else None
    board = rank(with_rank_columns(board)).reset_index(drop=True)  # in today's order
    dirs = [trial_dir(folder, row) for _, row in board.iterrows()]
    numbers = [_trial_number(d, t) for d, t in zip(dirs, board["trial_id"])]
    if any(n is None for n in numbers):  # fall back on the seed order (trial k trains with seed + k)
        numbers = list(pd.Series(board.get("seed", pd.Series(range(len(board))))).rank(method="first").astype(int))
    board["trial_number"] = numbers
    board["trial_dir"] = dirs
    exp = Experiment(folder, record, board, exported=exported)
    exp.histories = {t: _read_history(d) for t, d in zip(board["trial_id"], dirs)}
    return exp
