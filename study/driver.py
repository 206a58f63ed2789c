"""The study driver behind `python study/run.py`: data once, Optuna proposing, ASHA pruning, a leaderboard."""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from healthgym_core.atomic import atomic_write, check_creatable_folder, plain_name
from healthgym_core.cli import add_dataclass_options, at_least, number_range
from healthgym_core.config import MAX_WIDTH, TrainConfig
from healthgym_core.configs import NAMED
from healthgym_core.data.cohort import MAX_PATIENTS, load_cohort
from healthgym_core.data.prepared import PreparedData, prepare_data
from healthgym_core.errors import ConfigError
from healthgym_core.state import check_against_data
from study.base import describe as describe_base
from study.base import parse_set, study_base
from study.experiment import (
    DEFAULT_METRIC,
    METRICS,
    SCHEDULERS,
    STUDY_FILE,
    STUDY_VERSION,
    plan_schedule_text,
    read_study_record,
)
from study.plan import StudyPlan, plan_of, resolve
from study.presets import DEFAULT_GPUS_PER_TRIAL, PRESETS, Preset
from study.spaces import SearchSpace, load_space

REMOTE = ("s3://", "gs://", "gcs://", "abfs://")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python study/run.py",
        description="Search Health Gym v1 training settings with Ray Tune: Optuna proposes, ASHA prunes.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--space",
        default="curriculum",
        help="curriculum, critic, correlation, full, baseline, optimizer, quirks, texture, all, or a .toml space file",
    )
    p.add_argument(
        "--metric",
        default=DEFAULT_METRIC,
        choices=METRICS,
        help="pruning signal (all are reported); bench/README.md measures how well each predicts",
    )
    p.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default=None,
        help="sizes: cpu (laptop), quick (a first look: base and upstream only), gpu (paper size), smoke (tests); "
        "default: gpu if the cluster has GPUs, else cpu",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="same as --preset quick: the base against upstream, 12 epochs each",
    )
    p.add_argument("--smoke", action="store_true", help="same as --preset smoke: a tiny study for tests")
    p.add_argument("--num-samples", type=int, default=None, action=at_least(1), help="trials (baseline: seeds)")
    p.add_argument("--max-epochs", type=int, default=None, action=at_least(1), help="epochs per trial (ASHA's max_t)")
    p.add_argument(
        "--grace-period", type=int, default=None, action=at_least(1), help="epochs before ASHA may stop a trial"
    )
    p.add_argument("--reduction-factor", type=int, default=None, action=at_least(2), help="ASHA reduction factor")
    p.add_argument(
        "--scheduler",
        choices=SCHEDULERS,
        default=None,
        help="asha: prune weak trials at rungs; pbt: population-based training (copies good trials' weights "
        "into poor ones and perturbs their mutable factors); none: every trial to --max-epochs. Default: asha, "
        "or none with --quick",
    )
    p.add_argument("--no-pruning", action="store_true", help="the same as --scheduler none")
    p.add_argument(
        "--budget",
        type=int,
        default=None,
        action=at_least(1),
        metavar="TRIAL_EPOCHS",
        help="compute for the whole study in trial-epochs: no trial starts unless the budget holds it to "
        "--max-epochs beside every running one, so studies under different schedulers compare at equal compute "
        "(without --num-samples: as many trials as it admits)",
    )
    p.add_argument(
        "--perturbation-interval",
        type=int,
        default=None,
        action=at_least(1),
        help="PBT: epochs between exploit/explore decisions (default: the preset's grace period)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        action=at_least(0),
        help="seed of the Optuna sampler; trial k trains with seed + k (baseline: seeds seed..seed+N-1)",
    )
    b = p.add_argument_group(
        "the base every trial shares (the preset's named configuration unless these say otherwise)"
    )
    b.add_argument(
        "--base",
        default=None,
        metavar="NAME|FILE|EXPERIMENT",
        help=f"start from a named configuration ({', '.join(NAMED)}), a .toml configuration file, or the best "
        "completed trial of an earlier study's folder (the leaderboard's first); default: the preset's (cpu: "
        "balanced, gpu: upstream)",
    )
    b.add_argument(
        "--set",
        action="append",
        default=None,
        metavar="KEY=VALUE",
        help="fix one training option for every trial, e.g. --set lr_g=2e-4 (repeatable)",
    )
    d = p.add_argument_group("data and model size (override the preset)")
    d.add_argument(
        "--data", default="simulated", help="cohort file, 'simulated' (NOT the Health Gym dataset) or 'art4hiv'"
    )
    d.add_argument("--schema", default="demo7", help="demo7, full10, full13 or a .toml schema file")
    d.add_argument("--patients", type=int, default=None, action=number_range(1, MAX_PATIENTS))
    d.add_argument("--split-seed", type=int, default=0, action=at_least(0))
    d.add_argument("--hidden", type=int, default=None, action=number_range(1, MAX_WIDTH))
    d.add_argument("--batch-size", type=int, default=None, action=at_least(1))
    add_dataclass_options(d, TrainConfig, ["eval_samples"], defaults={"eval_samples": None})
    r = p.add_argument_group("resources and storage")
    r.add_argument("--cpus-per-trial", type=float, default=1.0, action=at_least(0, strict=True))
    r.add_argument(
        "--gpus-per-trial",
        type=float,
        default=None,
        action=at_least(0),
        help=f"fractional allowed; default 0 without GPUs, {DEFAULT_GPUS_PER_TRIAL} with",
    )
    r.add_argument(
        "--max-concurrent", type=int, default=None, action=at_least(1), help="limit on trials running at once"
    )
    r.add_argument(
        "--max-failures",
        type=int,
        default=3,
        action=at_least(0),
        help="retries of a trial whose worker dies (from its checkpoint)",
    )
    r.add_argument("--address", default=None, help="'auto' to join a running Ray cluster")
    r.add_argument("--storage", default="experiments", help="results folder or s3:// / gs:// URI")
    r.add_argument(
        "--local-dir",
        default="experiments",
        help="where study.json, optuna.db and the leaderboard go when --storage is remote",
    )
    r.add_argument("--name", default=None, help="experiment name (default: the space's name)")
    r.add_argument("--resume", action="store_true", help="continue an interrupted study in the same experiment folder")
    r.add_argument("--no-dashboard", action="store_true", help="start a local Ray without its dashboard")
    r.add_argument(
        "--live-page",
        type=int,
        default=None,
        metavar="PORT",
        nargs="?",
        const=0,
        action=number_range(0, 65535),
        help="also serve the project's live study page (study/dashboard.py) on 127.0.0.1 while the study "
        "runs, on PORT or a free port, and print its address (not Ray's dashboard)",
    )
    r.add_argument(
        "--export-patients",
        type=int,
        default=1000,
        action=number_range(1, MAX_PATIENTS),
        help="synthetic patients sampled from the best trial",
    )
    return p


