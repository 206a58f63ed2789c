"""bench/budget_curves.py: the ranking transfer from the study's budget to the long one, and scoring a run's
checkpoints as a card does."""

import importlib.util
import sys

import pandas as pd
import pytest

from tests.study_helpers import ROOT

spec = importlib.util.spec_from_file_location("budget_curves", ROOT / "bench" / "budget_curves.py")
bc = importlib.util.module_from_spec(spec)
sys.modules["budget_curves"] = bc
spec.loader.exec_module(bc)


def curve(short: float, long: float) -> pd.DataFrame:
    """A run scored every 360 steps: `short` around the study's budget, `long` from 6,000 steps on."""
    steps = list(range(360, 7201, 360))
    return pd.DataFrame({"g_steps": steps, bc.RANK_BY: [short if s < 6000 else long for s in steps]})


def test_a_ranking_that_holds_scores_1_and_one_that_flips_scores_minus_1():
    same = {f"c{i}": curve(i, i / 2) for i in range(1, 6)}  # lower energy_feat is better at both budgets
    table, rho = bc.transfer(same, 7200, boots=200)
    assert rho["spearman"] == pytest.approx(1.0) and rho["low"] == pytest.approx(1.0) and rho["configurations"] == 5
    assert list(table["rank short"]) == list(table["rank long"]) == [1, 2, 3, 4, 5]
    assert table["short"].tolist() == pytest.approx([1, 2, 3, 4, 5])  # the three checkpoints nearest 2,160 steps
    flipped = {f"c{i}": curve(i, 10 - i) for i in range(1, 6)}
    _, rho = bc.transfer(flipped, 7200, boots=200)
    assert rho["spearman"] == pytest.approx(-1.0) and rho["high"] == pytest.approx(-1.0)


def test_score_refuses_a_folder_without_checkpoints(tmp_path, capsys):
    assert bc.main(["score", str(tmp_path), "x"]) == 2
    assert "no checkpoints/epoch_NNNN.pt to score" in capsys.readouterr().err


def test_score_scores_every_checkpoint_once_and_follows_a_run(tmp_path, monkeypatch):
    from healthgym_core.train import main as train

    run = tmp_path / "run"
    tiny = ["--patients", "200", "--hidden", "8", "--batch-size", "32", "--n-critic", "1", "--schedule", "full"]
    tiny += ["--eval-samples", "64", "--threads", "1", "--quiet", "--checkpoint-every", "1", "--out", str(run)]
    assert train([*tiny, "--epochs", "1"]) == 0
    monkeypatch.setattr(bc, "CURVES", tmp_path / "curves")
    monkeypatch.setattr(bc, "SAMPLES", 100)
    assert bc.main(["score", str(run), "tiny", "--patients", "200"]) == 0
    first = pd.read_csv(tmp_path / "curves" / "tiny.csv")
    assert first["epoch"].tolist() == [1] and {"energy_feat", "detect_auc", "switch_ratio"} <= set(first.columns)
    assert train([*tiny, "--epochs", "2", "--resume"]) == 0
    assert bc.main(["score", str(run), "tiny", "--patients", "200"]) == 0
    both = pd.read_csv(tmp_path / "curves" / "tiny.csv")
    assert both["epoch"].tolist() == [1, 2] and both.iloc[0]["energy_feat"] == pytest.approx(
        first.iloc[0]["energy_feat"]
    )
    assert bc.main(["score", str(run), "tiny", "--patients", "300"]) == 2  # not the data it was trained on
