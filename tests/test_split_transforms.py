import numpy as np
import pytest

from healthgym_core.data.split import split_patients
from healthgym_core.data.transforms import BoxCoxMinMax, CohortTransform
from healthgym_core.errors import ConfigError

# Box-Cox constants fitted upstream on all 8,916 patients of the v2.0 file (reference section 1.4).
UPSTREAM = {
    "VL": BoxCoxMinMax(-0.10280050659808612, -2.5667126025418563, 9.308206289656969),
    "CD4": BoxCoxMinMax(-0.15837078646408756, 1.768426319414879, 3.3780829615538304),
    "Rel CD4": BoxCoxMinMax(-0.07011648493830457, 0.613685356331402, 4.526683845025821),
}


def test_split_is_reproducible_disjoint_and_complete():
    a, b = split_patients(1000, seed=5), split_patients(1000, seed=5)
    assert all(np.array_equal(x, y) for x, y in zip((a.train, a.val, a.test), (b.train, b.val, b.test)))
    assert (len(a.train), len(a.val), len(a.test)) == (700, 150, 150)
    assert sorted(np.concatenate([a.train, a.val, a.test]).tolist()) == list(range(1000))
    assert not np.array_equal(a.val, split_patients(1000, seed=6).val)


def test_split_refuses_too_few_patients():
    with pytest.raises(ConfigError, match="too few"):
        split_patients(3)


def test_upstream_constants_invert_the_published_first_row():
    # Patient 0, month 0 of the v2.0 file transforms to these values upstream; originals are about 29.9, 793, 30.8.
    assert UPSTREAM["VL"].inverse(0.583964) == pytest.approx(29.9, rel=0.01)
    assert UPSTREAM["CD4"].inverse(0.696381) == pytest.approx(793, rel=0.01)
    assert UPSTREAM["Rel CD4"].inverse(0.537696) == pytest.approx(30.8, rel=0.01)


def test_upstream_constants_cover_the_published_range():
    # y = 0 and y = 1 map to the data's min and max: VL about 0.10 and 9.7e4 copies/mL.
    assert UPSTREAM["VL"].inverse(0.0) == pytest.approx(0.10, rel=0.05)
    assert UPSTREAM["VL"].inverse(1.0) == pytest.approx(9.7e4, rel=0.05)


@pytest.mark.parametrize("name", list(UPSTREAM))
def test_round_trip_with_upstream_constants(name):
    p = UPSTREAM[name]
    y = np.linspace(0.0, 1.0, 1001)
    assert np.max(np.abs(p.transform(p.inverse(y)) - y)) < 1e-9
    x = np.geomspace(0.2, 5e4, 500)
    assert np.max(np.abs(p.inverse(p.transform(x)) - x) / x) < 1e-9


def test_fit_is_maximum_likelihood_and_scales_to_unit_interval(rng):
    x = rng.lognormal(3.0, 1.5, 20000)
    p = BoxCoxMinMax.fit(x)
    y = p.transform(x)
    assert y.min() == pytest.approx(0.0, abs=1e-12) and y.max() == pytest.approx(1.0, abs=1e-12)
    assert abs(p.lam) < 0.05  # log-normal data: the ML lambda is near 0
    assert np.max(np.abs(p.inverse(y) - x)) < 1e-6 * x.max()


def test_degenerate_column_guard():
    p = BoxCoxMinMax.fit(np.full(10, 4.0))
    assert (p.lam, p.min, p.range) == (1.0, 0.0, 1.0)


def test_cohort_round_trip_is_exact(small_cohort):
    t = CohortTransform.fit(small_cohort)
    x = t.encode_arrays(small_cohort.reals, small_cohort.codes)
    reals, codes = t.decode(x)
    assert np.max(np.abs(reals - small_cohort.reals) / np.maximum(small_cohort.reals, 1e-3)) < 1e-6
    assert np.array_equal(codes, small_cohort.codes)
    for s, e in small_cohort.schema.blocks():
        assert np.all(x[..., s:e].sum(-1) == 1.0)
    assert CohortTransform.from_dict(t.to_dict()) == t


def test_values_beyond_the_unit_interval_decode_to_the_training_range(small_cohort):
    """A linear head can step past [0, 1]; decoding clips there, to the training patients' extremes."""
    t = CohortTransform.fit(small_cohort)
    x = t.encode_arrays(small_cohort.reals, small_cohort.codes)
    wild = x.copy()
    wild[:, :, : len(t.reals)] = np.where(np.arange(x.shape[1]) % 2 == 0, -3.0, 4.0)[None, :, None]
    reals = t.decode(wild)[0]
    lo, hi = small_cohort.reals.min(axis=(0, 1)), small_cohort.reals.max(axis=(0, 1))
    assert np.allclose(reals[:, 0::2], lo, rtol=1e-6) and np.allclose(reals[:, 1::2], hi, rtol=1e-6)


