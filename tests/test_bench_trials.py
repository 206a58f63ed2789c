import json
import subprocess
import sys

import pytest

from tests.study_helpers import ROOT


@pytest.mark.slow
def test_trials_per_device_quick(tmp_path):
    out = tmp_path / "t.json"
    r = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "trials_per_device.py"),
            "--quick",
            "--device",
            "cpu",
            "--k",
            "1,2",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads(out.read_text())
    rows = result["rows"]
    assert [row["k"] for row in rows] == [1, 2]
    assert rows[0]["speedup_vs_one"] == 1.0 and rows[1]["speedup_vs_one"] > 0
    assert all(row["epochs_per_hour"] > 0 and row["peak_mb_per_trial"] > 0 for row in rows)
    assert not any(row["graphs"] for row in rows)  # auto: no CUDA graphs on CPU
    best = max(row["epochs_per_hour"] for row in rows)
    knee = min(row["k"] for row in rows if row["epochs_per_hour"] >= 0.9 * best)
    assert result["suggested_share"] == round(1 / knee, 4)
    assert f"suggested per-trial share of the device: 1/{knee}" in r.stdout
