"""One plain training configuration: the study factors plus everything else a trial needs.

Every option is declared once, here: its default (the upstream Health Gym v1 value where upstream has one), its
help text and its rule. The trainer's flags, the study's upstream point and `validate` all read these fields.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields

from healthgym_core.curriculum import UPSTREAM_SCHEDULE, Schedule
from healthgym_core.errors import ConfigError
from healthgym_core.losses import CORR_FORMS
from healthgym_core.nn.generator import REAL_HEADS
from healthgym_core.nn.prior import PRIORS

DEVICES = ("auto", "cpu", "cuda")
KERNEL_CHOICES = ("auto", "native", "reference", "fused")
GRAPH_CHOICES = ("auto", "on", "off")
CRITIC_REACH = ("final", "every_month")
Check = Callable[[object], "str | None"]  # a value -> what is wrong with it, or None


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


MAX_WIDTH = 4096  # hidden sizes: a BiLSTM this wide already holds hundreds of millions of weights
MAX_COUNT = 1_000_000  # patients per batch or evaluation, critic steps per generator step: beyond is a typo


def whole(minimum: int, why: str = "", most: int | None = None) -> Check:
    rule = ("0 or more" if minimum == 0 else f"at least {minimum}") if most is None else f"{minimum}-{most:,}"
    ok = lambda v: _is_int(v) and v >= minimum and (most is None or v <= most)  # noqa: E731
    return lambda v: None if ok(v) else f"must be a whole number of {rule}{why}"


def finite_at_least_0(v: object) -> str | None:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
    return None if ok else "must be a finite number of 0 or more"


def positive(v: object) -> str | None:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0
    return None if ok else "must be a positive number"


def unit_interval(v: object) -> str | None:
    return None if isinstance(v, (int, float)) and 0 <= v < 1 else "must be in [0, 1)"


def one_of(choices: tuple[str, ...], extra: str = "") -> Check:
    return lambda v: None if v in choices else f"must be one of {', '.join(choices)}{extra}"


def _device(v: object) -> str | None:
    return None if v in DEVICES or str(v).startswith("cuda:") else f"must be one of {', '.join(DEVICES)} or cuda:N"


def _noise_dim(v: object) -> str | None:
    ok = _is_int(v) and 0 <= v <= MAX_WIDTH
    return None if ok else f"must be 0 (same as hidden) or a whole number up to {MAX_WIDTH}"


def _schedule(v: object) -> str | None:
    Schedule.parse(v)  # raises its own ConfigError naming the schedule
    return None


def option(default, help: str, check: Check | None = None, choices: tuple | None = None, group: str = "training"):
    """A documented config field: default, one-line help, the rule its values follow, argparse choices."""
    return field(default=default, metadata={"help": help, "check": check, "choices": choices, "group": group})


@dataclass
class TrainConfig:
    # The study factors (upstream values by default).
    n_critic: int = option(5, "critic updates per generator update", whole(1, most=100))
    gp_weight: float = option(10.0, "gradient-penalty weight", finite_at_least_0)
    corr_weight: float = option(10.0, "correlation-loss weight (0: the ablation)", finite_at_least_0)
    schedule: str = option(
        UPSTREAM_SCHEDULE, "curriculum: ladder:10-20-..., staged:K:..., full[:L], random:...", _schedule
    )
    corr_form: str = option(
        "2025",
        "correlation loss: 2025 std-based with the random-threshold L1 (upstream notebook), "
        "2022 plain Pearson and plain L1",
        one_of(CORR_FORMS),
        choices=CORR_FORMS,
    )
    # Optimisation and size.
    seed: int = option(42, "training seed (weights, noise, batches)", whole(0))
    batch_size: int = option(256, "patients per batch", whole(1, most=MAX_COUNT))
    hidden: int = option(128, "hidden size HD (the noise size follows it unless --noise-dim)", whole(1, most=MAX_WIDTH))
    noise_dim: int = option(0, "noise size ID; 0: same as hidden (upstream ID = HD = 128)", _noise_dim)
    lr_g: float = option(1e-3, "generator Adam learning rate", positive)
    lr_d: float = option(1e-3, "critic Adam learning rate", positive)
    beta1: float = option(0.9, "Adam beta1 of both networks", unit_interval)
    beta2: float = option(0.99, "Adam beta2 of both networks", unit_interval)
    # Upstream behaviours that change results (faithful values by default).
    align_reverse: bool = option(False, "re-align the generator's reversed LSTM outputs in time (upstream does not)")
    fresh_real_batch: bool = option(False, "a new real batch for every critic step (upstream reuses one)")
    # Beyond v1 (off by default): Health Gym v2's data-driven noise prior.
    noise_prior: str = option(
        "uniform",
        "generator noise: uniform (v1) or buffer (Health Gym v2: U[0,1) x sd + a buffered "
        "autoencoder latent mean of real patients; needs noise_dim 0)",
        one_of(PRIORS),
        choices=PRIORS,
    )
    # Remedies for too-smooth trajectories (off by default: upstream's critic).
    real_head: str = option(
        "sigmoid",
        "the generator's head for real variables: sigmoid (v1; a patient pushed to a bound stays there) or linear "
        "(the sigmoid's tangent at 0, never saturating; decoding clips to the training range)",
        one_of(REAL_HEADS),
        choices=REAL_HEADS,
    )
    critic_reach: str = option(
        "final",
        "what the critic scores: final (upstream: its LSTMs' final states) or every_month (each month's states, "
        "averaged)",
        one_of(CRITIC_REACH),
        choices=CRITIC_REACH,
    )
    critic_diffs: bool = option(False, "the critic also sees each real variable's month-to-month change")
    critic_hidden: int = option(0, "the critic's hidden size; 0: the same as hidden", whole(0, most=MAX_WIDTH))
    texture_weight: float = option(
        0.0,
        "weight of a loss matching how real variables change from month to month (their sds, in real sd units, and "
        "how they move together) to the training patients' (0: off)",
        finite_at_least_0,
    )
    switch_weight: float = option(
        0.0,
        "weight of a loss matching how often each categorical variable changes from month to month to the training "
        "patients' rate (regimens that flicker; 0: off)",
        finite_at_least_0,
    )
    share_weight: float = option(
        0.0,
        "weight of a loss matching each categorical variable's shares and each pair's joint table (Gender x Ethnic, "
        "regimen columns) to the training patients' (rare groups the generator drops; 0: off)",
        finite_at_least_0,
    )
    summary_weight: float = option(
        0.0,
        "weight of a loss matching the distribution of per-patient summaries (each variable's mean, sd, range, ends, "
        "slope, monthly change and autocorrelation; category shares and switches) to a real batch's: the energy "
        "coefficient, 0-1 (0: off)",
        finite_at_least_0,
    )
    # Execution: none of these changes the maths.
    device: str = option("auto", "auto, cpu, cuda or cuda:N", _device, group="execution")
    kernel: str = option(
        "auto",
        "LSTM kernel: fused (C++ forward, backward and double backward; CPU), native (nn.LSTM) or reference (the "
        "upstream Python-unrolled cell); auto: fused on a CPU where it builds, else native",
        one_of(KERNEL_CHOICES),
        choices=KERNEL_CHOICES,
        group="execution",
    )
    tf32: bool = option(
        False, "CUDA: allow TF32 matmuls (faster, less exact; upstream keeps it off)", group="execution"
    )
    graphs: str = option(
        "auto",
        "CUDA graphs of the fixed-shape updates (auto: on with CUDA, off on CPU)",
        one_of(GRAPH_CHOICES),
        choices=GRAPH_CHOICES,
        group="execution",
    )
    eval_samples: int = option(
        2000,
        "synthetic patients per evaluation",
        whole(2, " (the metrics need a covariance)", MAX_COUNT),
        group="execution",
    )

    @property
    def noise_size(self) -> int:
        return self.noise_dim or self.hidden

    def validate(self) -> TrainConfig:
        """Refuse bad values up front with a message naming the option (each field's own rule)."""
        for f in fields(self):
            check = f.metadata.get("check")
            value = getattr(self, f.name)
            problem = check(value) if check else None
            if problem:
                raise ConfigError(f"{f.name}={value!r}: {problem}")
        if self.noise_prior == "buffer" and self.noise_dim not in (0, self.hidden):
            raise ConfigError(
                f"noise_prior='buffer' needs the noise size to be the hidden size (noise_dim 0), "
                f"got noise_dim={self.noise_dim} with hidden={self.hidden}"
            )
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown training option {unknown[0]!r}")
        return cls(**d)


def defaults() -> dict:
    """Every option's default: the upstream configuration where upstream has one."""
    return TrainConfig().to_dict()


FIELDS = {f.name: f for f in fields(TrainConfig)}