def test_categories_keep_the_generators_shares_without_flicker(small_cohort):
    """Decoding draws each patient's category at one quantile of the month's probabilities: shares follow them (argmax
    would give only the most likely), a code never changes while they stay put, and a variable no training patient
    changes (static, as Gender) keeps one value a record. Deterministic for a seed."""
    t = CohortTransform.fit(small_cohort)
    names = [v.name for v in small_cohort.schema.categoricals]
    assert dict(zip(names, t.static))["Gender"] and not dict(zip(names, t.static))["Base_Drug_Combo"]
    n, months = 20_000, 12
    x = np.zeros((n, months, small_cohort.schema.width))
    rng = np.random.default_rng(0)
    for j, (s, e) in enumerate(small_cohort.schema.blocks()):
        p = np.linspace(1.0, 0.2, e - s)  # the first category the most likely, every other held too
        x[..., s:e] = p / p.sum()
        if t.static[j]:  # a static variable whose probabilities wander over the months
            x[..., s:e] = rng.dirichlet(np.ones(e - s), size=(n, months))
    _, codes = t.decode(x, seed=3)
    _, argmax = t.decode(x, seed=None)
    for j, (s, e) in enumerate(small_cohort.schema.blocks()):
        shares = np.bincount(codes[:, :, j].ravel(), minlength=e - s) / codes[:, :, j].size
        if not t.static[j]:
            assert np.abs(shares - x[0, 0, s:e]).max() < 0.01, (names[j], shares)
            assert (argmax[:, :, j] == 0).all()
        assert (codes[:, :, j] == codes[:, :1, j]).all()  # constant probabilities or static: one code a record
    assert np.array_equal(t.decode(x, seed=3)[1], codes) and not np.array_equal(t.decode(x, seed=4)[1], codes)


def test_codes_switch_as_rarely_as_the_probabilities_allow_and_regimen_columns_together(small_cohort):
    """Mass moving from a block's first category to its third, past a second that holds still: each month keeps its
    shares, and a patient switches in a share of months equal to the probabilities' month-to-month TVD (0.01 here).
    One quantile a patient (the earlier decoding) switched twice as often, every crossing of the middle category's
    interval. Two regimen columns whose probabilities move in the same months switch in the same months where both
    can."""
    t = CohortTransform.fit(small_cohort)
    blocks = small_cohort.schema.blocks()
    names = [v.name for v in small_cohort.schema.categoricals]
    n, months = 20_000, 31
    x = np.zeros((n, months, small_cohort.schema.width))
    for s, _ in blocks:
        x[..., s] = 1.0  # every other variable held in its first category
    moving = [names.index("Base_Drug_Combo"), names.index("Extra_PI")]
    a = np.linspace(0.6, 0.3, months)  # the first category's share falls 0.01 a month, the third's rises as much
    for j in moving:
        s, _ = blocks[j]
        x[..., s], x[..., s + 1], x[..., s + 2] = a, 0.2, 0.8 - a
    _, codes = t.decode(x, seed=5)
    for j in moving:
        c = codes[:, :, j]
        assert abs((c[:, 1:] != c[:, :-1]).mean() - 0.01) < 0.002
        for month in (0, 15, 30):
            shares = np.bincount(c[:, month], minlength=3)[:3] / n
            assert np.abs(shares - [a[month], 0.2, 0.8 - a[month]]).max() < 0.015, (month, shares)
    at_risk = (codes[:, :-1, moving] == 0).all(-1)  # both columns in the category that is losing patients
    moved = codes[:, 1:, moving] != codes[:, :-1, moving]
    both, either = moved.all(-1)[at_risk].mean(), moved.any(-1)[at_risk].mean()
    assert both > 0.9 * either  # coupled: not both in ~1% of the months either does, as independent draws would
    assert (codes[:, :, [j for j in range(len(blocks)) if j not in moving]] == 0).all()


def test_transforms_are_fitted_on_training_patients_only(small_cohort, small_data):
    train_only = CohortTransform.fit(small_cohort.subset(small_data.split.train))
    everyone = CohortTransform.fit(small_cohort)
    assert small_data.transform == train_only
    assert small_data.transform.reals[0] != everyone.reals[0]
    assert small_data.train.dtype == np.float32 and small_data.train.shape == (len(small_data.split.train), 60, 22)
