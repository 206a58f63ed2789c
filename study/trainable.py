"""The Tune function trainable: builds (or restores) the core's training state and reports once per epoch.

No training logic lives here: each report is one call of the core's `epoch.run_epoch` (train_epoch + evaluate).
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import pandas as pd
import torch
from ray import tune

from healthgym_core.atomic import atomic_write
from healthgym_core.checkpoint import load_checkpoint, restore_state, save_checkpoint
from healthgym_core.config import TrainConfig
from healthgym_core.data.prepared import PreparedData
from healthgym_core.epoch import run_epoch
from healthgym_core.errors import NonFiniteLossError
from healthgym_core.evaluation.collapse import verdict
from healthgym_core.provenance import training_fingerprint
from healthgym_core.state import build_state
from study.base import is_reference, upstream_options
from study.experiment import CHECKPOINT_FILE, CODE_KEY, RANK_METRIC, STEPS_FILE

DIVERGED_SCORE = 1e9  # what a diverged trial reports for the pruning metric (the worst possible)


def trial_config(config: dict, base: dict) -> TrainConfig:
    """The base with the trial's own values; the upstream reference trial runs every upstream option instead."""
    config = dict(config)
    if is_reference(config):
        config = {**upstream_options(), "seed": config["seed"]}
    config.pop("reference", None)
    return TrainConfig.from_dict({**base, **config}).validate()


def training_code() -> str:
    """The fingerprint of the code that trains a trial: the core's training code and this trainable."""
    return training_fingerprint(Path(__file__).resolve())


START = "start_checkpoint"  # a config key: the checkpoint file a long run continues (study/long_runs.py)
BEST_FILE, BEST_RECORD = "best.pt", "best.json"  # in the trial's folder when keep_best: lowest RANK_METRIC so far


def train_healthgym(
    config: dict,
    *,
    data: PreparedData,
    base: dict,
    max_epochs: int,
    metric: str,
    threads: int = 1,
    keep_best: bool = False,
    verdict_epoch: int | None = None,
) -> None:
    """Train one trial up to `max_epochs`, reporting metrics and a checkpoint after every epoch. A config with
    START continues that checkpoint (a study trial trained on); `keep_best` also keeps the checkpoint with the
    lowest ranking metric so far as BEST_FILE in the trial's folder, with its epoch and score in BEST_RECORD.
    `verdict_epoch`: the upstream reference trial ends at the first epoch from then on at which it is collapsed
    (all a study needs of it is that verdict), reporting `reference_ended` = 1."""
    # As many torch threads as CPUs reserved: more oversubscribes the machine and OpenMP spin-waits (10x slower).
    torch.set_num_threads(threads)
    config = dict(config)
    start = config.pop(START, None)
    reference = is_reference(config)
    cfg = trial_config(config, base)
    trial_id = tune.get_context().get_trial_id()
    ckpt = tune.get_checkpoint()
    parent = None
    if ckpt is not None:  # a retry or resume of this trial, or (PBT) another trial's weights under this config
        with ckpt.as_directory() as folder:
            saved = load_checkpoint(Path(folder) / CHECKPOINT_FILE)
        state = restore_state(saved, data, cfg)
        written_by = saved["meta"].get("trial_id")
        parent = written_by if written_by and written_by != trial_id else None
    elif start is not None:  # a long run's first start: the study trial's checkpoint, trained on
        state = restore_state(load_checkpoint(start), data, cfg)
    else:
        state = build_state(cfg, data)
    # the best so far travels in every checkpoint's meta (a resumed trial starts in a fresh working folder)
    best = (saved["meta"].get("best") or {}).get(RANK_METRIC) if ckpt is not None else None
    steps_log = Path(STEPS_FILE)  # in the trial's folder; synced with the trial's artifacts
    last: dict = {}
    while state.epoch < max_epochs:
        try:
            records, summary = run_epoch(state, data)
        except NonFiniteLossError as e:
            # Stop this trial only: its last good checkpoint stays, the study goes on.
            report = {
                **last,
                "epoch": state.epoch + 1,
                "diverged": 1,
                metric: DIVERGED_SCORE,
                "diverged_reason": str(e),
                "diverged_values": json.dumps(e.values),
            }
            tune.report(report)
            return
        pd.DataFrame(records).to_csv(steps_log, mode="a", header=not steps_log.exists(), index=False)
        metrics = {k: v for k, v in summary.items() if isinstance(v, (int, float)) and math.isfinite(v)}
        metrics["diverged"] = 0
        metrics[CODE_KEY] = training_code()
        if parent is not None:  # the first report after PBT copied another trial's weights into this one
            metrics["exploited_from"], parent = parent, None
        last = {k: v for k, v in metrics.items() if k != "exploited_from"}
        if keep_best and metrics.get(RANK_METRIC, math.inf) < (best if best is not None else math.inf):
            best = metrics[RANK_METRIC]
            save_checkpoint(Path(BEST_FILE), state, data, {"trial_id": trial_id})  # atomic, as every checkpoint
            record = {"epoch": state.epoch, "g_steps": state.g_steps, RANK_METRIC: best}
            atomic_write(Path(BEST_RECORD), lambda p, r=record: p.write_text(json.dumps(r)))
        with tempfile.TemporaryDirectory() as tmp:
            meta = {"trial_id": trial_id, **({"best": {RANK_METRIC: best}} if best is not None else {})}
            save_checkpoint(Path(tmp) / CHECKPOINT_FILE, state, data, meta)
            ended = reference and verdict_epoch is not None and state.epoch >= verdict_epoch
            ended = ended and verdict(metrics)[0] == "collapsed"
            if ended:
                metrics["reference_ended"] = 1
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))
        if ended:
            return
