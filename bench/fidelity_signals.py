"""Which signal sees the whole gap between synthetic and real patients: the candidates of
healthgym_core/evaluation/fidelity.py next to emd_feat and fd_feat, on the criteria a ranking signal must meet.

    python bench/fidelity_signals.py [--checkpoints 'RUN/checkpoints/epoch_*.pt'] [--json OUT] [--markdown OUT]

At the CPU preset's size (2,000 simulated patients; the reference is the 300 validation patients, as every epoch's
evaluation uses; synthetic stand-ins have 1,000 patients, the preset's evaluation size):
1. its floor: real against real (1,000 training patients; and the 300 test patients);
2. controlled damage to those 1,000 training patients at strengths 0.1, 0.25, 0.5 and 1
   (healthgym_core/evaluation/damage.py): the signal should grow with every strength, for every damage;
3. its cost per evaluation (median of 3, one thread);
4. with --checkpoints, agreement with what a user reads off real generators' cohorts: for each checkpoint, 1,000
   sampled patients scored by the signal and by healthgym_core/evaluation/realism.py; Spearman correlation over the
   checkpoints between the signal and each user-level miss (|log ratio| for the ratios, distance to target for the
   others).
"""

from __future__ import annotations

import argparse
import glob
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import stats

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from healthgym_core.data.cohort import load_cohort  # noqa: E402
from healthgym_core.data.prepared import prepare_data  # noqa: E402
from healthgym_core.evaluation.damage import DAMAGES  # noqa: E402
from healthgym_core.evaluation.distances import emd_feat  # noqa: E402
from healthgym_core.evaluation.fidelity import SIGNALS, SignalSpace  # noqa: E402
from healthgym_core.evaluation.realism import realism  # noqa: E402
from healthgym_core.sampling import sample_arrays  # noqa: E402

STRENGTHS = (0.1, 0.25, 0.5, 1.0)
SAMPLES = 1000


def candidates(data, space: SignalSpace):
    """name -> function(patients) -> value against the validation patients."""
    val = (data.val_cohort.reals, data.val_cohort.codes)
    ref = space.embed(val)
    ref_emd = data.features.embed(*val)
    out = {name: (lambda p, f=f: f(ref, space.embed(p))) for name, f in SIGNALS.items()}
    out["emd_feat"] = lambda p: emd_feat(ref_emd, data.features.embed(*p))
    out["fd_feat"] = lambda p: data.features.distance(*p)
    return out


def user_misses(m: dict) -> dict:
    """Each user-level measure as a distance from its target (0: on target)."""
    out = {}
    for k, v in m.items():
        if "ratio/" in k:
            out[k] = abs(float(np.log(max(v, 1e-6))))
        elif k == "coverage":
            out[k] = 1.0 - v
        elif k == "detect_auc":
            out[k] = abs(v - 0.5)
        else:
            out[k] = v
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoints", default=None, help="a glob of trainer checkpoints (e.g. a long run's epoch_*.pt)")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--markdown", type=Path, default=None)
    args = p.parse_args()
    torch.set_num_threads(1)
    data = prepare_data(load_cohort("simulated", "demo7", patients=2000, seed=0), split_seed=0)
    tr = data.train_cohort
    pick = np.random.default_rng(0).choice(tr.n_patients, SAMPLES, replace=False)
    base = (tr.reals[pick], tr.codes[pick])
    space = SignalSpace.fit(data.schema, (tr.reals, tr.codes))
    sig = candidates(data, space)
    result: dict = {"floor": {}, "test_floor": {}, "damage": {}, "seconds": {}, "monotone": {}, "agreement": {}}
    test = (data.test_cohort.reals, data.test_cohort.codes)
    for name, f in sig.items():
        result["floor"][name] = f(base)
        result["test_floor"][name] = f(test)
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            f(base)
            times.append(time.perf_counter() - t0)
        result["seconds"][name] = statistics.median(times)
        print(f"{name}: floor {result['floor'][name]:.4g}, {result['seconds'][name]:.3f} s", file=sys.stderr)
    for damage, fn in DAMAGES.items():
        cohorts = [fn(base, s, 0) for s in STRENGTHS]
        for name, f in sig.items():
            values = [result["floor"][name]] + [f(c) for c in cohorts]
            result["damage"].setdefault(name, {})[damage] = values
            result["monotone"].setdefault(name, {})[damage] = bool(np.all(np.diff(values) > 0))
        print(f"damage {damage} done", file=sys.stderr)
    if args.checkpoints:
        val = (data.val_cohort.reals, data.val_cohort.codes)
        rows = []
        for path in sorted(glob.glob(args.checkpoints)):
            fake = sample_arrays(path, SAMPLES, seed=7)[:2]
            row = {"checkpoint": Path(path).name, **{n: f(fake) for n, f in sig.items()}}
            row.update({f"user:{k}": v for k, v in user_misses(realism(data.schema, val, fake)).items()})
            rows.append(row)
            print(f"{path}: scored", file=sys.stderr)
        result["checkpoints"] = rows
        users = [k for k in rows[0] if k.startswith("user:")]
        for name in sig:
            x = [r[name] for r in rows]
            result["agreement"][name] = {
                u[5:]: float(stats.spearmanr(x, [r[u] for r in rows]).statistic) for u in users
            }
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=float))
    lines = [
        "| signal | floor (1,000 train) | floor (300 test) | s / call | "
        + " | ".join(f"{d} x{STRENGTHS[1]} / floor" for d in DAMAGES)
        + " | grows with every strength |",
        "|" + "---|" * (5 + len(DAMAGES)),
    ]
    for name in sig:
        fl = result["floor"][name]
        cells = [f"{result['damage'][name][d][2] / fl:.2f}" if fl > 0 else "-" for d in DAMAGES]
        grows = sum(result["monotone"][name].values())
        lines.append(
            f"| {name} | {fl:.4g} | {result['test_floor'][name]:.4g} | {result['seconds'][name]:.3f} | "
            + " | ".join(cells)
            + f" | {grows} of {len(DAMAGES)} |"
        )
    if result["agreement"]:
        users = list(next(iter(result["agreement"].values())))
        lines += ["", "| signal | " + " | ".join(users) + " |", "|" + "---|" * (1 + len(users))]
        for name, a in result["agreement"].items():
            lines.append(f"| {name} | " + " | ".join(f"{a[u]:+.2f}" for u in users) + " |")
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
