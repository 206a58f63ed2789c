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
from healthgym_core.losses import correlation
from healthgym_core.nn.critic import Critic
from healthgym_core.nn.generator import Generator
from healthgym_core.nn.layout import Layout
from healthgym_core.nn.lstm import ReferenceLSTM, copy_weights, torch_gate_order
from healthgym_core.state import TrainState
from healthgym_core.step_graphs import StepGraphs

LOSS_KEYS = ("D_loss", "GP", "D_real", "D_fake", "G_loss", "Corr")
REL_TOL = 1e-4
FORWARD_TOL = 1e-5  # max abs difference of LSTM outputs, generator outputs and critic scores at the start
GRAD_TOL = 1e-3  # gradients of the first step (after reordering nn.LSTM's gates), relative to each tensor's max
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
            outputs=d_hat, inputs=x_hat, grad_outputs=torch.ones(d_hat.size(), device=real.device),
            create_graph=True, retain_graph=True,
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
    fd = emb + lin(n, layout.embedding_width, hidden) + lin(n, hidden, hidden) + 2 * lstm(hidden) + lin(b, 2 * hidden, 1)
    corr = 2.0 * n * width * width
    critic_useful = fg + 12 * fd
    gen_useful = 3 * fg + 2 * fd + 3 * corr
    return {
        "Fg": fg, "Fd": fd, "corr": corr,
        "critic_useful": critic_useful, "generator_useful": gen_useful,
        "critic_executed_reference": critic_useful + 2 * fg, "generator_executed_reference": gen_useful + fd,
        "critic_executed_project": critic_useful, "generator_executed_project": gen_useful,
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


def project_state(cfg: TrainConfig, gen: Generator, critic: Critic, real: torch.Tensor, device: torch.device,
                  graphs: bool = False) -> TrainState:
    """A TrainState around given networks (Adam as upstream), optionally with CUDA graphs."""
    state = TrainState(
        config=cfg, device=device, kernel=gen.kernel, generator=gen, critic=critic,
        opt_g=torch.optim.Adam(gen.parameters(), lr=LR, betas=BETAS),
        opt_d=torch.optim.Adam(critic.parameters(), lr=LR, betas=BETAS),
        noise_rng=torch.Generator(device=device), batch_rng=np.random.default_rng(cfg.seed),
        c_real=correlation(real, "2025"), schedule=Schedule.parse(cfg.schedule),
    )
    if graphs:
        backend = "cuda" if device.type == "cuda" else "emulated"
        state.graphs = StepGraphs(device, backend, capture_batch=real.shape[0])
    return state


def accuracy_vs_float64(cfg: TrainConfig, gen: Generator, critic: Critic, real: torch.Tensor, device: torch.device,
                        seed: int, graphs: bool) -> dict[str, dict[str, float]]:
    """One critic and one generator gradient computation on the same draws in each execution mode, as relative
    differences from CPU float64: the losses, and the worst parameter gradient (max abs diff / max abs of float64).
    The correlation loss is float32 in every mode (`correlation` computes in float32 by design)."""
    rng = torch.Generator(device=device).manual_seed(seed)
    base = project_state(cfg, gen, critic, real, device)
    base.noise_rng = rng
    z_d, alpha = draw_critic_inputs(base, real)
    z_g, u = draw_generator_inputs(base, real.shape[1])
    modes = [("cpu float32", "cpu", torch.float32, False, False), ("cpu float64", "cpu", torch.float64, False, False)]
    if device.type == "cuda":
        modes += [(f"{device.type} float32", device, torch.float32, False, False),
                  (f"{device.type} TF32", device, torch.float32, True, False)]
    if graphs:
        modes.append((f"{device.type} float32 + {'CUDA' if device.type == 'cuda' else 'emulated'} graphs",
                      device, torch.float32, False, True))
    results = {}
    for name, dev, dtype, tf32, graphs in modes:
        dev = torch.device(dev)
        g, d = copy.deepcopy(gen).to(dev, dtype), copy.deepcopy(critic).to(dev, dtype)
        st = project_state(cfg, g, d, real.to(dev, dtype), dev, graphs=graphs)
        st.c_real = base.c_real.to(dev)
        args_d = tuple(t.to(dev, dtype) for t in (real, z_d, alpha))
        args_g = (z_g.to(dev, dtype), None if u is None else u.to(dev))
        tf32_before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
        try:
            with fast_cpu_kernels(dev):
                if graphs:
                    vals = dict(st.graphs.run("critic", lambda *x: critic_gradients(st, *x), st.critic_params, args_d))
                    vals.update(st.graphs.run("generator", lambda *x: generator_gradients(st, *x), st.generator_params, args_g))
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
        row["worst_grad"] = max(float((a - b).abs().max()) / max(float(b.abs().max()), 1e-30)
                                for a, b in zip(r["grads"], ref["grads"]))
        table[name] = row
    return table


def run(args: argparse.Namespace) -> dict:
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
    b, length, hidden = args.batch, args.length, args.hidden
    noise_dim = hidden  # ID = HD, as upstream
    schema = BUILTIN_SCHEMAS[args.schema]
    layout = Layout.of(schema)
    real = real_batch(args.schema, b, length, args.seed).to(device)

    # --- identical networks -------------------------------------------------------------------------------------
    torch.manual_seed(args.seed)
    ref_g, ref_d = build_upstream(layout, hidden, noise_dim, device)
    nat_g = Generator(layout, noise_dim, hidden, kernel="native").to(device)
    nat_d = Critic(layout, hidden, kernel="native").to(device)
    copy_weights(ref_g, nat_g)
    copy_weights(ref_d, nat_d)
    ref_opt_g = torch.optim.Adam(ref_g.parameters(), lr=LR, betas=BETAS)
    ref_opt_d = torch.optim.Adam(ref_d.parameters(), lr=LR, betas=BETAS)
    cfg = TrainConfig(
        n_critic=N_CRITIC, gp_weight=GP_WEIGHT, corr_weight=CORR_WEIGHT, corr_form="2025", seed=args.seed,
        batch_size=b, hidden=hidden, lr_g=LR, lr_d=LR, beta1=BETAS[0], beta2=BETAS[1],
        device=device.type, kernel="native",
    ).validate()
    ref_rng = torch.Generator(device=device)
    state = project_state(cfg, nat_g, nat_d, real, device)
    c_real_ref = upstream_correlation(real)
    graphed = None
    if device.type == "cuda" or args.emulate_graphs:  # the project with CUDA graphs: its own networks and optimisers
        graphed = project_state(cfg, copy.deepcopy(nat_g), copy.deepcopy(nat_d), real, device, graphs=True)
    accuracy = accuracy_vs_float64(cfg, nat_g, nat_d, real, device, args.seed, graphs=graphed is not None)

    def ref_critic():
        return reference_critic_step(ref_g, ref_d, ref_opt_d, real, ref_rng)

    def ref_gen():
        return reference_generator_step(ref_g, ref_d, ref_opt_g, c_real_ref, b, length, ref_rng)

    def project_steps(st: TrainState | None):
        def critic():
            with fast_cpu_kernels(device):
                return critic_step(st, real, 1)

        def gen():
            with fast_cpu_kernels(device):
                return generator_step(st, length, 1)

        return critic, gen

    proj_critic, proj_gen = project_steps(state)
    graphs_critic, graphs_gen = project_steps(graphed)

    def sync_graphed() -> None:  # in-place copies: the graphs keep pointing at the same parameters
        if graphed is not None:
            copy_weights(ref_d, graphed.critic)
            copy_weights(ref_g, graphed.generator)

    checks: dict[str, float] = {}
    # --- forward equivalence: upstream per-step cell vs the project's ReferenceLSTM vs nn.LSTM ----------------------
    with torch.no_grad():
        z = torch.rand(b, length, noise_dim, generator=torch.Generator(device=device).manual_seed(1), device=device)
        hoisted = ReferenceLSTM(noise_dim, hidden).to(device)
        hoisted.load_state_dict(ref_g.lstm.lstm_f.state_dict())
        out_up, _ = ref_g.lstm.lstm_f(z)
        out_ho, _ = hoisted(z)
        checks["lstm_upstream_vs_project_reference"] = float((out_up - out_ho).abs().max())
        checks["generator_forward_ref_vs_native"] = float((ref_g(z) - nat_g(z)).abs().max())
        checks["critic_forward_ref_vs_native"] = float((ref_d(real) - nat_d(real)).abs().max())

    # --- first call of each step: the loss check and the warm-up --------------------------------------------------
    first: dict[str, dict] = {"reference": {}, "project": {}}
    first_s: dict[str, float] = {}
    ref_rng.manual_seed(args.seed)
    state.noise_rng.manual_seed(args.seed)
    first_s["reference_critic"], v = timed(ref_critic, device)
    first["reference"].update(v)
    first_s["project_critic"], v = timed(proj_critic, device)
    first["project"].update(v)
    grad_diff = {"critic": max_grad_diff(ref_d, nat_d, ("fc1", "fc2", "score"))}
    if graphed is not None:  # the first call captures the graph (and checks it against eager)
        first["graphs"] = {}
        graphed.noise_rng.manual_seed(args.seed)
        first_s["graphs_critic"], v = timed(graphs_critic, device)
        first["graphs"].update(v)
        grad_diff["critic_graphs"] = max_grad_diff(ref_d, graphed.critic, ("fc1", "fc2", "score"))
    # the critic took one Adam step in each; re-synchronise it so the generator step starts identical too
    copy_weights(ref_d, nat_d)
    sync_graphed()
    ref_rng.manual_seed(args.seed + 1)
    state.noise_rng.manual_seed(args.seed + 1)
    first_s["reference_generator"], v = timed(ref_gen, device)
    first["reference"].update(v)
    first_s["project_generator"], v = timed(proj_gen, device)
    first["project"].update(v)
    grad_diff["generator"] = max_grad_diff(ref_g, nat_g, ("fc1", "fc2", "out"))
    if graphed is not None:
        graphed.noise_rng.manual_seed(args.seed + 1)
        first_s["graphs_generator"], v = timed(graphs_gen, device)
        first["graphs"].update(v)
        grad_diff["generator_graphs"] = max_grad_diff(ref_g, graphed.generator, ("fc1", "fc2", "out"))
    graphs_off_reason = None
    if graphed is not None and not graphed.graphs.enabled:  # keep the eager numbers; say why there are no others
        graphs_off_reason = graphed.graphs.disabled_reason
        print(f"CUDA graphs were turned off ({graphs_off_reason}): no graph columns", file=sys.stderr)
        first.pop("graphs")
        grad_diff = {k: v for k, v in grad_diff.items() if not k.endswith("_graphs")}
        graphed = None

    loss_diff = {k: rel_diff(first["reference"][k], first["project"][k]) for k in LOSS_KEYS}
    if graphed is not None:
        loss_diff.update({f"{k} (graphs)": rel_diff(first["reference"][k], first["graphs"][k]) for k in LOSS_KEYS})
    max_loss_diff = max(loss_diff.values())
    ok = max_loss_diff <= REL_TOL and all(math.isfinite(x) for x in loss_diff.values())
    grads_ok = all(x <= GRAD_TOL for x in grad_diff.values())
    forward_ok = all(x <= FORWARD_TOL for x in checks.values())
    print(f"{'loss':8s} {'reference':>14s} {'project':>14s} {'rel diff':>10s}")
    for k in LOSS_KEYS:
        print(f"{k:8s} {first['reference'][k]:14.7g} {first['project'][k]:14.7g} {loss_diff[k]:10.2e}")
    if graphed is not None:
        for k in LOSS_KEYS:
            print(f"{k:8s} {first['reference'][k]:14.7g} {first['graphs'][k]:14.7g} {loss_diff[k + ' (graphs)']:10.2e}"
                  " (project with CUDA graphs)")
    print(f"max relative loss difference {max_loss_diff:.2e} (tolerance {REL_TOL:g}): {'OK' if ok else 'FAIL'}")
    for k, x in grad_diff.items():
        print(f"{k} step gradients, max |ref - project| / max|ref| per parameter: {x:.2e} "
              f"(tolerance {GRAD_TOL:g}): {'OK' if x <= GRAD_TOL else 'FAIL'}")
    for k, x in checks.items():
        print(f"forward check {k}: max abs diff {x:.2e} (tolerance {FORWARD_TOL:g}): "
              f"{'OK' if x <= FORWARD_TOL else 'FAIL'}")

    # --- timing: interleaved repeats --------------------------------------------------------------------------------
    times = {"reference_critic": [], "project_critic": [], "reference_generator": [], "project_generator": []}
    if graphed is not None:
        times.update(graphs_critic=[], graphs_generator=[])
    drift = 0.0
    # both weights drift apart by float rounding after the first Adam steps; copy again so the repeats stay comparable
    copy_weights(ref_d, nat_d)
    copy_weights(ref_g, nat_g)
    sync_graphed()
    for _ in range(args.repeats):
        for step, fns in (("critic", (ref_critic, proj_critic, graphs_critic)), ("generator", (ref_gen, proj_gen, graphs_gen))):
            t, vr = timed(fns[0], device)
            times[f"reference_{step}"].append(t)
            t, vp = timed(fns[1], device)
            times[f"project_{step}"].append(t)
            drift = max(drift, max(rel_diff(vr[k], vp[k]) for k in vr if k in vp))
            if graphed is not None:
                t, vg = timed(fns[2], device)
                times[f"graphs_{step}"].append(t)
                drift = max(drift, max(rel_diff(vr[k], vg[k]) for k in vr if k in vg))
            copy_weights(ref_d, nat_d)
            copy_weights(ref_g, nat_g)
            sync_graphed()
    med = {k: statistics.median(v) for k, v in times.items()}
    full = {impl: N_CRITIC * med[f"{impl}_critic"] + med[f"{impl}_generator"]
            for impl in ("reference", "project", "graphs") if f"{impl}_critic" in med}
    full_ref, full_proj = full["reference"], full["project"]
    ratios = {
        "critic": med["reference_critic"] / med["project_critic"],
        "generator": med["reference_generator"] / med["project_generator"],
        "full_step": full_ref / full_proj,
    }
    if graphed is not None:
        ratios.update({
            "critic_graphs": med["reference_critic"] / med["graphs_critic"],
            "generator_graphs": med["reference_generator"] / med["graphs_generator"],
            "full_step_graphs": full_ref / full["graphs"],
        })

    # --- flops ----------------------------------------------------------------------------------------------------
    flops = flop_counts(layout, b, length, hidden, noise_dim)
    gflops = {
        "reference_critic_useful": flops["critic_useful"] / med["reference_critic"] / 1e9,
        "project_critic_useful": flops["critic_useful"] / med["project_critic"] / 1e9,
        "reference_generator_useful": flops["generator_useful"] / med["reference_generator"] / 1e9,
        "project_generator_useful": flops["generator_useful"] / med["project_generator"] / 1e9,
        "reference_critic_executed": flops["critic_executed_reference"] / med["reference_critic"] / 1e9,
        "project_critic_executed": flops["critic_executed_project"] / med["project_critic"] / 1e9,
        "reference_generator_executed": flops["generator_executed_reference"] / med["reference_generator"] / 1e9,
        "project_generator_executed": flops["generator_executed_project"] / med["project_generator"] / 1e9,
    }
    peak = matmul_peak(b, length, hidden, noise_dim, device)

    result = {
        "config": {
            "schema": args.schema, "batch": b, "length": length, "hidden": hidden, "noise_dim": noise_dim,
            "n_critic": N_CRITIC, "repeats": args.repeats, "threads": torch.get_num_threads(),
            "device": str(device), "seed": args.seed, "quick": args.quick,
        },
        "environment": {
            "torch": torch.__version__, "python": platform.python_version(),
            "cpu": cpu_model(), "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "mkldnn_default": torch.backends.mkldnn.enabled,
        },
        "losses": first,
        "loss_rel_diff": loss_diff,
        "max_loss_rel_diff": max_loss_diff,
        "loss_tolerance": REL_TOL,
        "losses_agree": ok,
        "grad_rel_diff": grad_diff,
        "grad_tolerance": GRAD_TOL,
        "grads_agree": grads_ok,
        "forward_checks": checks,
        "forward_tolerance": FORWARD_TOL,
        "forwards_agree": forward_ok,
        "timed_repeats_max_loss_rel_diff": drift,
        "first_call_s": first_s,
        "accuracy_vs_cpu_float64": accuracy,
        "graphs_off_reason": graphs_off_reason,
        "times_s": times,
        "median_s": med,
        "full_step_s": full,
        "ratios": ratios,
        "flops": flops,
        "gflops": gflops,
        "matmul_peak_gflops": peak,
    }

    # --- table ----------------------------------------------------------------------------------------------------
    print()
    print(f"{args.schema} B={b} L={length} H=ID={hidden} device={device} threads={torch.get_num_threads()} "
          f"repeats={args.repeats} torch {torch.__version__} ({result['environment']['gpu'] or cpu_model()})")
    print(f"{'step':22s} {'reference s':>12s} {'project s':>10s} {'ratio':>7s} {'ref GF/s':>9s} {'proj GF/s':>9s}"
          f" {'useful GFLOP':>12s}")
    rows = [
        ("critic", med["reference_critic"], med["project_critic"], flops["critic_useful"]),
        ("generator", med["reference_generator"], med["project_generator"], flops["generator_useful"]),
        (f"full ({N_CRITIC} critic + 1 gen)", full_ref, full_proj,
         N_CRITIC * flops["critic_useful"] + flops["generator_useful"]),
    ]
    for name, tr, tp, fl in rows:
        print(f"{name:22s} {tr:12.4f} {tp:10.4f} {tr / tp:7.2f} {fl / tr / 1e9:9.2f} {fl / tp / 1e9:9.2f}"
              f" {fl / 1e9:12.3f}")
    if graphed is not None:
        for name, tr, tg, fl in (
            ("critic", med["reference_critic"], med["graphs_critic"], flops["critic_useful"]),
            ("generator", med["reference_generator"], med["graphs_generator"], flops["generator_useful"]),
            (f"full ({N_CRITIC} critic + 1 gen)", full_ref, full["graphs"],
             N_CRITIC * flops["critic_useful"] + flops["generator_useful"]),
        ):
            print(f"{name + ' + graphs':22s} {tr:12.4f} {tg:10.4f} {tr / tg:7.2f} {fl / tr / 1e9:9.2f}"
                  f" {fl / tg / 1e9:9.2f} {fl / 1e9:12.3f}")
    print("accuracy against CPU float64 on the same draws (relative difference; worst parameter gradient: "
          "max abs diff / max abs):")
    for mode, row in accuracy.items():
        print(f"  {mode:34s} " + " ".join(f"{k} {v:.1e}" for k, v in row.items()))
    print(f"executed GFLOP/s (incl. upstream's wasted work): critic ref {gflops['reference_critic_executed']:.2f}"
          f" / proj {gflops['project_critic_executed']:.2f}; generator ref {gflops['reference_generator_executed']:.2f}"
          f" / proj {gflops['project_generator_executed']:.2f}")
    print("matmul GFLOP/s on this device: " + ", ".join(f"{k} {v:.1f}" for k, v in peak.items()))
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
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
    p.add_argument("--emulate-graphs", action="store_true",
                   help="on CPU, add the CUDA-graph columns with the emulated backend (tests the script; no speed-up)")
    args = p.parse_args(argv)
    small = {"batch": 32, "length": 10, "hidden": 32, "repeats": 1}
    paper = {"batch": 256, "length": 60, "hidden": 128, "repeats": 3}
    for k, v in (small if args.quick else paper).items():
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
