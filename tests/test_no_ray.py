"""healthgym_core knows nothing of Ray: it imports and trains on a machine without Ray installed."""

import subprocess
import sys

SCRIPT = """
import sys
sys.modules["ray"] = None  # any `import ray` now fails, as on a machine without Ray
import importlib, pkgutil, healthgym_core
for m in pkgutil.walk_packages(healthgym_core.__path__, "healthgym_core."):
    importlib.import_module(m.name)
from healthgym_core.train import main
sys.exit(main(["--patients", "40", "--hidden", "4", "--batch-size", "16", "--n-critic", "1", "--schedule", "ladder:3",
               "--eval-samples", "8", "--sample-patients", "3", "--epochs", "1", "--quiet", "--out", sys.argv[1]]))
"""


def test_core_imports_and_trains_without_ray(tmp_path):
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "run")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "run" / "checkpoints" / "last.pt").exists()
