import pytest
import torch

from healthgym_core.data.schema import BUILTIN_SCHEMAS
from healthgym_core.nn.critic import Critic
from healthgym_core.nn.generator import Generator
from healthgym_core.nn.layout import Layout
from healthgym_core.nn.lstm import ReferenceLSTM, copy_reference_into_native, copy_weights


def count(m):
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize(
    "schema,g,d", [("demo7", 316438, 283465), ("full10", 317599, 284649), ("full13", 318373, 285429)]
)
@pytest.mark.parametrize("kernel", ["native", "reference"])
def test_parameter_counts_match_upstream(schema, g, d, kernel):
    lay = Layout.of(BUILTIN_SCHEMAS[schema])
    assert count(Generator(lay, 128, 128, kernel=kernel)) == g
    assert count(Critic(lay, 128, kernel=kernel)) == d


def test_shapes_and_heads():
    lay = Layout.of(BUILTIN_SCHEMAS["demo7"])
    torch.manual_seed(0)
    gen, critic = Generator(lay, 16, 24), Critic(lay, 24)
    x = gen(gen.noise(5, 7))
    assert x.shape == (5, 7, 22)
    assert torch.all((x[..., :2] > 0) & (x[..., :2] < 1))
    for s, e in lay.blocks:
        assert torch.allclose(x[..., s:e].sum(-1), torch.ones(5, 7), atol=1e-6)
    assert critic(x).shape == (5, 1)


def test_reference_cell_gate_order_and_native_equivalence():
    torch.manual_seed(1)
    ref = ReferenceLSTM(3, 4)
    native = torch.nn.LSTM(3, 4, batch_first=True, bidirectional=True)
    copy_reference_into_native(ref, native, reverse=False)
    x = torch.randn(2, 6, 3)
    out_ref, (h_ref, c_ref) = ref(x)
    out_nat, (h_nat, c_nat) = native(x)
    assert torch.allclose(out_ref, out_nat[..., :4], atol=1e-6)
    assert torch.allclose(h_ref, h_nat[0], atol=1e-6) and torch.allclose(c_ref, c_nat[0], atol=1e-6)
    # Hand-check the first step of the upstream F, I, A, O gate order.
    gates = ref.i2h(x[:, 0]) + ref.h2h.bias
    f, i, a, o = gates.chunk(4, -1)
    c1 = torch.sigmoid(i) * torch.tanh(a)  # f * c0 vanishes with c0 = 0
    assert torch.allclose(out_ref[:, 0], torch.sigmoid(o) * torch.tanh(c1), atol=1e-6)


@pytest.mark.parametrize("align", [False, True])
def test_native_kernels_match_reference_to_1e5(align):
    lay = Layout.of(BUILTIN_SCHEMAS["full13"])
    torch.manual_seed(2)
    g_ref, g_nat = (
        Generator(lay, 32, 32, kernel="reference", align_reverse=align),
        Generator(lay, 32, 32, align_reverse=align),
    )
    d_ref, d_nat = Critic(lay, 32, kernel="reference"), Critic(lay, 32)
    copy_weights(g_ref, g_nat)
    copy_weights(d_ref, d_nat)
    z = torch.rand(8, 20, 32)
    x_ref, x_nat = g_ref(z), g_nat(z)
    assert (x_ref - x_nat).abs().max() < 1e-5
    assert (d_ref(x_ref) - d_nat(x_ref)).abs().max() < 1e-5


def test_reverse_branch_is_not_realigned_by_default():
    """Upstream: position 0 sees only z_0 (forward) and z_{L-1} (reverse). Changing z_{L-1} changes position 0;
    changing a middle step does not."""
    lay = Layout.of(BUILTIN_SCHEMAS["demo7"])
    torch.manual_seed(3)
    gen = Generator(lay, 8, 8)
    z = torch.rand(1, 6, 8)
    base = gen(z)[0, 0]
    z_mid, z_last = z.clone(), z.clone()
    z_mid[0, 3] += 0.5
    z_last[0, 5] += 0.5
    assert torch.allclose(gen(z_mid)[0, 0], base)
    assert not torch.allclose(gen(z_last)[0, 0], base)
    aligned = Generator(lay, 8, 8, align_reverse=True)
    aligned.load_state_dict(gen.state_dict())
    assert not torch.allclose(aligned(z_mid)[0, 0], aligned(z)[0, 0])  # a standard biLSTM sees everything


