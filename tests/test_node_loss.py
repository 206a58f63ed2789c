"""A worker node lost mid-trial: the trial resumes from its last checkpoint (FailureConfig max_failures)."""

import pandas as pd
import pytest

from tests.study_helpers import results, start_study, wait_for

pytestmark = pytest.mark.slow

# Enough smoke epochs that the node goes while the trial still trains: with 4, a fast machine finished them all
# between the first result and the node's removal, and nothing was left to resume.
EPOCHS = 30


def test_trial_resumes_from_checkpoint_after_its_node_is_removed(tmp_path):
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    try:
        worker = cluster.add_node(num_cpus=1)
        folder = tmp_path / "baseline"
        p = start_study(
            "--space",
            "baseline",
            "--smoke",
            "--num-samples",
            1,
            "--max-epochs",
            EPOCHS,
            "--no-pruning",
            "--address",
            cluster.address,
            "--storage",
            tmp_path,
            "--max-failures",
            2,
        )
        assert wait_for(lambda: sum(len(r) for r in results(folder)) >= 1 or p.poll() is not None, timeout=180)
        assert p.poll() is None, p.stderr.read()[-3000:]
        cluster.remove_node(worker)  # the trial's worker process dies with its node
        seen = max(r["epoch"].max() for r in results(folder))
        assert seen < EPOCHS, f"the trial finished ({seen} epochs) before its node was removed"
        cluster.add_node(num_cpus=1)
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
    finally:
        cluster.shutdown()
    board = pd.read_parquet(folder / "leaderboard.parquet")
    assert len(board) == 1 and board["status"].iloc[0] == "completed" and board["epochs"].iloc[0] == EPOCHS
    # It resumed from a checkpoint rather than starting over: the restored run began after epoch 1.
    history = results(folder)[0]
    assert history["epoch"].max() == EPOCHS
    restored = history[history["iterations_since_restore"] == 1]
    assert (restored["epoch"] > 1).any(), history[["epoch", "iterations_since_restore"]]
    steps = pd.read_csv(next(folder.glob("*/steps.csv")))
    assert sorted(steps["epoch"].unique()) == list(range(1, EPOCHS + 1))
