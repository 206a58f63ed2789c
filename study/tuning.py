"""Running a study on Ray: Ray start-up, the trainable with its resources, the Tuner (fresh or restored), and whether
it ended or was interrupted. What proposes and prunes is in `search.py`, what a finished study prints in `console.py`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import ray
from ray import tune
from ray.tune.search.basic_variant import BasicVariantGenerator

from healthgym_core.cpu import SINGLE_THREAD_ENV
from healthgym_core.data.prepared import PreparedData
from healthgym_core.errors import ConfigError
from study.experiment import OPTUNA_FILE, exploit_metric
from study.leaderboard import keep_pbt_log
from study.plan import StudyPlan
from study.presets import gpus_per_trial
from study.search import (
    first_points,
    make_scheduler,
    make_searcher,
    pbt_first_points,
    tune_param_space,
)
from study.spaces import SearchSpace
from study.trainable import train_healthgym

# Every trial's numpy/scipy BLAS on its one thread, as its torch; and one glibc malloc arena per worker. A reused
# actor runs each new trial in a new thread, and with keep_freed_memory each thread's arena kept up to 1 GiB it had
# freed: a PBT study's workers grew to 10-11 GB each and Ray killed them (measured in bench/README.md). One arena
# bounds that and left the epoch time unchanged.
TRIAL_ENV = {**SINGLE_THREAD_ENV, "MALLOC_ARENA_MAX": "1"}


def start_ray(address: str | None, dashboard: bool = True) -> float:
    """Join a cluster (`--address auto`) or start a local Ray whose dashboard listens on 127.0.0.1 only.
    Returns the number of GPUs the cluster has."""
    # Tune warns when several small trials checkpoint within seconds; with per-epoch checkpoints that is expected
    # (in studies and in evaluate.py's runs alike).
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if not ray.is_initialized():
        env = {"env_vars": TRIAL_ENV}
        if address:
            ray.init(address=address, log_to_driver=True, runtime_env=env)
        else:
            ray.init(include_dashboard=dashboard, dashboard_host="127.0.0.1", num_cpus=os.cpu_count(), runtime_env=env)
    return float(ray.cluster_resources().get("GPU", 0))


KEEP_LATEST = 3  # checkpoints a trial keeps (Tune always keeps the last, which the leaderboard and export read)


def latest_checkpoints() -> tune.CheckpointConfig:
    """Keep a trial's latest KEEP_LATEST checkpoints, by epoch. Tune saves its experiment state (which names each
    trial's latest checkpoint, the one --resume restores) every 10 s or more, while checkpoints come and go with the
    epochs: a driver killed after a checkpoint named in the last saved state was removed leaves a trial that cannot
    resume ("does not exist on storage anymore"). Keeping the best three by score removed a trial's latest one as
    soon as a better-scoring one came; keeping the latest three keeps it three epochs (90 s at the CPU preset)."""
    return tune.CheckpointConfig(
        num_to_keep=KEEP_LATEST, checkpoint_score_attribute="training_iteration", checkpoint_score_order="max"
    )


def checkpoint_config(plan: StudyPlan) -> tune.CheckpointConfig:
    """Which checkpoints a trial keeps: its latest three (`latest_checkpoints`). PBT keeps every one: a trial that
    exploits another is paused and restores from that trial's checkpoint only when a slot frees, possibly epochs
    later, and a removed checkpoint fails it."""
    if plan.scheduler == "pbt":
        return tune.CheckpointConfig(num_to_keep=None)
    return latest_checkpoints()


def run_study(
    plan: StudyPlan,
    args: argparse.Namespace,
    space: SearchSpace,
    data: PreparedData,
    storage: str,
    folder: Path,
    cluster_gpus: float,
) -> int:
    """Run (or resume) the study `plan` describes; `args`: this invocation's resources (CPUs and GPUs per trial,
    the cluster address, concurrency, retries, --resume)."""
    config, base, max_epochs, num_samples = plan.trial_base, plan.base, plan.max_epochs, plan.trials
    gpus = gpus_per_trial(args.gpus_per_trial, cluster_gpus)
    trainable = tune.with_resources(
        tune.with_parameters(
            train_healthgym,
            data=data,
            base=config,
            max_epochs=max_epochs,
            metric=plan.metric,
            threads=max(1, int(args.cpus_per_trial)),
            verdict_epoch=plan.grace_period,
        ),
        {"cpu": args.cpus_per_trial, "gpu": gpus},
    )
    # With a search algorithm Tune keeps one trial pending by default, so trials start one after another as
    # workers boot (about 10-30 s each here); let as many start as could run at once.
    # On a cluster the autoscaler adds nodes for pending trials, so let several wait even if none fit yet.
    slots = max(1, int(ray.cluster_resources().get("CPU", 1) // args.cpus_per_trial))
    if args.address:
        slots = max(slots, 16)
    os.environ.setdefault("TUNE_MAX_PENDING_TRIALS_PG", str(args.max_concurrent or slots))
    exp_path = f"{storage.rstrip('/')}/{plan.name}"
    param_space = tune_param_space(plan, space)
    tuner = None
    if args.resume and tune.Tuner.can_restore(exp_path):
        keep_pbt_log(folder)
        try:
            # The parameter space again: Tune does not keep it in tuner.pkl, and a driver killed after writing that
            # file but before its first experiment state would otherwise restart with an empty space (one trial).
            tuner = tune.Tuner.restore(exp_path, trainable=trainable, resume_errored=True, param_space=param_space)
        except Exception as e:  # Tune raises many types for damaged experiment state
            if any(Path(folder).glob("*/result.json")) or "://" in storage:  # trials ran, or remote state
                first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
                raise ConfigError(
                    f"{exp_path}: the experiment state cannot be restored ({type(e).__name__}: {first})"
                ) from None
            # Killed while Tune wrote its first state (tuner.pkl truncated), before any trial reported: nothing is
            # lost by starting afresh, and Optuna's proposals of that start are dropped with it.
            print("note: the study was stopped before its first result; it starts again from the beginning")
            for stale in (Path(exp_path) / "tuner.pkl", Path(folder) / OPTUNA_FILE):
                stale.unlink(missing_ok=True)
    if tuner is None and args.resume and any(Path(folder).glob("*/result.json")):
        raise ConfigError(
            f"{exp_path}: trials exist but Tune's experiment state is missing or damaged; "
            "resume is impossible (start a new study with another --name)"
        )
    if tuner is None:
        if space.factors and plan.scheduler == "pbt":  # PBT: a random first population, the base point in it
            points = pbt_first_points(space, config, base)
            search_alg = BasicVariantGenerator(points_to_evaluate=points or None, random_state=plan.seed)
        elif space.factors:
            search_alg = make_searcher(space, plan, folder, *first_points(space, config, base))
        else:
            search_alg = None
        tuner = tune.Tuner(
            trainable,
            param_space=param_space,
            tune_config=tune.TuneConfig(
                metric=exploit_metric(plan.metric) if plan.scheduler == "pbt" else plan.metric,
                mode="min",
                search_alg=search_alg,
                scheduler=make_scheduler(plan, space),
                num_samples=num_samples if space.factors else 1,
                max_concurrent_trials=args.max_concurrent,
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(
                name=plan.name,
                storage_path=storage,
                callbacks=[LastStep()],
                failure_config=tune.FailureConfig(max_failures=args.max_failures),
                checkpoint_config=checkpoint_config(plan),
                sync_config=tune.SyncConfig(sync_artifacts=True),
                verbose=1,
            ),
        )
    LastStep.statuses = None
    results = tuner.fit()
    if interrupted(results, num_samples if space.factors and not plan.budget else None):
        storage_option = "" if args.storage == "experiments" else f" --storage {args.storage}"
        print(
            f"interrupted: {ended_trials(results)} of {len(results)} trials ended; no leaderboard and no cohort "
            f"written. Continue with: python study/run.py --space {plan.space} --name {plan.name}{storage_option} "
            "--resume",
            file=sys.stderr,
        )
        return 130
    from study.console import finish

    return finish(results, plan, space, folder, data)


class LastStep(tune.Callback):
    """The trials' statuses at the end of Tune's last step. On Ctrl-C Tune leaves its loop and then stops the running
    trials as TERMINATED, as if they had ended; this snapshot, taken before that, still shows them running. Kept on
    the class: a restored Tuner runs the instance unpickled from its own state, in this process."""

    statuses: dict[str, str] | None = None

    def on_step_end(self, iteration: int, trials: list, **info) -> None:
        LastStep.statuses = {t.trial_id: t.status for t in trials}


def ended_trials(results: tune.ResultGrid) -> int:
    """Trials that completed, were pruned or errored (by the last step's snapshot when there is one)."""
    if LastStep.statuses is not None:
        return sum(status in ("TERMINATED", "ERROR") for status in LastStep.statuses.values())
    return results.num_terminated + results.num_errors


def interrupted(results: tune.ResultGrid, expected: int | None) -> bool:
    """Whether Tune stopped before the study ended (Ctrl-C, SIGUSR1): at the end of its last step a trial was still
    pending, running or paused, or there are fewer trials than `expected` (the trial count, when a search has one).
    A study started before `LastStep` existed has no snapshot; then only a trial Tune left unstopped counts."""
    if expected is not None and len(results) < expected:
        return True
    return ended_trials(results) < len(LastStep.statuses if LastStep.statuses is not None else results)
