import pytest
import torch

from healthgym_core.losses import correlation_2022, correlation_2025, correlation_loss, gradient_penalty


class Linear(torch.nn.Module):
    """D(x) = sum(w * x): its input gradient is w for every sequence."""

    def __init__(self, w):
        super().__init__()
        self.w = torch.nn.Parameter(w)

    def forward(self, x):
        return (x * self.w).sum(dim=(1, 2)).unsqueeze(1)


def test_gradient_penalty_on_a_linear_critic():
    w = torch.zeros(4, 3)
    w[0, 0], w[1, 2] = 2.0, 2.0**0.5 * 1.0  # ||w|| = sqrt(4 + 2) = sqrt(6)
    real, fake = torch.rand(5, 4, 3), torch.rand(5, 4, 3)
    gp, norm = gradient_penalty(Linear(w), real, fake, weight=10.0)
    expected = 10.0 * (6**0.5 - 1) ** 2
    assert gp.item() == pytest.approx(expected, rel=1e-5)
    assert norm.item() == pytest.approx(6**0.5, rel=1e-5)


def test_gradient_penalty_uses_the_actual_batch_and_one_alpha_per_sequence():
    w = torch.ones(2, 2) * 0.5  # ||w|| = 1: no penalty
    gp, _ = gradient_penalty(Linear(w), torch.rand(3, 2, 2), torch.rand(3, 2, 2), weight=10.0)
    assert gp.item() == pytest.approx(0.0, abs=1e-6)


def test_correlation_hand_checked():
    t = torch.arange(10.0)
    x = torch.stack([t, 2 * t + 1, -t, torch.full_like(t, 3.0)], dim=1)
    c = correlation_2025(x)
    assert torch.allclose(c[0, 1], torch.tensor(1.0)) and torch.allclose(c[0, 2], torch.tensor(-1.0))
    assert c[0, 3] == 0 and c[3, 3] == 1  # constant column: 0 off the diagonal, 1 on it
    assert torch.allclose(c, c.T)
    c22 = correlation_2022(x)
    assert torch.allclose(c22[0, 1], torch.tensor(1.0), atol=1e-6) and c22[3, 3] == 0


def test_correlation_of_one_hot_rows_is_in_range_with_unit_diagonal(small_data):
    c = correlation_2025(torch.from_numpy(small_data.train))
    assert c.shape == (22, 22)
    assert torch.allclose(torch.diagonal(c), torch.ones(22))
    assert c.min() >= -1 and c.max() <= 1 and torch.allclose(c, c.T, atol=1e-6)


def test_correlation_loss_of_real_against_itself_is_zero(small_data):
    c = correlation_2025(torch.from_numpy(small_data.train))
    assert correlation_loss(c, c, "2025").item() == 0.0
    assert correlation_loss(c, c, "2022").item() == 0.0


def test_random_threshold_matches_its_expectation():
    """Same sign, |f| = a < |r| = b: E_u |sign*min(u,a) - sign*min(u,b)| = (b - a)(1 - (a + b)/2).
    Opposite signs: (a - a^2/2) + (b - b^2/2). Plain L1 gives b - a and a + b."""
    torch.manual_seed(0)
    a, b, n = 0.2, 0.7, 400
    same = correlation_loss(torch.full((n, n), a), torch.full((n, n), b), "2025").item()
    opposite = correlation_loss(torch.full((n, n), -a), torch.full((n, n), b), "2025").item()
    assert same == pytest.approx((b - a) * (1 - (a + b) / 2), abs=3e-3)
    assert opposite == pytest.approx((a - a * a / 2) + (b - b * b / 2), abs=3e-3)
    assert correlation_loss(torch.full((2, 2), a), torch.full((2, 2), b), "2022").item() == pytest.approx(b - a)


