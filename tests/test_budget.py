"""--budget: the searcher proposes no trial the study's trial-epochs cannot hold, and takes back what ASHA saves."""

import pickle

from ray.tune.search import Searcher

from study.search import BudgetedOptunaSearch, DefineByRun
from study.spaces import load_space


def searcher(budget: int, max_t: int) -> BudgetedOptunaSearch:
    return BudgetedOptunaSearch(
        budget=budget, max_t=max_t, space=DefineByRun(load_space("critic"), seed=0), metric="emd_feat", mode="min"
    )


def test_the_budget_holds_every_running_trial_to_its_end():
    s = searcher(budget=10, max_t=4)
    assert isinstance(s.suggest("a"), dict) and isinstance(s.suggest("b"), dict)  # 8 of 10 committed
    assert s.suggest("c") is None  # a third could need 12: wait, a running trial may stop early
    s.on_trial_result("a", {"epoch": 1, "training_iteration": 1, "emd_feat": 5.0})
    s.on_trial_complete(
        "a", {"epoch": 1, "training_iteration": 1, "emd_feat": 5.0}
    )  # ASHA stopped it after 1 epoch: 3 handed back
    assert s.committed() == 5 and isinstance(s.suggest("c"), dict)  # 1 + 4 + 4 = 9
    assert s.suggest("d") is None
    for t in ("b", "c"):
        s.on_trial_result(t, {"epoch": 4, "training_iteration": 4, "emd_feat": 4.0})
        s.on_trial_complete(t, {"epoch": 4, "training_iteration": 4, "emd_feat": 4.0})
    assert s.committed() == 9 and s.suggest("d") == Searcher.FINISHED  # nothing runs, 1 epoch left: done


def test_the_counts_survive_a_resume(tmp_path):
    s = searcher(budget=8, max_t=4)
    s.suggest("a")
    s.on_trial_result("a", {"epoch": 2, "training_iteration": 2, "emd_feat": 5.0})
    s.save(str(tmp_path / "searcher.pkl"))
    again = searcher(budget=8, max_t=4)
    again.restore(str(tmp_path / "searcher.pkl"))
    assert again.epochs == {"a": 2} and again.live == {"a"} and again.committed() == 4
    assert isinstance(again.suggest("b"), dict) and again.suggest("c") is None
    pickle.dumps(again)  # Tune pickles the searcher with the experiment state
