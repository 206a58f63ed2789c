"""The comparable Wasserstein estimates (emd_feat, critic_gap) next to fd_feat and sliced_w: their real-vs-real
floor, what known defects score, and the cost of one evaluation, at the CPU preset's size.

    python bench/comparable_gaps.py [--patients 2000] [--samples 1000] [--repeats 3] [--json OUT]

Reference: the validation patients, as in every epoch's evaluation. Synthetic stand-ins of `--samples` patients:
real training patients (the floor), one training patient repeated (collapse), every patient's values flattened to
their own mean (trajectories too smooth, the failure docs/results.md finds), and each patient's months shuffled
(the order of time lost). Times are medians of `--repeats` calls in one process, one thread.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from healthgym_core.data.cohort import load_cohort  # noqa: E402
from healthgym_core.data.prepared import prepare_data  # noqa: E402
from healthgym_core.evaluation.distances import (  # noqa: E402
    emd_feat,
    fixed_directions,
    independent_critic_gap,
    sliced_wasserstein,
)


def stand_ins(data, n: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Named (reals [N, T, R], codes [N, T, C]) synthetic stand-ins drawn from the training patients."""
    rng = np.random.default_rng(0)
    tr = data.train_cohort
    pick = rng.choice(tr.n_patients, n, replace=n > tr.n_patients)
    reals, codes = tr.reals[pick], tr.codes[pick]
    flat = np.repeat(reals.mean(axis=1, keepdims=True), reals.shape[1], axis=1)
    order = np.stack([rng.permutation(reals.shape[1]) for _ in range(n)])
    shuffled = np.take_along_axis(reals, order[:, :, None], axis=1), np.take_along_axis(codes, order[:, :, None], 1)
    return {
        "real training patients (floor)": (reals, codes),
        "one patient repeated": (np.repeat(reals[:1], n, 0), np.repeat(codes[:1], n, 0)),
        "trajectories flattened to their mean": (flat, codes),
        "months shuffled": shuffled,
    }


def estimates(data, ref_embed: np.ndarray, directions: np.ndarray, reals: np.ndarray, codes: np.ndarray) -> dict:
    """Each estimate of the distance from the validation patients to (reals, codes), as a call to time."""
    model = data.transform.encode_arrays(reals, codes)
    return {
        "emd_feat": lambda: emd_feat(ref_embed, data.features.embed(reals, codes)),
        "critic_gap": lambda: independent_critic_gap(data.val, model),
        "fd_feat": lambda: data.features.distance(reals, codes),
        "sliced_w": lambda: sliced_wasserstein(data.val, model, directions),
    }


def timed(fn, repeats: int) -> tuple[float, float]:
    times, value = [], float("nan")
    for _ in range(repeats):
        t0 = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t0)
    return value, statistics.median(times)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--patients", type=int, default=2000)
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    torch.set_num_threads(1)
    data = prepare_data(load_cohort("simulated", "demo7", patients=args.patients, seed=0), split_seed=0)
    val = data.val_cohort
    ref_embed = data.features.embed(val.reals, val.codes)
    directions = fixed_directions(data.val[0].size)
    rows = []
    for name, (reals, codes) in stand_ins(data, args.samples).items():
        for estimate, fn in estimates(data, ref_embed, directions, reals, codes).items():
            value, seconds = timed(fn, args.repeats)
            rows.append({"input": name, "estimate": estimate, "value": value, "seconds": seconds})

    floor = {r["estimate"]: r["value"] for r in rows if r["input"].endswith("(floor)")}
    cost = {r["estimate"]: r["seconds"] for r in rows if r["input"].endswith("(floor)")}
    print(
        f"{len(val.reals)} validation patients against {args.samples} stand-ins "
        f"({platform.processor() or platform.machine()}, torch {torch.__version__}, 1 thread)\n"
    )
    names = list(dict.fromkeys(r["input"] for r in rows))
    print(f"{'input':<40}" + "".join(f"{e:>22}" for e in floor))
    for name in names:
        cells = [r for r in rows if r["input"] == name]
        print(
            f"{name:<40}" + "".join(f"{r['value']:>12.4g} ({r['value'] / floor[r['estimate']]:>5.1f}x)" for r in cells)
        )
    print(f"{'seconds per evaluation':<40}" + "".join(f"{cost[e]:>22.3f}" for e in floor))
    print(f"{'cost relative to fd_feat':<40}" + "".join(f"{cost[e] / cost['fd_feat']:>22.1f}" for e in floor))
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "rows": rows}, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
