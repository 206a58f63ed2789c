"""Whether two studies run with the same seeds recorded the same numbers: every trial's per-epoch report (times,
dates, hosts and the code fingerprint aside) and the leaderboard's last_* columns. How a refactor shows that it
changed no behaviour:

    python study/run.py --smoke --space critic --max-concurrent 1 --no-dashboard --storage /tmp/a   # before
    python study/run.py --smoke --space critic --max-concurrent 1 --no-dashboard --storage /tmp/b   # after
    python bench/same_records.py /tmp/a/critic /tmp/b/critic

Exit 0 and "identical" when they agree, else 1 and the first difference.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

VOLATILE = ("time", "seconds", "timestamp", "date", "hostname", "node_ip", "pid", "code_version", "trial_id")


def reports(folder: Path) -> dict[int, list[dict]]:
    """seed -> the trial's per-epoch reports, volatile keys removed."""
    out = {}
    for f in sorted(folder.glob("*/result.json")):
        lines = [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
        keep = [{k: v for k, v in r.items() if not any(w in k for w in VOLATILE) and k != "config"} for r in lines]
        out[int(lines[0]["config"]["seed"])] = keep
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("before", type=Path)
    p.add_argument("after", type=Path)
    a = p.parse_args()
    ra, rb = reports(a.before), reports(a.after)
    if sorted(ra) != sorted(rb):
        print(f"different trials (seeds {sorted(ra)} against {sorted(rb)})")
        return 1
    for seed in ra:
        for epoch, (x, y) in enumerate(zip(ra[seed], rb[seed]), 1):
            diff = sorted(k for k in set(x) | set(y) if x.get(k) != y.get(k))
            if diff or len(ra[seed]) != len(rb[seed]):
                print(f"seed {seed}, report {epoch}: {diff[:5] or 'a different number of reports'} differ")
                return 1
    boards = [pd.read_parquet(f / "leaderboard.parquet").sort_values("seed") for f in (a.before, a.after)]
    last = [c for c in boards[0].columns if c.startswith("last_")]
    if not np.array_equal(boards[0][last].to_numpy(), boards[1][last].to_numpy(), equal_nan=True):
        print("the leaderboards' last_* columns differ")
        return 1
    n = sum(len(v) for v in ra.values())
    print(f"identical: {len(ra)} trials, {n} epoch reports, {len(last)} leaderboard columns")
    return 0


if __name__ == "__main__":
    sys.exit(main())
