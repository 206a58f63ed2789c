"""Cohort data CLI: python -m healthgym_core.data simulate|fetch|validate|describe ..."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from healthgym_core import cli
from healthgym_core.atomic import check_table_suffix, write_table
from healthgym_core.cli import number_range
from healthgym_core.data.cohort import MAX_MONTHS, MAX_PATIENTS, load_cohort, read_cohort


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m healthgym_core.data",
        description="Simulate, download, validate and describe longitudinal cohorts in the Health Gym format.",
    )
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser(
        "simulate", help="write a simulated ART-for-HIV cohort (NOT the Health Gym dataset) in the v2.0 CSV format"
    )
    s.add_argument(
        "--patients",
        type=int,
        default=2000,
        action=number_range(1, MAX_PATIENTS),
        help="number of patients (default 2000)",
    )
    s.add_argument("--seed", type=int, default=0, action=number_range(0, 2**32 - 1), help="random seed (default 0)")
    s.add_argument(
        "--months", type=int, default=60, action=number_range(1, MAX_MONTHS), help="months per patient (default 60)"
    )
    s.add_argument("--out", required=True, help="output file, .csv or .parquet")

    f = sub.add_parser("fetch", help="download the published v2.0 ART-for-HIV CSV into the cache and validate it")
    f.add_argument("--url", default=None, help="download URL (default: the figshare v2.0 file); https only")
    f.add_argument("--cache-dir", default=None, help="cache folder (default: $HEALTHGYM_CACHE or ~/.cache/healthgym)")
    f.add_argument("--quiet", action="store_true", help="no progress bar")

    for name, helptext in (
        ("validate", "check a cohort file strictly; exit 0 and a one-line summary if valid"),
        ("describe", "per-variable statistics of a cohort"),
    ):
        v = sub.add_parser(name, help=helptext)
        v.add_argument("file", help="a .csv or .parquet file, or 'simulated', or 'art4hiv' (the cached download)")
        v.add_argument(
            "--schema",
            default="auto",
            help="demo7, full10, full13, a .toml schema file, or auto (default): the "
            "built-in schema whose columns the file has",
        )
        v.add_argument(
            "--patients",
            type=int,
            default=None,
            action=number_range(1, MAX_PATIENTS),
            help="keep the first N patients (simulated: generate N)",
        )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "simulate":
        from healthgym_core.data.simulate import simulate_cohort, simulated_notice

        check_table_suffix(args.out)
        frame = simulate_cohort(args.patients, seed=args.seed, months=args.months)
        write_table(frame, args.out)
        print(f"wrote {args.out}: {args.patients} patients x {args.months} months", file=sys.stderr)
        print(f"note: {simulated_notice(args.seed, args.patients)}", file=sys.stderr)
        return 0
    if args.command == "fetch":
        from healthgym_core.data.download import DEFAULT_URL, fetch

        path = fetch(
            args.url or DEFAULT_URL,
            args.cache_dir,
            validate=lambda p: read_cohort(p, "full13"),
            progress=not args.quiet,
        )
        print(path)
        return 0
    cohort = load_cohort(args.file, args.schema, patients=args.patients)
    if args.command == "validate":
        print(
            f"{args.file}: valid: {cohort.n_patients} patients x {cohort.n_months} months, "
            f"{len(cohort.schema.variables)} variables (schema {cohort.schema.name})"
        )
        return 0
    from healthgym_core.data.describe import describe

    print(describe(cohort))
    return 0


def entry() -> int:
    """The `healthgym-data` console script: errors as one line and exit code 2."""
    return cli.run(main)


if __name__ == "__main__":
    sys.exit(entry())
