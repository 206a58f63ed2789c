"""A trial worker's memory when one process runs trial after trial, each in a new thread, as Ray's reused actor does.

    python bench/worker_memory.py [--trials 8] [--epochs 1] [--arenas default 1] [--idle-threads] [--json FILE]

For each arena setting (`default`: glibc's, up to 8 per core; N: MALLOC_ARENA_MAX=N, what study.tuning.TRIAL_ENV
gives a study's workers), a fresh process builds a CPU-preset trial (hidden 32, batch 140, the base, the full
schedule) and trains it for --epochs epochs, --trials times, each in a new thread, with keep_freed_memory() applied
as training applies it. It prints the resident memory after each trial and each trial's time. With
--idle-threads, each trial is followed by a thread that allocates once and stays alive, as a Ray worker's own threads
do: it holds the arena the finished trial freed, so the next trial's thread gets another. The arms run one after the
other, so their times are comparable only on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.driver_load import rss_mb  # noqa: E402


def child(trials: int, epochs: int, idle_threads: bool) -> list[dict]:
    """Run the trials in this process, each in a new thread; one row per trial."""
    import torch

    from healthgym_core.config import TrainConfig
    from healthgym_core.data.cohort import load_cohort
    from healthgym_core.data.prepared import prepare_data
    from healthgym_core.epoch import run_epoch
    from healthgym_core.state import build_state
    from study.presets import PRESETS

    torch.set_num_threads(1)
    p = PRESETS["cpu"]
    data = prepare_data(load_cohort("simulated", "demo7", patients=p.patients, seed=0))
    options = {**p.base, "hidden": p.hidden, "batch_size": p.batch_size, "eval_samples": p.eval_samples}
    cfg = TrainConfig.from_dict({**options, "schedule": "full"}).validate()

    def trial() -> None:
        state = build_state(cfg, data)  # applies keep_freed_memory() on a CPU
        for _ in range(epochs):
            run_epoch(state, data)

    hold = threading.Event()  # set at the end: until then the idle threads stay alive

    def idle() -> None:
        torch.empty(1024)  # a malloc: glibc attaches a free arena to this thread
        hold.wait()

    rows, idlers = [], []
    for i in range(trials):
        t0 = time.perf_counter()
        worker = threading.Thread(target=trial)
        worker.start()
        worker.join()
        if idle_threads:
            idlers.append(threading.Thread(target=idle))
            idlers[-1].start()
        rows.append(
            {"trial": i + 1, "seconds": round(time.perf_counter() - t0, 2), "rss_mb": round(rss_mb(os.getpid()))}
        )
        print(f"  trial {i + 1}: {rows[-1]['seconds']:.1f} s, resident {rows[-1]['rss_mb']:,} MB", file=sys.stderr)
    hold.set()  # end them before the interpreter does: daemon threads left in torch aborted the process at exit
    for t in idlers:
        t.join()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=8, help="trials one process runs, each in a new thread")
    ap.add_argument("--epochs", type=int, default=1, help="epochs per trial")
    ap.add_argument("--arenas", nargs="+", default=["default", "1"], help="'default' or a MALLOC_ARENA_MAX value")
    ap.add_argument("--idle-threads", action="store_true", help="a thread that stays alive after each trial, as Ray's")
    ap.add_argument("--json", type=Path, help="write the rows here")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    for a in args.arenas:
        if a != "default" and not (a.isdigit() and int(a) > 0):
            ap.error(f"--arenas: {a!r} is neither 'default' nor a positive integer")
    if args.child:
        print(json.dumps(child(args.trials, args.epochs, args.idle_threads)))
        return

    results = {}
    for arenas in args.arenas:
        env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
        if arenas != "default":
            env["MALLOC_ARENA_MAX"] = arenas
        print(f"arenas {arenas}:", file=sys.stderr)
        cmd = [sys.executable, __file__, "--child", "--trials", str(args.trials), "--epochs", str(args.epochs)]
        cmd += ["--idle-threads"] if args.idle_threads else []
        out = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True, check=True).stdout
        results[arenas] = json.loads(out.strip().splitlines()[-1])

    print("| trial | " + " | ".join(f"arenas {a}: resident MB | s" for a in results) + " |")
    print("|---|" + "---|---|" * len(results))
    for i in range(args.trials):
        cells = " | ".join(f"{rows[i]['rss_mb']:,} | {rows[i]['seconds']:.1f}" for rows in results.values())
        print(f"| {i + 1} | {cells} |")
    if args.json:
        meta = {"trials": args.trials, "epochs": args.epochs, "idle_threads": args.idle_threads}
        args.json.write_text(json.dumps({**meta, "arms": results}, indent=1))


if __name__ == "__main__":
    main()
