"""Re-train chosen configurations with several seeds through Tune and score them on the test patients."""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd
from ray import tune
from ray.tune.result import AUTO_RESULT_KEYS

from healthgym_core.atomic import atomic_write, write_table
from healthgym_core.config import TrainConfig
from healthgym_core.data.prepared import PreparedData
from healthgym_core.errors import ConfigError
from healthgym_core.evaluation.final import METRIC_INFO, final_metrics, real_floor
from healthgym_core.sampling import sample_arrays
from study.experiment import CHECKPOINT_FILE, CODE_KEY, RUNS_TABLE, STUDY_FILE, read_study_record, result_lines
from study.plan import plan_of
from study.presets import gpus_per_trial
from study.trainable import train_healthgym, training_code, trial_config
from study.tuning import latest_checkpoints

PLAN_FILE = "evaluation.json"  # in each final-* run folder: its arms, seeds and epochs, for --resume
TUNE_KEYS = {*AUTO_RESULT_KEYS, "done", "should_checkpoint", "trial_id", "experiment_tag"}  # Tune's, not ours


def arm_trial(config: dict) -> dict:
    """The trial options of one evaluation run: its arm's factors and its seed."""
    return {**{k: v for k, v in config["arm"].items() if k != "arm"}, "seed": config["seed"]}


def run_key(config: TrainConfig, epochs: int, fingerprint: str, code: str | None = None) -> str:
    """What makes two evaluation runs the same run: every training option (the seed too), the epochs, the data and
    the code that trained it (`code`, as its reports recorded it; default this code). Without the code, keys
    computed from today's options matched runs that earlier code had made, with other scores."""
    key = {"config": config.to_dict(), "epochs": epochs, "data": fingerprint, "code": code or training_code()}
    return hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def train_arm(config: dict, *, reuse: dict[str, dict] | None = None, **kwargs) -> None:
    """One evaluation run: an arm's factors plus a seed, trained by the study's own trainable, or, when an earlier
    evaluation ran exactly this run (`reuse`, by `run_key`), its final checkpoint and report taken over as they are
    (or, from an earlier evaluation's table, its test scores: reported here, copied when the runs are scored)."""
    trial = arm_trial(config)
    key = run_key(trial_config(trial, kwargs["base"]), kwargs["max_epochs"], kwargs["data"].fingerprint)
    done = (reuse or {}).get(key)
    if done is not None and tune.get_checkpoint() is None:
        if "scores" in done:  # from a table: no checkpoint, the scores are copied into the row at scoring time
            tune.report(
                {"epoch": kwargs["max_epochs"], "fd_feat": done["scores"]["fd_feat"], "reused_from": done["source"]}
            )
            return
        with tempfile.TemporaryDirectory() as tmp:
            shutil.copy(Path(done["checkpoint"]) / CHECKPOINT_FILE, Path(tmp) / CHECKPOINT_FILE)
            report = {k: v for k, v in done["metrics"].items() if k not in TUNE_KEYS}
            tune.report({**report, "reused_from": done["source"]}, checkpoint=tune.Checkpoint.from_directory(tmp))
        return
    train_healthgym(trial, **kwargs)


def trial_base(record: dict) -> dict:
    """The options every trial of the study recorded in `record` (study.json) started from."""
    return plan_of(record).trial_base


def _last_report(trial: Path) -> dict | None:
    reports, _ = result_lines(trial)  # a line cut short by a kill is left out
    return reports[-1] if reports else None


def finished_runs(study: Path, skip: Path | None = None) -> dict[str, dict]:
    """Every run of the study's evaluations (final-* folders but `skip`) that trained all its epochs: run key (with
    the code its reports recorded, so that a run made by other code matches no run of this code) -> its arm and
    seed, its last report, its final checkpoint folder and where it came from."""
    record = read_study_record(study)
    base, fingerprint = trial_base(record), record.get("data", {}).get("fingerprint")
    found = {}
    for plan_file in sorted(study.glob(f"final-*/{PLAN_FILE}")):
        run = plan_file.parent
        if skip is not None and run.resolve() == skip.resolve():
            continue
        epochs = json.loads(plan_file.read_text())["epochs"]
        for params in sorted(run.glob("*/params.json")):
            last = _last_report(params.parent)
            if not last or last.get("diverged") or int(last.get("epoch", 0)) < epochs:
                continue
            ckpt = params.parent / str(last.get("checkpoint_dir_name") or "")
            if not (ckpt / CHECKPOINT_FILE).is_file():
                continue
            if CODE_KEY not in last:
                continue  # made before runs recorded their code: which code made it is unknown
            config = json.loads(params.read_text())
            key = run_key(trial_config(arm_trial(config), base), epochs, fingerprint, last[CODE_KEY])
            found[key] = {
                "config": {"arm": config["arm"], "seed": config["seed"]},
                "checkpoint": str(ckpt),
                "metrics": last,
                "source": last.get("reused_from") or f"{study.name}/{run.name}/{params.parent.name}",
            }
    return found


