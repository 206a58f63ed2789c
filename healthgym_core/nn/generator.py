"""Health Gym v1 generator: uniform noise -> forward and time-reversed LSTMs -> MLP -> sigmoid/softmax heads."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from healthgym_core.nn.layout import Layout
from healthgym_core.nn.lstm import BiLSTM
from healthgym_core.nn.prior import NoisePrior

REAL_HEADS = ("sigmoid", "linear")


class Generator(nn.Module):
    """z ~ U[0,1)^{B x L x ID} -> [B, L, F] soft rows (reals in (0,1) by the sigmoid head, a probability vector per block).

    `align_reverse=False` is the faithful upstream behaviour: the time-reversed LSTM's outputs are NOT flipped
    back, so position t pairs the forward state after z_0..z_t with the backward state after z_{L-1}..z_{L-1-t}.
    `align_reverse=True` is a standard bidirectional LSTM.

    `real_head="sigmoid"` (v1) squashes each real variable into (0, 1); a patient pushed to a bound stays there, its
    gradient vanishing. `real_head="linear"` is the sigmoid's tangent at 0, 0.5 + w / 4: the same near the middle,
    never saturating; the critic sees values beyond [0, 1] and decoding clips them to the training range.
    """

    def __init__(
        self,
        layout: Layout,
        noise_dim: int = 128,
        hidden: int = 128,
        *,
        kernel: str = "native",
        align_reverse: bool = False,
        noise_prior: str = "uniform",
        real_head: str = "sigmoid",
    ) -> None:
        super().__init__()
        if real_head not in REAL_HEADS:
            raise ValueError(f"real_head must be one of {REAL_HEADS}, got {real_head!r}")
        self.real_head = real_head
        self.layout, self.noise_dim, self.hidden, self.align_reverse = layout, noise_dim, hidden, align_reverse
        self.prior = NoisePrior(noise_dim) if noise_prior == "buffer" else None  # Health Gym v2's buffer prior
        self.lstm = BiLSTM(noise_dim, hidden, kernel)
        self.fc1 = nn.Linear(2 * hidden, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, layout.width)

    @property
    def kernel(self) -> str:
        return self.lstm.kernel

    def noise(self, batch: int, length: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """[B, L, ID] noise from `generator`'s device: U[0,1) (v1), through the buffer prior where there is one."""
        u = torch.rand(
            batch,
            length,
            self.noise_dim,
            generator=generator,
            device=generator.device if generator is not None else self.fc1.weight.device,
        )
        return self.prior.noise(u, generator) if self.prior is not None else u.to(self.fc1.weight.device)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h_f, h_r = self.lstm(z, aligned=self.align_reverse)  # [B, L, H] each
        h = torch.cat([h_f, h_r], dim=-1)  # [B, L, 2H]
        u = F.leaky_relu(self.fc1(h), 0.1)  # [B, L, H]
        v = F.leaky_relu(self.fc2(u), 0.1)  # [B, L, H]
        w = self.out(v)  # [B, L, F] logits
        r = w[..., : self.layout.n_real]
        parts = [torch.sigmoid(r) if self.real_head == "sigmoid" else 0.5 + 0.25 * r]
        parts += [torch.softmax(w[..., s:e], dim=-1) for s, e in self.layout.blocks]
        return torch.cat(parts, dim=-1)  # [B, L, F]
