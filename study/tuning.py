"""The Ray Tune wiring: Ray start-up, OptunaSearch + ASHA, Tuner (fresh or restored), leaderboard and export."""

from __future__ import annotations

import argparse
import os
import random
import sys
from pathlib import Path

import optuna
import pandas as pd
import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, PopulationBasedTraining
from ray.tune.search import Searcher
from ray.tune.search.basic_variant import BasicVariantGenerator
from ray.tune.search.optuna import OptunaSearch

from healthgym_core.atomic import write_table
from healthgym_core.cpu import SINGLE_THREAD_ENV
from healthgym_core.data.prepared import PreparedData
from healthgym_core.errors import ConfigError
from healthgym_core.sampling import sample
from study.base import UPSTREAM_REFERENCE, is_upstream
from study.experiment import (
    CHECKPOINT_FILE,
    OPTUNA_FILE,
    RANK_FLOOR,
    RANK_METRIC,
    TRIAL_DIR,
    exploit_metric,
    spent_text,
)
from study.leaderboard import collapse_summary, format_board, keep_pbt_log, mark_roles, pbt_exploits, rank, trial_row
from study.plan import StudyPlan
from study.presets import gpus_per_trial
from study.spaces import Factor, SearchSpace
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


class DefineByRun:
    """Optuna define-by-run space: the space's factors, plus a per-trial seed (`--seed` + Optuna's trial number),
    so that a configuration proposed twice is a seed replicate rather than an identical rerun. A class, not a
    closure, so Tune can save the searcher for --resume."""

    def __init__(self, space: SearchSpace, seed: int, reference_number: int | None = None) -> None:
        self.space, self.seed, self.reference_number = space, seed, reference_number

    def __call__(self, trial: optuna.Trial) -> dict:
        for f in self.space.factors:
            if f.choices is not None:
                trial.suggest_categorical(f.name, list(f.choices))
            elif f.is_int:
                trial.suggest_int(f.name, int(f.low), int(f.high), log=f.log)
            else:
                trial.suggest_float(f.name, float(f.low), float(f.high), log=f.log)
        if trial.number == self.reference_number:  # the upstream reference trial of a study on another base
            return {"seed": self.seed + trial.number, "reference": UPSTREAM_REFERENCE}
        return {"seed": self.seed + trial.number}


