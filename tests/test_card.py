"""The card beside every exported cohort: real patients score at their floors and pass, one training patient
repeated fails fidelity and privacy, the JSON layout is stable, and the files land beside the cohort."""

from __future__ import annotations

import json

import numpy as np
import pytest

from healthgym_core.data.cohort import load_cohort
from healthgym_core.data.prepared import prepare_data
from healthgym_core.errors import ConfigError
from healthgym_core.evaluation.card import CARD_VERSION, card_paths, cohort_card, write_card


@pytest.fixture(scope="module")
def data():
    return prepare_data(load_cohort("simulated", "demo7", patients=600, seed=5), split_seed=0)


def test_real_patients_score_at_their_floors_and_pass(data):
    val = data.val_cohort
    card = cohort_card(data, val.reals, val.codes, {"what": "the validation patients"}, "real.csv")
    for row in card["fidelity"]["measures"]:
        assert row["value"] == pytest.approx(row["real_floor"], rel=1e-9, abs=1e-12), row["measure"]
    user = {r["measure"]: r for r in card["fidelity"]["measures"] if r["target"]}
    assert user["absent_categories"]["value"] == 0 and user["detect_auc"]["value"] < 0.75
    assert user["variability_ratio/VL"]["meets_target"] and user["variability_ratio/CD4"]["meets_target"]
    assert card["privacy"]["verdict"] == "passes"  # patients the generator never saw: no copies, no membership signal


def test_one_training_patient_repeated_fails_fidelity_and_privacy(data):
    train = data.train_cohort
    reals, codes = np.repeat(train.reals[:1], 200, axis=0), np.repeat(train.codes[:1], 200, axis=0)
    card = cohort_card(data, reals, codes, {}, "collapsed.csv")
    f, p = card["fidelity"], card["privacy"]
    assert f["verdict"].startswith("not yet faithful") and f["targets_met"] < f["targets"]
    user = {r["measure"]: r for r in f["measures"]}
    assert user["detect_auc"]["value"] > 0.95 and not user["detect_auc"]["meets_target"]
    assert user["absent_categories"]["value"] >= 1 and user["coverage"]["value"] < 0.9
    assert user["energy_feat"]["value"] > 5 * user["energy_feat"]["real_floor"]
    checks = {c["check"]: c for c in p["checks"]}
    assert p["verdict"] == "fails" and checks["exact_copies"]["value"] == 1.0 and not checks["exact_copies"]["passes"]
    assert checks["p_dcr_train_closer"]["value"] == 1.0 and not checks["p_dcr_train_closer"]["passes"]


def test_the_card_layout_is_stable_and_lands_beside_the_cohort(data, tmp_path):
    val = data.val_cohort
    card = cohort_card(data, val.reals, val.codes, {"epoch": 3}, "synthetic.csv")
    assert card["card_version"] == CARD_VERSION == 1
    assert list(card) == ["card_version", "cohort", "data", "made_by", "fidelity", "privacy", "not"]
    assert list(card["data"]) == ["source", "simulated", "fingerprint", "schema", "split"]
    assert list(card["fidelity"]) == ["against", "targets_met", "targets", "verdict", "measures"]
    assert all(
        list(r) == ["measure", "value", "real_floor", "target", "what", "meets_target"]
        for r in card["fidelity"]["measures"]
    )
    assert [c["check"] for c in card["privacy"]["checks"]] == ["exact_copies", "p_dcr_train_closer", "membership_auc"]
    assert card["data"]["simulated"] and card["not"][0].startswith("not the Health Gym dataset")
    js, page = write_card(tmp_path / "synthetic.csv", card)
    assert (
        (js, page)
        == card_paths(tmp_path / "synthetic.csv")
        == (tmp_path / "synthetic.card.json", tmp_path / "synthetic.card.html")
    )
    assert json.loads(js.read_text()) == json.loads(json.dumps(card))
    text = page.read_text()
    assert "Fidelity:" in text and "Privacy:</b> passes" in text and "not the Health Gym dataset" in text
    assert not list(tmp_path.glob(".*tmp*"))


def test_an_export_refuses_data_its_generator_was_not_trained_on(data, tmp_path, tiny_config, small_data):
    from healthgym_core.checkpoint import save_checkpoint
    from healthgym_core.sampling import export_cohort
    from healthgym_core.state import build_state

    state = build_state(tiny_config, small_data)
    save_checkpoint(tmp_path / "last.pt", state, small_data)
    with pytest.raises(ConfigError, match="needs the data it was trained on"):
        export_cohort(tmp_path / "last.pt", 20, tmp_path / "out.csv", data)
    assert not (tmp_path / "out.csv").exists()
    card = export_cohort(tmp_path / "last.pt", 20, tmp_path / "out.csv", small_data, seed=1, made_by={"run": "x"})
    assert (tmp_path / "out.card.json").is_file() and (tmp_path / "out.card.html").is_file()
    assert (
        card["made_by"]["run"] == "x" and card["made_by"]["generator_steps"] == 0 and card["cohort"]["patients"] == 20
    )
