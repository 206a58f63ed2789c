"""CUDA-graph replay of the updates. On CPU the "emulated" backend runs the same bookkeeping (capture on first use
per shape, static inputs/outputs/gradients overwritten in place, the eager check, the fallback); the gradient
functions are checked for what a real capture forbids: random draws and host syncs."""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from healthgym_core.config import TrainConfig
from healthgym_core.epoch import (
    critic_gradients,
    draw_critic_inputs,
    draw_generator_inputs,
    generator_gradients,
    train_epoch,
)
from healthgym_core.errors import ConfigError
from healthgym_core.state import build_state
from healthgym_core.step_graphs import StepGraphs


def emulated(state):
    state.graphs = StepGraphs(state.device, "emulated", capture_batch=state.config.batch_size)
    return state


def train(state, data, epochs):
    return [r for _ in range(epochs) for r in train_epoch(state, data).records]


def test_emulated_graphs_train_exactly_like_eager(small_data, tiny_config):
    eager = train(build_state(tiny_config, small_data), small_data, 2)
    state = emulated(build_state(tiny_config, small_data))
    graphed = train(state, small_data, 2)
    assert graphed == eager
    g = state.graphs
    # one critic and one generator graph per curriculum length (5 and 10), all at the configured batch of 32
    assert sorted((k[0], k[1][0]) for k in g.captured) == [
        ("critic", (32, 5, 22)),
        ("critic", (32, 10, 22)),
        ("generator", (32, 5, 16)),
        ("generator", (32, 10, 16)),
    ]
    # per pass: 3 batches (32, 32, 20) x 2 critic updates + 3 generator updates (always the configured batch)
    # -> 7 graph calls and 2 eager ones for the ragged batch; 2 passes per epoch, 2 epochs, 4 calls were captures
    assert (g.replays, g.eager_calls) == (2 * 2 * 7 - 4, 2 * 2 * 2)
    assert g.enabled and g.disabled_reason is None


def test_replays_overwrite_the_same_static_tensors(small_data, tiny_config):
    state = emulated(build_state(tiny_config, small_data))
    real = small_data.tensor("train")[:32, :5]
    params = state.critic_params
    seen = []
    for _ in range(3):
        inputs = (real, *draw_critic_inputs(state, real))
        out = state.graphs.run("critic", lambda *x: critic_gradients(state, *x), params, inputs)
        seen.append(({k: id(v) for k, v in out.items()}, [id(p.grad) for p in params], out["D_loss"].item()))
        state.opt_d.step()
    assert seen[0][:2] == seen[1][:2] == seen[2][:2]  # the graph's own memory, rebound after every replay
    assert len({s[2] for s in seen}) == 3  # but new values each time


class OpLog(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


RANDOM_OPS = {
    "uniform_",
    "normal_",
    "bernoulli_",
    "bernoulli",
    "random_",
    "rand",
    "randn",
    "randint",
    "exponential_",
    "multinomial",
    "rand_like",
    "randn_like",
    "randperm",
}
SYNC_OPS = {"_local_scalar_dense", "item", "is_nonzero", "equal", "nonzero", "masked_select", "unique", "_unique2"}


@pytest.mark.parametrize("corr_form", ["2025", "2022"])
def test_gradient_functions_draw_nothing_and_never_read_the_device(small_data, tiny_config, corr_form):
    """What would break a CUDA graph silently (a random draw baked in at capture) or loudly (a host sync)."""
    cfg = TrainConfig(**{**tiny_config.to_dict(), "corr_form": corr_form})
    state = build_state(cfg, small_data)
    real = small_data.tensor("train")[:32, :5]
    critic_in = draw_critic_inputs(state, real)
    gen_in = draw_generator_inputs(state, 5)
    assert (gen_in[1] is None) == (corr_form == "2022")
    rng_before, global_before = state.noise_rng.get_state(), torch.get_rng_state()
    with OpLog() as log:
        critic_gradients(state, real, *critic_in)
        generator_gradients(state, *gen_in)
    ops = set(log.ops)
    assert "mm" in ops or "addmm" in ops  # the mode saw the work, backward included
    assert any("backward" in op for op in ops)
    assert not ops & RANDOM_OPS
    assert not ops & SYNC_OPS
    assert torch.equal(state.noise_rng.get_state(), rng_before) and torch.equal(torch.get_rng_state(), global_before)
    assert all(p.grad is not None for p in state.critic_params + state.generator_params)


def test_a_replay_that_disagrees_with_eager_turns_graphs_off(small_data, tiny_config, monkeypatch):
    eager = train(build_state(tiny_config, small_data), small_data, 1)
    original = StepGraphs._record

    def corrupt(self, call, params):
        replay, outputs = original(self, call, params)

        def bad_replay():
            replay()
            outputs["D_loss" if "D_loss" in outputs else "G_loss"].add_(1.0)

        return bad_replay, outputs

    monkeypatch.setattr(StepGraphs, "_record", corrupt)
    state = emulated(build_state(tiny_config, small_data))
    with pytest.warns(UserWarning, match=r"CUDA graphs turned off \(critic graph .*differs from eager"):
        graphed = train(state, small_data, 1)
    assert graphed == eager  # the check ran before any optimiser step used the bad replay
    assert not state.graphs.enabled and state.graphs.captured == {}


def test_a_failed_capture_falls_back_to_eager(small_data, tiny_config, monkeypatch):
    eager = train(build_state(tiny_config, small_data), small_data, 1)

    def fail(self, call, params):
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(StepGraphs, "_record", fail)
    state = emulated(build_state(tiny_config, small_data))
    with pytest.warns(UserWarning, match="operation not permitted when stream is capturing"):
        graphed = train(state, small_data, 1)
    assert graphed == eager and not state.graphs.enabled


def test_graph_option(small_data, tiny_config):
    assert build_state(tiny_config, small_data).graphs is None  # auto: off on CPU
    with pytest.raises(ConfigError, match="graphs='on' needs a CUDA device"):
        build_state(TrainConfig(**{**tiny_config.to_dict(), "graphs": "on"}), small_data)
    with pytest.raises(ConfigError, match=r"graphs='sometimes': must be one of auto, on, off"):
        TrainConfig(graphs="sometimes").validate()
    with pytest.raises(ValueError, match="CUDA graphs need a CUDA device"):
        StepGraphs(torch.device("cpu"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cuda_graphs_train_like_eager_on_the_gpu(small_data, tiny_config):
    cfg = TrainConfig(**{**tiny_config.to_dict(), "device": "cuda"})
    eager_state = build_state(TrainConfig(**{**cfg.to_dict(), "graphs": "off"}), small_data)
    eager = train(eager_state, small_data, 1)
    state = build_state(cfg, small_data)
    assert state.graphs is not None
    graphed = train(state, small_data, 1)  # graphs use the non-cuDNN LSTM: float rounding differs a little
    assert state.graphs.enabled, state.graphs.disabled_reason
    assert len(state.graphs.captured) == 4
    for a, b in zip(eager, graphed):
        for k in ("D_loss", "GP", "G_loss", "Corr"):
            assert b[k] == pytest.approx(a[k], rel=1e-3, abs=1e-5)
