"""Health Gym v1 generator: uniform noise -> forward and time-reversed LSTMs -> MLP -> sigmoid/softmax heads."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from healthgym_core.nn.heads import Layout
from healthgym_core.nn.lstm import ReferenceLSTM, copy_model_weights

KERNELS = ("native", "reference")


class Generator(nn.Module):
    """z ~ U[0,1)^{B x L x ID} -> [B, L, F] soft rows (reals in (0,1), a probability vector per block).

    `align_reverse=False` is the faithful upstream behaviour: the time-reversed LSTM's outputs are NOT flipped
    back, so position t pairs the forward state after z_0..z_t with the backward state after z_{L-1}..z_{L-1-t}.
    `align_reverse=True` is a standard bidirectional LSTM.
    """

    def __init__(
        self,
        layout: Layout,
        noise_dim: int = 128,
        hidden: int = 128,
        *,
        kernel: str = "native",
        align_reverse: bool = False,
    ) -> None:
        super().__init__()
        if kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {KERNELS}")
        self.layout, self.noise_dim, self.hidden = layout, noise_dim, hidden
        self.kernel, self.align_reverse = kernel, align_reverse
        if kernel == "native":
            self.lstm = nn.LSTM(noise_dim, hidden, batch_first=True, bidirectional=True)
        else:
            self.lstm_f = ReferenceLSTM(noise_dim, hidden)
            self.lstm_r = ReferenceLSTM(noise_dim, hidden)
        self.fc1 = nn.Linear(2 * hidden, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, layout.width)

    def noise(self, batch: int, length: int, generator: torch.Generator | None = None) -> torch.Tensor:
        device = self.fc1.weight.device
        return torch.rand(batch, length, self.noise_dim, generator=generator, device=device)

    def recurrent(self, z: torch.Tensor) -> torch.Tensor:
        if self.kernel == "native":
            h, _ = self.lstm(z)
            h_f, h_r = h[..., : self.hidden], h[..., self.hidden :]
            # nn.LSTM re-aligns the reverse direction in time; upstream does not.
            if not self.align_reverse:
                h_r = h_r.flip(1)
        else:
            h_f, _ = self.lstm_f(z)
            h_r, _ = self.lstm_r(z.flip(1))
            if self.align_reverse:
                h_r = h_r.flip(1)
        return torch.cat([h_f, h_r], dim=-1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.recurrent(z)
        u = F.leaky_relu(self.fc1(h), 0.1)
        v = F.leaky_relu(self.fc2(u), 0.1)
        w = self.out(v)
        parts = [torch.sigmoid(w[..., : self.layout.n_real])]
        parts += [torch.softmax(w[..., s:e], dim=-1) for s, e in self.layout.blocks]
        return torch.cat(parts, dim=-1)

    def generate(self, batch: int, length: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return self(self.noise(batch, length, generator))


def copy_generator_weights(src: Generator, dst: Generator) -> None:
    """Copy weights between kernels (reference -> native or same kind)."""
    copy_model_weights(src, dst, ("fc1", "fc2", "out"))
