"""What a user exports: each named trial's synthetic cohort next to the validation patients, in plain numbers.

    python bench/cohort_summary.py EXPERIMENT TRIAL_ID [TRIAL_ID ...] [--patients 1000] [--seed 0]

A TRIAL_ID may also name a run of the study's evaluation (study/evaluate.py), such as 92de4_00001.

Samples --patients patients from each trial's last checkpoint (as the study's export does, same seed) and prints,
for every real variable, its median and 5th/95th percentiles over patient-months, and for every categorical, the
share of patients in each category at their first month.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from healthgym_core.data.schema import Schema  # noqa: E402
from healthgym_core.sampling import sample  # noqa: E402
from study.experiment import CHECKPOINT_FILE, read_study_record, study_data  # noqa: E402


def describe(schema: Schema, frame: pd.DataFrame) -> dict[str, str]:
    first = frame.groupby("PatientID").first() if "PatientID" in frame else frame
    row = {}
    for v in schema.reals:
        q = np.quantile(frame[v.column].to_numpy(float), [0.05, 0.5, 0.95])
        row[f"{v.name} p5 / median / p95"] = " / ".join(f"{x:,.0f}" for x in q)
    for v in schema.categoricals:
        labels = v.labels or tuple(str(c) for c in v.codes)
        shares = first[v.column].value_counts(normalize=True)
        row[v.name] = " / ".join(f"{labels[k]} {100 * shares.get(c, 0.0):.1f}%" for k, c in enumerate(v.codes))
    return row


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("experiment", type=Path)
    p.add_argument("trials", nargs="+")
    p.add_argument("--patients", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    data = study_data(read_study_record(args.experiment))
    rows = {"real (validation)": describe(data.schema, data.val_cohort.to_frame())}
    for trial in args.trials:
        found = sorted(args.experiment.glob(f"*_{trial}_*/checkpoint_*/{CHECKPOINT_FILE}")) or sorted(
            args.experiment.glob(f"final-*/*_{trial}_*/checkpoint_*/{CHECKPOINT_FILE}")  # an evaluation's run
        )
        if not found:
            raise SystemExit(f"error: {args.experiment}: no checkpoint of trial {trial}")
        rows[trial] = describe(data.schema, sample(found[-1], args.patients, seed=args.seed))
    table = pd.DataFrame(rows).T
    with pd.option_context("display.width", 250, "display.max_columns", 20, "display.max_colwidth", 120):
        print(table.T.to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
