"""WGAN-GP losses of Health Gym v1: gradient penalty and the correlation loss (2025 and 2022 forms)."""

from __future__ import annotations

import torch
from torch import nn

CORR_FORMS = ("2025", "2022")


def gradient_penalty(
    critic: nn.Module,
    real: torch.Tensor,
    fake: torch.Tensor,
    weight: float,
    generator: torch.Generator | None = None,
    *,
    alpha: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """weight * mean((||dD/dx_hat|| - 1)^2) with one alpha ~ U[0,1) per sequence; the norm is over all L*F inputs.

    Shaped by the actual batch (upstream used the configured batch size). `alpha` [B, 1, 1] may be drawn by the
    caller (`penalty_alpha`); otherwise it is drawn here from `generator`. Returns (penalty, mean gradient norm).
    """
    b = real.shape[0]
    if alpha is None:
        alpha = penalty_alpha(b, real, generator)
    x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    score = critic(x_hat)
    (grad,) = torch.autograd.grad(score, x_hat, grad_outputs=torch.ones_like(score), create_graph=True)
    norm = torch.sqrt(grad.reshape(b, -1).pow(2).sum(dim=1) + 1e-12)
    return weight * ((norm - 1) ** 2).mean(), norm.detach().mean()


def penalty_alpha(batch: int, like: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """The gradient penalty's interpolation weights: one alpha ~ U[0,1) per sequence, shape [B, 1, 1]."""
    return torch.rand(batch, 1, 1, generator=generator, device=like.device, dtype=like.dtype)


def correlation_2025(x: torch.Tensor) -> torch.Tensor:
    """Upstream 2025 correlation of the rows of x [..., F]: std-based, constant columns -> 0, clamped, diag 1."""
    x = x.reshape(-1, x.shape[-1]).float()
    n, f = x.shape
    if n < 2:
        return torch.eye(f, device=x.device)
    xc = x - x.mean(dim=0, keepdim=True)
    std = xc.std(dim=0, unbiased=True, keepdim=True)
    std = torch.where(std < 1e-8, torch.ones_like(std), std)
    z = xc / std
    c = (z.T @ z) / (n - 1)
    c = c.clamp(-1.0, 1.0)
    eye = torch.eye(f, dtype=torch.bool, device=x.device)
    return c.masked_fill(eye, 1.0)


def correlation_2022(x: torch.Tensor) -> torch.Tensor:
    """Upstream 2022 correlation: norm-based Pearson, 0 on the diagonal of constant columns, no clamp."""
    x = x.reshape(-1, x.shape[-1]).float()
    xc = x - x.mean(dim=0, keepdim=True)
    z = xc / xc.norm(dim=0, keepdim=True).clamp_min(1e-8)
    return z.T @ z


def correlation(x: torch.Tensor, form: str) -> torch.Tensor:
    if form == "2025":
        return correlation_2025(x)
    if form == "2022":
        return correlation_2022(x)
    raise ValueError(f"correlation form must be one of {CORR_FORMS}, got {form!r}")


def correlation_loss(
    c_fake: torch.Tensor,
    c_real: torch.Tensor,
    form: str,
    generator: torch.Generator | None = None,
    *,
    u: torch.Tensor | None = None,
) -> torch.Tensor:
    """2025: the random-threshold L1 (u ~ U[0,1)^{FxF} fresh per call; sign(c) * min(u, |c|)); 2022: plain L1.

    `u` may be drawn by the caller (`correlation_threshold`); otherwise it is drawn here from `generator`.
    """
    if form == "2022":
        return (c_fake - c_real).abs().mean()
    if form != "2025":
        raise ValueError(f"correlation form must be one of {CORR_FORMS}, got {form!r}")
    if u is None:
        u = correlation_threshold(c_fake.shape[-1], c_fake.device, generator)
    f = torch.sign(c_fake) * torch.minimum(u, c_fake.abs())
    r = torch.sign(c_real) * torch.minimum(u, c_real.abs())
    return (f - r).abs().mean()


def monthly_changes(x: torch.Tensor, n_real: int) -> torch.Tensor:
    """[B, L, F] model-space rows -> [B * (L - 1), R]: every month-to-month change of the real variables."""
    return (x[:, 1:, :n_real] - x[:, :-1, :n_real]).reshape(-1, n_real)


def texture_target(x: torch.Tensor, n_real: int) -> tuple[torch.Tensor, torch.Tensor]:
    """What the texture loss matches, from real rows: (the sd of each real variable's monthly change [R], the
    correlation matrix of the changes [R, R])."""
    d = monthly_changes(x, n_real)
    sd = d.std(dim=0)
    return sd, torch.atleast_2d(torch.corrcoef(d.T)) if n_real > 1 else torch.ones(1, 1, dtype=x.dtype)


def texture_loss(fake: torch.Tensor, target: tuple[torch.Tensor, torch.Tensor], n_real: int) -> torch.Tensor:
    """How unlike real patients' the synthetic monthly changes are, in real sd units: the mean of |each variable's sd
    ratio - 1| (0 when as rough as real, 1 when flat) and of |covariance - real correlation| for each pair (whether
    the variables move together as real ones do: real VL and CD4 do not; a generator that roughens both with one
    noise makes them, and a classifier sees it at once). Real sd units keep the pair terms' gradients bounded
    however flat the synthetic trajectories start; the sd ratios pull out of flatness at full strength."""
    sd, corr = target
    if fake.shape[1] < 2 or n_real == 0:
        return fake.new_zeros(())
    d = monthly_changes(fake, n_real) / sd
    d = d - d.mean(dim=0)
    cov = d.T @ d / max(d.shape[0] - 1, 1)
    rough = torch.sqrt(torch.diagonal(cov) + 1e-12)  # sd ratios: a pull out of flatness that does not fade near 0
    i, j = torch.triu_indices(n_real, n_real, offset=1, device=fake.device)
    return torch.cat([(rough - 1.0).abs(), (cov[i, j] - corr[i, j]).abs()]).mean()


def switch_rates(x: torch.Tensor, blocks: tuple[tuple[int, int], ...]) -> torch.Tensor:
    """[B, L, F] model-space rows -> [C]: how often each categorical variable changes from one month to the next,
    as the mean total-variation distance between consecutive months' one-hot (or probability) rows; for
    probabilities, the share of months a patient would switch if drawn with as few switches as they allow."""
    if x.shape[1] < 2 or not blocks:
        return x.new_zeros(len(blocks))
    return torch.stack([month_switches(x[:, :, s:e]).mean() for s, e in blocks])


def month_switches(p: torch.Tensor) -> torch.Tensor:
    """[B, L, K] one categorical block's rows (L >= 2) -> [B, L - 1]: the total-variation distance between each pair
    of consecutive months."""
    return 0.5 * (p[:, 1:] - p[:, :-1]).abs().sum(-1)


def switch_loss(fake: torch.Tensor, target: torch.Tensor, blocks: tuple[tuple[int, int], ...]) -> torch.Tensor:
    """How unlike real patients' the synthetic categories' month-to-month switching is: the mean over `blocks` (the
    categorical variables real patients do change, `target` their rates, all > 0) of |s - r| / (s + r) for
    synthetic rate s and real rate r: 0 when they switch as often as real patients, 1 when they never do, 0.82
    when ten times as often (regimens flickering from month to month). Bounded, so a variable real patients
    rarely change (a rate of 0.3% here) cannot swamp the critic's signal."""
    if fake.shape[1] < 2 or not blocks:
        return fake.new_zeros(())
    s = switch_rates(fake, blocks)
    return ((s - target).abs() / (s + target)).mean()


def category_tables(x: torch.Tensor, start: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, L, F] model-space rows, categorical columns from `start` on -> ([L, W] each month's mean of the W one-hot
    (or probability) columns over patients, [L, W, W] each month's mean outer product of them): the category shares
    and, in the off-diagonal blocks, the joint tables of every pair of categorical variables (for probabilities,
    the tables of codes drawn independently from them)."""
    c = x[:, :, start:]
    return c.mean(0), torch.einsum("blk,blm->lkm", c, c) / len(c)


def share_loss(
    fake: torch.Tensor, target: tuple[torch.Tensor, torch.Tensor], blocks: tuple[tuple[int, int], ...]
) -> torch.Tensor:
    """How unlike the training patients' the synthetic categories' shares are: the mean over categorical variables
    of the total-variation distance between their shares over the batch's patient-months and the training
    patients' over the same months, plus the same mean over every pair of variables for their joint tables (Gender
    x Ethnic, regimen columns). `target` holds the training patients' `category_tables`, averaged over their
    first 1..T months. 0 when every share and table is matched; up to 2. GANs favour a variable's commonest
    categories (a generator that never makes a rare one is rarely penalised by the critic); this asks for each
    group's share directly, as a conditional GAN's training-by-sampling does."""
    if not blocks:
        return fake.new_zeros(())
    start, length = blocks[0][0], fake.shape[1]
    shares, joints = category_tables(fake, start)
    shares, joints = shares.mean(0), joints.mean(0)
    t_shares, t_joints = target[0][length - 1], target[1][length - 1]
    cut = [(s - start, e - start) for s, e in blocks]
    marg = torch.stack([0.5 * (shares[s:e] - t_shares[s:e]).abs().sum() for s, e in cut]).mean()
    pairs = [(a, b) for i, a in enumerate(cut) for b in cut[i + 1 :]]
    if not pairs:
        return marg
    joint = torch.stack(
        [0.5 * (joints[a[0] : a[1], b[0] : b[1]] - t_joints[a[0] : a[1], b[0] : b[1]]).abs().sum() for a, b in pairs]
    )
    return marg + joint.mean()


SUMMARY_EPS = 1e-4  # variance floor (model-space units, values in [0, 1]): bounds the gradient through flat patients


def patient_summaries(x: torch.Tensor, n_real: int, blocks: tuple[tuple[int, int], ...]) -> torch.Tensor:
    """[B, L, F] model-space rows -> [B, K]: what a detector reads off each patient, differentiably. For each real
    variable its mean, sd, min, max, first, last, slope, sd of the monthly change and lag-1 autocorrelation; the
    within-patient correlation of each pair of real variables; each categorical block's time-averaged shares and
    its switches a month (as in `switch_rates`)."""
    b, length = x.shape[:2]
    v = x[:, :, :n_real]
    mean = v.mean(1)
    c = v - mean[:, None]
    var = (c * c).mean(1)
    sd = torch.sqrt(var + SUMMARY_EPS)
    cols = [mean, sd, v.amin(1), v.amax(1), v[:, 0], v[:, -1]]
    if length > 1:
        t = torch.arange(length, dtype=x.dtype, device=x.device) - (length - 1) / 2
        cols.append((c * t[None, :, None]).sum(1) / (t * t).sum())  # OLS slope per month
        d = v[:, 1:] - v[:, :-1]
        cols.append(torch.sqrt(d.var(1, unbiased=False) + SUMMARY_EPS))
        a, n = v[:, :-1] - v[:, :-1].mean(1, keepdim=True), v[:, 1:] - v[:, 1:].mean(1, keepdim=True)
        cols.append((a * n).mean(1) / torch.sqrt(((a * a).mean(1) + SUMMARY_EPS) * ((n * n).mean(1) + SUMMARY_EPS)))
    for i, j in zip(*torch.triu_indices(n_real, n_real, offset=1).tolist()):
        cols.append(((c[:, :, i] * c[:, :, j]).mean(1) / (sd[:, i] * sd[:, j]))[:, None])
    for s, e in blocks:
        p = x[:, :, s:e]
        cols.append(p.mean(1))
        if length > 1:
            cols.append(month_switches(p).mean(1, keepdim=True))
    return torch.cat(cols, dim=1) if cols else x.new_zeros(b, 0)


def summary_loss(
    fake: torch.Tensor, real: torch.Tensor, n_real: int, blocks: tuple[tuple[int, int], ...]
) -> torch.Tensor:
    """How unlike a real batch's the synthetic patients' summaries (`patient_summaries`, standardised by the real
    batch) are as distributions: the energy coefficient D / (2 E|X - Y|) in [0, 1], with D the energy distance
    2 E|X - Y| - E|X - X'| - E|Y - Y'|. 0 for identical batches, near 1 when every synthetic patient is far from
    every real one. Bounded, with gradients of at most unit length per patient in the standardised space: the
    distribution of whole patients that a classifier on such summaries judges, not one statistic at a time."""
    r = patient_summaries(real, n_real, blocks)
    f = patient_summaries(fake, n_real, blocks)
    if r.shape[1] == 0:
        return fake.new_zeros(())
    scale = r.std(0) if len(r) > 1 else torch.zeros_like(r[0])  # a last batch of one patient has no spread
    mu, scale = r.mean(0), scale.clamp_min(1e-2)
    r, f = (r - mu) / scale, (f - mu) / scale

    def dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # mean Euclidean distance, smooth at 0
        return torch.sqrt(((a[:, None] - b[None]) ** 2).sum(-1) + 1e-8).mean()

    xy = dist(f, r)
    return (2 * xy - dist(f, f) - dist(r, r)) / (2 * xy)


def correlation_threshold(width: int, device: torch.device, generator: torch.Generator | None = None) -> torch.Tensor:
    """The 2025 loss's random thresholds u ~ U[0,1)^{F x F} (float32, as the correlations), fresh per step."""
    return torch.rand(width, width, generator=generator, device=device, dtype=torch.float32)
