#!/usr/bin/env python
"""Time one critic step and one generator step of the Health Gym v1 WGAN-GP: the faithful upstream loop against
the project's `healthgym_core.epoch.critic_step` / `generator_step`, side by side in one process.

    python bench/step_time.py                      # paper size: demo7, B 256, L 60, HD = ID = 128, 1 thread
    python bench/step_time.py --quick --json x.json  # tiny smoke run (B 32, L 10, hidden 32, 1 repeat)

(a) FAITHFUL REFERENCE, the upstream [NB-v1] loop as written:
    * networks with the Python-unrolled `MyLSTM` cell, i2h applied one time step at a time (`UpstreamLSTM`
      below; the project's `ReferenceLSTM` hoists i2h out of the loop) and the critic's soft embedding as one
      matmul per block (the project uses one block-diagonal matmul);
    * critic step: fakes generated WITH a graph (not detached), D(real), D(fake) and D(x_hat) as three separate
      passes, alpha shaped [B, 1, 1], the gradient norm over L*F, `loss.backward()` flowing into G too (G's grads
      accumulate until the generator step clears them, as upstream), oneDNN at torch defaults;
    * generator step: the critic's parameters still require grad (their grads are computed and thrown away).
    The only change from upstream is where random numbers come from: a `torch.Generator` passed explicitly
    instead of the global RNG. The draw order is upstream's own (critic: noise, then alpha; generator: noise,
    then the correlation threshold u), which is also the project's order, so nothing had to be reordered.
(b) PROJECT: `critic_step` / `generator_step` on a `TrainState` with kernel="native" networks (nn.LSTM), inside
    `fast_cpu_kernels`.
(c) PROJECT WITH CUDA GRAPHS (--device cuda; --emulate-graphs runs it on CPU with the emulated backend): a copy of
    (b) whose gradient functions replay from `StepGraphs`, checked and timed like (a) and (b).
ACCURACY: one critic and one generator gradient computation on the same draws in each mode (CPU float32; on a GPU
also float32, TF32 and graphs) against CPU float64: relative loss differences and the worst parameter gradient.

Both start from identical weights (reference -> native with copy_weights), the same
real batch and identically seeded noise generators. The first call of each step is the loss check and the warm-up:
critic loss, GP, D_real, D_fake, generator loss and Corr must agree to a relative 1e-4, every parameter's gradient
to 1e-3 of its max, and the forward passes (upstream cell vs the project's ReferenceLSTM, reference vs native
networks) to 1e-5 absolute; the exit status is 1 otherwise.
Then --repeats calls of each, interleaved (ref critic, project critic, ref generator, project generator), and the
medians give the ratios; a full training step is n_critic = 5 critic steps + 1 generator step.

FLOP COUNTING RULE (matmuls only; elementwise gates, activations, Adam and the GP's norm are ignored):
    LSTM, one direction, one pass over [B, L, in]:  2 * B * L * 4H * (in + H)
    Linear in -> out over N rows:                   2 * N * in * out      (N = B*L, or B for the critic's score)
    critic embedding:                               2 * B * L * K * e per categorical block (K categories, e dims)
    correlation of [B*L, F]:                        2 * B * L * F * F
    Fg, Fd = one forward pass of G, D over a batch of B sequences.
    A backward pass giving weight AND input gradients = 2 x forward; input gradients only = 1 x forward.
    Gradient penalty = forward (1) + autograd.grad with create_graph, input grads only (1) + the backward of that
    gradient graph (2) + the backward of the forward graph it reaches (2) = 6 Fd.
  USEFUL flops (the maths of the update; the same for both implementations, so the ratio of useful GFLOP/s is the
  speed-up):
    critic step    = Fg (fakes, no grad) + 2 Fd (D real, D fake) + 4 Fd (their backward) + 6 Fd (GP) = Fg + 12 Fd
    generator step = Fg + Fd + corr (forward) + Fd (D, input grads only) + 2 Fg + 2 corr (backward)
                   = 3 Fg + 2 Fd + 3 corr
  EXECUTED flops (what each implementation actually does): the reference adds 2 Fg to the critic step (backward
  into G through the undetached fakes) and Fd to the generator step (the critic's weight gradients); the project
  executes the useful count (its block-diagonal embedding's extra zeros are negligible and not counted).
The matmul peak is the float32 rate of torch.mm 1024x1024x1024 on the same threads, next to F.linear at the LSTM's
own shapes ([B, H] x [H, 4H] per time step, and [B*L, in] x [in, 4H] for a hoisted input projection).
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from healthgym_core.config import TrainConfig
from healthgym_core.cpu import keep_freed_memory
from healthgym_core.curriculum import Schedule
from healthgym_core.data.cohort import load_cohort
from healthgym_core.data.prepared import prepare_data
from healthgym_core.data.schema import BUILTIN_SCHEMAS
from healthgym_core.data.split import DEFAULT_FRACTIONS
from healthgym_core.epoch import (
    critic_gradients,
    critic_step,
    draw_critic_inputs,
    draw_generator_inputs,
    fast_cpu_kernels,
    generator_gradients,
    generator_step,
)
from healthgym_core.losses import correlation, gradient_penalty
from healthgym_core.nn import fused
from healthgym_core.nn.critic import Critic
from healthgym_core.nn.generator import Generator
from healthgym_core.nn.layout import Layout
from healthgym_core.nn.lstm import ReferenceLSTM, copy_weights, torch_gate_order
from healthgym_core.state import TrainState
from healthgym_core.step_graphs import StepGraphs, clear_grads

LOSS_KEYS = ("D_loss", "GP", "D_real", "D_fake", "G_loss", "Corr")
REL_TOL = 1e-4
FORWARD_TOL = 1e-5  # max abs difference of LSTM outputs, generator outputs and critic scores at the start
GRAD_TOL = 1e-3  # gradients of the first step (after reordering nn.LSTM's gates), relative to each tensor's max
FUSED_TOL = 1e-5  # fused vs nn.LSTM from one state (tests/test_fused_lstm.py; bench/README.md on the float32 floor)
N_CRITIC = 5
GP_WEIGHT = 10.0
CORR_WEIGHT = 10.0
LR, BETAS = 1e-3, (0.9, 0.99)


# --------------------------------------------------------------------------------------------------------------
# (a) the faithful upstream networks and loop
# --------------------------------------------------------------------------------------------------------------


class UpstreamLSTM(ReferenceLSTM):
    """Upstream `MyLSTM` exactly: i2h(x_t) and h2h(h_{t-1}) per time step, each split into F, I, A, O chunks."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        b, length = x.shape[0], x.shape[1]
        h = x.new_zeros(b, self.hidden_size)
        c = x.new_zeros(b, self.hidden_size)
        outputs = []
        for t in range(length):
            h, c = self.cell(self.i2h(x[:, t, :]), h, c)  # i2h per time step, as upstream
            outputs.append(h)
        return torch.stack(outputs, dim=1), (h, c)


