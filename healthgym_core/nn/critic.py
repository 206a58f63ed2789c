"""Health Gym v1 critic: soft embedding of each one-hot block, MLP, forward and backward LSTMs, one score."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from healthgym_core.nn.layout import Layout
from healthgym_core.nn.lstm import BiLSTM


class Critic(nn.Module):
    """[B, L, F] rows (one-hot or soft) -> [B, 1] unbounded scores (WGAN critic, no sigmoid).

    Each block's probability vector multiplies its embedding table (N(0,1) init like nn.Embedding), so a one-hot
    row gives exactly the embedding row; reals pass through. Upstream scores only the LSTMs' final hidden states
    (`reach="final"`); `reach="every_month"` scores each month's forward and backward states and averages, and
    `diffs` adds each real variable's month-to-month change to the input (0 at the first month).
    """

    def __init__(
        self, layout: Layout, hidden: int = 128, *, kernel: str = "native", reach: str = "final", diffs: bool = False
    ) -> None:
        super().__init__()
        self.layout, self.hidden, self.reach, self.diffs = layout, hidden, reach, diffs
        self.embeddings = nn.ModuleList(
            nn.Embedding(e - s, size) for (s, e), size in zip(layout.blocks, layout.embedding_sizes)
        )
        self.fc1 = nn.Linear(layout.embedding_width + (layout.n_real if diffs else 0), hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.lstm = BiLSTM(hidden, hidden, kernel)
        self.score = nn.Linear(2 * hidden, 1)

    @property
    def kernel(self) -> str:
        return self.lstm.kernel

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """[B, L, F] -> [B, L, E]: reals as they are, each block's probabilities times its embedding table."""
        n_real = self.layout.n_real
        if not self.embeddings:
            return x[..., :n_real]
        # One block-diagonal matmul instead of one per block: the same sums.
        table = torch.block_diag(*(emb.weight for emb in self.embeddings))
        return torch.cat([x[..., :n_real], x[..., n_real:] @ table], dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.embed(x)  # [B, L, E]
        if self.diffs:
            r = x[..., : self.layout.n_real]  # [B, L, R]
            e = torch.cat([e, torch.cat([torch.zeros_like(r[:, :1]), r[:, 1:] - r[:, :-1]], dim=1)], dim=-1)
        h = F.leaky_relu(self.fc1(e), 0.1)  # [B, L, H]
        h = F.leaky_relu(self.fc2(h), 0.1)  # [B, L, H]
        if self.reach == "every_month":
            h_f, h_r = self.lstm(h, aligned=True)  # [B, L, H] each
            return self.score(torch.cat([h_f, h_r], dim=-1)).mean(dim=1)  # [B, L, 1] -> [B, 1]
        return self.score(self.lstm.final(h))  # [B, 2H] -> [B, 1]
