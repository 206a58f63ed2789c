"""Health Gym v2's noise prior (healthgym-v1.md section 7.1): an autoencoder on the critic's embedded real rows whose
latent means fill a buffer, so the generator's noise is U[0,1) * sd + a remembered latent mean instead of U[0,1).

Off by default (`noise_prior = "uniform"` is v1). With `"buffer"`, every real batch first takes one autoencoder
step; its per-sequence latent means join the buffer (resampled to 10,000 with replacement when it grows past
that) and the running sd is averaged with the batch's. The buffer and the sd live on the generator (`NoisePrior`,
saved in its state dict), so a checkpoint samples with the prior it trained with.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

PRIORS = ("uniform", "buffer")
CAPACITY = 10_000


class LatentAutoencoder(nn.Module):
    """[B, L, E] embedded rows -> (reconstruction [B, L, E], latent T [B, L, HD]); v2's `MyAE`."""

    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.l1, self.s1 = nn.Linear(width, hidden), nn.Linear(width, hidden)
        self.l2, self.l3 = nn.Linear(hidden, hidden), nn.Linear(hidden, hidden)
        self.encoder, self.decoder = nn.Linear(hidden, hidden), nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x2 = F.relu(self.l1(x) + self.s1(x))  # [B, L, HD]
        x3 = F.relu(self.l2(x2) + x2)
        x4 = F.relu(self.l3(x3) + x3)
        t = self.encoder(x4)  # [B, L, HD]
        return self.decoder(t), t


def autoencoder_loss(x: torch.Tensor, x_hat: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """MSE plus the moment-matching KL of the latent's per-dimension batch mean and variance to N(0, 1)."""
    flat = t.reshape(-1, t.shape[-1])
    mu, var = flat.mean(0), flat.var(0, unbiased=True)
    kld = -0.5 * (1 + torch.log(var + 1e-12) - mu.pow(2) - var).sum()
    return F.mse_loss(x_hat, x) + kld


class NoisePrior(nn.Module):
    """The buffer of latent means and the running sd; its buffers are in the generator's state dict."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("means", torch.zeros(CAPACITY, dim))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))
        self.register_buffer("sd", torch.ones(dim))

    @torch.no_grad()
    def update(self, t: torch.Tensor, rng: torch.Generator | None = None) -> None:
        """Add the per-sequence time-means of latents t [B, L, D]; average the sd with theirs."""
        new = t.mean(dim=1)  # [B, D]
        n = int(self.count)
        pool = torch.cat([self.means[:n], new]) if n else new
        if len(pool) > CAPACITY:  # resampled with replacement, as v2
            pool = pool[torch.randint(len(pool), (CAPACITY,), generator=rng, device=pool.device)]
        self.means[: len(pool)] = pool
        self.count.fill_(len(pool))
        self.sd.copy_((self.sd + t.reshape(-1, t.shape[-1]).std(0)) / 2)

    def noise(self, u: torch.Tensor, rng: torch.Generator | None = None) -> torch.Tensor:
        """u ~ U[0,1)^{B x L x D} -> u * sd + a buffer mean per sequence (u itself while the buffer is empty)."""
        n = int(self.count)
        u = u.to(self.sd.device)
        if n == 0:
            return u
        k = torch.randint(n, (u.shape[0],), generator=rng, device=rng.device if rng is not None else u.device)
        return u * self.sd + self.means[k.to(self.sd.device)].unsqueeze(1)
