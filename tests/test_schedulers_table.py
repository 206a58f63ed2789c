"""bench/schedulers.py reads back the rows it wrote, so the comparison table outlives the experiment folders."""

import json
import subprocess
import sys

from tests.study_helpers import ROOT

SCRIPT = str(ROOT / "bench" / "schedulers.py")


def row(study: str, scheduler: str, emd: float | None) -> dict:
    r = {
        "study": study, "scheduler": scheduler, "budget": 288, "trials": 9, "completed": 3, "trial_epochs": 280,
        "winner": "abc", "winner_config": {"lr_g": 0.0002, "n_critic": 3}, "arm": "rank1", "seeds": 3,
    }  # fmt: skip
    if emd is not None:
        r |= {"test_emd_feat_mean": emd, "test_emd_feat_sd": 0.25}
    return r


def test_rows_from_files_make_one_table(tmp_path):
    a, b = tmp_path / "sched-asha.json", tmp_path / "sched-pbt.json"
    a.write_text(json.dumps([row("sched-asha", "asha", 3.21)]))
    b.write_text(json.dumps([row("sched-pbt", "pbt", None)]))
    out = tmp_path / "all.json"
    r = subprocess.run([sys.executable, SCRIPT, str(a), str(b), "--json", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    lines = [line for line in r.stdout.splitlines() if line.startswith("| sched-")]
    assert len(lines) == 2
    assert "| asha | 9 (3) | 280 of 288 | abc (rank1: lr_g=0.0002, n_critic=3) | 3 | 3.21 ± 0.25 |" in lines[0]
    assert "not evaluated" in lines[1]
    assert [x["study"] for x in json.loads(out.read_text())] == ["sched-asha", "sched-pbt"]


def test_a_file_that_is_not_rows_is_one_line_and_exit_2(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    r = subprocess.run([sys.executable, SCRIPT, str(bad)], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "bad.json" in r.stderr and r.stdout == ""
