"""The layout of an experiment folder, shared by the driver, the trainable, evaluate.py and report.py.

Imports no Ray, so report.py can read a study on a machine (or in a process) without starting it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from healthgym_core.errors import ConfigError, HealthGymError, shown
from healthgym_core.evaluation.distances import EARLIER_RANK_METRIC, RANK_METRIC

STUDY_FILE = "study.json"  # the driver's record: arguments, preset, space, data identity
STUDY_VERSION = 2  # bump when study.json or the experiment layout changes incompatibly (2: factors as data)
OPTUNA_FILE = "optuna.db"  # Optuna's SQLite storage (study name = experiment name)
CHECKPOINT_FILE = "state.pt"  # inside each Tune checkpoint folder
EXPORT_FILE = "synthetic_best.csv"  # the best trial's cohort, with its card beside it
STEPS_FILE = "steps.csv"  # per-step losses, in each trial's folder
STEPS_COLUMNS = ("epoch", "step", "L", "D_loss", "G_loss")  # what its readers rely on, all numeric
CODE_KEY = "code_version"  # in every trial report and leaderboard row: the fingerprint of the code that trained it
RUNS_TABLE = "final_evaluation"  # study/evaluate.py's tables (.csv and .parquet): one row per run
SUMMARY_TABLE = "final_summary"  # and mean and spread per arm, next to the real-vs-real floor
PBT_LOG = "pbt_global.txt"  # Ray's PBT: one JSON line per exploit, written by the driver as it happens
# PBT_LOG's lines from before each --resume: a resumed driver starts Ray's log afresh and its sync overwrites it
PBT_LOG_KEPT = "pbt_global.before_resume.txt"
# Tune's trial folders: train_healthgym_<id>_<number>_<params>_<date>; ids are 8 hex digits (searchers) or
# 5 hex digits and a 5-digit count (Tune's own variant generator, as under PBT).
TRIAL_ID = r"[0-9a-f]{8}|[0-9a-f]{5}_\d{5}"
TRIAL_DIR = re.compile(rf"_({TRIAL_ID})_(\d+)(?:_|$)")
# The pruning signals a study may choose (all lower-is-better): the trial's own critic gap, and the estimates every
# trial measures on one scale (fd_feat, sliced_w, the exact EMD in fd_feat's space, a fixed-protocol critic's gap).
METRICS = ("wasserstein_gap", "fd_feat", "sliced_w", "emd_feat", "critic_gap", "energy_feat")
METRIC_WORDS = {
    "wasserstein_gap": "the trial's own critic's Wasserstein gap, on a scale of its own",
    "fd_feat": "the Frechet distance in the frozen summary-feature space, comparable across trials",
    "sliced_w": "the sliced Wasserstein distance of whole sequences, comparable across trials",
    "emd_feat": "the exact Wasserstein (earth mover's) distance in the feature space, comparable across trials",
    "critic_gap": "a fixed-protocol independent critic's Wasserstein gap, comparable across trials",
    "energy_feat": "the energy distance over every standardised per-patient summary, comparable across trials",
}
# The default pruning signal: a Wasserstein estimate every trial measures on the same scale, whose value at epoch 8
# predicts a trial's final test emd_feat (bench/README.md). energy_feat ranks; its early values predict the final
# test energy_feat better than emd_feat's from epoch 12 on, but not clearly at the first rung (bench/README.md,
# "early_signals"), so the design's Wasserstein signal stays the default.
DEFAULT_METRIC = "emd_feat"
RANK_FLOOR = f"{RANK_METRIC}_floor"


SCHEDULERS = ("asha", "pbt", "none")  # ASHA pruning, population-based training, every trial to the end
PBT_DEFAULT_METRIC = RANK_METRIC  # PBT exploits on a metric every trial measures alike, never a trial's own critic gap


def exploit_metric(metric: str) -> str:
    """PBT compares trials' weights directly, so it needs a metric on one scale for every trial."""
    return PBT_DEFAULT_METRIC if metric == "wasserstein_gap" else metric


def schedule_text(scheduler: str, metric: str, grace: int, reduction_factor: int, budget: int | None) -> str:
    """One line on how a study spends its compute: the scheduler and what it decides on."""
    if scheduler == "asha":
        text = f"ASHA, pruning at epoch {grace} and every x{reduction_factor} after on {metric}: {METRIC_WORDS[metric]}"
    elif scheduler == "pbt":
        text = f"PBT, exploiting on {exploit_metric(metric)}: {METRIC_WORDS[exploit_metric(metric)]}"
    else:
        text = "no pruning: every trial to the end"
    return text + (f"; a budget of {budget:,} trial-epochs" if budget else "")


def plan_schedule_text(plan) -> str:
    """`schedule_text` for a study's plan (study.plan.StudyPlan)."""
    return schedule_text(plan.scheduler, plan.metric, plan.grace_period, plan.reduction_factor, plan.budget)


def companion_metric(metric: str) -> str:
    """The curve drawn beside the pruning metric's: the ranking metric, or fd_feat (longitudinal fidelity) when the
    two are one."""
    return RANK_METRIC if metric != RANK_METRIC else "fd_feat"