class ResumableOptunaSearch(OptunaSearch):
    """OptunaSearch that survives a driver killed at an unlucky moment, and keeps the upstream reference trial out
    of the sampler's model.

    Optuna's SQLite storage is written at once, Tune's experiment state only every few seconds. A driver killed in
    between leaves a trial that Optuna already counts as finished but that Tune restores and re-runs from its last
    checkpoint; stock OptunaSearch then fails the whole study with UpdateFinishedTrialError on the re-run's first
    result (seen in the kill tests). Optuna keeps the value it already has; Tune and the leaderboard record the rest.

    The upstream reference trial carries placeholder factor values (the base's, or upstream's own) but runs the
    whole upstream configuration, which lies outside the space. Told to Optuna as it ran, its (collapsed) score would
    teach TPE and the importances that those factor values are poor. Optuna hears none of its results; it is told
    as FAIL, the state its samplers and importances ignore, with user attributes saying why and what it scored.
    """

    def _is_reference(self, trial_id: str) -> bool:
        number = getattr(self._space, "reference_number", None)
        return number is not None and trial_id in self._ot_trials and self._ot_trials[trial_id].number == number

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if self._is_reference(trial_id):
            return
        try:
            super().on_trial_result(trial_id, result)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if not self._is_reference(trial_id) or trial_id in self._completed_trials:
            super().on_trial_complete(trial_id, result=result, error=error)
            return
        trial = self._ot_trials[trial_id]
        value = (result or {}).get(self.metric)
        try:
            trial.set_user_attr(
                "reference", f"{UPSTREAM_REFERENCE}: the whole upstream configuration, outside the space"
            )
            if value is not None:
                trial.set_user_attr(str(self.metric), float(value))
            self._ot_study.tell(trial, state=optuna.trial.TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:  # told before a driver was killed
            pass
        self._completed_trials.add(trial_id)


class BudgetedOptunaSearch(ResumableOptunaSearch):
    """ResumableOptunaSearch that proposes no trial the study's budget (`--budget`, in trial-epochs) cannot hold:
    each running trial counts as if it will run to `max_t`, so the study never spends more; a trial ASHA stops early
    hands its unspent epochs back, and more trials start. Its counts are saved with it, for --resume."""

    def __init__(self, *args, budget: int, max_t: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.budget, self.max_t = budget, max_t
        self.epochs: dict[str, int] = {}  # trial_id -> epochs it reported
        self.live: set[str] = set()  # proposed, not yet complete

    def committed(self) -> int:
        """Trial-epochs spent, plus those the running trials may still spend."""
        return sum(self.epochs.values()) + sum(self.max_t - self.epochs[t] for t in self.live)

    def suggest(self, trial_id: str) -> dict | str | None:
        if self.committed() + self.max_t > self.budget:
            return None if self.live else Searcher.FINISHED  # a running trial may still hand epochs back
        config = super().suggest(trial_id)
        if config not in (None, Searcher.FINISHED):
            self.live.add(trial_id)
            self.epochs[trial_id] = 0
        return config

    def _count(self, trial_id: str, result: dict | None) -> None:
        if trial_id in self.epochs and result and "epoch" in result:
            self.epochs[trial_id] = max(self.epochs[trial_id], min(int(result["epoch"]), self.max_t))

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self._count(trial_id, result)
        super().on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        self._count(trial_id, result)
        self.live.discard(trial_id)
        super().on_trial_complete(trial_id, result=result, error=error)


def first_points(space: SearchSpace, config: dict, base: dict, quiet: bool = False) -> tuple[list[dict], int | None]:
    """The points every search evaluates first: the base point (the base's values of the space's factors) and, when
    the base is not upstream, the upstream reference trial (its factor values are placeholders: the trainable runs
    the whole upstream configuration for it). Returns (points, the reference's trial number or None)."""
    point = {f.name: config[f.name] for f in space.factors}
    points = [point] if all(f.contains(point[f.name]) for f in space.factors) else []
    if not points and not quiet:
        print(
            f"note: the base configuration lies outside space {space.name}; it is not evaluated first", file=sys.stderr
        )
    if is_upstream(base):
        return points, None
    reference = space.upstream_point() or (points[0] if points else None)
    if reference is None:
        if not quiet:
            print(f"note: no point of space {space.name} can carry the upstream reference trial", file=sys.stderr)
        return points, None
    return points + [reference], len(points)


def pbt_first_points(space: SearchSpace, config: dict, base: dict) -> list[dict]:
    """`first_points` for a PBT population, which runs no upstream reference trial: members trade weights and
    settings, and the reference's whole upstream configuration lies outside the space. Its placeholder point (upstream's
    values of the space's factors) joins the population as an ordinary member, and a note says so."""
    points, reference = first_points(space, config, base)
    if reference is not None:
        held = "upstream's values of its factors" if space.upstream_point() else "the base point again"
        print(
            "note: PBT runs no upstream reference trial (a population trades weights and settings); its first "
            f"population holds the base point and {held}, and study/evaluate.py trains the whole upstream "
            "configuration beside the winner",
            file=sys.stderr,
        )
    return points


def make_searcher(
    space: SearchSpace, plan: StudyPlan, folder: Path, points: list[dict], reference_number: int | None
) -> OptunaSearch:
    storage = optuna.storages.RDBStorage(f"sqlite:///{folder / OPTUNA_FILE}")
    budget = {"budget": plan.budget, "max_t": plan.max_epochs} if plan.budget else {}
    return (BudgetedOptunaSearch if budget else ResumableOptunaSearch)(
        **budget,
        space=DefineByRun(space, plan.seed, reference_number),
        metric=plan.metric,
        mode="min",
        sampler=optuna.samplers.TPESampler(seed=plan.seed),
        storage=storage,
        study_name=plan.name,
        points_to_evaluate=points or None,
    )


def tune_domain(f: Factor):
    """The factor as a Ray Tune search domain (PBT samples its first population and resamples from these)."""
    if f.choices is not None:
        return tune.choice(list(f.choices))
    if f.is_int:
        return tune.lograndint(int(f.low), int(f.high) + 1) if f.log else tune.randint(int(f.low), int(f.high) + 1)
    return tune.loguniform(f.low, f.high) if f.log else tune.uniform(f.low, f.high)


class ClampToSpace:
    """PBT's perturbations (x 0.8, x 1.2, resampling) kept inside the space: integer factors whole, ranges bounded.
    A class, not a closure, so Tune can save the scheduler for --resume."""

    def __init__(self, space: SearchSpace) -> None:
        self.factors = {f.name: f for f in space.factors}

    def __call__(self, config: dict) -> dict:
        return {k: (self.factors[k].clamp(v) if k in self.factors else v) for k, v in config.items()}


def make_scheduler(plan: StudyPlan, space: SearchSpace):
    if plan.scheduler == "none":
        return FIFOScheduler()
    if plan.scheduler == "pbt":
        random.seed(plan.seed)  # PBT draws its perturbations from Python's random module
        return PopulationBasedTraining(
            time_attr="epoch",
            perturbation_interval=plan.perturbation_interval,
            hyperparam_mutations={f.name: tune_domain(f) for f in space.factors if f.is_mutable},
            custom_explore_fn=ClampToSpace(space),
            quantile_fraction=0.25,
            resample_probability=0.25,
        )
    return ASHAScheduler(
        time_attr="epoch",
        max_t=plan.max_epochs,
        grace_period=plan.grace_period,
        reduction_factor=plan.reduction_factor,
        brackets=1,
    )


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


def tune_param_space(plan: StudyPlan, space: SearchSpace) -> dict:
    """What Tune samples itself: PBT's factors and seed; the baseline's seeds (a grid); nothing under Optuna, whose
    define-by-run space proposes every value."""
    if space.factors and plan.scheduler == "pbt":
        return {f.name: tune_domain(f) for f in space.factors} | {
            "seed": tune.randint(plan.seed, plan.seed + 1_000_000)
        }
    if space.factors:
        return {}
    return {"seed": tune.grid_search(list(range(plan.seed, plan.seed + plan.trials)))}


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
    if args.resume and tune.Tuner.can_restore(exp_path):
        keep_pbt_log(folder)
        try:
            # The parameter space again: Tune does not keep it in tuner.pkl, and a driver killed after writing that
            # file but before its first experiment state would otherwise restart with an empty space (one trial).
            tuner = tune.Tuner.restore(exp_path, trainable=trainable, resume_errored=True, param_space=param_space)
        except Exception as e:  # Tune raises many types for damaged experiment state
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise ConfigError(
                f"{exp_path}: the experiment state cannot be restored ({type(e).__name__}: {first})"
            ) from None
    elif args.resume and any(Path(folder).glob("*/result.json")):
        raise ConfigError(
            f"{exp_path}: trials exist but Tune's experiment state is missing or damaged; "
            "resume is impossible (start a new study with another --name)"
        )
    else:
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
    return finish(results, plan, space, folder)


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


def leaderboard(results: tune.ResultGrid, space: SearchSpace, max_epochs: int) -> pd.DataFrame:
    factors = [f.name for f in space.factors]
    rows = []
    exploits = pbt_exploits(Path(results.experiment_path)) if len(results) else {}
    for r in results:
        history = r.metrics_dataframe if r.metrics_dataframe is not None else pd.DataFrame()
        ckpt = r.checkpoint.path if r.checkpoint is not None else None
        # The trial's own id from its folder: under PBT its last metrics may be a copy of the trial it cloned.
        found = TRIAL_DIR.search(Path(r.path).name)
        trial_id = found.group(1) if found else (r.metrics or {}).get("trial_id") or Path(r.path).name
        last = r.metrics or {}
        done = int(history["epoch"].max()) if len(history) and "epoch" in history else 0
        if last.get("epoch", 0) > done:
            # Under PBT the last report can be missing from the trial's history (a paused trial's final result), or
            # be a copy: PBT cloned a trial that had already finished into this one, which ends in its final state.
            extra = {**last, **{f"config/{k}": v for k, v in r.config.items()}}
            if last.get("trial_id") not in (None, trial_id):
                extra["exploited_from"], extra["cloned"] = last["trial_id"], True
            history = pd.concat([history, pd.DataFrame([extra])], ignore_index=True)
        rows.append(
            trial_row(
                trial_id,
                r.config,
                factors,
                history,
                max_epochs,
                error=r.error is not None,
                checkpoint=ckpt,
                path=r.path,
                exploits=exploits.get(trial_id, ()),
            )
        )
    return rank(pd.DataFrame(rows))


def finish(results: tune.ResultGrid, plan: StudyPlan, space: SearchSpace, folder: Path) -> int:
    factors, base = [f.name for f in space.factors], plan.base
    points, _ = first_points(space, plan.trial_base, base, quiet=True)
    board = mark_roles(
        leaderboard(results, space, plan.max_epochs), factors, points[0] if points else None, is_upstream(base)
    )
    write_table(board, folder / "leaderboard.parquet")
    write_table(board, folder / "leaderboard.csv")
    print(
        f"\nLeaderboard (completed trials first, collapsed ones after the others, then by final {RANK_METRIC}; "
        "pruned = stopped early by ASHA):"
    )
    print(format_board(board, factors + (["seed"] if not factors else []), plan.metric))
    counts = board["status"].value_counts().to_dict()
    print(f"\ntrials: {len(board)} ({', '.join(f'{v} {k}' for k, v in counts.items())})")
    print(f"compute: {spent_text(int(board['epochs'].sum()), int(board['g_steps'].sum()), plan.budget)}")
    summary = collapse_summary(board, base)
    if summary:
        print("\n" + summary)
    best = board[board["status"] == "completed"].head(1)
    if len(best) and best["checkpoint"].iloc[0]:
        row = best.iloc[0]
        ckpt_dir = row["checkpoint"]
        out = folder / "synthetic_best.csv"
        with tune.Checkpoint(ckpt_dir).as_directory() as d:
            sample(Path(d) / CHECKPOINT_FILE, plan.export_patients, seed=plan.seed, out=out)
        print(
            f"best trial: {row['trial_id']} (final {RANK_METRIC} {row[f'last_{RANK_METRIC}']:.4g}; "
            f"floor {row[RANK_FLOOR]:.4g})"
        )
        print(f"best checkpoint: {ckpt_dir}/{CHECKPOINT_FILE}")
        print(f"synthetic cohort from the best trial: {out}")
    elif not len(best):
        print("no trial completed its epochs; see the leaderboard statuses", file=sys.stderr)
    print(f"leaderboard: {folder / 'leaderboard.parquet'}")
    print("\nInspect it:")
    print(f"  python study/dashboard.py {folder}     # the study dashboard in a browser (live while a study runs)")
    print(f"  python study/report.py {folder}        # report.html")
    print(f"  python study/evaluate.py {folder}      # re-train the best with seeds, score on test patients")
    print(f"  tensorboard --logdir {results.experiment_path}")
    if space.factors:
        print(f"  optuna-dashboard sqlite:///{folder / OPTUNA_FILE}")
    print(
        "  Ray dashboard: http://127.0.0.1:8265 while Ray runs (token: `ray get-auth-token`); on a cluster: ray dashboard cluster.yaml"
    )
    return 0 if counts.get("error", 0) < len(board) else 1
