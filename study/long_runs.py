"""Train a study's winners long: the leaderboard's top trials (and its base and upstream reference trials) continued
from their last checkpoints to a longer budget, side by side through Ray, each keeping its best checkpoint by the
ranking metric; the cohort each exports comes from that best checkpoint, with its card.

The runs live in EXPERIMENT/long-eN/ (N: the epochs they train to): plan.json, Tune's state and one folder per run
(its per-epoch result.json, steps.csv, checkpoints, best.pt, best.json), the exports and long_runs.csv.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

from healthgym_core.atomic import atomic_write, write_table
from healthgym_core.data.prepared import PreparedData
from healthgym_core.errors import ConfigError
from healthgym_core.evaluation.card import card_paths
from healthgym_core.sampling import card_summary, export_cohort
from study.experiment import RANK_METRIC, read_leaderboard, read_study_record, study_data
from study.leaderboard import completed_by_rank
from study.plan import StudyPlan, plan_of
from study.reporting.loading import checkpoint_file, trial_dir

PLAN_FILE = "plan.json"
TABLE = "long_runs.csv"


def run_folder(study: Path, epochs: int) -> Path:
    return study / f"long-e{epochs}"


def choose_runs(study: Path, top: int, epochs: int, references: bool = True) -> tuple[dict, StudyPlan, list[dict]]:
    """The trials to train on (the top `top` completed by rank, then the base and the upstream reference trial when
    the study has them and `references`), each {"trial_id", "role", "params", "start"}, with the study's record and
    plan; a one-line ConfigError for a study that cannot give them."""
    record = read_study_record(study)
    plan = plan_of(record)
    if epochs <= plan.max_epochs:
        raise ConfigError(
            f"--epochs {epochs}: the study's trials already trained {plan.max_epochs} epochs; give more to train long"
        )
    board = read_leaderboard(study)
    done = completed_by_rank(board)
    if not len(done):
        raise ConfigError(f"{study}: no trial completed its epochs, so there is no winner to train long")
    picked = list(done.head(top).itertuples(index=False))
    if references:
        for role in ("base", "upstream reference"):
            rows = done[done.get("role", pd.Series("", index=done.index)) == role]
            picked += [
                r for r in rows.head(1).itertuples(index=False) if r.trial_id not in {p.trial_id for p in picked}
            ]
    runs = []
    for i, r in enumerate(picked):
        row = pd.Series(r._asdict())
        folder, start = trial_dir(study, row), checkpoint_file(study, row)
        params = (
            json.loads((folder / "params.json").read_text()) if folder and (folder / "params.json").is_file() else None
        )
        if start is None or params is None:
            raise ConfigError(f"{study}: trial {row['trial_id']} has no checkpoint or params.json left to continue")
        role = str(row.get("role") or "") or ("best" if i == 0 else f"top {i + 1}")
        runs.append({"trial_id": str(row["trial_id"]), "role": role, "params": params, "start": str(start)})
    return record, plan, runs


def new_plan(study: Path, epochs: int, runs: list[dict], export_patients: int) -> Path:
    folder = run_folder(study, epochs)
    folder.mkdir(parents=True, exist_ok=True)
    plan = {"epochs": epochs, "runs": runs, "export_patients": export_patients}
    atomic_write(folder / PLAN_FILE, lambda p: p.write_text(json.dumps(plan, indent=2)))
    return folder


def read_plan(folder: Path) -> dict:
    try:
        plan = json.loads((folder / PLAN_FILE).read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(
            f"{folder / PLAN_FILE}: unreadable ({type(e).__name__}); start the long runs afresh"
        ) from None
    if not isinstance(plan, dict) or not isinstance(plan.get("runs"), list) or not isinstance(plan.get("epochs"), int):
        raise ConfigError(f"{folder / PLAN_FILE}: damaged")
    return plan


def run_long(folder: Path, plan: dict, data: PreparedData, base: dict, cpus: float, gpus: float) -> list[dict] | None:
    """Train (or continue) every run of `plan` in `folder` through Ray, on the study's trial options `base`; None
    when Tune stopped before all ended."""
    from ray import tune

    from study.trainable import START
    from study.tuning import latest_checkpoints

    configs = [{**r["params"], START: r["start"]} for r in plan["runs"]]
    space = {"run": tune.grid_search(list(range(len(configs))))}  # each trial names its run; _continue looks it up
    runnable = tune.with_resources(
        tune.with_parameters(
            _continue, configs=configs, data=data, base=base, epochs=plan["epochs"], threads=max(1, int(cpus))
        ),
        {"cpu": cpus, "gpu": gpus},
    )
    if tune.Tuner.can_restore(str(folder)):
        tuner = tune.Tuner.restore(str(folder), trainable=runnable, resume_errored=True, param_space=space)
    else:
        tuner = tune.Tuner(
            runnable,
            param_space=space,
            tune_config=tune.TuneConfig(metric=RANK_METRIC, mode="min", reuse_actors=False),
            run_config=tune.RunConfig(
                name=folder.name,
                storage_path=str(folder.parent),
                failure_config=tune.FailureConfig(max_failures=2),
                checkpoint_config=latest_checkpoints(),
                sync_config=tune.SyncConfig(sync_artifacts=True),  # best.pt and best.json from the working folders
                verbose=1,
            ),
        )
    results = tuner.fit()
    ended = [
        r for r in results if r.config is not None and r.metrics and int(r.metrics.get("epoch", 0)) >= plan["epochs"]
    ]
    if len(ended) + sum(r.error is not None for r in results) < len(plan["runs"]):
        return None
    return [{"run": r.config["run"], "path": r.path, "metrics": r.metrics or {}, "error": r.error} for r in results]


def _continue(config: dict, *, configs: list[dict], data, base: dict, epochs: int, threads: int) -> None:
    """The trainable of a long run: the study's own trainable on the run's options, from its trial's checkpoint."""
    from study.trainable import train_healthgym

    options = configs[config["run"]]
    train_healthgym(
        options, data=data, base=base, max_epochs=epochs, metric=RANK_METRIC, threads=threads, keep_best=True
    )