def test_critic_soft_embedding_of_one_hot_is_the_table_row():
    lay = Layout.of(BUILTIN_SCHEMAS["demo7"])
    critic = Critic(lay, 8)
    x = torch.zeros(1, 1, 22)
    x[0, 0, 0:2] = torch.tensor([0.3, 0.7])
    x[0, 0, 4 + 2] = 1.0  # Gender Male, Ethnic Caucasian, ...
    x[0, 0, 2] = 1.0
    x[0, 0, 8] = 1.0
    x[0, 0, 14] = 1.0
    x[0, 0, 20] = 1.0
    e = critic.embed(x)[0, 0]
    assert e.shape == (18,)
    assert torch.allclose(e[:2], torch.tensor([0.3, 0.7]))
    assert torch.allclose(e[2:4], critic.embeddings[0].weight[0])
    assert torch.allclose(e[4:8], critic.embeddings[1].weight[2])


@pytest.mark.parametrize("kernel", ["native", "reference"])
def test_gradient_penalty_double_backward(kernel):
    lay = Layout.of(BUILTIN_SCHEMAS["demo7"])
    torch.manual_seed(4)
    critic = Critic(lay, 16, kernel=kernel)
    x = torch.rand(3, 5, 22, requires_grad=True)
    (g,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
    g.pow(2).sum().backward()
    # Every parameter but the output bias (which the input gradient does not depend on) gets a gradient.
    grads = {n: p.grad for n, p in critic.named_parameters() if n != "score.bias"}
    assert all(gr is not None and torch.isfinite(gr).all() for gr in grads.values()), [
        n for n, g in grads.items() if g is None
    ]
    assert (
        critic.lstm.lstm_f.h2h.weight.grad.abs().sum() > 0
        if kernel == "reference"
        else critic.lstm.lstm.weight_hh_l0.grad.abs().sum() > 0
    )


@pytest.mark.parametrize("reach, diffs", [("every_month", False), ("final", True), ("every_month", True)])
def test_the_critic_remedies_give_the_same_penalty_gradients_on_every_kernel(reach, diffs):
    """A critic that scores every month or sees the monthly changes: the fused kernel's double backward matches
    nn.LSTM's, and a change in one month's value alone moves its score."""
    from healthgym_core.nn import fused

    lay = Layout.of(BUILTIN_SCHEMAS["demo7"])
    torch.manual_seed(5)
    native = Critic(lay, 16, kernel="native", reach=reach, diffs=diffs)
    kernels = {"native": native}
    if fused.available() is None:  # None: the kernel builds here
        kernels["fused"] = Critic(lay, 16, kernel="fused", reach=reach, diffs=diffs)
        kernels["fused"].load_state_dict(native.state_dict())  # both keep nn.LSTM's weights
    x = torch.rand(3, 6, 22)
    grads = {}
    for name, critic in kernels.items():
        xi = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(critic(xi).sum(), xi, create_graph=True)
        g.pow(2).sum().backward()
        grads[name] = critic.fc1.weight.grad.clone()
    for name in kernels:
        assert torch.allclose(grads[name], grads["native"], rtol=1e-4, atol=1e-6), name
    y = x.clone()
    y[:, 3, 0] += 0.2  # one month of VL
    assert not torch.allclose(native(x), native(y))
    assert native.fc1.in_features == lay.embedding_width + (lay.n_real if diffs else 0)


def test_the_linear_head_is_the_sigmoids_tangent_and_does_not_saturate():
    lay = Layout.of(BUILTIN_SCHEMAS["demo7"])
    torch.manual_seed(0)
    sig = Generator(lay, 8, 8)
    lin = Generator(lay, 8, 8, real_head="linear")
    lin.load_state_dict(sig.state_dict())
    z = torch.rand(4, 6, 8)
    a, b = sig(z), lin(z)
    assert torch.allclose(a[..., 2:], b[..., 2:])  # the categories' heads are the same
    assert torch.allclose(a[..., :2], b[..., :2], atol=2e-3)  # near the middle the two heads agree
    with torch.no_grad():
        sig.out.bias[:2] += 40.0
        lin.out.bias[:2] += 40.0
    zs = z.clone().requires_grad_(True)
    sig(zs)[..., :2].sum().backward()
    zl = z.clone().requires_grad_(True)
    lin(zl)[..., :2].sum().backward()
    assert float(zs.grad.abs().max()) < 1e-12 < float(zl.grad.abs().max())  # saturated: no gradient left
    assert float(lin(z)[..., :2].min()) > 1.0  # beyond the range: decoding clips, the critic sees it
    with pytest.raises(ValueError, match="real_head"):
        Generator(lay, 8, 8, real_head="tanh")
