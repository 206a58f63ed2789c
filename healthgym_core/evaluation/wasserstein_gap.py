"""The trial's own Wasserstein gap: E[D(real)] - E[D(fake)] at the full length on validation patients.

Its scale depends on the trial's critic, so it ranks trials only loosely: it predicts a trial's final test quality
no better than chance (bench/README.md). Reported every epoch; a pruning signal only when asked for.
"""

from __future__ import annotations

import torch

from healthgym_core.nn.critic import Critic


@torch.no_grad()
def wasserstein_gap(critic: Critic, real: torch.Tensor, fake: torch.Tensor, chunk: int = 1024) -> float:
    def mean_score(x: torch.Tensor) -> float:
        return float(torch.cat([critic(x[i : i + chunk]) for i in range(0, x.shape[0], chunk)]).mean())

    return mean_score(real) - mean_score(fake)
