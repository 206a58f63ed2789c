"""Fixed random sub-streams of the evaluation: adding a metric never changes another one's draws."""

from __future__ import annotations

import numpy as np

STREAMS = {"mmd": 1, "detect": 2, "utility": 3, "privacy": 4}


def metric_rng(seed: int, stream: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), STREAMS[stream]])
