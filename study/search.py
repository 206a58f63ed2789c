"""The search: who proposes a study's configurations (Optuna's TPE, or PBT's population) and who spends the compute
(ASHA, PBT, or every trial to the end), built from the study's plan and space."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import optuna
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, PopulationBasedTraining
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from study.base import UPSTREAM_REFERENCE, is_reference, is_upstream
from study.experiment import OPTUNA_FILE
from study.plan import StudyPlan
from study.spaces import Factor, SearchSpace


class DefineByRun:
    """Optuna define-by-run space: the space's factors, plus a per-trial seed (`--seed` + Optuna's trial number),
    so that a configuration proposed twice is a seed replicate rather than an identical rerun. A class, not a
    closure, so Tune can save the searcher for --resume."""

    def __init__(self, space: SearchSpace, seed: int, reference_number: int | None = None) -> None:
        self.space, self.seed, self.reference_number = space, seed, reference_number

    def __call__(self, trial: optuna.Trial) -> dict:
        for f in self.space.factors:
            d = f.distribution()
            if isinstance(d, optuna.distributions.CategoricalDistribution):
                trial.suggest_categorical(f.name, d.choices)
            elif isinstance(d, optuna.distributions.IntDistribution):
                trial.suggest_int(f.name, d.low, d.high, log=d.log)
            else:
                trial.suggest_float(f.name, d.low, d.high, log=d.log)
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
    """The factor's distribution as a Ray Tune search domain (PBT samples its first population and resamples from
    these)."""
    d = f.distribution()
    if isinstance(d, optuna.distributions.CategoricalDistribution):
        return tune.choice(list(d.choices))
    if isinstance(d, optuna.distributions.IntDistribution):
        return tune.lograndint(d.low, d.high + 1) if d.log else tune.randint(d.low, d.high + 1)
    return tune.loguniform(d.low, d.high) if d.log else tune.uniform(d.low, d.high)


class ClampToSpace:
    """PBT's perturbations (x 0.8, x 1.2, resampling) kept inside the space: integer factors whole, ranges bounded.
    A class, not a closure, so Tune can save the scheduler for --resume."""

    def __init__(self, space: SearchSpace) -> None:
        self.factors = {f.name: f for f in space.factors}

    def __call__(self, config: dict) -> dict:
        return {k: (self.factors[k].clamp(v) if k in self.factors else v) for k, v in config.items()}


class StudyASHA(ASHAScheduler):
    """ASHA that leaves the upstream reference trial out of its rungs. The reference is there to be compared with,
    not to set the bar: a collapsed generator can score well on the pruning signal early (emd_feat favoured the
    collapsed reference over every `textured` trial at epoch 8, and ASHA stopped them all). It is never stopped by
    ASHA either; it ends at its own verdict (study/trainable.py)."""

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if is_reference(trial.config):
            return self.CONTINUE
        return super().on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        if is_reference(trial.config):
            self._trial_info.pop(trial.trial_id, None)
            return
        super().on_trial_complete(tune_controller, trial, result)


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
    return StudyASHA(
        time_attr="epoch",
        max_t=plan.max_epochs,
        grace_period=plan.grace_period,
        reduction_factor=plan.reduction_factor,
        brackets=1,
    )


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
