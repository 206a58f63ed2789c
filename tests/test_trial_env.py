"""What a trial's Ray worker process inherits from the study (study.tuning.start_ray)."""

import json
import subprocess
import sys

from tests.study_helpers import ROOT, env

PROBE = """
import json, os, ray, sys
sys.path.insert(0, {root!r})
from study.tuning import start_ray
start_ray(None, dashboard=False)
keys = ("MALLOC_ARENA_MAX", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
seen = ray.get(ray.remote(lambda: {{k: os.environ.get(k) for k in keys}}).remote())
print(json.dumps(seen), flush=True)
ray.shutdown()
"""


def test_trial_workers_get_one_malloc_arena_and_single_thread_blas():
    clean = {k: v for k, v in env().items() if k not in ("MALLOC_ARENA_MAX", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    r = subprocess.run(
        [sys.executable, "-c", PROBE.format(root=str(ROOT))], env=clean, capture_output=True, text=True, timeout=180
    )
    assert r.returncode == 0, r.stderr[-2000:]
    seen = json.loads(r.stdout.strip().splitlines()[-1])
    # One arena: a reused actor starts every trial in a new thread, and each thread's arena otherwise keeps the
    # memory keep_freed_memory() tells glibc not to return (a PBT study's workers reached 10-11 GB and were killed).
    assert seen == {"MALLOC_ARENA_MAX": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
