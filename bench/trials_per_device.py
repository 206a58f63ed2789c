"""Trials per device: aggregate training throughput of K trials sharing one device (what Ray's fractional GPUs
give), for K = 1, 2, 4, 8, 16.

    python bench/trials_per_device.py --device cuda --k 1,2,4,8,16      # on a GPU (paper size by default)
    python bench/trials_per_device.py --device cpu --k 1,2               # on this machine
    python bench/trials_per_device.py --quick --device cpu --k 1,2       # a few seconds, for tests

Each trial is a separate process running the core's `run_epoch` (the same epoch and evaluation the study runs),
started together; the script reports per K the wall time until all finish, aggregate epochs per hour, the speed-up
over K = 1 (over the window in which the trials trained, after one untimed warm-up epoch each), and each
process's peak memory (CUDA: max_memory_reserved, which includes the CUDA graphs' private pools; CPU: max RSS).
`--graphs on|off|auto` is passed to every trial (auto: CUDA graphs on a GPU). The script suggests the study's
`--gpus-per-trial` as 1/K for the smallest K whose aggregate throughput is within 10% of the best measured.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def worker(args: argparse.Namespace) -> None:
    """One trial: prepare data, build the state, run epochs; print one JSON line."""
    import torch

    from healthgym_core.config import TrainConfig
    from healthgym_core.data.cohort import load_cohort
    from healthgym_core.data.prepared import prepare_data
    from healthgym_core.epoch import run_epoch
    from healthgym_core.state import build_state

    torch.set_num_threads(args.threads)
    data = prepare_data(load_cohort("simulated", "demo7", patients=args.patients))
    cfg = TrainConfig(
        hidden=args.hidden,
        batch_size=args.batch,
        eval_samples=args.eval_samples,
        seed=args.seed,
        device=args.device,
        schedule=args.schedule,
        graphs=args.graphs,
    )
    state = build_state(cfg, data)
    run_epoch(state, data)  # warm-up epoch (allocator, kernels), not timed
    start = time.time()
    for _ in range(args.epochs):
        run_epoch(state, data)
    if state.device.type == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_reserved() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    end = time.time()
    graphs = bool(state.graphs is not None and state.graphs.enabled)
    print(
        json.dumps(
            {
                "start": start,
                "end": end,
                "seconds": end - start,
                "epochs": args.epochs,
                "peak_mb": peak,
                "graphs": graphs,
                "graphs_off_reason": state.graphs.disabled_reason if state.graphs else None,
            }
        )
    )


def measure(args: argparse.Namespace, k: int) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        "--device",
        args.device,
        "--epochs",
        str(args.epochs),
        "--hidden",
        str(args.hidden),
        "--batch",
        str(args.batch),
        "--patients",
        str(args.patients),
        "--eval-samples",
        str(args.eval_samples),
        "--schedule",
        args.schedule,
        "--threads",
        str(args.threads),
        "--graphs",
        args.graphs,
    ]
    procs = [
        subprocess.Popen([*cmd, "--seed", str(i)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(k)
    ]
    outs = [p.communicate() for p in procs]
    for p, (_, err) in zip(procs, outs):
        if p.returncode != 0:
            sys.exit(f"a trial failed:\n{err[-2000:]}")
    runs = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    epochs = sum(r["epochs"] for r in runs)
    # Throughput over the window in which the trials trained (process start-up and data preparation excluded).
    wall = max(r["end"] for r in runs) - min(r["start"] for r in runs)
    return {
        "k": k,
        "wall_s": round(wall, 2),
        "epochs_per_hour": round(3600 * epochs / wall, 1),
        "train_s_per_trial": round(sum(r["seconds"] for r in runs) / k, 2),
        "peak_mb_per_trial": round(max(r["peak_mb"] for r in runs), 1),
        "graphs": all(r["graphs"] for r in runs),
        "graphs_off_reasons": sorted({r["graphs_off_reason"] for r in runs if r["graphs_off_reason"]}),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--k", default="1,2,4,8,16", help="comma-separated numbers of concurrent trials")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--patients", type=int, default=366, help="366 simulated patients: 256 train, one batch per length")
    p.add_argument("--eval-samples", type=int, default=2000)
    p.add_argument("--schedule", default="ladder:10-20-30-40-50-60")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads per trial")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--graphs", default="auto", choices=["auto", "on", "off"], help="CUDA graphs in every trial")
    p.add_argument("--quick", action="store_true", help="tiny sizes for tests")
    p.add_argument("--json", default=None)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.quick:
        args.hidden, args.batch, args.patients, args.eval_samples, args.epochs = 8, 32, 60, 16, 1
        args.schedule = "ladder:4-8"
    if args.worker:
        worker(args)
        return 0
    rows = [measure(args, int(k)) for k in args.k.split(",")]
    base = rows[0]["epochs_per_hour"] / rows[0]["k"]
    for r in rows:
        r["speedup_vs_one"] = round(r["epochs_per_hour"] / base, 2)
    print(f"{'K':>3} {'wall s':>8} {'epochs/h':>10} {'x one':>7} {'train s/trial':>14} {'peak MB/trial':>14} graphs")
    for r in rows:
        print(
            f"{r['k']:>3} {r['wall_s']:>8} {r['epochs_per_hour']:>10} {r['speedup_vs_one']:>7} "
            f"{r['train_s_per_trial']:>14} {r['peak_mb_per_trial']:>14} {'on' if r['graphs'] else 'off'}"
        )
    for reason in sorted({x for r in rows for x in r["graphs_off_reasons"]}):
        print(f"CUDA graphs were turned off in a trial: {reason}")
    best = max(r["epochs_per_hour"] for r in rows)
    knee = min((r for r in rows if r["epochs_per_hour"] >= 0.9 * best), key=lambda r: r["k"])
    suggestion = round(1 / knee["k"], 4)
    print(
        f"suggested per-trial share of the device: 1/{knee['k']} = {suggestion} (the smallest K within 10% of the "
        f"best aggregate throughput, {best} epochs/h)"
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {"device": args.device, "graphs": args.graphs, "rows": rows, "suggested_share": suggestion}, indent=2
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
