"""A study resolved once: the command line, the preset, the base, the space's fixed values and --set merged into one
frozen `StudyPlan` (sizes, epochs, rungs, trials, the options every trial starts from), recorded in study.json and
read back from it by everything after (the trainable's driver, the evaluation, the report, the dashboard). Imports
no Ray and no command-line parser.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from healthgym_core.atomic import plain_name
from healthgym_core.config import TrainConfig
from healthgym_core.errors import ConfigError, HealthGymError
from study.experiment import METRICS, SCHEDULERS
from study.spaces import Factor, SearchSpace, load_space

SIZES = ("hidden", "batch_size", "eval_samples")  # the preset's model and evaluation sizes a command line may change


def setting(args: dict, preset: dict, key: str):
    """A study size: the command-line override when one was given, else the preset's value."""
    v = args.get(key)
    return v if v is not None else preset.get(key)


def default_scheduler(space: SearchSpace, preset_prunes: bool, rungs_given: bool) -> str:
    """ASHA where the preset prunes or rungs are given, else every trial to the end. A space without factors runs one
    configuration with one trial per seed: pruning there would keep the lucky seeds, not measure their spread."""
    if not space.factors:
        return "none"
    return "asha" if preset_prunes or rungs_given else "none"


@dataclass(frozen=True)
class StudyPlan:
    name: str
    space: str  # a built-in space's name or the space file's path
    preset: str
    scheduler: str  # asha | pbt | none
    metric: str  # the pruning (or, under PBT, exploit) signal
    seed: int  # Optuna's seed; trial k trains with seed + k
    trials: int  # how many trials the study starts (with --budget: as many as it admits)
    max_epochs: int
    grace_period: int
    reduction_factor: int
    perturbation_interval: int
    budget: int | None  # trial-epochs, or None
    data: str
    schema: str
    patients: int
    split_seed: int
    export_patients: int
    base: dict  # where the base came from: {"from": ..., "set": {...}, "config": options}
    trial_base: dict  # every TrainConfig option a trial starts from: sizes, base, the space's fixed values, --set

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, where: str = "study.json") -> StudyPlan:
        """A recorded plan, every field checked for its type (a damaged record is refused in one line)."""
        kinds = {"int": int, "str": str, "dict": dict, "int | None": (int, type(None))}
        values = {}
        for f in fields(cls):
            v = d.get(f.name)
            ok = isinstance(v, kinds[f.type]) and not isinstance(v, bool)
            if not ok or (isinstance(v, int) and v < 0):
                raise ConfigError(f"{where}: plan field {f.name!r} is damaged (value {str(v)[:80]!r})")
            values[f.name] = v
        checks = {
            "name": (lambda v: plain_name(v, "name") and True, "a plain folder name"),
            "metric": (lambda v: v in METRICS, f"one of {', '.join(METRICS)}"),
            "scheduler": (lambda v: v in SCHEDULERS, f"one of {', '.join(SCHEDULERS)}"),
            "max_epochs": (lambda v: v >= 1, "at least 1"),
            "grace_period": (lambda v: v >= 1, "at least 1"),
            "reduction_factor": (lambda v: v >= 2, "at least 2"),
        }
        for name, (ok, rule) in checks.items():
            try:
                good = ok(values[name])
            except HealthGymError:
                good = False
            if not good:
                raise ConfigError(f"{where}: plan field {name!r} must be {rule}, got {str(values[name])[:80]!r}")
        if not all(isinstance(values["base"].get(k), dict) for k in ("config", "set")):
            raise ConfigError(f"{where}: plan field 'base' is damaged (it needs its config and set tables)")
        try:
            TrainConfig.from_dict(values["trial_base"]).validate()
        except (HealthGymError, TypeError, ValueError) as e:
            raise ConfigError(f"{where}: plan field 'trial_base' is damaged ({str(e)[:120]})") from None
        return cls(**values)


def resolve(args: dict, preset: dict, space: SearchSpace, base: dict) -> StudyPlan:
    """Merge a study's sources into its plan. `args`: the command line as a dict (None: not given); `preset`: the
    chosen preset's fields; `base`: study.base.study_base's record. Refuses rungs that cannot run."""
    scheduler = args.get("scheduler") or default_scheduler(
        space, preset.get("pruning", True), bool(args.get("grace_period"))
    )
    grace, max_t = int(setting(args, preset, "grace_period")), int(setting(args, preset, "max_epochs"))
    if scheduler == "asha" and grace > max_t:
        raise ConfigError(
            f"grace period {grace} is more than --max-epochs {max_t} (the {preset['name']} preset's grace period "
            f"is {preset['grace_period']}); pass --grace-period {max_t} or --no-pruning"
        )
    if scheduler == "asha" and grace == max_t:  # the first rung is the last epoch: nothing to prune
        scheduler = "none"
    budget = args.get("budget")
    if budget is not None and budget < max_t:
        raise ConfigError(f"--budget {budget} is less than one trial's {max_t} epochs (--max-epochs)")
    trials = int(setting(args, preset, "num_samples"))
    if budget:  # the most trials the budget can start: each runs at least a grace period (ASHA) or to the end
        shortest = grace if scheduler == "asha" else max_t
        most = budget // shortest if space.factors and scheduler != "pbt" else budget // max_t
        trials = min(args["num_samples"], most) if args.get("num_samples") else most
    trial_base = TrainConfig(**{k: setting(args, preset, k) for k in SIZES}, seed=args.get("seed", 0)).to_dict()
    trial_base.update(base["config"])
    trial_base.update(space.fixed)
    trial_base.update(base["set"])
    TrainConfig.from_dict(trial_base).validate()
    return StudyPlan(
        name=args["name"],
        space=args.get("space") or space.name,
        preset=preset["name"],
        scheduler=scheduler,
        metric=args["metric"],
        seed=int(args.get("seed", 0)),
        trials=trials,
        max_epochs=max_t,
        grace_period=grace,
        reduction_factor=int(setting(args, preset, "reduction_factor")),
        perturbation_interval=int(args.get("perturbation_interval") or preset["grace_period"]),
        budget=budget,
        data=args.get("data") or "simulated",
        schema=args.get("schema") or "demo7",
        patients=int(setting(args, preset, "patients")),
        split_seed=int(args.get("split_seed") or 0),
        export_patients=int(args.get("export_patients") or 1000),
        base=base,
        trial_base=trial_base,
    )


def recorded_space(record: dict) -> SearchSpace:
    """The study's space: its file as it is now, or, where that file is gone, the factors study.json recorded."""
    try:
        return load_space(str(record["args"]["space"]))
    except HealthGymError:
        kept = record.get("space") or {}
        factors = tuple(Factor.from_dict(f) for f in kept.get("factors", []))
        return SearchSpace(str(kept.get("name", "")), str(kept.get("description", "")), factors)


def plan_of(record: dict, where: str = "study.json") -> StudyPlan:
    """The plan a study recorded; for a study recorded before plans were (its `args` and `preset`), resolved from
    those the same way."""
    if "plan" in record:
        if not isinstance(record["plan"], dict):
            raise ConfigError(f"{where}: 'plan' is not a table")
        return StudyPlan.from_dict(record["plan"], where)
    args, preset = record.get("args"), record.get("preset")
    if not isinstance(args, dict) or not isinstance(preset, dict) or not isinstance(record.get("base"), dict):
        raise ConfigError(f"{where}: not a study record (no plan, args, preset or base)")
    try:
        space = recorded_space(record)
        return resolve({**args, "budget": args.get("budget")}, preset, space, record["base"])
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"{where}: a damaged study record ({type(e).__name__}: {str(e)[:80]})") from None
