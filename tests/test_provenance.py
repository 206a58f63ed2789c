"""The code fingerprint in an evaluation run's key: code changes change it, comments and docstrings do not."""

from healthgym_core.provenance import source_fingerprint


def write(folder, text):
    (folder / "pkg").mkdir(exist_ok=True)
    (folder / "pkg" / "step.py").write_text(text)
    return folder / "pkg"


def test_the_fingerprint_follows_code_not_comments(tmp_path):
    base = 'def lr():\n    """The rate."""\n    return 2e-4\n'
    fingerprints = {}
    for name, text in {
        "base": base,
        "comment": "# a comment\n" + base.replace("return", "return  ").replace("The rate.", "The learning rate."),
        "code": base.replace("2e-4", "1e-4"),
    }.items():
        folder = tmp_path / name
        folder.mkdir()
        fingerprints[name] = source_fingerprint(write(folder, text))
    assert fingerprints["base"] == fingerprints["comment"] != fingerprints["code"]
    (tmp_path / "base" / "pkg" / "kernel.cpp").write_text("int x = 1;")
    assert source_fingerprint.__wrapped__(tmp_path / "base" / "pkg") != fingerprints["base"]  # other sources count


def test_a_run_key_holds_the_code_that_trained_the_run():
    from healthgym_core.config import TrainConfig
    from study.final_runs import run_key
    from study.trainable import training_code

    config = TrainConfig()
    today = run_key(config, 36, "data")
    assert today == run_key(config, 36, "data", training_code()) != run_key(config, 36, "data", "other code")
    assert today != run_key(config, 35, "data") and today != run_key(config, 36, "other data")


def test_scoring_code_is_left_out_of_the_training_fingerprint(tmp_path):
    pkg = write(tmp_path, "x = 1\n")
    (pkg / "evaluation").mkdir()
    (pkg / "evaluation" / "detector.py").write_text("depth = 3\n")
    before = source_fingerprint.__wrapped__(pkg, exclude=("evaluation",))
    (pkg / "evaluation" / "detector.py").write_text("depth = 5\n")  # a new detector: re-score, do not re-train
    assert source_fingerprint.__wrapped__(pkg, exclude=("evaluation",)) == before
    assert source_fingerprint.__wrapped__(pkg) != source_fingerprint.__wrapped__(pkg, exclude=("evaluation",))
    (pkg / "step.py").write_text("x = 2\n")  # training code: a new run
    assert source_fingerprint.__wrapped__(pkg, exclude=("evaluation",)) != before
