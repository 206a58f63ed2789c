"""Re-train chosen configurations with several seeds through Tune and score them on the test patients."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
from ray import tune

from healthgym_core.checkpoint import generator_from_checkpoint, load_checkpoint
from healthgym_core.data.prepared import PreparedData
from healthgym_core.evaluation.final import METRIC_INFO, final_metrics, real_floor
from healthgym_core.sampling import generate
from study.driver import base_config
from study.experiment import CHECKPOINT_FILE
from study.presets import Preset, gpus_per_trial
from study.spaces import SearchSpace
from study.trainable import train_healthgym


def train_arm(config: dict, **kwargs) -> None:
    """One evaluation run: an arm's factors plus a seed, trained by the study's own trainable."""
    arm = {k: v for k, v in config["arm"].items() if k != "arm"}
    train_healthgym({**arm, "seed": config["seed"]}, **kwargs)


def run_final(
    args: argparse.Namespace,
    record: dict,
    space: SearchSpace,
    data: PreparedData,
    arms: list[dict],
    seeds: int,
    epochs: int,
    folder: Path,
    gpus_seen: float,
    seed_base: int,
) -> tuple[pd.DataFrame, dict, dict]:
    study_args = argparse.Namespace(**record["args"])
    base = base_config(study_args, Preset(**record["preset"]), space, record.get("base"))
    gpus = gpus_per_trial(args.gpus_per_trial, gpus_seen)
    trainable = tune.with_resources(
        tune.with_parameters(
            train_arm,
            data=data,
            base=base,
            max_epochs=epochs,
            metric="fd_feat",
            threads=max(1, int(args.cpus_per_trial)),
        ),
        {"cpu": args.cpus_per_trial, "gpu": gpus},
    )
    tuner = tune.Tuner(
        trainable,
        param_space={
            "arm": tune.grid_search(arms),
            "seed": tune.grid_search(list(range(seed_base, seed_base + seeds))),
        },
        tune_config=tune.TuneConfig(metric="fd_feat", mode="min", reuse_actors=True),
        run_config=tune.RunConfig(
            name=f"final-{time.strftime('%Y%m%d-%H%M%S')}",
            storage_path=str(folder),
            failure_config=tune.FailureConfig(max_failures=2),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            verbose=1,
        ),
    )
    results = tuner.fit()
    n = args.samples or 2 * len(data.split.test)
    rows = []
    for r in results:
        arm, seed = r.config["arm"], r.config["seed"]
        row = {**arm, "seed": seed, "epochs": int((r.metrics or {}).get("epoch", 0)), "error": r.error is not None}
        if r.checkpoint is not None and r.error is None:
            with r.checkpoint.as_directory() as d:
                gen, transform, _ = generator_from_checkpoint(load_checkpoint(Path(d) / CHECKPOINT_FILE))
            reals, codes = transform.decode(generate(gen, n, data.n_months, seed).numpy())
            row.update(final_metrics(data, reals, codes, seed=seed))
        rows.append(row)
    return pd.DataFrame(rows), real_floor(data, seed=0), METRIC_INFO
