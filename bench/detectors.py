"""Which real-vs-synthetic detector tells damaged patients from real ones best: a one-hidden-layer MLP on the
per-patient summaries (the detector the evaluation used before), gradient boosting on the same summaries, and
gradient boosting on the summaries with each variable's min, max and first codes (the evaluation's detector now).

    python bench/detectors.py [--seeds 3] [--json bench/detectors.cpu.json]

Data: the CPU preset's simulated cohort (2,000 patients, split 70/15/15). "Synthetic" patients are the validation
patients, unchanged (the floor: AUC near 0.5) or damaged at a strength (healthgym_core.evaluation.damage); the
reference is the test patients, as in the final evaluation. A better detector has its floor near 0.5 and a higher
AUC for each damage. Prints a Markdown table of mean AUC over seeds.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from healthgym_core.data.cohort import load_cohort  # noqa: E402
from healthgym_core.data.prepared import prepare_data  # noqa: E402
from healthgym_core.evaluation.classifiers import detection, detector  # noqa: E402
from healthgym_core.evaluation.damage import DAMAGES  # noqa: E402
from healthgym_core.evaluation.features import detector_features, summary_features  # noqa: E402


def mlp(seed: int):
    return make_pipeline(
        StandardScaler(), MLPClassifier((32,), alpha=1e-3, max_iter=300, learning_rate_init=1e-2, random_state=seed)
    )


DETECTORS = {  # name -> (features, model)
    "MLP, summaries": (summary_features, mlp),
    "boosting, summaries": (summary_features, detector),
    "boosting, summaries + min/max/first codes": (detector_features, detector),
}
STRENGTHS = (0.25, 0.5)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    data = prepare_data(load_cohort("simulated", "demo7", patients=2000, seed=0), split_seed=0)
    val = (data.val_cohort.reals, data.val_cohort.codes)
    test = (data.test_cohort.reals, data.test_cohort.codes)
    cohorts = {"real (floor)": val}
    for name, fn in DAMAGES.items():
        for s in STRENGTHS:
            cohorts[f"{name} {s}"] = fn(val, s, 0)
    rows = []
    for cohort, (reals, codes) in cohorts.items():
        row = {"cohort": cohort}
        for det, (features, model) in DETECTORS.items():
            aucs = [
                detection(features(data.schema, *test), features(data.schema, reals, codes), seed, model)["detect_auc"]
                for seed in range(args.seeds)
            ]
            row[det] = float(np.mean(aucs))
        rows.append(row)
        print(cohort, {k: round(v, 3) for k, v in row.items() if k != "cohort"}, file=sys.stderr, flush=True)
    head = ["cohort", *DETECTORS]
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for r in rows:
        print("| " + " | ".join([r["cohort"]] + [f"{r[d]:.3f}" for d in DETECTORS]) + " |")
    if args.json:
        args.json.write_text(json.dumps({"seeds": args.seeds, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
