"""Health Gym v1 critic: soft embedding of each one-hot block, MLP, forward and backward LSTMs, one score."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from healthgym_core.nn.generator import KERNELS
from healthgym_core.nn.heads import Layout
from healthgym_core.nn.lstm import ReferenceLSTM, copy_model_weights


class Critic(nn.Module):
    """[B, L, F] rows (one-hot or soft) -> [B, 1] unbounded scores (WGAN critic, no sigmoid).

    Each block's probability vector multiplies its embedding table (N(0,1) init like nn.Embedding), so a one-hot
    row gives exactly the embedding row; reals pass through. Only the LSTMs' final hidden states are scored.
    """

    def __init__(self, layout: Layout, hidden: int = 128, *, kernel: str = "native") -> None:
        super().__init__()
        if kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {KERNELS}")
        self.layout, self.hidden, self.kernel = layout, hidden, kernel
        self.embeddings = nn.ModuleList(
            nn.Embedding(e - s, size) for (s, e), size in zip(layout.blocks, layout.embedding_sizes)
        )
        self.fc1 = nn.Linear(layout.embedding_width, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        if kernel == "native":
            self.lstm = nn.LSTM(hidden, hidden, batch_first=True, bidirectional=True)
        else:
            self.lstm_f = ReferenceLSTM(hidden, hidden)
            self.lstm_r = ReferenceLSTM(hidden, hidden)
        self.score = nn.Linear(2 * hidden, 1)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        n_real = self.layout.n_real
        if not self.embeddings:
            return x[..., :n_real]
        # One block-diagonal matmul instead of one per block: the same sums.
        table = torch.block_diag(*(emb.weight for emb in self.embeddings))
        return torch.cat([x[..., :n_real], x[..., n_real:] @ table], dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.embed(x)
        x2 = F.leaky_relu(self.fc1(x1), 0.1)
        x3 = F.leaky_relu(self.fc2(x2), 0.1)
        if self.kernel == "native":
            _, (h_n, _) = self.lstm(x3)
            h = torch.cat([h_n[0], h_n[1]], dim=-1)
        else:
            _, (h_f, _) = self.lstm_f(x3)
            _, (h_r, _) = self.lstm_r(x3.flip(1))
            h = torch.cat([h_f, h_r], dim=-1)
        return self.score(h)


def copy_critic_weights(src: Critic, dst: Critic) -> None:
    """Copy weights between kernels (reference -> native or same kind)."""
    copy_model_weights(src, dst, ("fc1", "fc2", "score", "embeddings"))