def scored_runs(table: Path, samples: int, option: str = "--reuse") -> dict[str, dict]:
    """The runs an earlier evaluation's table (final_evaluation.csv, kept when its folder is not) scored with
    `samples` synthetic patients: run key -> {"scores": its test scores, "source": where they came from}. `option`
    names the option that gave the table in an error."""
    try:
        runs = pd.read_csv(table)
    except (OSError, ValueError) as e:
        raise ConfigError(f"{option} {table}: not readable as an evaluation table ({str(e)[:120]})") from None
    if not {"run_key", "samples", "arm", "seed", "error"} <= set(runs.columns):
        raise ConfigError(f"{option} {table}: no run_key column (not a {RUNS_TABLE}.csv, or one written before "
                          "run keys were recorded)")  # fmt: skip
    found = {}
    for _, r in runs[~runs["error"].astype(bool) & (runs["samples"] == samples)].iterrows():
        scores = {k: float(v) for k, v in r.items() if k in METRIC_INFO and pd.notna(v)}
        found[str(r["run_key"])] = {"scores": scores, "source": f"{table.name}:{r['arm']}/{int(r['seed'])}"}
    return found


def samples_scored(args: argparse.Namespace, data: PreparedData) -> int:
    """Synthetic patients scored per run: --samples, else twice the test patients."""
    return args.samples or 2 * len(data.split.test)


def run_row(config: dict, last: dict, key: str, samples: int, error: bool = False) -> dict:
    """One run's row of the evaluation table (RUNS_TABLE), before its test scores."""
    return {
        **config["arm"],
        "seed": config["seed"],
        "epochs": int(last.get("epoch", 0)),
        "error": error,
        "reused_from": last.get("reused_from", ""),
        "run_key": key,
        "samples": samples,
    }


def keep_done(study: Path, data: PreparedData, samples: int, table: Path) -> tuple[int, int]:
    """Score every finished run of the study's evaluations on the test patients, exactly as the evaluation will,
    and add those `table` lacks to it (an evaluation table that `--reuse` takes over, so that an evaluation longer
    than a machine's life loses none of its finished runs). Returns (runs added, runs in the table)."""
    kept = pd.read_csv(table) if table.is_file() else pd.DataFrame()
    known = set(kept["run_key"]) if "run_key" in kept else set()
    rows = []
    for key, done in finished_runs(study).items():
        if key in known:
            continue
        row = run_row(done["config"], done["metrics"], key, samples)
        rows.append(row | score_checkpoint(Path(done["checkpoint"]), data, samples, row["seed"]))
    if rows:
        both = pd.concat([kept, pd.DataFrame(rows)], ignore_index=True) if len(kept) else pd.DataFrame(rows)
        write_table(both.sort_values(["arm", "seed"], kind="stable"), table)
    return len(rows), len(kept) + len(rows)


STATUS_METRICS = ("emd_feat", "fd_feat", "coverage", "joint_tvd", "diversity_ratio", "ks_mean")


def plan_status(run: Path, plan: dict) -> pd.DataFrame:
    """Every planned run of an evaluation (arm x seed): epochs done of the plan's, and its last validation metrics
    (each run's own per-epoch evaluation, not the test-patient table). Reads files only: works while it runs."""
    found = {}
    for params in run.glob("*/params.json"):
        config = json.loads(params.read_text())
        found[(config["arm"]["arm"], config["seed"])] = _last_report(params.parent) or {}
    rows = []
    for arm in plan["arms"]:
        for seed in plan["seeds"]:
            started = (arm["arm"], seed) in found
            last = found.get((arm["arm"], seed), {})
            state = "reused" if last.get("reused_from") else ("done" if run_ended(last, plan["epochs"]) else "")
            row = {"arm": arm["arm"], "seed": seed, "epochs": f"{int(last.get('epoch', 0))}/{plan['epochs']}"}
            row["state"] = state or ("running or paused" if started else "not started")
            rows.append(row | {m: float(last.get(m, "nan")) for m in STATUS_METRICS})
    return pd.DataFrame(rows)


