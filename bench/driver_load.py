"""Load: a study of many trivially short trials on this machine; the driver's memory must stay flat.

    python bench/driver_load.py [--trials 500] [--storage DIR] [--json OUT]

Runs `python study/run.py` with a space whose trials each train one pass at L = 2 with a tiny network, samples
the driver process's resident memory (VmRSS) every 2 s together with the number of finished trials, and reports
the memory after the first 10% of trials against the end.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPACE = """
description = "Trivially short trials for the driver load test: one pass at L = 2 per trial."
[[factor]]
name = "gp_weight"
low = 0.1
high = 100.0
log = true
why = "Something for Optuna to propose."
[fixed]
schedule = "full:2:1"
n_critic = 1
"""


def rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=500)
    p.add_argument("--storage", default="experiments/bench-load")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    storage = Path(args.storage).resolve()
    storage.mkdir(parents=True, exist_ok=True)
    space = storage / "trivial.toml"
    space.write_text(SPACE)
    name = f"load-{time.strftime('%Y%m%d-%H%M%S')}"
    cmd = [
        sys.executable,
        str(ROOT / "study" / "run.py"),
        "--space",
        str(space),
        "--smoke",
        "--hidden",
        "2",
        "--eval-samples",
        "8",
        "--num-samples",
        str(args.trials),
        "--max-epochs",
        "1",
        "--no-pruning",
        "--storage",
        str(storage),
        "--name",
        name,
        "--no-dashboard",
        "--export-patients",
        "10",
    ]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    samples = []
    folder = storage / name
    while proc.poll() is None:
        try:
            done = sum(1 for f in folder.glob("*/result.json") if f.stat().st_size > 0)
            samples.append((round(time.perf_counter() - t0, 1), done, round(rss_mb(proc.pid), 1)))
        except (FileNotFoundError, ProcessLookupError):
            pass
        time.sleep(2)
    err = proc.stderr.read()
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"study failed ({proc.returncode}):\n{err[-3000:]}")
    early = [s for s in samples if s[1] >= 0.1 * args.trials]
    out = {
        "trials": args.trials,
        "wall_s": round(wall, 1),
        "trials_per_min": round(60 * args.trials / wall, 1),
        "rss_mb_after_10pct": early[0][2] if early else None,
        "rss_mb_peak": max(s[2] for s in samples),
        "rss_mb_last": samples[-1][2],
        "samples": samples,
    }
    print(json.dumps({k: v for k, v in out.items() if k != "samples"}, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
