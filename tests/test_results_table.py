"""bench/results_table.py: a space's committed evaluation summary as the table docs/results.md shows."""

import subprocess
import sys

import pandas as pd

from tests.study_helpers import ROOT

SCRIPT = str(ROOT / "bench" / "results_table.py")
CURRICULUM = ROOT / "docs" / "results" / "curriculum.final_summary.csv"


def run(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, SCRIPT, *map(str, args)], capture_output=True, text=True, timeout=60)


def test_the_curriculum_table_from_its_summary():
    r = run(CURRICULUM)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == (
        "| metric (test patients) | real floor | upstream | base | rank1 | best vs upstream | rank1 vs base |"
    )
    rows = {line.split(" | ")[0].lstrip("| "): line for line in lines[2:]}
    # the numbers of the summary, the best arm in bold, the comparisons as study/evaluate.py judged them
    assert rows["emd_feat"] == (
        "| emd_feat | 1.87 | 5.16 ± 1.38 | 3.33 ± 0.24 | **3.11 ± 0.17** | "
        "rank1 2.05 better, beyond the spread | rank1 0.213 better, within the spread |"
    )
    assert "| **0.800 ± 0.117** | 0.790 ± 0.065 | base 0.470 better, beyond the spread |" in rows["category coverage"]
    # a metric on which upstream is ahead says so
    assert "upstream 0.013 better, within the spread" in rows["static correlation L1"]


def test_an_arm_ahead_on_a_lower_is_better_metric_is_bold(tmp_path):
    s = pd.read_csv(CURRICULUM)
    s.loc[s["metric"] == "emd_feat", ["upstream_mean", "advantage", "beyond_seed_spread"]] = [1.0, -2.11, False]
    s.to_csv(tmp_path / "s.csv", index=False)
    row = next(line for line in run(tmp_path / "s.csv").stdout.splitlines() if "emd_feat" in line)
    # 2.11 ahead against sds 1.38 + 0.17: beyond, although the summary's flag only asks whether rank1 is ahead
    assert "| **1.00 ± 1.38** | 3.33 ± 0.24 | 3.11 ± 0.17 | upstream 2.11 better, beyond the spread |" in row


def test_a_base_ahead_of_the_study_s_pick_beyond_the_spread_says_so():
    """The correlation evaluation's rank1 (upstream's weight 10 on the base) collapsed: the base leads by 1.52 on
    emd_feat against sds 0.24 + 0.36, and by 0.55 in coverage against 0.12 + 0.00."""
    r = run(CURRICULUM.parent / "correlation.final_summary.csv")
    assert r.returncode == 0, r.stderr
    rows = {line.split(" | ")[0].lstrip("| "): line for line in r.stdout.splitlines() if line.startswith("| ")}
    assert rows["emd_feat"].endswith("| base 1.52 better, beyond the spread |")
    assert rows["category coverage"].endswith("| base 0.550 better, beyond the spread |")
    assert rows["static correlation L1"].endswith("| rank1 0.001 better, within the spread |")


def test_diversity_is_judged_by_its_distance_to_real_also_in_older_summaries():
    """The PBT evaluation's summary (written when a higher ratio counted as better) called rank1's 1.30 "0.511 better"
    than the base's 0.789; real patients score 1.01, so rank1 overshoots by 0.29 and the base falls short by 0.22."""
    r = run(CURRICULUM.parent / "sched-pbt.final_summary.csv")
    assert r.returncode == 0, r.stderr
    rows = {line.split(" | ")[0].lstrip("| "): line for line in r.stdout.splitlines() if line.startswith("| ")}
    assert rows["diversity ratio"] == (
        "| diversity ratio | 1.01 | 0.125 ± 0.143 | **0.789 ± 0.230** | 1.30 ± 0.07 | "
        "base 0.665 nearer real, beyond the spread | base 0.067 nearer real, within the spread |"
    )


def test_not_a_summary_is_one_line_and_exit_2(tmp_path):
    bad = tmp_path / "leaderboard.csv"
    bad.write_text("trial_id,emd_feat\na,1\n")
    r = run(bad)
    assert r.returncode == 2 and r.stdout == "" and r.stderr.count("\n") == 1 and "leaderboard.csv" in r.stderr
    r = run(tmp_path / "missing.csv")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "missing.csv" in r.stderr


def test_figure_of_every_run_needs_the_runs_table(tmp_path):
    for table in ("final_summary", "final_evaluation"):
        (tmp_path / f"curriculum.{table}.csv").write_bytes((CURRICULUM.parent / f"curriculum.{table}.csv").read_bytes())
    png = tmp_path / "every_run.png"
    r = run(tmp_path / "curriculum.final_summary.csv", "--figure", png)
    assert r.returncode == 0, r.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    (tmp_path / "curriculum.final_evaluation.csv").unlink()
    png.unlink()
    r = run(tmp_path / "curriculum.final_summary.csv", "--figure", png)
    assert r.returncode == 2 and "curriculum.final_evaluation.csv" in r.stderr and r.stdout == "" and not png.exists()


def test_the_studys_trials_come_first_when_its_leaderboard_is_beside(tmp_path):
    summary = tmp_path / "critic.final_summary.csv"
    summary.write_bytes(CURRICULUM.read_bytes())
    pd.DataFrame(
        {
            "trial_id": ["aa", "bb"], "status": ["completed", "pruned"], "epochs": [36, 8],
            "n_critic": [5, 9], "gp_weight": [10.0, 0.123456], "seed": [0, 3], "role": ["base", None],
            "collapse": ["partial", "collapsed"], "last_emd_feat": [2.98123, 4.4], "last_coverage": [0.65, 0.25],
        }
    ).to_csv(tmp_path / "critic.leaderboard.csv", index=False)  # fmt: skip
    r = run(summary)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[2].startswith(
        "| trial | n_critic | gp_weight | seed | role | verdict | emd_feat | fd_feat | coverage |"
    )
    assert lines[4] == "| aa | 5 | 10 | 0 | base | partial | 2.98 |  | 0.650 |  |  |  |  |"
    assert lines[5] == "| bb | 9 | 0.123 | 3 | pruned at 8 | collapsed | 4.40 |  | 0.250 |  |  |  |  |"
    assert "| emd_feat | 1.87 |" in r.stdout  # the evaluation follows