def export_runs(
    study: Path, folder: Path, plan: dict, data: PreparedData, ended: list[dict], seed: int
) -> pd.DataFrame:
    """Each run's cohort from its best checkpoint, with its card, and the table of runs (long_runs.csv)."""
    from study.trainable import BEST_FILE, BEST_RECORD

    rows = []
    for e in sorted(ended, key=lambda e: e["run"]):
        run = plan["runs"][e["run"]]
        trial = Path(e["path"])
        row = {
            "trial_id": run["trial_id"],
            "role": run["role"],
            "run_folder": trial.name,
            "error": e["error"] is not None,
        }
        if (trial / BEST_FILE).is_file():
            best = json.loads((trial / BEST_RECORD).read_text())
            out = folder / f"synthetic_{run['trial_id']}.csv"
            made_by = {"study": str(study), "trial_id": run["trial_id"], "trained_to_epochs": plan["epochs"]}
            card = export_cohort(trial / BEST_FILE, plan["export_patients"], out, data, seed, made_by)
            row.update(
                best_epoch=best["epoch"],
                best_g_steps=best["g_steps"],
                **{f"best_{RANK_METRIC}": best[RANK_METRIC], f"last_{RANK_METRIC}": e["metrics"].get(RANK_METRIC)},
                export=out.name,
                card=card_paths(out)[1].name,
                verdict=card_summary(card),
            )
        rows.append(row)
    table = pd.DataFrame(rows)
    write_table(table, folder / TABLE)
    return table


def main_flow(args) -> int:
    """What `python study/finalize.py` does once its options are checked (see its docstring)."""
    study = Path(args.experiment).expanduser().resolve()
    if not study.is_dir():
        raise ConfigError(f"{study}: no such folder")
    folder = run_folder(study, args.epochs)
    if args.resume:
        if not (folder / PLAN_FILE).is_file():
            raise ConfigError(f"--resume: {study} holds no long runs to {args.epochs} epochs (run it without --resume)")
        plan_file = read_plan(folder)
        record = read_study_record(study)
        study_plan = plan_of(record)
    else:
        if (folder / PLAN_FILE).is_file():
            raise ConfigError(f"{folder} already holds these long runs; pass --resume to continue them")
        record, study_plan, runs = choose_runs(study, args.top, args.epochs, not args.no_references)
    data = study_data(record)
    from study import tuning
    from study.presets import gpus_per_trial

    gpus_seen = tuning.start_ray(args.address, dashboard=not args.no_dashboard)
    if not args.resume:
        folder = new_plan(study, args.epochs, runs, args.export_patients or study_plan.export_patients)
        plan_file = read_plan(folder)
    names = ", ".join(f"{r['trial_id']} ({r['role']})" for r in plan_file["runs"])
    print(
        f"training {names} on to {plan_file['epochs']} epochs in {folder} (interrupted? add --resume)", file=sys.stderr
    )
    ended = run_long(
        folder,
        plan_file,
        data,
        study_plan.trial_base,
        args.cpus_per_trial,
        gpus_per_trial(args.gpus_per_trial, gpus_seen),
    )
    if ended is None:
        print(f"stopped before every run ended; continue with --resume ({folder})", file=sys.stderr)
        return 1
    table = export_runs(study, folder, plan_file, data, ended, study_plan.seed)
    cols = [
        c
        for c in ("trial_id", "role", "best_epoch", f"best_{RANK_METRIC}", f"last_{RANK_METRIC}", "export")
        if c in table
    ]
    print(table[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    for _, r in table.iterrows():
        if isinstance(r.get("verdict"), str):
            print(f"{r['export']} ({r['card']}): {r['verdict']}")
    print(f"table: {folder / TABLE}")
    return 0 if not table["error"].any() else 1
