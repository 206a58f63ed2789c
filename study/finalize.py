"""python study/finalize.py EXPERIMENT --epochs N [--top K]: train a finished study's winners long.

The leaderboard's top K trials (default 1), and the study's base and upstream reference trials for comparison
(unless --no-references), continue from their last checkpoints to N epochs, side by side through Ray (on a
cluster with --address auto). Each run validates every epoch with every metric and keeps its best checkpoint by
the ranking metric; its cohort (EXPERIMENT/long-eN/synthetic_TRIAL.csv) is sampled from that best checkpoint and
written with its card. An interrupted run continues with the same command and --resume, repeating no epoch.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable without installing it
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from healthgym_core import cli  # noqa: E402
from healthgym_core.data.cohort import MAX_PATIENTS  # noqa: E402


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python study/finalize.py", description=__doc__.split("\n\n")[0])
    p.add_argument("experiment", help="a finished study's folder (with study.json and leaderboard.parquet)")
    p.add_argument(
        "--epochs", type=int, required=True, action=cli.at_least(1), help="the epochs each run trains to, in all"
    )
    p.add_argument("--top", type=int, default=1, action=cli.at_least(1), help="how many of the best trials (default 1)")
    p.add_argument(
        "--no-references", action="store_true", help="train only the top trials, not the base and upstream reference"
    )
    p.add_argument(
        "--export-patients",
        type=int,
        default=None,
        action=cli.number_range(1, MAX_PATIENTS),
        help="patients in each exported cohort (default: the study's)",
    )
    p.add_argument("--resume", action="store_true", help="continue these long runs where they stopped")
    p.add_argument("--address", default=None, help="'auto' to use a running Ray cluster")
    p.add_argument("--cpus-per-trial", type=float, default=1.0, action=cli.at_least(0, strict=True))
    p.add_argument("--gpus-per-trial", type=float, default=None, action=cli.at_least(0))
    p.add_argument("--no-dashboard", action="store_true", help="start a local Ray without its dashboard")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from study.long_runs import main_flow

    return main_flow(parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(cli.run(main))