def experiment_dirs(args: argparse.Namespace) -> tuple[str, Path]:
    """(Tune storage path, local experiment folder)."""
    if args.storage.startswith(REMOTE):
        return args.storage, Path(args.local_dir).resolve() / args.name
    storage = str(Path(args.storage).resolve())
    return storage, Path(storage) / args.name


def choose_preset(args: argparse.Namespace, cluster_gpus: float) -> Preset:
    name = "smoke" if args.smoke else "quick" if args.quick else args.preset or ("gpu" if cluster_gpus > 0 else "cpu")
    return PRESETS[name]


def check_space_against_data(space: SearchSpace, trial_base: dict, data: PreparedData) -> None:
    """Refuse up front what no trial could run: each factor's every choice and both bounds, on top of the trials'
    base, checked against the data (schedules longer than its months, a batch larger than its patients)."""
    check_against_data(TrainConfig.from_dict(trial_base).validate(), data)
    for f in space.factors:
        for value in f.choices if f.choices is not None else (f.low, f.high):
            try:
                check_against_data(TrainConfig.from_dict({**trial_base, f.name: value}).validate(), data)
            except ConfigError as e:
                raise ConfigError(f"space {space.name}, factor {f.name}: {e}") from None


def save_study(
    folder: Path, args: argparse.Namespace, preset: Preset, data: PreparedData, space: SearchSpace, plan: StudyPlan
) -> None:
    record = {
        "version": STUDY_VERSION,
        "plan": plan.to_dict(),
        "base": plan.base,
        "args": vars(args),
        "preset": preset.to_dict(),
        "space": {
            "name": space.name,
            "path": space.path,
            "description": space.description,
            "factors": [f.to_dict() for f in space.factors],
        },
        "data": {
            "source": data.source,
            "fingerprint": data.fingerprint,
            "schema": data.schema.name,
            "split_seed": data.split.seed,
            "train": len(data.split.train),
            "val": len(data.split.val),
            "test": len(data.split.test),
            "months": data.n_months,
        },
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / STUDY_FILE, lambda p: p.write_text(json.dumps(record, indent=2)))


