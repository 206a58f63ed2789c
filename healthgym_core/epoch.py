"""One training epoch of the Health Gym v1 WGAN-GP: the single loop shared by the plain trainer and the study.

Per step (one batch of real patients cut to the step's length L): n_critic critic updates on
E[D(fake)] - E[D(real)] + GP, then one generator update on -E[D(fake)] + corr_weight * Corr.
The same maths as upstream with its waste removed: fakes are generated without a graph for the critic step,
D(real) and D(fake) share one batched pass, no gradient is computed for anything but the updated network's
parameters, and the critic's parameters collect no gradient in the generator step.

Read top down: the epoch with its validation (`run_epoch`), its steps, then each update and its parts.
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from healthgym_core.data.prepared import PreparedData
from healthgym_core.errors import NonFiniteLossError
from healthgym_core.evaluation.validation import evaluate
from healthgym_core.losses import (
    correlation,
    correlation_loss,
    correlation_threshold,
    gradient_penalty,
    penalty_alpha,
    share_loss,
    summary_loss,
    switch_loss,
    texture_loss,
)
from healthgym_core.nn.prior import autoencoder_loss
from healthgym_core.state import TrainState
from healthgym_core.step_graphs import clear_grads

RECORD_KEYS = (
    "epoch",
    "step",
    "L",
    "batch",
    "D_loss",
    "GP",
    "grad_norm",
    "D_real",
    "D_fake",
    "W_gap",
    "G_loss",
    "Corr",
)


@dataclass
class EpochResult:
    records: list[dict]  # one per step
    summary: dict  # means over the epoch plus budget counters


def run_epoch(
    state: TrainState, data: PreparedData, progress: Callable[[int, int, dict], None] | None = None
) -> tuple[list[dict], dict]:
    """One epoch plus its validation metrics and timings: the unit the plain trainer and the study both report.
    Appends the summary to `state.history`."""
    t0 = time.perf_counter()
    result = train_epoch(state, data, progress)
    t1 = time.perf_counter()
    metrics = evaluate(state.generator, state.critic, data, state.config.seed, state.config.eval_samples)
    summary = {**result.summary, **metrics, "train_seconds": t1 - t0, "eval_seconds": time.perf_counter() - t1}
    state.history.append(summary)
    return result.records, summary


def train_epoch(
    state: TrainState,
    data: PreparedData,
    progress: Callable[[int, int, dict], None] | None = None,
) -> EpochResult:
    """Run epoch `state.epoch + 1` of the configured curriculum and return its per-step records and summary.

    Raises NonFiniteLossError (carrying the step and values) before any optimiser step applies a bad loss.
    """
    train = data.tensor("train")
    plan = state.schedule.epoch_plan(
        state.epoch, train.shape[0], state.config.batch_size, state.batch_rng, data.n_months
    )
    state.generator.train()
    state.critic.train()
    records = []
    with fast_cpu_kernels(state.device):
        _run_steps(state, plan, train, records, progress)
    state.epoch += 1
    return EpochResult(records, summarise(records, state))


def _run_steps(state: TrainState, plan: list, train: torch.Tensor, records: list[dict], progress) -> None:
    cfg = state.config
    n_train = train.shape[0]
    for i, step in enumerate(plan, start=1):
        L = step.length
        real = train[step.batch, :L].to(state.device, non_blocking=True)
        if state.autoencoder is not None:  # Health Gym v2: one autoencoder step per real batch, before the critic's
            autoencoder_step(state, real)
        for k in range(cfg.n_critic):
            if cfg.fresh_real_batch and k > 0:
                idx = state.batch_rng.choice(n_train, size=len(step.batch), replace=False)
                real = train[idx, :L].to(state.device, non_blocking=True)
            d = critic_step(state, real, i)
            state.sequence_months += real.shape[0] * L
        g = generator_step(state, L, i, real)
        rec = {"epoch": state.epoch + 1, "step": i, "L": L, "batch": int(real.shape[0]), **d, **g}
        records.append({k: rec[k] for k in RECORD_KEYS})
        if progress is not None:
            progress(i, len(plan), rec)


def summarise(records: list[dict], state: TrainState) -> dict:
    out: dict = {"epoch": state.epoch, "steps": len(records)}
    for k in ("D_loss", "GP", "grad_norm", "D_real", "D_fake", "W_gap", "G_loss", "Corr"):
        out[k] = float(np.mean([r[k] for r in records])) if records else float("nan")
    out.update(g_steps=state.g_steps, d_steps=state.d_steps, sequence_months=state.sequence_months)
    return out


# Each update is split in three: draw its random inputs (`draw_*_inputs`, in upstream's order), compute its gradients
# (`*_gradients`: pure tensor work with no draws and no host syncs, so that a CUDA graph can replay it), then check
# that the values are finite and take the optimiser step. The split is what lets graphs and eager runs share draws.
def critic_step(state: TrainState, real: torch.Tensor, step: int) -> dict[str, float]:
    z, alpha = draw_critic_inputs(state, real)
    out = _gradients(state, "critic", critic_gradients, state.critic_params, (real, z, alpha))
    vals = _check_finite(state, step, real.shape[1], out)  # before the optimiser step
    state.opt_d.step()
    state.d_steps += 1
    vals["W_gap"] = vals["D_real"] - vals["D_fake"]
    return vals


def generator_step(state: TrainState, length: int, step: int, real: torch.Tensor) -> dict[str, float]:
    """One generator update; `real` (the last critic step's batch) is what the summary loss compares with."""
    z, u = draw_generator_inputs(state, length)
    batch = real if state.config.summary_weight > 0 else None
    out = _gradients(state, "generator", generator_gradients, state.generator_params, (z, u, batch))
    vals = _check_finite(state, step, length, out)
    state.opt_g.step()
    state.g_steps += 1
    return vals


def autoencoder_step(state: TrainState, real: torch.Tensor) -> None:
    """One Adam step of the v2 autoencoder on the critic's embedding of a real batch; its latents feed the
    generator's noise prior."""
    x = state.critic.embed(real).detach()  # [B, L, E]: the critic's embedding weights, not trained here
    x_hat, t = state.autoencoder(x)
    loss = autoencoder_loss(x, x_hat, t)
    if not math.isfinite(float(loss.detach())):
        raise NonFiniteLossError(state.epoch + 1, 0, real.shape[1], {"AE_loss": float(loss.detach())})
    state.opt_ae.zero_grad(set_to_none=True)
    loss.backward()
    state.opt_ae.step()
    state.generator.prior.update(t.detach(), state.noise_rng)


def draw_critic_inputs(state: TrainState, real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Upstream's draw order for a critic update: the fakes' noise, then the penalty's alphas."""
    b, length = real.shape[0], real.shape[1]
    z = state.generator.noise(b, length, state.noise_rng)
    return z, penalty_alpha(b, real, state.noise_rng)


def draw_generator_inputs(state: TrainState, length: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Upstream's draw order for a generator update: the noise, then the 2025 correlation thresholds."""
    cfg = state.config
    z = state.generator.noise(cfg.batch_size, length, state.noise_rng)
    u = None
    if cfg.corr_form == "2025":
        u = correlation_threshold(state.generator.layout.width, state.device, state.noise_rng)
    return z, u


def critic_gradients(
    state: TrainState, real: torch.Tensor, z: torch.Tensor, alpha: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Forward and backward of one critic update on given draws: fills the critic's (unset) grads and returns
    the step's values as 0-d tensors. No random draws and no host syncs, so a CUDA graph can capture it."""
    gen, critic = state.generator, state.critic
    b = real.shape[0]
    with torch.no_grad():
        fake = gen(z)
    scores = critic(torch.cat([real, fake], dim=0))
    d_real, d_fake = scores[:b].mean(), scores[b:].mean()
    with torch.backends.cudnn.flags(enabled=False):  # cuDNN RNNs have no double backward
        gp, grad_norm = gradient_penalty(critic, real, fake, state.config.gp_weight, alpha=alpha)
    loss = d_fake - d_real + gp
    torch.autograd.backward(loss, inputs=state.critic_params)  # no gradient for x_hat: it is not a parameter
    out = {"D_loss": loss, "GP": gp, "D_real": d_real, "D_fake": d_fake, "grad_norm": grad_norm}
    return {k: v.detach() for k, v in out.items()}


def generator_gradients(
    state: TrainState, z: torch.Tensor, u: torch.Tensor | None, real: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """Forward and backward of one generator update on given draws (graph-capturable like `critic_gradients`);
    the critic's parameters collect no gradient."""
    cfg, gen, critic = state.config, state.generator, state.critic
    critic.requires_grad_(False)
    try:
        fake = gen(z)
        adv = -critic(fake).mean()
        corr = correlation_loss(correlation(fake, cfg.corr_form), state.c_real, cfg.corr_form, u=u)
        loss = adv + cfg.corr_weight * corr
        if state.c_texture is not None:  # texture_weight > 0: month-to-month changes as real ones
            loss = loss + cfg.texture_weight * texture_loss(fake, state.c_texture, gen.layout.n_real)
        if state.c_switch is not None:  # switch_weight > 0: categories switch from month to month as often as real
            loss = loss + cfg.switch_weight * switch_loss(fake, *state.c_switch)
        if state.c_share is not None:  # share_weight > 0: each group's share and every pair's joint table as real
            loss = loss + cfg.share_weight * share_loss(fake, state.c_share, gen.layout.blocks)
        if real is not None:  # summary_weight > 0: whole patients summarised as a detector sees them
            loss = loss + cfg.summary_weight * summary_loss(fake, real, gen.layout.n_real, gen.layout.blocks)
        torch.autograd.backward(loss, inputs=state.generator_params)
    finally:
        critic.requires_grad_(True)
    return {"G_loss": loss.detach(), "Corr": corr.detach()}


def _gradients(state: TrainState, name: str, fn, params, inputs) -> dict[str, torch.Tensor]:
    if state.graphs is not None:
        return state.graphs.run(name, functools.partial(fn, state), params, inputs)
    clear_grads(params)
    return fn(state, *inputs)


def _check_finite(state: TrainState, step: int, length: int, values: dict[str, torch.Tensor]) -> dict[str, float]:
    # One device-to-host copy for all values (one sync on a GPU).
    out = dict(zip(values, torch.stack([v.detach().float() for v in values.values()]).tolist()))
    if not all(math.isfinite(v) for v in out.values()):
        raise NonFiniteLossError(state.epoch + 1, step, length, out)
    return out


@contextlib.contextmanager
def fast_cpu_kernels(device: torch.device) -> Iterator[None]:
    """On CPU, turn oneDNN off for the LSTMs: measured faster for this model's small recurrent matmuls."""
    if device.type != "cpu":
        yield
        return
    before = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = before
