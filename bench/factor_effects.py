"""Which factors matter: each factor's value against the trial's final test quality, over the unpruned trials of the
signal study (bench/pruning_signals.py's records).

    python bench/factor_effects.py bench/signals/signals-*.csv [--space all] [--json F] [--figure F.png]

A study's own importances come from its few trials (4 at the CPU preset); the signal study ran 24 trials of the
`all` space to the full budget and scored each on test patients, so it is the better sample for this question. Per
factor: for a range, the Spearman correlation of its value with the final test ranking metric, with a bootstrap
95% interval over trials (+: larger values, worse cohorts); for a choice, each choice's trials and their median.
The numbers are over the proposals only; each study's base and upstream reference are drawn but left out: each
is one configuration repeated with new seeds, which differs from the others in most factors at once, so it would
make every one of those factors look decisive. Optuna's TPE samples at random until a study has 10 trials, and each
signal batch ran at most 8, so the proposals are independent random draws from the space (a random design), each
with one seed (the seed sd is about 0.25 in emd_feat): read the numbers as where to look, not as causes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.pruning_signals import BOOTSTRAP, Trials, spearman_rows  # noqa: E402
from healthgym_core.atomic import atomic_write  # noqa: E402
from healthgym_core.errors import ConfigError  # noqa: E402
from healthgym_core.evaluation.distances import EARLIER_RANK_METRIC  # noqa: E402
from study.base import UPSTREAM_REFERENCE  # noqa: E402
from study.spaces import Factor, load_space  # noqa: E402

# The test quality the committed records hold: emd_feat ranked trials when they were made.
RANK_METRIC = EARLIER_RANK_METRIC

ROLES = {  # how each kind of trial is drawn
    "proposal": {"color": "tab:blue", "marker": "o", "label": "proposals (the numbers)"},
    "base": {"color": "tab:green", "marker": "^", "label": "the base (a new seed per study)"},
    "upstream": {"color": "tab:orange", "marker": "x", "label": "upstream reference"},
}


def trial_table(trials: Trials, factors: list[Factor]) -> pd.DataFrame:
    """One row per trial: its factors, its role (the study's base, its upstream reference, or a proposal), its
    final test ranking metric. A study's first trial is its base (each record: one study)."""
    firsts = {ids[0] for ids in trials.by_study().values()}
    rows = []
    for t in trials.order:
        c = trials.configs[t]
        role = "upstream" if c.get("reference") == UPSTREAM_REFERENCE else "base" if t in firsts else "proposal"
        quality = float(trials.scores.at[t, RANK_METRIC])
        rows.append({f.name: c.get(f.name) for f in factors} | {"role": role, "quality": quality})
    return pd.DataFrame(rows, index=trials.order)


def effects(table: pd.DataFrame, factors: list[Factor], seed: int = 0) -> list[dict]:
    """Per factor, over the proposals: Spearman with a bootstrap interval (a range) or each choice's count and
    median (a choice)."""
    rows = table[table["role"] == "proposal"]
    q = rows["quality"].to_numpy(float)
    boot = np.random.default_rng(seed).integers(0, len(rows), size=(BOOTSTRAP, len(rows)))
    out = []
    for f in factors:
        values = rows[f.name]
        if f.choices is None:
            x = values.to_numpy(float)
            rho = float(spearman_rows(x[None], q[None])[0])
            lo, hi = np.nanpercentile(spearman_rows(x[boot], q[boot]), [2.5, 97.5])
            out.append({"factor": f.name, "kind": "range", "n": len(rows), "rho": rho, "lo": lo, "hi": hi})
        else:
            groups = {str(c): q[(values.astype(str) == str(c)).to_numpy()] for c in f.choices}
            medians = {c: float(np.median(g)) for c, g in groups.items() if len(g)}
            spread = max(medians.values()) - min(medians.values()) if len(medians) > 1 else 0.0
            out.append(
                {
                    "factor": f.name,
                    "kind": "choice",
                    "n": len(rows),
                    "counts": {c: len(g) for c, g in groups.items()},
                    "medians": medians,
                    "median_spread": spread,
                }
            )
    return out


def describe(e: dict) -> str:
    if e["kind"] == "range":
        return f"Spearman {e['rho']:+.2f} [{e['lo']:+.2f}, {e['hi']:+.2f}]"
    return "; ".join(f"{c}: {e['medians'][c]:.2f} (n {n})" if n else f"{c}: none" for c, n in e["counts"].items())


def figure(table: pd.DataFrame, factors: list[Factor], found: list[dict]) -> plt.Figure:
    """One panel per factor: each trial's value against its final test ranking metric."""
    cols = 4
    nrows = -(-len(factors) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3.3 * cols, 2.6 * nrows), layout="constrained", squeeze=False)
    by_name = {e["factor"]: e for e in found}
    for ax, f in zip(axes.flat, factors):
        x = table[f.name]
        if f.choices is not None:
            labels = [str(c) for c in f.choices]
            pos = x.astype(str).map({c: i for i, c in enumerate(labels)}).to_numpy(float)
            pos = pos + np.random.default_rng(0).uniform(-0.15, 0.15, len(pos))
            ax.set_xticks(range(len(labels)), [lab.replace(":10-20-30-40-50-60", "") for lab in labels], fontsize=7)
        else:
            pos = x.to_numpy(float)
            if f.log:
                ax.set_xscale("log")
        for role, style in ROLES.items():
            on = (table["role"] == role).to_numpy()
            ax.scatter(pos[on], table["quality"][on], s=16, **style)
        e = by_name[f.name]
        title = f"{f.name}\nrho {e['rho']:+.2f} [{e['lo']:+.2f}, {e['hi']:+.2f}]" if e["kind"] == "range" else f.name
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(factors) :]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel(f"final test {RANK_METRIC}", fontsize=8)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(ROLES), fontsize=8)
    return fig


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python bench/factor_effects.py", description=__doc__.split("\n\n")[0])
    p.add_argument("records", type=Path, nargs="+", help="signal records (bench/signals/signals-N.csv)")
    p.add_argument("--space", default="all", help="the space the records searched (its factors' kinds)")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--figure", type=Path, default=None, help="every factor against the final quality, as a PNG")
    args = p.parse_args(argv)
    try:
        space = load_space(args.space)
        for r in args.records:
            if not r.is_file():
                raise ConfigError(f"{r}: no such signal record")
        trials = Trials.read(args.records, samples=0, seed=0)
        factors = [f for f in space.factors if f.name in trials.factors]
        if not factors:
            raise ConfigError(f"the records vary none of --space {args.space}'s factors")
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    table = trial_table(trials, factors)
    found = effects(table, factors)
    n = table["role"].value_counts()
    print(
        f"{len(table)} trials: {n.get('proposal', 0)} proposals (the numbers), {n.get('base', 0)} base and "
        f"{n.get('upstream', 0)} upstream runs (drawn, left out); final test {RANK_METRIC}:\n"
    )
    print("| factor | effect on the final test " + RANK_METRIC + " |\n|---|---|")
    for e in found:
        print(f"| {e['factor']} | {describe(e)} |")
    if args.json:
        doc = {"records": [str(r) for r in args.records], "space": args.space, "trials": len(table), "effects": found}
        atomic_write(args.json, lambda p: p.write_text(json.dumps(doc, indent=1) + "\n"))
    if args.figure:
        fig = figure(table, factors, found)
        atomic_write(args.figure, lambda p: fig.savefig(p, format="png", dpi=100, bbox_inches="tight"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