def check_recorded_arg(action: argparse.Action, value, where: Path) -> None:
    """A recorded option has the type and the choices its flag would give it (study.json may have been edited)."""
    kinds = {int: (int,), float: (int, float), str: (str,)}
    if value is None:
        return
    if isinstance(action, argparse._AppendAction):
        ok = isinstance(value, list) and all(isinstance(x, str) for x in value)
    elif isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        ok = isinstance(value, bool)
    else:
        ok = isinstance(value, kinds.get(action.type, (str,))) and not isinstance(value, bool)
        ok = ok and (not isinstance(value, float) or math.isfinite(value))
        ok = ok and (action.choices is None or value in action.choices)
    if not ok:
        raise ConfigError(f"{where}: recorded option {action.dest!r} is damaged (value {str(value)[:60]!r})")


def load_study_args(folder: Path, current: argparse.Namespace) -> argparse.Namespace:
    record = read_study_record(folder)
    known = {a.dest for a in parser()._actions}
    unknown = sorted(set(record["args"]) - known)
    if unknown:
        raise ConfigError(f"{folder / STUDY_FILE}: written by another version (unknown option {unknown[0]!r})")
    saved = parser().parse_args([])
    actions = {a.dest: a for a in parser()._actions}
    for k, v in record["args"].items():
        check_recorded_arg(actions[k], v, folder / STUDY_FILE)
        setattr(saved, k, v)
    for keep in (
        "resume",
        "address",
        "no_dashboard",
        "cpus_per_trial",
        "gpus_per_trial",
        "max_concurrent",
        "live_page",
    ):
        setattr(saved, keep, getattr(current, keep))
    saved.resume = True
    return saved


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.no_pruning:
        if args.scheduler not in (None, "asha", "none"):
            raise ConfigError(f"--no-pruning contradicts --scheduler {args.scheduler}; give one of them")
        args.scheduler = "none"
    space = load_space(args.space)
    args.name = plain_name(args.name or space.name, "--name")  # the experiment stays inside --storage
    storage, folder = experiment_dirs(args)
    check_creatable_folder(folder, "storage")
    if args.resume:
        if not (folder / STUDY_FILE).exists():
            raise ConfigError(f"--resume: no study at {folder} (none was started there: run it without --resume)")
        record = read_study_record(folder)
        args = load_study_args(folder, args)
        space = load_space(args.space)
    elif (folder / STUDY_FILE).exists():
        raise ConfigError(f"{folder} already holds a study; pass --resume to continue it or choose another --name")
    else:  # bad --base/--set refused before Ray; without --base, the base is the preset's (known below)
        base = study_base(args.base, args.set, [f.name for f in space.factors]) if args.base else None
        for item in args.set or []:
            parse_set(item)

    # All input is checked before Ray starts (locally) or anything is written.
    if args.address:
        from study import tuning  # imports Ray (seconds): locally, only once the study record is written

        cluster_gpus = tuning.start_ray(args.address)
    else:
        import torch

        cluster_gpus = float(torch.cuda.device_count())
    preset = (
        PRESETS[plan_of(record, str(folder / STUDY_FILE)).preset] if args.resume else choose_preset(args, cluster_gpus)
    )
    if args.address and cluster_gpus == 0 and args.preset is None and not (args.smoke or args.quick):
        print(
            "note: the cluster has no GPUs yet, so the cpu preset is used; on an autoscaling GPU cluster pass "
            f"--preset gpu --gpus-per-trial {DEFAULT_GPUS_PER_TRIAL} so that trials ask for GPU workers",
            file=sys.stderr,
        )
    if args.resume:  # as recorded: the earlier study, the base's file or the preset may have changed since
        plan = plan_of(record, str(folder / STUDY_FILE))
    else:
        if base is None:
            base = study_base(None, args.set, [f.name for f in space.factors], preset.to_dict())
        plan = resolve(vars(args), preset.to_dict(), space, base)
    if plan.scheduler == "pbt" and not any(f.is_mutable for f in space.factors):
        raise ConfigError(
            f"--scheduler pbt: space {space.name} has no factor PBT may change mid-run "
            "(mutable: n_critic, gp_weight, corr_weight, lr_g, lr_d, or `mutable = true` on a factor)"
        )
    data = prepare_data(load_cohort(plan.data, plan.schema, patients=plan.patients, seed=0), split_seed=plan.split_seed)
    check_space_against_data(space, plan.trial_base, data)
    if not args.resume:  # before a local Ray starts (seconds): a driver killed from here on leaves a resumable study
        save_study(folder, args, preset, data, space, plan)
    from study import tuning

    if not args.address:
        tuning.start_ray(None, dashboard=not args.no_dashboard)
    print(preset.note, file=sys.stderr)
    if overrides := preset_overrides(vars(args), preset):
        print(f"this study differs from the preset: {overrides}", file=sys.stderr)
    print(f"data: {data.describe()}", file=sys.stderr)
    print(f"space {space.name}: {space.description}", file=sys.stderr)
    print(f"base: {describe_base(plan.base)}", file=sys.stderr)
    print(f"scheduler: {plan_schedule_text(plan)}", file=sys.stderr)
    page = start_live_page(folder, args.live_page) if args.live_page is not None else None
    try:
        return tuning.run_study(plan, args, space, data, storage, folder, cluster_gpus)
    finally:
        if page is not None:
            page.terminate()
            print(f"the live study page stopped with the study; reopen it: python study/dashboard.py {folder}")


