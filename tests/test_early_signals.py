"""bench/early_signals.py: an early signal that orders runs as their final quality does scores +1, a reversed one
-1, read from plain-trainer run folders and a remedies.py score table."""

import importlib.util
import sys

import pandas as pd
import pytest

from tests.study_helpers import ROOT

spec = importlib.util.spec_from_file_location("early_signals", ROOT / "bench" / "early_signals.py")
es = importlib.util.module_from_spec(spec)
sys.modules["early_signals"] = es
spec.loader.exec_module(es)


def test_a_signal_that_orders_runs_as_the_end_does_scores_1_and_a_reversed_one_minus_1(tmp_path):
    rows = []
    for i in range(6):
        run = tmp_path / f"arm-s{i}"
        run.mkdir()
        # energy_feat orders the runs as their final test quality; emd_feat in reverse; no fd_feat: left out
        epochs = pd.DataFrame({"epoch": [1, 2, 3], "energy_feat": [10 + i] * 3, "emd_feat": [10 - i] * 3})
        epochs.assign(critic_gap=[0.5, 0.5, 0.5 + (i % 2)]).to_csv(run / "epochs.csv", index=False)
        rows.append({"arm": "arm", "seed": i, "energy": 1.0 + i, "emd_feat": 2.0 + i, "classifier_gap": 0.1 * i})
    table = es.correlations(tmp_path, pd.DataFrame(rows), [1, 3])
    assert set(table["signal"]) == {"energy_feat", "emd_feat", "critic_gap"} and (table["runs"] == 6).all()
    at = table.set_index(["quality", "signal", "epoch"])
    assert at.loc[("test energy_feat", "energy_feat", 3), "rho"] == pytest.approx(1.0)
    assert at.loc[("test energy_feat", "energy_feat", 3), "lo"] == pytest.approx(1.0)
    assert at.loc[("test classifier_gap", "emd_feat", 1), "rho"] == pytest.approx(-1.0)
    assert abs(at.loc[("test emd_feat", "critic_gap", 3), "rho"]) < 0.5  # odd against even runs: no order
