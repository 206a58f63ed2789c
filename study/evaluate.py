"""python study/evaluate.py EXPERIMENT [--top K] [--seeds S] [--config NAME]: the held-out evaluation of a study.

Re-trains the top K configurations (in the leaderboard's order, not by the trials' own critic gap), the upstream
configuration, the study's base and any named configuration given with --config, with S seeds each, at the study's
full epoch budget, through Tune (so on the cluster when there is one). Scores every resulting generator on the TEST
patients, which no trial trained or was pruned on, with the final suite, and writes
EXPERIMENT/final_evaluation.{parquet,csv} (one row per run) and
EXPERIMENT/final_summary.{parquet,csv} (mean and spread per configuration, next to the real-vs-real floor).
Each evaluation keeps its plan and Tune's state in EXPERIMENT/final-TIMESTAMP/; --resume continues the newest.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable without installing it
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from healthgym_core import cli  # noqa: E402
from healthgym_core.atomic import write_table  # noqa: E402
from healthgym_core.configs import NAMED, NamedConfig, load_config  # noqa: E402
from healthgym_core.errors import ConfigError  # noqa: E402
from healthgym_core.evaluation.verdicts import NEAREST_REAL, beats  # noqa: E402
from study.experiment import (  # noqa: E402
    RUNS_TABLE,
    STUDY_FILE,
    SUMMARY_TABLE,
    read_leaderboard,
    read_study_record,
    study_data,
)
from study.leaderboard import completed_by_rank  # noqa: E402

SEED_BASE = 1000  # evaluation seeds differ from every study seed


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python study/evaluate.py",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("experiment", help="the study's experiment folder (holds study.json and leaderboard.parquet)")
    p.add_argument(
        "--top",
        type=int,
        default=3,
        action=cli.at_least(0),
        help="the leaderboard's best configurations to re-train besides upstream and the base",
    )
    p.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="NAME|FILE",
        help=f"also re-train a named configuration ({', '.join(NAMED)}) or a .toml configuration file at the study's "
        "sizes, as an arm of its own (repeatable)",
    )
    p.add_argument(
        "--seeds",
        type=int,
        default=None,
        action=cli.at_least(1),
        help="seeds per configuration (default 3; 5 with GPUs)",
    )
    p.add_argument(
        "--epochs",
        type=int,
        default=None,
        action=cli.at_least(1),
        help="epochs per run (default: the study's --max-epochs)",
    )
    p.add_argument(
        "--samples",
        type=int,
        default=None,
        action=cli.at_least(1),
        help="synthetic patients scored per run (default: 2x the test patients)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the study's newest evaluation where it stopped (its arms, seeds and epochs as first given)",
    )
    p.add_argument(
        "--reuse",
        action="append",
        default=[],
        metavar="EXPERIMENT_OR_CSV",
        help="another study whose evaluations may hold some of these runs exactly (the same options, seed, epochs, "
        "data and code), or the final_evaluation.csv of one (kept when its folder is not): their results are taken "
        "over instead of re-training (the study's own earlier evaluations always are); may be given more than once",
    )
    p.add_argument(
        "--status",
        action="store_true",
        help="show how far the study's newest evaluation is (each run's epochs and last validation metrics), "
        "also while it runs; trains nothing",
    )
    p.add_argument(
        "--keep-done",
        default=None,
        metavar="CSV",
        help="score the runs the study's evaluations have finished so far on the test patients, exactly as the "
        "evaluation will, and add them to CSV, an evaluation table that --reuse takes over: how an evaluation "
        "longer than one machine's life keeps its finished runs; trains nothing",
    )
    p.add_argument("--address", default=None, help="'auto' to use a running Ray cluster")
    p.add_argument("--cpus-per-trial", type=float, default=1.0, action=cli.at_least(0, strict=True))
    p.add_argument("--gpus-per-trial", type=float, default=None, action=cli.at_least(0))
    p.add_argument("--no-dashboard", action="store_true")
    return p


def load_study(folder: Path) -> tuple[dict, pd.DataFrame]:
    if not (folder / STUDY_FILE).is_file():
        raise ConfigError(f"{folder}: not a study folder (no {STUDY_FILE})")
    return read_study_record(folder), read_leaderboard(folder)


def choose_arms(
    board: pd.DataFrame, factors: list[str], top: int, base: dict | None = None, named: Sequence[NamedConfig] = ()
) -> list[dict]:
    """The upstream configuration, the study's base when that is not upstream, the `named` configurations (each
    whole, an arm named after it, unless it is the base or upstream), then the top distinct configurations among
    completed trials in the leaderboard's order (collapsed trials last, then by the ranking metric).

    The upstream reference trial is never a candidate: it ran the whole upstream configuration, so its factor values
    on the study's base would be a configuration the study never trained (the correlation study's "rank1" was once
    upstream's correlation weight 10 on the base, taken from that trial)."""
    from study.base import UPSTREAM_REFERENCE, is_upstream
    from study.spaces import upstream_point

    if base is None or is_upstream(base):
        arms = [{"arm": "upstream", **upstream_point(factors)}]
    else:
        arms = [
            {"arm": "upstream", "reference": UPSTREAM_REFERENCE},
            {"arm": "base", **{f: base["config"][f] for f in factors if f in base["config"]}},
        ]
    same = [(base or {}).get("config"), load_config("upstream").full()]
    arms += [{"arm": c.name, **c.full()} for c in named if c.full() not in same and c.name not in ("base", "upstream")]
    done = completed_by_rank(board)
    seen = {tuple(a.get(f) for f in factors) for a in arms if "reference" not in a}
    fixed = len(arms)
    for _, row in done.iterrows():
        key = tuple(row[f] for f in factors)
        if row.get("reference") == UPSTREAM_REFERENCE or key in seen:
            continue
        seen.add(key)
        arms.append(
            {
                "arm": f"rank{len(arms) - fixed + 1}",
                **{f: (row[f].item() if hasattr(row[f], "item") else row[f]) for f in factors},
            }
        )
        if len(arms) - fixed >= top:
            break
    return arms if top else arms[:fixed]


