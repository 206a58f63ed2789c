"""bench/factor_effects.py: each factor against the final test quality, over the proposals of the signal study."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from tests.study_helpers import ROOT
from tests.test_pruning_signals import ps

SCRIPT = str(ROOT / "bench" / "factor_effects.py")


def record(path, name: str, lr_d: list[float], schedules: list[str]) -> None:
    """One study's record: the base first, then the upstream reference, then proposals whose final test emd_feat
    falls as lr_d rises and is 2 higher on the staged schedule."""
    order = [f"{name}{i}" for i in range(len(lr_d) + 2)]
    configs = {
        order[0]: {"lr_d": 2e-4, "schedule": "full", "reference": None},  # the base: best of all, left out
        order[1]: {"lr_d": 1e-3, "schedule": "full", "reference": "upstream"},  # the reference: worst, left out
    }
    quality = {order[0]: 0.5, order[1]: 50.0}
    for t, lr, sched in zip(order[2:], lr_d, schedules):
        configs[t] = {"lr_d": lr, "schedule": sched, "reference": None}
        quality[t] = 10 - np.log10(lr) + (2.0 if sched.startswith("staged") else 0.0)
    trials = ps.Trials(
        order=order,
        configs={t: c | {"seed": i} for i, (t, c) in enumerate(configs.items())},
        factors=["schedule", "lr_d"],
        histories={t: pd.DataFrame({"epoch": [1, 2], "emd_feat": [quality[t]] * 2}) for t in order},
        scores=pd.DataFrame({q: [quality[t] for t in order] for q in ps.QUALITIES}, index=order),
        max_t=2,
    )
    trials.record().to_csv(path, index=False)


def test_effects_over_the_proposals(tmp_path):
    a, b = tmp_path / "signals-1.csv", tmp_path / "signals-2.csv"
    record(a, "a", [1e-5, 1e-4, 1e-3, 3e-3], ["full", "staged:2:10-20-30-40-50-60", "full", "full"])
    record(b, "b", [3e-5, 3e-4], ["staged:2:10-20-30-40-50-60", "full"])
    out, png = tmp_path / "effects.json", tmp_path / "effects.png"
    r = subprocess.run(
        [sys.executable, SCRIPT, str(a), str(b), "--json", str(out), "--figure", str(png)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("10 trials: 6 proposals (the numbers), 2 base and 2 upstream runs")
    doc = json.loads(out.read_text())
    effects = {e["factor"]: e for e in doc["effects"]}
    assert doc["trials"] == 10 and effects["lr_d"]["n"] == 6
    # quality falls with lr_d except where the staged schedule adds 2: Spearman over the 6 proposals
    lr = [1e-5, 1e-4, 1e-3, 3e-3, 3e-5, 3e-4]
    q = [10 - np.log10(x) + (2.0 if i in (1, 4) else 0.0) for i, x in enumerate(lr)]
    rho = pd.Series(lr).rank().corr(pd.Series(q).rank())
    assert effects["lr_d"]["rho"] == pytest.approx(rho) and rho < 0
    assert effects["lr_d"]["lo"] <= rho <= effects["lr_d"]["hi"]
    s = effects["schedule"]
    assert (
        s["counts"]["full"] == 4
        and s["counts"]["staged:2:10-20-30-40-50-60"] == 2
        and s["counts"]["ladder:10-20-30-40-50-60"] == 0
    )
    assert s["medians"]["staged:2:10-20-30-40-50-60"] == pytest.approx(np.median([q[1], q[4]]))
    assert "| lr_d | Spearman" in r.stdout and "ladder:10-20-30-40-50-60: none" in r.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_missing_record_is_one_line_and_exit_2(tmp_path):
    r = subprocess.run(
        [sys.executable, SCRIPT, str(tmp_path / "signals-9.csv")], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 2 and r.stdout == "" and r.stderr.count("\n") == 1 and "signals-9.csv" in r.stderr
