import numpy as np
import pytest

from healthgym_core.curriculum import Schedule
from healthgym_core.errors import ConfigError


def plan_lengths(text, epoch=0, n=100, batch=32, months=60):
    s = Schedule.parse(text)
    return [st.length for st in s.epoch_plan(epoch, n, batch, np.random.default_rng(0), months)]


def test_ladder_ascends_once_per_length_with_partial_final_batch():
    s = Schedule.parse("ladder:10-20-30-40-50-60")
    plan = s.epoch_plan(0, 100, 32, np.random.default_rng(0), 60)
    assert [st.length for st in plan] == [L for L in (10, 20, 30, 40, 50, 60) for _ in range(4)]
    sizes = [len(st.batch) for st in plan[:4]]
    assert sizes == [32, 32, 32, 4]  # the smaller final batch is used, not dropped
    assert sorted(np.concatenate([st.batch for st in plan[:4]]).tolist()) == list(range(100))


def test_staged_moves_on_every_k_epochs_and_stays_at_the_last():
    assert set(plan_lengths("staged:2:20-40-60", epoch=0)) == {20}
    assert set(plan_lengths("staged:2:20-40-60", epoch=1)) == {20}
    assert set(plan_lengths("staged:2:20-40-60", epoch=2)) == {40}
    assert set(plan_lengths("staged:2:20-40-60", epoch=9)) == {60}
    assert len(plan_lengths("staged:2:20-40-60")) == 3 * 4  # three passes of 4 batches


def test_full_uses_all_months_with_six_passes():
    assert plan_lengths("full", months=48) == [48] * 24
    assert plan_lengths("full:30:2") == [30] * 8


def test_random_draws_listed_lengths():
    lengths = plan_lengths("random:10-60", n=1000, batch=10)
    assert set(lengths) == {10, 60} and len(lengths) == 2 * 100


def test_equal_steps_across_six_length_schedules():
    counts = {
        t: len(plan_lengths(t))
        for t in ("ladder:10-20-30-40-50-60", "staged:3:10-20-30-40-50-60", "full", "random:10-20-30-40-50-60")
    }
    assert len(set(counts.values())) == 1, counts


@pytest.mark.parametrize(
    "text", ["ladder:10-20-30", "staged:3:20-40-60", "full", "full:60", "full:60:3", "random:5-10"]
)
def test_round_trip(text):
    assert str(Schedule.parse(text)) == text


@pytest.mark.parametrize(
    "text,needle",
    [
        ("zigzag:10", "unknown schedule"),
        ("ladder", "list the lengths"),
        ("ladder:10-x", "whole numbers"),
        ("ladder:0-10", "at least 1"),
        ("staged:a:10", "staged:EPOCHS"),
        ("staged:0:10", "at least 1"),
        ("full:10-20", "one length"),
    ],
)
def test_bad_schedules(text, needle):
    with pytest.raises(ConfigError, match=needle):
        Schedule.parse(text)


def test_lengths_longer_than_data_are_refused():
    with pytest.raises(ConfigError, match="length 70 is longer than the data's 60 months"):
        Schedule.parse("ladder:10-70").check(60)
