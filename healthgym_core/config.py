"""One plain training configuration: the four study factors plus everything else a trial needs.

Defaults are the upstream Health Gym v1 values (n_critic 5, GP weight 10, correlation weight 10 with the 2025
random-threshold form, ladder 10..60, Adam lr 1e-3 betas (0.9, 0.99), batch 256, hidden 128).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from healthgym_core.curriculum import UPSTREAM_SCHEDULE, Schedule
from healthgym_core.errors import ConfigError
from healthgym_core.losses import CORR_FORMS

DEVICES = ("auto", "cpu", "cuda")
KERNEL_CHOICES = ("auto", "native", "reference")
GRAPH_CHOICES = ("auto", "on", "off")


@dataclass
class TrainConfig:
    # The four study factors.
    n_critic: int = 5
    gp_weight: float = 10.0
    corr_weight: float = 10.0
    schedule: str = UPSTREAM_SCHEDULE
    # Loss form: "2025" = std-based correlation with the random-threshold L1 (upstream notebook), "2022" = plain.
    corr_form: str = "2025"
    # Optimisation and size.
    seed: int = 42
    batch_size: int = 256
    hidden: int = 128
    noise_dim: int = 0  # 0: same as hidden (upstream ID = HD = 128)
    lr_g: float = 1e-3
    lr_d: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.99
    # Upstream behaviours that change results (faithful values by default).
    align_reverse: bool = False  # False: the generator's reversed LSTM outputs are not re-aligned in time
    fresh_real_batch: bool = False  # False: the same real batch for every critic step
    # Execution.
    device: str = "auto"
    kernel: str = "auto"  # native (nn.LSTM) or reference (the upstream Python-unrolled cell)
    tf32: bool = False  # CUDA only: TF32 matmuls (faster on Ampere+, less exact); off as upstream
    graphs: str = "auto"  # CUDA graphs of the fixed-shape updates: auto (on for CUDA), on (CUDA only), off
    eval_samples: int = 2000  # synthetic patients per evaluation

    @property
    def noise_size(self) -> int:
        return self.noise_dim or self.hidden

    def validate(self) -> "TrainConfig":
        """Refuse bad values up front with a message naming the option."""
        def bad(name: str, why: str) -> ConfigError:
            return ConfigError(f"{name}={getattr(self, name)!r}: {why}")

        if not isinstance(self.n_critic, int) or self.n_critic < 1:
            raise bad("n_critic", "must be a whole number of at least 1")
        for name in ("gp_weight", "corr_weight"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise bad(name, "must be a finite number of 0 or more")
        for name in ("lr_g", "lr_d"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise bad(name, "must be a positive number")
        for name in ("beta1", "beta2"):
            v = getattr(self, name)
            if not 0 <= v < 1:
                raise bad(name, "must be in [0, 1)")
        for name in ("batch_size", "hidden"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise bad(name, "must be a whole number of at least 1")
        if not isinstance(self.eval_samples, int) or self.eval_samples < 2:
            raise bad("eval_samples", "must be a whole number of at least 2 (the metrics need a covariance)")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise bad("seed", "must be a whole number of 0 or more")
        if not isinstance(self.noise_dim, int) or self.noise_dim < 0:
            raise bad("noise_dim", "must be 0 (same as hidden) or a positive whole number")
        if self.corr_form not in CORR_FORMS:
            raise bad("corr_form", f"must be one of {', '.join(CORR_FORMS)}")
        if self.device not in DEVICES and not str(self.device).startswith("cuda:"):
            raise bad("device", f"must be one of {', '.join(DEVICES)} or cuda:N")
        if self.kernel not in KERNEL_CHOICES:
            raise bad("kernel", f"must be one of {', '.join(KERNEL_CHOICES)}")
        if self.graphs not in GRAPH_CHOICES:
            raise bad("graphs", f"must be one of {', '.join(GRAPH_CHOICES)}")
        Schedule.parse(self.schedule)
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown training option {unknown[0]!r}")
        return cls(**d)