def summarise(runs: pd.DataFrame, floor: dict, info: dict) -> pd.DataFrame:
    """Mean and sd per arm for every metric, the real floor, and whether the best arm's advantage over upstream
    exceeds the seed spread (|difference of means| > sd_best + sd_upstream, in the better direction); with a base
    arm, the same for the best of the other arms (named configurations, the study's own) against its base."""
    metrics = [c for c in runs.columns if c in info and c not in ("seed", "epochs")]
    g = runs.groupby("arm")[metrics]
    mean, sd = g.mean(), g.std(ddof=1).fillna(0.0)
    arms = [a for a in ["upstream"] + sorted(a for a in mean.index if a != "upstream") if a in mean.index]
    rows = []
    for m in metrics:
        row = {"metric": m, "lower_is_better": info[m][1], "nearest_real": m in NEAREST_REAL}
        row.update(description=info[m][0], real_floor=floor.get(m, np.nan))
        for a in arms:
            row[f"{a}_mean"], row[f"{a}_sd"] = mean.loc[a, m], sd.loc[a, m]
        for reference, candidates, names in (
            ("upstream", [a for a in arms if a != "upstream"], ("best_arm", "advantage", "beyond_seed_spread")),
            (
                "base",
                [a for a in arms if a not in ("upstream", "base")],
                ("best_found_arm", "advantage_over_base", "beyond_seed_spread_over_base"),
            ),
        ):
            if candidates and reference in arms:
                row.update(zip(names, beats(m, mean[m], sd[m], candidates, reference, floor.get(m))))
        rows.append(row)
    return pd.DataFrame(rows)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    folder = Path(args.experiment).resolve()
    record, board = load_study(folder)
    named = [load_config(c) for c in args.config]  # a bad name or file refused before anything starts
    if args.status:
        from study.final_runs import last_plan, plan_status

        run, plan = last_plan(folder, "--status")
        table = plan_status(run, plan)
        print(f"{run}: {(table['state'].isin(['done', 'reused'])).sum()} of {len(table)} runs done")
        print(table.to_string(index=False, na_rep="-", float_format=lambda v: f"{v:.3g}"))
        return 0
    if args.keep_done is not None:
        from study.final_runs import keep_done, samples_scored, scored_runs

        table = Path(args.keep_done)
        if table.suffix != ".csv":
            raise ConfigError(f"--keep-done {table}: must name a .csv file")
        if table.exists():
            scored_runs(table, 0, "--keep-done")  # an evaluation table with run keys, or an error before scoring
        data = study_data(record)
        added, total = keep_done(folder, data, samples_scored(args, data), table)
        print(f"{table}: {added} finished runs scored and added, {total} in all")
        return 0
    from study.plan import plan_of, recorded_space

    study_plan, space = plan_of(record), recorded_space(record)
    data = study_data(record)
    from study.final_runs import PLAN_FILE, last_plan, new_plan, run_final, scored_runs

    reuse = [str(Path(f).resolve()) for f in args.reuse]
    for given, other in zip(args.reuse, reuse):  # a clear error now, not after Ray has started
        if Path(other).suffix == ".csv":
            scored_runs(Path(given), 0)  # readable, with run keys
            continue
        if not (Path(other) / STUDY_FILE).is_file():
            raise ConfigError(f"--reuse {given}: not a study folder (no {STUDY_FILE}) nor a {RUNS_TABLE}.csv")
        read_study_record(Path(other))
    if args.resume:
        run, plan = last_plan(folder)
        ignored = [f"--{k}" for k in ("top", "seeds", "epochs") if getattr(args, k) != parser().get_default(k)]
        print(
            f"resuming {run / PLAN_FILE}: {len(plan['arms'])} arms x {len(plan['seeds'])} seeds x {plan['epochs']} "
            f"epochs as first planned" + (f" ({', '.join(ignored)} ignored)" if ignored else ""),
            file=sys.stderr,
        )
        plan["reuse"] = list(dict.fromkeys(plan.get("reuse", []) + reuse))

    from study import tuning

    gpus_seen = tuning.start_ray(args.address, dashboard=not args.no_dashboard)
    if not args.resume:
        arms = choose_arms(board, [f.name for f in space.factors], args.top, record.get("base"), named)
        seeds = args.seeds or (5 if gpus_seen > 0 else 3)
        epochs = args.epochs or study_plan.max_epochs
        run, plan = new_plan(folder, arms, list(range(SEED_BASE, SEED_BASE + seeds)), epochs, reuse)
    arms = plan["arms"]
    print(
        f"re-training {len(arms)} configurations x {len(plan['seeds'])} seeds x {plan['epochs']} epochs on "
        f"{data.source} in {run} (interrupted? continue with --resume)",
        file=sys.stderr,
    )
    done = run_final(args, record, data, run, plan, gpus_seen)
    if done is None:
        print(
            f"interrupted before every run finished; nothing written. Continue with: python study/evaluate.py "
            f"{args.experiment} --resume",
            file=sys.stderr,
        )
        return 130
    runs, floor, info = done
    summary = summarise(runs, floor, info)
    for name, table in ((RUNS_TABLE, runs), (SUMMARY_TABLE, summary)):
        write_table(table, folder / f"{name}.parquet")
        write_table(table, folder / f"{name}.csv")
    show = summary[
        ["metric", "real_floor"]
        + [c for c in summary.columns if c.endswith(("_mean", "_sd"))]
        + [
            c
            for c in ("best_arm", "beyond_seed_spread", "best_found_arm", "beyond_seed_spread_over_base")
            if c in summary
        ]
    ]
    with pd.option_context("display.width", 220, "display.max_columns", 30):
        print(show.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(
        "\narms: "
        + "; ".join(f"{a['arm']}: " + ", ".join(f"{k}={v}" for k, v in a.items() if k != "arm") for a in arms)
    )
    print(f"wrote {folder / f'{SUMMARY_TABLE}.csv'} and {folder / f'{RUNS_TABLE}.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