def spent_text(trial_epochs: int, g_steps: int, budget: int | None) -> str:
    """The compute a study has spent, against its --budget when it has one."""
    of = f" of its --budget of {budget:,}" if budget else ""
    return f"{trial_epochs:,} trial-epochs{of}, {g_steps:,} generator steps"


def read_study_record(folder: Path) -> dict:
    """study.json, checked once for every reader: a clear one-line error if it is truncated, damaged, of the wrong
    shape or from an incompatible version (its plan, space and data tables are checked field by field)."""
    from study.plan import plan_of
    from study.spaces import Factor

    path = Path(folder) / STUDY_FILE
    try:
        record = json.loads(path.read_bytes())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise ConfigError(
            f"{path}: damaged or truncated ({type(e).__name__}); the study cannot be resumed from it"
        ) from None
    if not isinstance(record, dict) or not isinstance(record.get("args"), dict):
        raise ConfigError(f"{path}: not a study record")
    if record.get("version") != STUDY_VERSION:
        raise ConfigError(
            f"{path}: study format version {shown(record.get('version'))} is not supported "
            f"(this version reads {STUDY_VERSION})"
        )
    for key in ("space", "data", "preset"):
        if not isinstance(record.get(key, {}), dict):
            raise ConfigError(f"{path}: {key!r} is not a table (value {str(record[key])[:60]!r})")
    factors = record.get("space", {}).get("factors", [])
    if not isinstance(factors, list):
        raise ConfigError(f"{path}: 'space.factors' is not a list (value {str(factors)[:60]!r})")
    try:
        for f in factors:
            Factor.from_dict(f, str(path))
        plan_of(record, str(path))
    except HealthGymError as e:
        raise ConfigError(str(e)) from None
    except (TypeError, ValueError, KeyError, AttributeError, OverflowError) as e:
        raise ConfigError(f"{path}: a damaged study record ({type(e).__name__}: {str(e)[:80]})") from None
    return record


def result_line(line: str | bytes) -> dict | None:
    """One line of a trial's result.json as a report, or None for a line that is not one (cut short by a kill,
    damaged, not a JSON object, no whole epoch number). Every reader of result.json reads lines through this."""
    try:
        report = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None
    if not isinstance(report, dict):
        return None
    epoch = report.get("epoch")
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
        return None
    numbers = (report.get(m) for m in ("diverged", *METRICS))
    if not all(v is None or isinstance(v, (int, float)) for v in numbers):
        return None
    return report


def result_lines(trial: Path) -> tuple[list[dict], int]:
    """(the reports of a trial folder's result.json, how many of its non-empty lines were not reports)."""
    try:
        raw = (trial / "result.json").read_bytes().splitlines()
    except OSError:
        return [], 0
    lines = [line for line in raw if line.strip()]
    reports = [r for r in map(result_line, lines) if r is not None]
    return reports, len(lines) - len(reports)


BOARD_FILE = "leaderboard.parquet"
BOARD_COLUMNS = ("trial_id", "status")  # what every reader of a leaderboard relies on


def read_leaderboard(folder: Path, need: tuple[str, ...] = ()) -> pd.DataFrame:
    """The study's leaderboard.parquet, checked: a one-line ConfigError naming the file when it is missing,
    unreadable, or lacks BOARD_COLUMNS or the columns in `need`."""
    path = Path(folder) / BOARD_FILE
    if not path.is_file():
        raise ConfigError(f"{folder}: the study has no leaderboard yet; finish it (or --resume it) first")
    try:
        board = pd.read_parquet(path)
    except Exception as e:  # noqa: BLE001 - pyarrow raises many kinds for a damaged file
        raise ConfigError(f"{path}: unreadable ({type(e).__name__}); it is rewritten when the study finishes") from None
    missing = [c for c in (*BOARD_COLUMNS, *need) if c not in board]
    ranked = [f"last_{m}" for m in (RANK_METRIC, EARLIER_RANK_METRIC)]
    if not missing and not any(c in board for c in ranked):
        missing = ranked[:1]
    if missing:
        raise ConfigError(f"{path}: damaged (no {missing[0]!r} column)")
    if not board["status"].map(lambda v: isinstance(v, str)).all():
        raise ConfigError(f"{path}: damaged (a 'status' that is not text)")
    board = board.copy()
    board["trial_id"] = board["trial_id"].astype(str)
    return board


def study_data(record: dict):
    """Rebuild the study's PreparedData from its record; a ConfigError if it is no longer the same data."""
    from healthgym_core.data.cohort import load_cohort
    from healthgym_core.data.prepared import prepare_data
    from study.plan import plan_of

    plan = plan_of(record)
    cohort = load_cohort(plan.data, plan.schema, patients=plan.patients, seed=0)
    data = prepare_data(cohort, split_seed=plan.split_seed)
    expected = record.get("data", {}).get("fingerprint")
    if data.fingerprint != expected:
        why = (
            "it was simulated by an earlier version of the simulator (docs/notebook.md)"
            if cohort.is_simulated
            else "was the cohort file changed?"
        )
        raise ConfigError(f"the study's data ({expected}) can no longer be rebuilt (now {data.fingerprint}); {why}")
    return data
