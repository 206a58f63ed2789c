"""study/finalize.py: a smoke study's winner trained on to more epochs through Ray, keeping its best checkpoint by
the ranking metric, resumed after a kill without repeating an epoch, its cohort exported from the best checkpoint
with a card; bad input refused in one line before Ray starts."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import pandas as pd
import pytest

from healthgym_core import cli
from study.experiment import RANK_METRIC
from tests.study_helpers import ROOT, env, kill_session, study, wait_for

FINALIZE = [sys.executable, str(ROOT / "study" / "finalize.py")]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    store = tmp_path_factory.mktemp("long")
    args = ["--space", "baseline", "--smoke", "--num-samples", "1", "--max-epochs", "2", "--no-pruning"]
    r = study(*args, "--storage", store, "--no-dashboard", timeout=400)
    assert r.returncode == 0, r.stderr[-2000:]
    return store / "baseline"


def finalize(*args, timeout: float = 400) -> subprocess.CompletedProcess:
    p = subprocess.Popen(
        [*FINALIZE, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(),
        start_new_session=True,
    )  # fmt: skip
    try:
        out, err = p.communicate(timeout=timeout)
    finally:
        kill_session(p.pid)
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


def one_error(capsys, argv, expected: str) -> None:
    from study.finalize import main

    code = cli.run(main, [str(a) for a in argv])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and expected in lines[0], (code, lines)


def test_bad_input_is_refused_before_ray(finished, tmp_path, capsys, tripwires):
    one_error(capsys, [tmp_path / "nowhere", "--epochs", 4], "no such folder")
    one_error(capsys, [finished, "--epochs", 2], "--epochs 2: the study's trials already trained 2 epochs")
    one_error(capsys, [finished, "--epochs", 4, "--resume"], "holds no long runs to 4 epochs")
    none_done = tmp_path / "none_done"
    shutil.copytree(finished, none_done)
    board = pd.read_parquet(none_done / "leaderboard.parquet")
    board.assign(status="pruned").to_parquet(none_done / "leaderboard.parquet")
    one_error(capsys, [none_done, "--epochs", 4], "no trial completed its epochs")
    assert not list(finished.glob("long-*")) and not list(none_done.glob("long-*"))


@pytest.mark.slow
def test_the_winner_trains_on_keeps_its_best_and_resumes_after_a_kill(finished):
    folder = finished / "long-e5"
    p = subprocess.Popen(
        [*FINALIZE, str(finished), "--epochs", "5", "--no-dashboard"], stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, env=env(), start_new_session=True,
    )  # fmt: skip
    try:  # killed once the first epoch beyond the study's has been reported
        assert wait_for(lambda: any(folder.glob("*/checkpoint_000000")) or p.poll() is not None, 300, poll=0.2)
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=30)
    finally:
        kill_session(p.pid)
    r = finalize(finished, "--epochs", 5, "--resume", "--no-dashboard")
    assert r.returncode == 0, r.stderr[-3000:]
    (run,) = [d for d in folder.iterdir() if d.is_dir() and d.name.startswith("_continue")]
    reports = [json.loads(line) for line in (run / "result.json").read_text().splitlines()]
    epochs = [x["epoch"] for x in reports]
    # every epoch once; only the one whose checkpoint Tune had not yet recorded when the kill came may run twice
    assert sorted(set(epochs)) == [3, 4, 5] and epochs.count(3) <= 2 and epochs.count(4) == epochs.count(5) == 1
    best = json.loads((run / "best.json").read_text())
    scores = {x["epoch"]: x[RANK_METRIC] for x in reports}
    assert best[RANK_METRIC] == pytest.approx(min(scores.values())) and scores[best["epoch"]] == best[RANK_METRIC]
    table = pd.read_csv(folder / "long_runs.csv")
    assert len(table) == 1 and table["best_epoch"].iloc[0] == best["epoch"]
    export = folder / table["export"].iloc[0]
    card = json.loads((folder / (export.stem + ".card.json")).read_text())
    assert card["made_by"]["epoch"] == best["epoch"] and card["made_by"]["trained_to_epochs"] == 5
    assert pd.read_csv(export)["PatientID"].nunique() == card["cohort"]["patients"]
    from study.reporting.final import long_runs_html

    assert f'href="long-e5/{export.stem}.card.html"' in long_runs_html(finished)  # the report links the card
    from tests.test_hardening import Server

    page = Server(finished)  # and the dashboard serves it
    try:
        trial = table["trial_id"].iloc[0]
        assert f'data-href="/long/5/{trial}"' in json.loads(page.get("/api/overview")[2])["header"]
        code, _, body = page.get(f"/long/5/{trial}")
        assert code == 200 and body == (folder / (export.stem + ".card.html")).read_bytes()
        assert page.get("/long/5/..%2F..%2Fstudy")[0] == 404
    finally:
        page.close()
    again = finalize(finished, "--epochs", 5, "--no-dashboard")
    assert again.returncode == 2 and "pass --resume" in again.stderr