class UpstreamCritic(Critic):
    """kernel="reference" critic with upstream's per-block soft embedding (one matmul per categorical block)."""

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        parts = [x[..., : self.layout.n_real]]
        parts += [x[..., s:e] @ emb.weight for (s, e), emb in zip(self.layout.blocks, self.embeddings)]
        return torch.cat(parts, dim=-1)


def _upstream_lstm_like(ref: ReferenceLSTM) -> UpstreamLSTM:
    m = UpstreamLSTM(ref.i2h.in_features, ref.hidden_size).to(ref.i2h.weight.device)
    m.load_state_dict(ref.state_dict())
    return m


def build_upstream(layout: Layout, hidden: int, noise_dim: int, device: torch.device) -> tuple[Generator, Critic]:
    gen = Generator(layout, noise_dim, hidden, kernel="reference").to(device)
    critic = UpstreamCritic(layout, hidden, kernel="reference").to(device)
    for net in (gen, critic):
        net.lstm.lstm_f = _upstream_lstm_like(net.lstm.lstm_f)
        net.lstm.lstm_r = _upstream_lstm_like(net.lstm.lstm_r)
    return gen, critic


def upstream_correlation(x: torch.Tensor) -> torch.Tensor:
    """[NB-v1] `correlation`, written out independently of healthgym_core.losses (in-place diagonal fill)."""
    x = x.reshape(-1, x.shape[-1]).float()
    n = x.shape[0]
    if n < 2:
        return torch.eye(x.shape[1], device=x.device)
    x = x - x.mean(dim=0)
    std = x.std(dim=0, unbiased=True)
    std = torch.where(std < 1e-8, torch.ones_like(std), std)
    x = x / std
    c = x.T @ x / (n - 1)
    c = torch.clamp(c, -1.0, 1.0)
    c.fill_diagonal_(1.0)
    return c


def reference_critic_step(gen, critic, opt_d, real, rng) -> dict[str, float]:
    b, length = real.shape[0], real.shape[1]  # upstream uses self.batch_size; equal here (full batches)
    z = torch.rand(b, length, gen.noise_dim, generator=rng, device=real.device)
    fake = gen(z)  # NOT detached, as upstream
    d_real = critic(real)
    d_fake = critic(fake)
    with torch.backends.cudnn.flags(enabled=False):
        alpha = torch.rand(b, 1, 1, generator=rng, device=real.device)
        x_hat = alpha * real + (1 - alpha) * fake
        if not x_hat.requires_grad:
            x_hat.requires_grad_(True)
        d_hat = critic(x_hat)
        grad = torch.autograd.grad(
            outputs=d_hat,
            inputs=x_hat,
            grad_outputs=torch.ones(d_hat.size(), device=real.device),
            create_graph=True,
            retain_graph=True,
        )[0]
        grad = grad.reshape(b, -1)
        grad_norm = torch.sqrt(torch.sum(grad**2, dim=1) + 1e-12)
        gp = GP_WEIGHT * ((grad_norm - 1) ** 2).mean()
    loss = d_fake.mean() - d_real.mean() + gp
    opt_d.zero_grad()
    loss.backward()
    opt_d.step()
    return {"D_loss": loss.item(), "GP": gp.item(), "D_real": d_real.mean().item(), "D_fake": d_fake.mean().item()}


def reference_generator_step(gen, critic, opt_g, c_real, batch, length, rng) -> dict[str, float]:
    z = torch.rand(batch, length, gen.noise_dim, generator=rng, device=c_real.device)
    fake = gen(z)
    d_fake = critic(fake)  # the critic's parameters still require grad, as upstream
    c_fake = upstream_correlation(fake)
    u = torch.rand(c_fake.shape, generator=rng, device=c_fake.device)  # upstream: torch.rand_like(C_fake)
    f = torch.sign(c_fake) * torch.min(u, torch.abs(c_fake))
    r = torch.sign(c_real) * torch.min(u, torch.abs(c_real))
    corr = torch.nn.L1Loss(reduction="mean")(f, r)
    loss = -d_fake.mean() + CORR_WEIGHT * corr
    opt_g.zero_grad()
    loss.backward()
    opt_g.step()
    return {"G_loss": loss.item(), "Corr": corr.item()}