def test_the_texture_loss_is_0_for_real_patients_and_grows_as_they_are_smoothed_or_coupled():
    from healthgym_core.losses import texture_loss, texture_target

    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 12, 5, generator=g)  # 2 real columns, then a one-hot block
    sd, corr = texture_target(x, 2)
    d = (x[:, 1:, :2] - x[:, :-1, :2]).reshape(-1, 2)
    assert torch.allclose(sd, d.std(dim=0)) and torch.allclose(corr, torch.corrcoef(d.T))
    assert float(texture_loss(x, (sd, corr), 2)) == pytest.approx(0.0, abs=1e-6)
    mean = x[:, :, :2].mean(dim=1, keepdim=True)
    losses = []
    for s in (0.25, 0.5, 1.0):
        y = x.clone()
        y[:, :, :2] = mean + (1 - s) * (x[:, :, :2] - mean)
        losses.append(float(texture_loss(y, (sd, corr), 2)))
    flat = (1.0 + 1.0 + abs(float(corr[0, 1]))) / 3  # no change left: variances 0 (real: 1), covariance 0
    assert losses[0] < losses[1] < losses[2] == pytest.approx(flat, rel=1e-5)
    assert float(texture_loss(x[:, :1], (sd, corr), 2)) == 0.0  # one month: no change
    together = x.clone()
    together[:, :, 1] = together[:, :, 0] * float(sd[1] / sd[0])  # the second moves with the first, as rough as real
    coupled = float(texture_loss(together, (sd, corr), 2))
    assert coupled == pytest.approx(abs(1.0 - float(corr[0, 1])) / 3, abs=0.02)
    flat_rows = mean.expand_as(x[:, :, :2]) + 1e-7 * (x[:, :, :2] - mean)  # nearly flat: gradients stay bounded
    z = torch.cat([flat_rows, x[:, :, 2:]], dim=-1).requires_grad_(True)
    texture_loss(z, (sd, corr), 2).backward()
    assert torch.isfinite(z.grad).all() and float(z.grad.abs().max()) < 10


def test_the_switch_loss_is_near_0_for_real_patients_bounded_and_1_for_frozen_categories():
    from healthgym_core.data.cohort import load_cohort
    from healthgym_core.data.prepared import prepare_data
    from healthgym_core.losses import switch_loss, switch_rates
    from healthgym_core.state import real_switching

    data = prepare_data(load_cohort("simulated", "demo7", patients=600, seed=0), split_seed=0)
    target, blocks = real_switching(data, torch.device("cpu"))
    train = data.tensor("train")
    assert len(blocks) == 3 and (target > 0).all()  # the regimen columns; Gender and Ethnic never change
    assert float(switch_loss(train, target, blocks)) == pytest.approx(0.0, abs=1e-6)
    assert torch.allclose(switch_rates(train, blocks), target)
    frozen = train[:, :1].expand_as(train)
    assert float(switch_loss(frozen, target, blocks)) == pytest.approx(1.0)
    g = torch.Generator().manual_seed(0)
    shuffled = train[torch.randint(0, len(train), train.shape[:2], generator=g), torch.arange(train.shape[1])]
    flicker = float(switch_loss(shuffled, target, blocks))  # every month another patient's regimen
    assert 0.8 < flicker < 1.0
    soft = shuffled.clone().requires_grad_(True)
    switch_loss(soft, target, blocks).backward()
    assert torch.isfinite(soft.grad).all() and soft.grad[:, :, :8].abs().max() == 0  # reals, Gender, Ethnic untouched


