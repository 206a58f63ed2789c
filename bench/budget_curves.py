#!/usr/bin/env python
"""What training budget buys: every checkpoint of long runs scored as an exported cohort's card scores it, and
whether the ranking at the study's 36 epochs holds at the long budget.

    python bench/budget_curves.py score RUN NAME      # RUN: a plain-trainer folder (checkpoints/epoch_NNNN.pt)
    python bench/budget_curves.py plot [--out docs]    # docs/budget_curves.png and the ranking-transfer table

`score` samples 1,000 patients (seed 7) from every checkpoint of RUN and scores them against the 300 test patients
with the card's measures (healthgym_core/evaluation/card.py: the ranking signal, the marginals, month-to-month
variability, tails, regimen switching, rare categories, the joint table, detectability, privacy); it appends to
bench/curves/budget/NAME.csv and skips checkpoints already scored, so it can follow a run that is still training.
`plot` draws every measure against generator steps and compares each configuration's rank at SHORT generator
steps (the CPU preset's 36 epochs) with its rank at the last budget every run reached (Spearman, with a bootstrap
over configurations).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from healthgym_core.checkpoint import load_checkpoint  # noqa: E402
from healthgym_core.data.cohort import load_cohort  # noqa: E402
from healthgym_core.data.prepared import prepare_data  # noqa: E402
from healthgym_core.evaluation.card import cohort_card  # noqa: E402
from healthgym_core.evaluation.verdicts import badness  # noqa: E402
from healthgym_core.sampling import sample_arrays  # noqa: E402

CURVES = ROOT / "bench" / "curves" / "budget"
SHORT = 2160  # generator steps of a CPU-preset trial (36 epochs x 60)
SAMPLES, SAMPLE_SEED = 1000, 7
RANK_BY = "energy_feat"
PANELS = (  # (measure, what it is, log scale)
    ("energy_feat", "energy_feat (the ranking signal)", True),
    ("detect_auc", "detector AUC (target <= 0.85)", False),
    ("variability_ratio/VL", "VL month-to-month variability / real", True),
    ("variability_ratio/CD4", "CD4 month-to-month variability / real", True),
    ("p95_ratio/VL", "VL 95th percentile / real", True),
    ("switch_ratio", "regimen changes / real", True),
    ("coverage", "category coverage (target >= 0.9)", False),
    ("absent_categories", "absent categories (target 0)", False),
    ("joint_tvd", "Gender x Ethnic TVD (target <= 0.10)", False),
    ("fd_feat", "fd_feat", True),
    ("emd_feat", "emd_feat", False),
    ("membership_auc", "membership-inference AUC (rule <= 0.6)", False),
)


def _checkpoints(run: Path) -> list[tuple[int, Path]]:
    out = []
    for f in (run / "checkpoints").glob("epoch_*.pt"):
        m = re.fullmatch(r"epoch_(\d+)\.pt", f.name)
        if m:
            out.append((int(m.group(1)), f))
    return sorted(out)


def score(args: argparse.Namespace) -> int:
    torch.set_num_threads(1)
    run = Path(args.run)
    found = _checkpoints(run)
    if not found:
        print(f"error: {run}: no checkpoints/epoch_NNNN.pt to score", file=sys.stderr)
        return 2
    CURVES.mkdir(parents=True, exist_ok=True)
    out = CURVES / f"{args.name}.csv"
    old = pd.read_csv(out) if out.is_file() else pd.DataFrame(columns=["epoch"])
    done = set(old["epoch"].astype(int))
    data = prepare_data(load_cohort("simulated", "demo7", patients=args.patients, seed=0), split_seed=0)
    if data.fingerprint != load_checkpoint(found[0][1])["meta"]["data_fingerprint"]:
        print(
            f"error: {found[0][1]}: not trained on {args.patients:,} simulated patients (--patients)", file=sys.stderr
        )
        return 2
    rows = []
    for epoch, f in found:
        if epoch in done:
            continue
        ckpt = load_checkpoint(f)
        reals, codes, _ = sample_arrays(ckpt, SAMPLES, seed=SAMPLE_SEED)
        card = cohort_card(data, reals, codes, {}, f.name)
        row = {"name": args.name, "epoch": epoch, "g_steps": int(ckpt["meta"]["g_steps"])}
        row.update({m["measure"]: m["value"] for m in card["fidelity"]["measures"]})
        row.update({p["check"]: p["value"] for p in card["privacy"]["checks"]})
        rows.append(row)
        print(f"{args.name} epoch {epoch}: {RANK_BY} {row[RANK_BY]:.3f}", file=sys.stderr, flush=True)
    if rows:
        table = pd.concat([old, pd.DataFrame(rows)]) if len(old) else pd.DataFrame(rows)
        table.sort_values("epoch").to_csv(out, index=False, float_format="%.5g")
    return 0


def _at(curve: pd.DataFrame, steps: int, window: int = 3) -> pd.Series:
    """The mean of the `window` checkpoints nearest `steps` (checkpoints are noisy one by one)."""
    near = curve.iloc[(curve["g_steps"] - steps).abs().argsort()[:window]]
    return near.mean(numeric_only=True)


def transfer(curves: dict[str, pd.DataFrame], long: int, boots: int = 2000) -> tuple[pd.DataFrame, dict]:
    """Each configuration's RANK_BY at SHORT and at `long` steps, and the Spearman correlation of the two rankings
    with a bootstrap 90% interval over configurations."""
    from scipy.stats import spearmanr

    rows = [
        {"configuration": n, "short": _at(c, SHORT)[RANK_BY], "long": _at(c, long)[RANK_BY]} for n, c in curves.items()
    ]
    table = pd.DataFrame(rows)
    short, lng = badness(RANK_BY, table["short"]), badness(RANK_BY, table["long"])
    table["rank short"], table["rank long"] = short.rank().astype(int), lng.rank().astype(int)
    rho = float(spearmanr(short, lng).statistic) if len(table) > 2 else float("nan")
    rng = np.random.default_rng(0)
    draws = []
    for _ in range(boots):
        i = rng.integers(len(table), size=len(table))
        if len(set(i)) > 2:
            r = spearmanr(short.iloc[i], lng.iloc[i]).statistic
            if np.isfinite(r):
                draws.append(r)
    lo, hi = np.percentile(draws, [5, 95]) if draws else (np.nan, np.nan)
    return table, {"spearman": rho, "low": float(lo), "high": float(hi), "configurations": len(table)}


def plot(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = {f.stem: pd.read_csv(f) for f in sorted(CURVES.glob("*.csv"))}
    if not curves:
        print(f"error: {CURVES}: no scored runs (run `score` first)", file=sys.stderr)
        return 2
    fig, axes = plt.subplots(3, 4, figsize=(18, 11), layout="constrained")
    for ax, (m, title, log) in zip(axes.ravel(), PANELS):
        for n, c in curves.items():
            if m in c:
                ax.plot(c["g_steps"], c[m], label=n, lw=1.4)
        if m.startswith(("variability", "p95", "switch")):
            for y in (0.5, 1.0, 2.0):
                ax.axhline(y, color="k", ls=":" if y != 1 else "-", lw=0.8)
        if m.endswith("_auc"):
            ax.set_ylim(0.45, 1.02)
            ax.axhline(0.5, color="k", lw=0.8)
        ax.axvline(SHORT, color="grey", ls="--", lw=0.8)
        ax.set_yscale("log" if log else "linear")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("generator steps")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(
        "Every checkpoint's cohort (1,000 patients) against the 300 test patients, CPU preset size; dashed: the "
        f"study's budget ({SHORT:,} steps); ratios: 1 is real, dotted 0.5 and 2 the targets"
    )
    fig.savefig(Path(args.out) / "budget_curves.png", dpi=80)
    long = int(min(c["g_steps"].max() for c in curves.values()))
    if len(curves) < 3:
        print(f"{len(curves)} scored run(s): the ranking transfer needs 3 or more", file=sys.stderr)
        return 0
    table, rho = transfer(curves, long)
    print(f"ranking transfer by {RANK_BY}, {SHORT:,} -> {long:,} generator steps:")
    print(table.to_string(index=False, float_format="%.3f"))
    print(f"Spearman {rho['spearman']:.2f} (bootstrap 90%: {rho['low']:.2f} to {rho['high']:.2f}), {len(table)} runs")
    table.to_csv(CURVES.parent / "budget_transfer.csv", index=False, float_format="%.5g")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("score")
    s.add_argument("run")
    s.add_argument("name")
    s.add_argument("--patients", type=int, default=2000, help="the simulated cohort's size (the CPU preset's)")
    q = sub.add_parser("plot")
    q.add_argument("--out", default=str(ROOT / "docs"))
    args = p.parse_args(argv)
    return score(args) if args.command == "score" else plot(args)


if __name__ == "__main__":
    sys.exit(main())