# --------------------------------------------------------------------------------------------------------------
# flops and the matmul peak
# --------------------------------------------------------------------------------------------------------------


def flop_counts(layout: Layout, b: int, length: int, hidden: int, noise_dim: int) -> dict[str, float]:
    n = b * length
    width = layout.width

    def lstm(inp: int) -> float:
        return 2.0 * b * length * 4 * hidden * (inp + hidden)

    def lin(rows: int, inp: int, out: int) -> float:
        return 2.0 * rows * inp * out

    fg = 2 * lstm(noise_dim) + lin(n, 2 * hidden, hidden) + lin(n, hidden, hidden) + lin(n, hidden, width)
    emb = sum(lin(n, e - s, size) for (s, e), size in zip(layout.blocks, layout.embedding_sizes))
    fd = (
        emb + lin(n, layout.embedding_width, hidden) + lin(n, hidden, hidden) + 2 * lstm(hidden) + lin(b, 2 * hidden, 1)
    )
    corr = 2.0 * n * width * width
    critic_useful = fg + 12 * fd
    gen_useful = 3 * fg + 2 * fd + 3 * corr
    return {
        "Fg": fg,
        "Fd": fd,
        "corr": corr,
        "critic_useful": critic_useful,
        "generator_useful": gen_useful,
        "critic_executed_reference": critic_useful + 2 * fg,
        "generator_executed_reference": gen_useful + fd,
        "critic_executed_project": critic_useful,
        "generator_executed_project": gen_useful,
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rate(fn, flops: float, device: torch.device, min_time: float = 0.3) -> float:
    """GFLOP/s of fn (median of batches of calls, each batch at least ~min_time/5 seconds)."""
    fn()
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    one = max(time.perf_counter() - t0, 1e-7)
    reps = max(1, int(min_time / 5 / one))
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        _sync(device)
        times.append((time.perf_counter() - t0) / reps)
    return flops / statistics.median(times) / 1e9


def matmul_peak(b: int, length: int, hidden: int, noise_dim: int, device: torch.device) -> dict[str, float]:
    g = torch.Generator(device=device).manual_seed(0)

    def rnd(*shape):
        return torch.rand(*shape, generator=g, device=device)

    a, m = rnd(1024, 1024), rnd(1024, 1024)
    h, w_hh, bias = rnd(b, hidden), rnd(4 * hidden, hidden), rnd(4 * hidden)
    x, w_ih = rnd(b * length, noise_dim), rnd(4 * hidden, noise_dim)
    out = {}
    with torch.no_grad():
        out["mm_1024"] = _rate(lambda: torch.mm(a, m), 2.0 * 1024**3, device)
        out["linear_h2h_step"] = _rate(lambda: F.linear(h, w_hh, bias), 2.0 * b * hidden * 4 * hidden, device)
        out["linear_i2h_hoisted"] = _rate(
            lambda: F.linear(x, w_ih, bias), 2.0 * b * length * noise_dim * 4 * hidden, device
        )
    return out


# --------------------------------------------------------------------------------------------------------------
# the benchmark
# --------------------------------------------------------------------------------------------------------------


def real_batch(schema_name: str, b: int, length: int, seed: int) -> torch.Tensor:
    """The first b training patients of a simulated demo7 cohort, cut to length (model space, one-hot rows)."""
    patients = math.ceil(b / DEFAULT_FRACTIONS[0]) + 10
    data = prepare_data(load_cohort("simulated", schema_name, patients=patients, seed=seed), split_seed=0)
    if data.train.shape[0] < b:
        raise SystemExit(f"only {data.train.shape[0]} training patients for batch {b}")
    if length > data.n_months:
        raise SystemExit(f"--length {length} is longer than the {data.n_months} simulated months")
    return torch.from_numpy(np.ascontiguousarray(data.train[:b, :length]))


def rel_diff(a: float, b: float) -> float:
    return abs(a - b) / max(abs(a), abs(b), 1e-6)


def max_grad_diff(ref_mod, nat_mod, linear_names) -> float:
    """Max |grad_ref - grad_native| / max|grad_ref| per parameter, over every parameter (LSTM gates re-ordered)."""
    pairs = []
    for name in linear_names:
        for p_name in ("weight", "bias"):
            pairs.append((getattr(getattr(ref_mod, name), p_name).grad, getattr(getattr(nat_mod, name), p_name).grad))
    for ref_lstm, sfx in ((ref_mod.lstm.lstm_f, "_l0"), (ref_mod.lstm.lstm_r, "_l0_reverse")):
        for lin, kind in ((ref_lstm.i2h, "ih"), (ref_lstm.h2h, "hh")):
            for p_name in ("weight", "bias"):
                native = getattr(nat_mod.lstm.lstm, f"{p_name}_{kind}{sfx}").grad
                pairs.append((torch_gate_order(getattr(lin, p_name).grad), native))
    for a, b in zip(getattr(ref_mod, "embeddings", ()), getattr(nat_mod, "embeddings", ())):
        pairs.append((a.weight.grad, b.weight.grad))
    worst = 0.0
    for gr, gn in pairs:
        if gr is None or gn is None:
            return math.inf
        scale = float(gr.abs().max()) or 1.0
        worst = max(worst, float((gr - gn).abs().max()) / scale)
    return worst


def timed(fn, device: torch.device) -> tuple[float, dict]:
    _sync(device)
    t0 = time.perf_counter()
    vals = fn()
    _sync(device)
    return time.perf_counter() - t0, vals


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def project_state(
    cfg: TrainConfig, gen: Generator, critic: Critic, real: torch.Tensor, device: torch.device, graphs: bool = False
) -> TrainState:
    """A TrainState around given networks (Adam as upstream), optionally with CUDA graphs."""
    state = TrainState(
        config=cfg,
        device=device,
        kernel=gen.kernel,
        generator=gen,
        critic=critic,
        opt_g=torch.optim.Adam(gen.parameters(), lr=LR, betas=BETAS),
        opt_d=torch.optim.Adam(critic.parameters(), lr=LR, betas=BETAS),
        noise_rng=torch.Generator(device=device),
        batch_rng=np.random.default_rng(cfg.seed),
        c_real=correlation(real, "2025"),
        schedule=Schedule.parse(cfg.schedule),
    )
    if graphs:
        backend = "cuda" if device.type == "cuda" else "emulated"
        state.graphs = StepGraphs(device, backend, capture_batch=real.shape[0])
    return state


def with_kernel(net: torch.nn.Module, kernel: str) -> torch.nn.Module:
    """A copy of a native network on another nn.LSTM-weight kernel (fused): the same parameters."""
    out = copy.deepcopy(net)
    out.lstm.kernel = kernel
    return out


def defined_gradients(grads: list[torch.Tensor]) -> list[int]:
    """The tensors whose gradient is not a structural zero: the critic's score bias has gradient
    d(E[D(fake)] - E[D(real)])/db = 1 - 1 = 0, which float64 gives as ~1e-17 and float32 as ~1e-9, so no relative
    difference of it means anything."""
    scale = max(float(g.abs().max()) for g in grads)
    return [i for i, g in enumerate(grads) if float(g.abs().max()) > 1e-9 * scale]


def accuracy_vs_float64(
    cfg: TrainConfig,
    gen: Generator,
    critic: Critic,
    real: torch.Tensor,
    device: torch.device,
    seed: int,
    graphs: bool,
    fused_ok: bool,
) -> dict[str, dict[str, float]]:
    """One critic and one generator gradient computation on the same draws in each execution mode, as relative
    differences from CPU float64: the losses, and the worst parameter gradient (max abs diff / max abs of float64).
    The correlation loss is float32 in every mode (`correlation` computes in float32 by design)."""
    rng = torch.Generator(device=device).manual_seed(seed)
    base = project_state(cfg, gen, critic, real, device)
    base.noise_rng = rng
    z_d, alpha = draw_critic_inputs(base, real)
    z_g, u = draw_generator_inputs(base, real.shape[1])
    # (name, device, dtype, tf32, graphs, kernel)
    modes = [
        ("cpu float32", "cpu", torch.float32, False, False, "native"),
        ("cpu float64", "cpu", torch.float64, False, False, "native"),
    ]
    if fused_ok:
        modes.append(("cpu float32, fused kernel", "cpu", torch.float32, False, False, "fused"))
    if device.type == "cuda":
        modes += [
            (f"{device.type} float32", device, torch.float32, False, False, "native"),
            (f"{device.type} TF32", device, torch.float32, True, False, "native"),
        ]
    if graphs:
        modes.append(
            (
                f"{device.type} float32 + {'CUDA' if device.type == 'cuda' else 'emulated'} graphs",
                device,
                torch.float32,
                False,
                True,
                "native",
            )
        )
    results = {}
    for name, dev, dtype, tf32, graphs, kernel in modes:
        dev = torch.device(dev)
        g, d = with_kernel(gen, kernel).to(dev, dtype), with_kernel(critic, kernel).to(dev, dtype)
        st = project_state(cfg, g, d, real.to(dev, dtype), dev, graphs=graphs)
        st.c_real = base.c_real.to(dev)
        args_d = tuple(t.to(dev, dtype) for t in (real, z_d, alpha))
        args_g = (z_g.to(dev, dtype), None if u is None else u.to(dev))
        tf32_before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
        try:
            with fast_cpu_kernels(dev):
                if graphs:
                    vals = dict(
                        st.graphs.run("critic", functools.partial(critic_gradients, st), st.critic_params, args_d)
                    )
                    vals.update(
                        st.graphs.run(
                            "generator", functools.partial(generator_gradients, st), st.generator_params, args_g
                        )
                    )
                else:
                    vals = dict(critic_gradients(st, *args_d))
                    vals.update(generator_gradients(st, *args_g))
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32_before
        if graphs and not st.graphs.enabled:  # reported by run(); no row for a mode that did not run
            continue
        grads = [p.grad.detach().double().cpu() for p in st.critic_params + st.generator_params]
        results[name] = {"values": {k: float(v) for k, v in vals.items()}, "grads": grads}
    ref = results["cpu float64"]
    table = {}
    for name, r in results.items():
        row = {k: rel_diff(ref["values"][k], v) for k, v in r["values"].items() if k in LOSS_KEYS}
        row["worst_grad"] = max(
            float((r["grads"][i] - ref["grads"][i]).abs().max()) / float(ref["grads"][i].abs().max())
            for i in defined_gradients(ref["grads"])
        )
        table[name] = row
    return table


class Bench:
    """Everything one run compares: the faithful reference and the project's variants, all with the same weights.
    (A plain class: the tests load this script as a module outside sys.modules, where dataclasses cannot.)"""

    def __init__(
        self,
        args: argparse.Namespace,
        device: torch.device,
        layout: Layout,
        real: torch.Tensor,
        cfg: TrainConfig,
        ref_g: Generator,
        ref_d: Critic,
        variants: dict[str, TrainState],
    ) -> None:
        self.args, self.device, self.layout, self.real, self.cfg = args, device, layout, real, cfg
        self.ref_g, self.ref_d = ref_g, ref_d
        self.ref_opt_g = torch.optim.Adam(ref_g.parameters(), lr=LR, betas=BETAS)
        self.ref_opt_d = torch.optim.Adam(ref_d.parameters(), lr=LR, betas=BETAS)
        self.ref_rng = torch.Generator(device=device)
        self.c_real_ref = upstream_correlation(real)
        self.variants = variants  # "project" (native), "fused" (CPU, when it builds), "graphs" (CUDA or emulated)
        self.graphs_off_reason: str | None = None

    @property
    def length(self) -> int:
        return self.real.shape[1]

    def resync(self) -> None:
        """Every implementation back to the reference's weights (in place: graphs keep pointing at them)."""
        for st in self.variants.values():
            copy_weights(self.ref_d, st.critic)
            copy_weights(self.ref_g, st.generator)

    def reference_steps(self):
        b = self.real.shape[0]
        return (
            lambda: reference_critic_step(self.ref_g, self.ref_d, self.ref_opt_d, self.real, self.ref_rng),
            lambda: reference_generator_step(
                self.ref_g, self.ref_d, self.ref_opt_g, self.c_real_ref, b, self.length, self.ref_rng
            ),
        )

    def project_steps(self, name: str):
        st, real, device = self.variants[name], self.real, self.device

        def critic():
            with fast_cpu_kernels(device):
                return critic_step(st, real, 1)

        def gen():
            with fast_cpu_kernels(device):
                return generator_step(st, self.length, 1, real)

        return critic, gen


def setup(args: argparse.Namespace) -> Bench:
    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: CUDA is not available")
        # upstream seed_all: TF32 off, deterministic cuDNN; also what lets the losses agree to 1e-4
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    torch.set_num_threads(args.threads)
    if device.type == "cpu" and not args.no_keep_memory:
        keep_freed_memory()  # what training does on a CPU (healthgym_core.cpu); --no-keep-memory measures without
    b, hidden = args.batch, args.hidden
    layout = Layout.of(BUILTIN_SCHEMAS[args.schema])
    real = real_batch(args.schema, b, args.length, args.seed).to(device)
    torch.manual_seed(args.seed)
    ref_g, ref_d = build_upstream(layout, hidden, hidden, device)  # ID = HD, as upstream
    nat_g = Generator(layout, hidden, hidden, kernel="native").to(device)
    nat_d = Critic(layout, hidden, kernel="native").to(device)
    copy_weights(ref_g, nat_g)
    copy_weights(ref_d, nat_d)
    cfg = TrainConfig(
        n_critic=N_CRITIC,
        gp_weight=GP_WEIGHT,
        corr_weight=CORR_WEIGHT,
        corr_form="2025",
        seed=args.seed,
        batch_size=b,
        hidden=hidden,
        lr_g=LR,
        lr_d=LR,
        beta1=BETAS[0],
        beta2=BETAS[1],
        device=device.type,
        kernel="native",
    ).validate()
    variants = {"project": project_state(cfg, nat_g, nat_d, real, device)}
    if device.type == "cpu" and fused.available() is None:
        variants["fused"] = project_state(cfg, with_kernel(nat_g, "fused"), with_kernel(nat_d, "fused"), real, device)
    elif device.type == "cpu":
        print(f"{fused.available()}: no fused columns", file=sys.stderr)
    if device.type == "cuda" or args.emulate_graphs:
        variants["graphs"] = project_state(cfg, copy.deepcopy(nat_g), copy.deepcopy(nat_d), real, device, graphs=True)
    return Bench(args, device, layout, real, cfg, ref_g, ref_d, variants)


def forward_checks(bench: Bench) -> dict[str, float]:
    """Upstream per-step cell vs the project's ReferenceLSTM vs nn.LSTM (and fused) before any update."""
    b, length, hidden, device = bench.real.shape[0], bench.length, bench.args.hidden, bench.device
    checks = {}
    with torch.no_grad():
        z = torch.rand(b, length, hidden, generator=torch.Generator(device=device).manual_seed(1), device=device)
        hoisted = ReferenceLSTM(hidden, hidden).to(device)
        hoisted.load_state_dict(bench.ref_g.lstm.lstm_f.state_dict())
        out_up, _ = bench.ref_g.lstm.lstm_f(z)
        out_ho, _ = hoisted(z)
        checks["lstm_upstream_vs_project_reference"] = float((out_up - out_ho).abs().max())
        for name, st in bench.variants.items():
            if name == "graphs":
                continue
            tag = "native" if name == "project" else name
            checks[f"generator_forward_ref_vs_{tag}"] = float((bench.ref_g(z) - st.generator(z)).abs().max())
            checks[f"critic_forward_ref_vs_{tag}"] = float(
                (bench.ref_d(bench.real) - st.critic(bench.real)).abs().max()
            )
    return checks


def first_calls(bench: Bench) -> tuple[dict, dict, dict]:
    """The first call of each step (the warm-up, and for graphs the capture) from identical weights and draws:
    (values per implementation, seconds, gradient differences from the reference per step and variant)."""
    seed = bench.args.seed
    ref_critic, ref_gen = bench.reference_steps()
    values: dict[str, dict] = {"reference": {}, **{k: {} for k in bench.variants}}
    seconds: dict[str, float] = {}
    grad_diff: dict[str, float] = {}
    for step, ref_fn, seed_k, nets in (
        ("critic", ref_critic, seed, ("fc1", "fc2", "score")),
        ("generator", ref_gen, seed + 1, ("fc1", "fc2", "out")),
    ):
        bench.resync()
        bench.ref_rng.manual_seed(seed_k)
        seconds[f"reference_{step}"], v = timed(ref_fn, bench.device)
        values["reference"].update(v)
        ref_net = bench.ref_d if step == "critic" else bench.ref_g
        for name, st in bench.variants.items():
            st.noise_rng.manual_seed(seed_k)
            fn = bench.project_steps(name)[0 if step == "critic" else 1]
            seconds[f"{name}_{step}"], v = timed(fn, bench.device)
            values[name].update(v)
            net = st.critic if step == "critic" else st.generator
            grad_diff[step if name == "project" else f"{step}_{name}"] = max_grad_diff(ref_net, net, nets)
        # the critic took one Adam step in each; re-synchronise so the generator step starts identical too
    graphs = bench.variants.get("graphs")
    if graphs is not None and not graphs.graphs.enabled:  # keep the eager numbers; say why there are no others
        bench.graphs_off_reason = graphs.graphs.disabled_reason
        print(f"CUDA graphs were turned off ({bench.graphs_off_reason}): no graph columns", file=sys.stderr)
        del bench.variants["graphs"]
        values.pop("graphs")
        seconds = {k: v for k, v in seconds.items() if not k.startswith("graphs_")}
        grad_diff = {k: v for k, v in grad_diff.items() if not k.endswith("_graphs")}
    return values, seconds, grad_diff


def fused_vs_native(bench: Bench) -> dict | None:
    """The fused kernel against nn.LSTM from the same state on the same draws: every loss and every parameter
    gradient of one critic and one generator update, and of the gradient penalty alone (its double backward), as
    max |fused - native| / max |native| per tensor, worst per group. A tensor passes within FUSED_TOL, or where
    float32 cannot get that close (a gradient summing to near zero) if fused is no further from float64 than
    nn.LSTM's own float32 is (tests/test_fused_lstm.py applies the same rule)."""
    if "fused" not in bench.variants:
        return None
    bench.resync()
    nat, fus = bench.variants["project"], bench.variants["fused"]
    f64 = copy.copy(nat)
    f64.generator, f64.critic = copy.deepcopy(nat.generator).double(), copy.deepcopy(nat.critic).double()
    rng = torch.Generator(device=bench.device).manual_seed(bench.args.seed + 2)
    nat.noise_rng = rng
    z_d, alpha = draw_critic_inputs(nat, bench.real)
    z_g, u = draw_generator_inputs(nat, bench.length)
    got = {}
    for name, st in (("native", nat), ("fused", fus), ("f64", f64)):
        dt = torch.float64 if name == "f64" else torch.float32
        real, zd, a, zg = (t.to(dt) for t in (bench.real, z_d, alpha, z_g))
        cp, gp_ = list(st.critic.parameters()), list(st.generator.parameters())
        clear_grads(cp + gp_)  # the gradient functions assign grads; earlier steps left theirs
        with fast_cpu_kernels(bench.device):
            vals = dict(critic_gradients(st, real, zd, a))
            d = [p.grad.clone() for p in cp]
            vals.update(generator_gradients(st, zg, u))
            g = [p.grad.clone() for p in gp_]
            with torch.no_grad():
                fake = st.generator(zd)
            gp, _ = gradient_penalty(st.critic, real, fake, GP_WEIGHT, alpha=a)
            pen = [x for x in torch.autograd.grad(gp, cp, allow_unused=True) if x is not None]
        got[name] = (vals, d, g, pen)

    def r(x, y):
        x, y = x.double(), y.double()
        return float((x - y).abs().max()) / max(float(y.abs().max()), 1e-30)

    (vn, *gn), (vf, *gf), (_, *g64) = got["native"], got["fused"], got["f64"]
    out = {f"loss {k}": rel_diff(float(vn[k]), float(vf[k])) for k in LOSS_KEYS}
    ok = all(v < FUSED_TOL for v in out.values())
    for what, a, b, ref in zip(("critic gradients", "generator gradients", "gradient-penalty gradients"), gf, gn, g64):
        out[what] = max(r(x, y) for x, y in zip(a, b))
        defined = defined_gradients(ref)
        out[what + " (fused vs float64)"] = max(r(a[i], ref[i]) for i in defined)
        out[what + " (native vs float64)"] = max(r(b[i], ref[i]) for i in defined)
        ok &= all(r(x, y) < FUSED_TOL or r(x, z) <= 2 * r(y, z) + FUSED_TOL for x, y, z in zip(a, b, ref))
    out["agree"] = ok
    return out


def timings(bench: Bench) -> tuple[dict[str, list[float]], float]:
    """--repeats calls of each step, interleaved across implementations so that load from other processes hits
    them alike; weights re-synchronised after each round. Also the largest loss drift seen between them."""
    ref_critic, ref_gen = bench.reference_steps()
    fns = {"reference": (ref_critic, ref_gen), **{k: bench.project_steps(k) for k in bench.variants}}
    times = {f"{k}_{s}": [] for k in fns for s in ("critic", "generator")}
    drift = 0.0
    bench.resync()
    for _ in range(bench.args.repeats):
        for i, step in enumerate(("critic", "generator")):
            vals = {}
            for name, pair in fns.items():
                t, vals[name] = timed(pair[i], bench.device)
                times[f"{name}_{step}"].append(t)
            drift = max(
                drift,
                max(rel_diff(vals["reference"][k], v[k]) for v in vals.values() for k in v if k in vals["reference"]),
            )
            bench.resync()
    return times, drift


def count_ops(bench: Bench) -> dict[str, int]:
    """Dispatched ATen (and fused-kernel) operators of one critic update per implementation (torch.profiler)."""
    from torch.profiler import ProfilerActivity, profile

    ref_critic, _ = bench.reference_steps()
    fns = {"reference": ref_critic, **{k: bench.project_steps(k)[0] for k in bench.variants if k != "graphs"}}
    counts = {}
    for name, fn in fns.items():
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            fn()
        counts[name] = sum(e.count for e in prof.key_averages() if e.key.startswith(("aten::", f"{fused.OPS}::")))
    bench.resync()
    return counts


def run(args: argparse.Namespace) -> dict:
    bench = setup(args)
    graphs = "graphs" in bench.variants
    base = bench.variants["project"]
    accuracy = accuracy_vs_float64(
        bench.cfg,
        base.generator,
        base.critic,
        bench.real,
        bench.device,
        args.seed,
        graphs=graphs,
        fused_ok="fused" in bench.variants,
    )
    accuracy_fused = {k: accuracy.pop(k) for k in list(accuracy) if "fused" in k}
    checks = forward_checks(bench)
    first, first_s, grad_diff = first_calls(bench)
    exact = fused_vs_native(bench)
    loss_diff, loss_diff_fused = {}, {}
    for name in bench.variants:
        suffix = "" if name == "project" else f" ({name})"
        (loss_diff_fused if name == "fused" else loss_diff).update(
            {k + suffix: rel_diff(first["reference"][k], first[name][k]) for k in LOSS_KEYS}
        )
    times, drift = timings(bench)
    ops = count_ops(bench)
    med = {k: statistics.median(v) for k, v in times.items()}
    impls = ["reference", *bench.variants]
    full = {k: N_CRITIC * med[f"{k}_critic"] + med[f"{k}_generator"] for k in impls}
    ratios = {
        "critic": med["reference_critic"] / med["project_critic"],
        "generator": med["reference_generator"] / med["project_generator"],
        "full_step": full["reference"] / full["project"],
    }
    for name in bench.variants:
        if name != "project":
            ratios[f"critic_{name}"] = med["reference_critic"] / med[f"{name}_critic"]
            ratios[f"generator_{name}"] = med["reference_generator"] / med[f"{name}_generator"]
            ratios[f"full_step_{name}"] = full["reference"] / full[name]
            ratios[f"full_step_{name}_vs_native"] = full["project"] / full[name]
    flops = flop_counts(bench.layout, args.batch, args.length, args.hidden, args.hidden)
    gflops = {}
    for name in impls:
        executed = "reference" if name == "reference" else "project"
        for step in ("critic", "generator"):
            t = med[f"{name}_{step}"]
            gflops[f"{name}_{step}_useful"] = flops[f"{step}_useful"] / t / 1e9
            gflops[f"{name}_{step}_executed"] = flops[f"{step}_executed_{executed}"] / t / 1e9
        gflops[f"{name}_full_useful"] = (
            (N_CRITIC * flops["critic_useful"] + flops["generator_useful"]) / full[name] / 1e9
        )
    peak = matmul_peak(args.batch, args.length, args.hidden, args.hidden, bench.device)
    max_loss_diff = max([*loss_diff.values(), *loss_diff_fused.values()])
    result = {
        "config": {
            "schema": args.schema,
            "batch": args.batch,
            "length": args.length,
            "hidden": args.hidden,
            "noise_dim": args.hidden,
            "n_critic": N_CRITIC,
            "repeats": args.repeats,
            "threads": torch.get_num_threads(),
            "device": str(bench.device),
            "seed": args.seed,
            "quick": args.quick,
            "keep_freed_memory": not args.no_keep_memory,
        },
        "environment": {
            "torch": torch.__version__,
            "python": platform.python_version(),
            "cpu": cpu_model(),
            "gpu": torch.cuda.get_device_name(bench.device) if bench.device.type == "cuda" else None,
            "mkldnn_default": torch.backends.mkldnn.enabled,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "fused": fused.available() or "available",
        },
        "losses": first,
        "loss_rel_diff": loss_diff,
        "max_loss_rel_diff": max_loss_diff,
        "loss_tolerance": REL_TOL,
        "loss_rel_diff_fused": loss_diff_fused,
        "losses_agree": max_loss_diff <= REL_TOL
        and all(math.isfinite(x) for x in [*loss_diff.values(), *loss_diff_fused.values()]),
        "grad_rel_diff": grad_diff,
        "grad_tolerance": GRAD_TOL,
        "grads_agree": all(x <= GRAD_TOL for x in grad_diff.values()),
        "forward_checks": checks,
        "forward_tolerance": FORWARD_TOL,
        "forwards_agree": all(x <= FORWARD_TOL for x in checks.values()),
        "fused_vs_native": exact,
        "fused_tolerance": FUSED_TOL,
        "timed_repeats_max_loss_rel_diff": drift,
        "first_call_s": first_s,
        "accuracy_vs_cpu_float64": accuracy,
        "accuracy_fused_vs_cpu_float64": accuracy_fused,
        "graphs_off_reason": bench.graphs_off_reason,
        "times_s": times,
        "median_s": med,
        "full_step_s": full,
        "ratios": ratios,
        "ops_per_critic_update": ops,
        "flops": flops,
        "gflops": gflops,
        "matmul_peak_gflops": peak,
    }
    print_report(result)
    return result


def print_report(r: dict) -> None:
    c, med, full, ops = r["config"], r["median_s"], r["full_step_s"], r["ops_per_critic_update"]
    impls = list(full)
    print(
        f"{'loss':8s} " + " ".join(f"{k:>14s}" for k in impls) + "  (first call of each step, same weights and draws)"
    )
    for k in LOSS_KEYS:
        print(f"{k:8s} " + " ".join(f"{r['losses'][name][k]:14.7g}" for name in impls))
    print(
        f"max relative loss difference from the reference {r['max_loss_rel_diff']:.2e} (tolerance {REL_TOL:g}): "
        f"{'OK' if r['losses_agree'] else 'FAIL'}"
    )
    for k, x in r["grad_rel_diff"].items():
        print(f"{k} step gradients vs reference, max |diff| / max|ref| per parameter: {x:.2e} (tolerance {GRAD_TOL:g})")
    for k, x in r["forward_checks"].items():
        print(f"forward check {k}: max abs diff {x:.2e} (tolerance {FORWARD_TOL:g})")
    if r["fused_vs_native"]:
        print("fused vs nn.LSTM from one state, same draws (max |diff| / max|native| per tensor; worst per group):")
        print("  " + ", ".join(f"{k} {v:.1e}" for k, v in r["fused_vs_native"].items() if k != "agree"))
        print(
            f"  fused kernel exact to {FUSED_TOL:g} (or to float32's own floor): {'OK' if r['fused_vs_native']['agree'] else 'FAIL'}"
        )
    print()
    print(
        f"{c['schema']} B={c['batch']} L={c['length']} H=ID={c['hidden']} device={c['device']} threads={c['threads']} "
        f"repeats={c['repeats']} torch {r['environment']['torch']} ({r['environment']['gpu'] or r['environment']['cpu']})"
    )
    print(
        f"{'implementation':16s} {'critic s':>9s} {'gen s':>8s} {'full s':>8s} {'vs ref':>7s} {'vs native':>9s} "
        f"{'useful GF/s':>11s} {'ops/critic':>10s}"
    )
    for name in impls:
        print(
            f"{name:16s} {med[name + '_critic']:9.4f} {med[name + '_generator']:8.4f} {full[name]:8.3f} "
            f"{full['reference'] / full[name]:7.2f} {full['project'] / full[name]:9.2f} "
            f"{r['gflops'][name + '_full_useful']:11.2f} {ops.get(name, 0):10d}"
        )
    print(
        "(project = nn.LSTM; full = 5 critic + 1 generator steps; useful flops are the same for every implementation)"
    )
    print(
        "accuracy against CPU float64 on the same draws (relative difference; worst parameter gradient: "
        "max abs diff / max abs):"
    )
    for mode, row in {**r["accuracy_vs_cpu_float64"], **r["accuracy_fused_vs_cpu_float64"]}.items():
        print(f"  {mode:34s} " + " ".join(f"{k} {v:.1e}" for k, v in row.items()))
    print("matmul GFLOP/s on this device: " + ", ".join(f"{k} {v:.1f}" for k, v in r["matmul_peak_gflops"].items()))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--repeats", type=int, default=None, help="timed calls per step after 1 warm-up (default 3)")
    p.add_argument("--batch", type=int, default=None, help="default 256")
    p.add_argument("--length", type=int, default=None, help="sequence length L (default 60)")
    p.add_argument("--hidden", type=int, default=None, help="HD = ID (default 128)")
    p.add_argument("--schema", default="demo7", choices=sorted(BUILTIN_SCHEMAS))
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--quick", action="store_true", help="smoke size: batch 32, L 10, hidden 32, repeats 1")
    p.add_argument("--json", type=Path, default=None, help="write all numbers to this JSON file")
    p.add_argument(
        "--preset",
        choices=("paper", "cpu"),
        default="paper",
        help="paper: B 256, L 60, HD 128; cpu: the study's CPU preset, B 140, L 60, HD 32",
    )
    p.add_argument(
        "--no-keep-memory",
        action="store_true",
        help="leave glibc's defaults (training keeps freed memory, healthgym_core.cpu.keep_freed_memory)",
    )
    p.add_argument(
        "--emulate-graphs",
        action="store_true",
        help="on CPU, add the CUDA-graph columns with the emulated backend (tests the script; no speed-up)",
    )
    args = p.parse_args(argv)
    small = {"batch": 32, "length": 10, "hidden": 32, "repeats": 1}
    paper = {"batch": 256, "length": 60, "hidden": 128, "repeats": 3}
    cpu = {"batch": 140, "length": 60, "hidden": 32, "repeats": 7}
    for k, v in (small if args.quick else cpu if args.preset == "cpu" else paper).items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if min(args.batch, args.length, args.hidden, args.repeats, args.threads) < 1:
        p.error("--batch, --length, --hidden, --repeats and --threads must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    if not result["losses_agree"]:
        print("FAIL: the losses of the reference and the project disagree", file=sys.stderr)
        return 1
    if not result["forwards_agree"]:
        print("FAIL: the forward passes of the reference and the project disagree", file=sys.stderr)
        return 1
    if not result["grads_agree"]:
        print("FAIL: the gradients of the reference and the project disagree", file=sys.stderr)
        return 1
    if result["fused_vs_native"] and not result["fused_vs_native"]["agree"]:
        print("FAIL: the fused kernel and nn.LSTM disagree", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
