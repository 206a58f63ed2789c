"""Re-train chosen configurations with several seeds through Tune and score them on the test patients."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd
from ray import tune

from healthgym_core.atomic import atomic_write
from healthgym_core.checkpoint import generator_from_checkpoint, load_checkpoint
from healthgym_core.data.prepared import PreparedData
from healthgym_core.errors import ConfigError
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


def score_checkpoint(folder: Path, data: PreparedData, n: int, seed: int) -> dict[str, float]:
    """`n` synthetic patients from the generator of a trial checkpoint folder, scored on the test patients."""
    gen, transform, _ = generator_from_checkpoint(load_checkpoint(folder / CHECKPOINT_FILE))
    reals, codes = transform.decode(generate(gen, n, data.n_months, seed).numpy())
    return final_metrics(data, reals, codes, seed=seed)


PLAN_FILE = "evaluation.json"  # in each final-* run folder: its arms, seeds and epochs, for --resume


def new_plan(folder: Path, arms: list[dict], seeds: list[int], epochs: int) -> tuple[Path, dict]:
    """A fresh run folder under the study, holding the plan a resume will follow."""
    run = folder / f"final-{time.strftime('%Y%m%d-%H%M%S')}"
    run.mkdir()
    plan = {"arms": arms, "seeds": seeds, "epochs": epochs}
    atomic_write(run / PLAN_FILE, lambda p: p.write_text(json.dumps(plan, indent=2)))
    return run, plan


def last_plan(folder: Path) -> tuple[Path, dict]:
    """The newest evaluation run of this study and its plan."""
    runs = sorted(p.parent for p in folder.glob(f"final-*/{PLAN_FILE}"))
    if not runs:
        raise ConfigError(f"--resume: {folder} holds no evaluation to resume (run it without --resume)")
    return runs[-1], json.loads((runs[-1] / PLAN_FILE).read_text())


def run_ended(last: dict | None, epochs: int) -> bool:
    """Whether a run whose last report is `last` trained all its epochs or stopped for good (diverged)."""
    return bool(last) and (int(last.get("epoch", 0)) >= epochs or bool(last.get("diverged")))


def run_final(
    args: argparse.Namespace,
    record: dict,
    space: SearchSpace,
    data: PreparedData,
    run: Path,
    plan: dict,
    gpus_seen: float,
) -> tuple[pd.DataFrame, dict, dict] | None:
    """Train (or, when `run` holds Tune's state, continue) every arm x seed of the plan; score each on test patients.
    None when Tune stopped before every run finished (interrupted): `--resume` continues it."""
    study_args = argparse.Namespace(**record["args"])
    base = base_config(study_args, Preset(**record["preset"]), space, record.get("base"))
    gpus = gpus_per_trial(args.gpus_per_trial, gpus_seen)
    trainable = tune.with_resources(
        tune.with_parameters(
            train_arm,
            data=data,
            base=base,
            max_epochs=plan["epochs"],
            metric="fd_feat",
            threads=max(1, int(args.cpus_per_trial)),
        ),
        {"cpu": args.cpus_per_trial, "gpu": gpus},
    )
    param_space = {"arm": tune.grid_search(plan["arms"]), "seed": tune.grid_search(plan["seeds"])}
    if tune.Tuner.can_restore(str(run)):  # Tune keeps no parameter space in its state: it is given again
        tuner = tune.Tuner.restore(str(run), trainable=trainable, resume_errored=True, param_space=param_space)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space=param_space,
            tune_config=tune.TuneConfig(metric="fd_feat", mode="min", reuse_actors=True),
            run_config=tune.RunConfig(
                name=run.name,
                storage_path=str(run.parent),
                failure_config=tune.FailureConfig(max_failures=2),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                verbose=1,
            ),
        )
    results = tuner.fit()
    if not all(r.config is not None and (r.error is not None or run_ended(r.metrics, plan["epochs"])) for r in results):
        return None  # Tune stopped before every run ended (Ctrl-C): nothing to score yet
    n = args.samples or 2 * len(data.split.test)
    rows = []
    for r in results:
        arm, seed = r.config["arm"], r.config["seed"]
        row = {**arm, "seed": seed, "epochs": int((r.metrics or {}).get("epoch", 0)), "error": r.error is not None}
        if r.checkpoint is not None and r.error is None:
            with r.checkpoint.as_directory() as d:
                row.update(score_checkpoint(Path(d), data, n, seed))
        rows.append(row)
    return pd.DataFrame(rows), real_floor(data, seed=0), METRIC_INFO
