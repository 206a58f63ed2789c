"""The layout of an experiment folder, shared by the driver, the trainable, evaluate.py and report.py.

Imports no Ray, so report.py can read a study on a machine (or in a process) without starting it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from healthgym_core.errors import ConfigError
from healthgym_core.evaluation.distances import RANK_METRIC

STUDY_FILE = "study.json"  # the driver's record: arguments, preset, space, data identity
STUDY_VERSION = 2  # bump when study.json or the experiment layout changes incompatibly (2: factors as data)
OPTUNA_FILE = "optuna.db"  # Optuna's SQLite storage (study name = experiment name)
CHECKPOINT_FILE = "state.pt"  # inside each Tune checkpoint folder
STEPS_FILE = "steps.csv"  # per-step losses, in each trial's folder
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
# predicts a trial's final test quality (bench/README.md). energy_feat ranks, but its early values are not measured
# against final quality yet.
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
    """study.json, checked: a clear error if it is truncated, damaged or from an incompatible version."""
    path = folder / STUDY_FILE
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(
            f"{path}: damaged or truncated ({type(e).__name__}); the study cannot be resumed from it"
        ) from None
    if not isinstance(record, dict) or not isinstance(record.get("args"), dict):
        raise ConfigError(f"{path}: not a study record")
    if record.get("version") != STUDY_VERSION:
        raise ConfigError(
            f"{path}: study format version {record.get('version')!r} is not supported (this version reads {STUDY_VERSION})"
        )
    return record


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