OVERRIDE_WORDS = {  # the preset's study sizes a command line may change, as the note about them words them
    "num_samples": "trials",
    "max_epochs": "epochs at most",
    "hidden": "hidden",
    "batch_size": "batch",
    "patients": "patients",
}


def preset_overrides(args: dict, preset: Preset) -> str:
    """The study sizes given on the command line that differ from the preset's, e.g. '24 trials, hidden 64'."""
    changed = []
    for key, words in OVERRIDE_WORDS.items():
        value = args.get(key)
        if value is not None and value != getattr(preset, key):
            changed.append(
                f"{value} {words}" if key in ("num_samples", "max_epochs", "patients") else f"{words} {value}"
            )
    return ", ".join(changed)


def start_live_page(folder: Path, port: int) -> subprocess.Popen:
    """study/dashboard.py beside the study, on `port` (0: a free one), its address printed at once."""
    import secrets
    import socket

    if port == 0:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    token = secrets.token_urlsafe(24)
    script = Path(__file__).resolve().parent / "dashboard.py"
    proc = subprocess.Popen(  # the token in the environment: a command line shows in `ps`
        [sys.executable, str(script), str(folder), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "HEALTHGYM_DASHBOARD_TOKEN": token},
    )
    print(f"live study page: http://127.0.0.1:{port}/?token={token}", flush=True)
    return proc