def score_checkpoint(folder: Path, data: PreparedData, n: int, seed: int) -> dict[str, float]:
    """`n` synthetic patients from the generator of a trial checkpoint folder, scored on the test patients."""
    reals, codes, _ = sample_arrays(folder / CHECKPOINT_FILE, n, seed, data.n_months)
    return final_metrics(data, reals, codes, seed=seed)


def new_plan(
    folder: Path, arms: list[dict], seeds: list[int], epochs: int, reuse: list[str] | None = None
) -> tuple[Path, dict]:
    """A fresh run folder under the study, holding the plan a resume will follow (`reuse`: other studies whose
    evaluations may hold some of its runs)."""
    run = folder / f"final-{time.strftime('%Y%m%d-%H%M%S')}"
    run.mkdir()
    plan = {"arms": arms, "seeds": seeds, "epochs": epochs, "reuse": reuse or []}
    atomic_write(run / PLAN_FILE, lambda p: p.write_text(json.dumps(plan, indent=2)))
    return run, plan


def last_plan(folder: Path, option: str = "--resume") -> tuple[Path, dict]:
    """The newest evaluation run of this study and its plan (`option` names what asked for it in an error)."""
    runs = sorted(p.parent for p in folder.glob(f"final-*/{PLAN_FILE}"))
    if not runs:
        hint = "run it without --resume" if option == "--resume" else "start one: python study/evaluate.py EXPERIMENT"
        raise ConfigError(f"{option}: {folder} holds no evaluation yet ({hint})")
    return runs[-1], json.loads((runs[-1] / PLAN_FILE).read_text())


def run_ended(last: dict | None, epochs: int) -> bool:
    """Whether a run whose last report is `last` trained all its epochs or stopped for good (diverged)."""
    return bool(last) and (int(last.get("epoch", 0)) >= epochs or bool(last.get("diverged")))


def run_final(
    args: argparse.Namespace,
    record: dict,
    data: PreparedData,
    run: Path,
    plan: dict,
    gpus_seen: float,
) -> tuple[pd.DataFrame, dict, dict] | None:
    """Train (or, when `run` holds Tune's state, continue) every arm x seed of the plan; score each on test patients.
    None when Tune stopped before every run finished (interrupted): `--resume` continues it."""
    base = trial_base(record)
    n = samples_scored(args, data)
    reuse: dict[str, dict] = {}
    for folder in [run.parent, *map(Path, plan.get("reuse", []))]:  # the study's own earlier evaluations first
        if folder.suffix == ".csv":  # an earlier evaluation's table: its scores, where its folder is gone
            reuse.update({k: v for k, v in scored_runs(folder, n).items() if k not in reuse})
            continue
        if not (folder / STUDY_FILE).is_file():
            print(f"note: --reuse {folder} is no longer a study folder; its runs are not searched", flush=True)
            continue
        reuse.update({k: v for k, v in finished_runs(folder, skip=run).items() if k not in reuse})
    planned = [
        run_key(trial_config(arm_trial({"arm": a, "seed": s}), base), plan["epochs"], data.fingerprint)
        for a in plan["arms"]
        for s in plan["seeds"]
    ]
    hits = sum(k in reuse for k in planned)
    if hits:
        print(f"{hits} of {len(planned)} runs were run before exactly so: their results are taken over", flush=True)
    gpus = gpus_per_trial(args.gpus_per_trial, gpus_seen)
    trainable = tune.with_resources(
        tune.with_parameters(
            train_arm,
            data=data,
            base=base,
            max_epochs=plan["epochs"],
            metric="fd_feat",
            threads=max(1, int(args.cpus_per_trial)),
            reuse=reuse,
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
                checkpoint_config=latest_checkpoints(),
                verbose=1,
            ),
        )
    results = tuner.fit()
    if not all(r.config is not None and (r.error is not None or run_ended(r.metrics, plan["epochs"])) for r in results):
        return None  # Tune stopped before every run ended (Ctrl-C): nothing to score yet
    rows = []
    for r in results:
        seed = r.config["seed"]
        code = (r.metrics or {}).get(CODE_KEY)  # the code that trained it; none for scores taken from a table
        key = run_key(trial_config(arm_trial(r.config), base), plan["epochs"], data.fingerprint, code)
        row = run_row(r.config, r.metrics or {}, key, n, error=r.error is not None)
        scored = reuse.get(row["run_key"], {}).get("scores")
        if scored is not None and r.checkpoint is None and r.error is None:
            row.update(scored)
        elif r.checkpoint is not None and r.error is None:
            with r.checkpoint.as_directory() as d:
                row.update(score_checkpoint(Path(d), data, n, seed))
        rows.append(row)
    return pd.DataFrame(rows), real_floor(data, seed=0), METRIC_INFO