def test_the_summary_loss_is_0_for_the_same_patients_small_for_real_ones_and_grows_with_each_damage():
    from healthgym_core.data.cohort import load_cohort
    from healthgym_core.data.prepared import prepare_data
    from healthgym_core.losses import patient_summaries, summary_loss
    from healthgym_core.nn.layout import Layout

    data = prepare_data(load_cohort("simulated", "demo7", patients=600, seed=0), split_seed=0)
    lay = Layout.of(data.schema)
    train = data.tensor("train")
    a, b = train[:140], train[140:280]

    def loss(x: torch.Tensor, y: torch.Tensor = a) -> float:
        return float(summary_loss(x, y, lay.n_real, lay.blocks))

    assert patient_summaries(a, lay.n_real, lay.blocks).shape == (140, 9 * 2 + 1 + 20 + 5)
    assert loss(a) == 0.0 and loss(b) == loss(b)  # identical batches; deterministic
    floor = loss(b)  # other real patients
    assert 0 < floor < 0.02
    flat = b.clone()
    flat[:, :, :2] = b[:, :, :2].mean(1, keepdim=True)  # each trajectory at its own mean
    g = torch.Generator().manual_seed(0)
    frozen = b[:, :1].expand_as(b)  # every month the first month's values and categories
    regimens = b.clone()
    regimens[:, :, 8:] = b[torch.randint(0, len(b), b.shape[:2], generator=g), torch.arange(b.shape[1]), 8:]
    one = b[:1].expand_as(b)  # collapse: one patient repeated
    damaged = {name: loss(x) for name, x in [("flat", flat), ("frozen", frozen), ("flicker", regimens), ("one", one)]}
    assert all(v > 10 * floor for v in damaged.values()), damaged
    assert all(loss(x[:, :10], a[:, :10]) > 5 * loss(b[:, :10], a[:, :10]) for x in (flat, one))  # a short stage
    z = flat.clone().requires_grad_(True)  # flat patients: bounded gradients through their sds and correlations
    summary_loss(z, a, lay.n_real, lay.blocks).backward()
    assert torch.isfinite(z.grad).all() and 0 < float(z.grad.abs().max()) < 1
    assert 0 < loss(flat, a[:1]) <= 1  # a last batch of one real patient: finite, in range


def test_the_share_loss_is_0_for_the_training_patients_small_for_others_and_grows_for_missing_or_scrambled_groups():
    from healthgym_core.data.cohort import load_cohort
    from healthgym_core.data.prepared import prepare_data
    from healthgym_core.losses import share_loss
    from healthgym_core.nn.layout import Layout
    from healthgym_core.state import real_shares

    data = prepare_data(load_cohort("simulated", "demo7", patients=2000, seed=0), split_seed=0)
    blocks = Layout.of(data.schema).blocks
    target = real_shares(data, torch.device("cpu"))
    train, test = data.tensor("train"), data.tensor("test")

    def loss(x: torch.Tensor) -> float:
        return float(share_loss(x, target, blocks))

    assert loss(train) < 1e-5 and loss(train[:, :10]) < 1e-5  # its own tables, at any stage length
    floor = loss(test)  # 300 other real patients: sampling noise in 10 joint tables
    assert 0 < floor < 0.1 and loss(test) == floor
    (gs, ge), (es, ee) = blocks[0], blocks[1]  # Gender, Ethnic
    common = test.clone()
    common[:, :, es:ee] = 0.0
    common[:, :, es + int(test[:, 0, es:ee].sum(0).argmax())] = 1.0  # every patient in the commonest ethnic group
    scrambled = test.clone()
    scrambled[:, :, gs:ge] = test[torch.randperm(len(test), generator=torch.Generator().manual_seed(0)), :, gs:ge]
    soft = test.clone()
    soft[:, :, es:ee] = 0.8 * test[:, :, es:ee] + 0.2 * common[:, :, es:ee]  # probabilities tilted to the commonest
    # larger with each damage, the more so the more of a group is missing; Gender shuffled across patients keeps
    # both marginals and loses only their joint table
    assert floor + 0.1 < loss(common) and floor < loss(soft) < loss(common), (floor, loss(soft), loss(common))
    assert floor < loss(scrambled) < loss(common), (floor, loss(scrambled))
    z = soft.clone().requires_grad_(True)
    share_loss(z, target, blocks).backward()
    assert torch.isfinite(z.grad).all() and z.grad[:, :, : blocks[0][0]].abs().max() == 0  # reals untouched
    assert float(z.grad[:, :, es:ee].abs().sum()) > 0
