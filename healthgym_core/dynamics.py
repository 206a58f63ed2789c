"""Summaries of the learning dynamics in the form of the upstream log analysis (reference section 6.2).

python -m healthgym_core.dynamics RUN_DIR/steps.parquet [--windows 1-20,81-100,181-200]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import pandas as pd

from healthgym_core import cli
from healthgym_core.errors import ConfigError


def per_length(steps: pd.DataFrame, first: int, last: int) -> pd.DataFrame:
    """Per curriculum length over epochs first..last: mean (and min, max) D_loss, GP, W gap, G_loss, Corr."""
    part = steps[(steps["epoch"] >= first) & (steps["epoch"] <= last)]
    g = part.groupby("L")
    out = pd.DataFrame(
        {
            "D_loss": g["D_loss"].mean(),
            "D_min": g["D_loss"].min(),
            "D_max": g["D_loss"].max(),
            "GP": g["GP"].mean(),
            "W_gap": g["W_gap"].mean(),
            "G_loss": g["G_loss"].mean(),
            "G_min": g["G_loss"].min(),
            "G_max": g["G_loss"].max(),
            "Corr": g["Corr"].mean(),
            "steps": g.size(),
        }
    )
    out.insert(0, "epochs", f"{first}-{last}")
    return out.reset_index()


def per_epoch(steps: pd.DataFrame, epochs: Sequence[int]) -> pd.DataFrame:
    """Means over all lengths for chosen epochs."""
    g = steps.groupby("epoch")[["D_loss", "G_loss", "Corr", "GP", "W_gap"]].mean()
    return g.loc[[e for e in epochs if e in g.index]].reset_index()


def parse_windows(text: str) -> list[tuple[int, int]]:
    try:
        return [tuple(int(v) for v in w.split("-")) for w in text.split(",")]  # type: ignore[misc]
    except ValueError:
        raise ConfigError(f"--windows: write e.g. 1-20,81-100, got {text!r}") from None


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m healthgym_core.dynamics", description=__doc__.split("\n\n")[0])
    p.add_argument("steps", help="steps.parquet (plain trainer) or steps.csv (a study trial)")
    p.add_argument(
        "--windows", default=None, help="epoch windows, e.g. 1-20,81-100 (default: first and last 20 epochs)"
    )
    args = p.parse_args(argv)
    from pathlib import Path

    path = Path(args.steps)
    if not path.is_file():
        raise ConfigError(f"{path}: not found")
    steps = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    last = int(steps["epoch"].max())
    windows = parse_windows(args.windows) if args.windows else [(1, min(20, last)), (max(1, last - 19), last)]
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        for a, b in windows:
            print(per_length(steps, a, b).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
            print()
        marks = sorted({1, 10, 50, 100, 101, 200, last} & set(range(1, last + 1)))
        print(per_epoch(steps, marks).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
