"""The training state of one trial: networks, optimisers, RNGs and budget counters."""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from healthgym_core.config import TrainConfig
from healthgym_core.cpu import keep_freed_memory
from healthgym_core.curriculum import Schedule
from healthgym_core.data.prepared import PreparedData
from healthgym_core.errors import ConfigError
from healthgym_core.losses import category_tables, correlation, switch_rates, texture_target
from healthgym_core.nn import fused
from healthgym_core.nn.critic import Critic
from healthgym_core.nn.generator import Generator
from healthgym_core.nn.layout import Layout
from healthgym_core.nn.prior import LatentAutoencoder
from healthgym_core.step_graphs import StepGraphs


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={name!r}: CUDA is not available on this machine")
    return torch.device(name)


def _native_double_backward_works(device: torch.device) -> bool:
    """nn.LSTM's gradient-penalty double backward, tried once on a tiny input."""
    try:
        lstm = torch.nn.LSTM(4, 4, batch_first=True, bidirectional=True).to(device)
        x = torch.rand(2, 3, 4, device=device, requires_grad=True)
        with torch.backends.cudnn.flags(enabled=False):
            (g,) = torch.autograd.grad(lstm(x)[1][0].sum(), x, create_graph=True)
            g.pow(2).sum().backward()
        return True
    except RuntimeError:
        return False


def resolve_kernel(name: str, device: torch.device) -> str:
    """The LSTM kernel to run: `auto` is `fused` on a CPU (the measured fastest, bench/README.md) where it builds,
    and nn.LSTM on a GPU (with a reference-cell fallback where its double backward fails). A `fused` kernel that
    cannot be built falls back to nn.LSTM with one warning."""
    if name == "fused" and device.type != "cpu":
        raise ConfigError(f"kernel='fused' runs on a CPU only, but the device is {device}; use native or auto")
    if name == "fused" or (name == "auto" and device.type == "cpu"):
        if fused.available() is None:
            return "fused"
        _warn_once(f"{fused.available()}; training uses nn.LSTM (kernel native) instead")
        return "native"
    if name != "auto":
        return name
    if _native_double_backward_works(device):
        return "native"
    warnings.warn(f"nn.LSTM double backward failed on {device}; using the reference LSTM cell", stacklevel=2)
    return "reference"


@functools.cache
def _warn_once(message: str) -> None:
    warnings.warn(message, stacklevel=3)


def resolve_graphs(name: str, device: torch.device) -> bool:
    """CUDA graphs: on by default on a GPU (the eager loop is launch bound there), never on CPU."""
    if name == "on" and device.type != "cuda":
        raise ConfigError(f"graphs='on' needs a CUDA device, but the device is {device}")
    return name == "on" or (name == "auto" and device.type == "cuda")


def check_against_data(config: TrainConfig, data: PreparedData) -> Schedule:
    """Options that only make sense against the data: lengths and batch size. Returns the parsed schedule."""
    schedule = Schedule.parse(config.schedule)
    schedule.check(data.n_months)
    n_train = int(data.train.shape[0])
    if config.batch_size > n_train:
        raise ConfigError(
            f"batch_size={config.batch_size} is larger than the {n_train} training patients; "
            "use a smaller batch or more patients"
        )
    return schedule


@dataclass
class TrainState:
    config: TrainConfig
    device: torch.device
    kernel: str
    generator: Generator
    critic: Critic
    opt_g: torch.optim.Adam
    opt_d: torch.optim.Adam
    noise_rng: torch.Generator  # noise, GP alphas, correlation thresholds (on the device)
    batch_rng: np.random.Generator  # shuffling and random lengths
    c_real: torch.Tensor  # fixed correlation target at the full length
    schedule: Schedule  # config.schedule, parsed once
    c_texture: tuple[torch.Tensor, torch.Tensor] | None = (
        None  # texture_weight > 0: the training patients' monthly-change sds and correlations (texture_target)
    )
    # switch_weight > 0: the categorical variables training patients change, and how often (real_switching)
    c_switch: tuple[torch.Tensor, tuple[tuple[int, int], ...]] | None = None
    # share_weight > 0: the training patients' category shares and joint tables over their first 1..T months
    c_share: tuple[torch.Tensor, torch.Tensor] | None = None
    epoch: int = 0  # epochs completed
    g_steps: int = 0
    d_steps: int = 0
    sequence_months: int = 0  # real patient-months fed to the critic
    history: list[dict] = field(default_factory=list)  # run_epoch's summaries (not checkpointed)
    autoencoder: LatentAutoencoder | None = None  # noise_prior "buffer": Health Gym v2's autoencoder and its Adam
    opt_ae: torch.optim.Adam | None = None
    graphs: StepGraphs | None = None  # CUDA graphs of the updates (not checkpointed; rebuilt on first use)

    @property
    def critic_params(self) -> list[torch.nn.Parameter]:
        return list(self.critic.parameters())

    @property
    def generator_params(self) -> list[torch.nn.Parameter]:
        return list(self.generator.parameters())


def real_correlation(data: PreparedData, form: str, device: torch.device) -> torch.Tensor:
    """Correlation target over all training patients at the full length (upstream: one random batch)."""
    return correlation(data.tensor("train"), form).to(device)


def real_texture(data: PreparedData, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The texture loss's target: the monthly changes' sds and correlations over all training patients (model
    space)."""
    sd, corr = texture_target(data.tensor("train"), Layout.of(data.schema).n_real)
    return sd.to(device), corr.to(device)


def real_switching(data: PreparedData, device: torch.device) -> tuple[torch.Tensor, tuple[tuple[int, int], ...]]:
    """The switch loss's target: each categorical variable's month-to-month switch rate over all training patients,
    for the variables they change (one no patient changes is held fixed by decoding, not by the loss)."""
    blocks = Layout.of(data.schema).blocks
    rates = switch_rates(data.tensor("train"), blocks)
    kept = tuple(b for b, r in zip(blocks, rates.tolist()) if r > 0)
    return rates[rates > 0].to(device), kept


def real_shares(data: PreparedData, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The share loss's target: the training patients' `category_tables` averaged over their first 1..T months
    ([T, W] and [T, W, W]; row L - 1 serves a batch of L months)."""
    shares, joints = category_tables(data.tensor("train"), Layout.of(data.schema).blocks[0][0])
    months = torch.arange(1, len(shares) + 1, dtype=shares.dtype)
    return (shares.cumsum(0) / months[:, None]).to(device), (joints.cumsum(0) / months[:, None, None]).to(device)


def build_state(config: TrainConfig, data: PreparedData) -> TrainState:
    """Fresh networks and optimisers from the config's seed."""
    config.validate()
    schedule = check_against_data(config, data)
    device = resolve_device(config.device)
    if device.type == "cpu":
        keep_freed_memory()
    if device.type == "cuda":  # TF32 off by default, as upstream's seed_all: losses comparable with CPU float32
        torch.backends.cuda.matmul.allow_tf32 = config.tf32
        torch.backends.cudnn.allow_tf32 = config.tf32
    kernel = resolve_kernel(config.kernel, device)
    torch.manual_seed(config.seed)
    layout = Layout.of(data.schema)
    gen = Generator(
        layout,
        config.noise_size,
        config.hidden,
        kernel=kernel,
        align_reverse=config.align_reverse,
        noise_prior=config.noise_prior,
        real_head=config.real_head,
    ).to(device)
    critic = Critic(
        layout,
        config.critic_hidden or config.hidden,
        kernel=kernel,
        reach=config.critic_reach,
        diffs=config.critic_diffs,
    ).to(device)
    betas = (config.beta1, config.beta2)
    opt_g = torch.optim.Adam(gen.parameters(), lr=config.lr_g, betas=betas)
    opt_d = torch.optim.Adam(critic.parameters(), lr=config.lr_d, betas=betas)
    noise_rng = torch.Generator(device=device)
    noise_rng.manual_seed(config.seed)
    batch_rng = np.random.default_rng(config.seed)
    graphs = StepGraphs(device, capture_batch=config.batch_size) if resolve_graphs(config.graphs, device) else None
    autoencoder = opt_ae = None
    if config.noise_prior == "buffer":  # built after both networks, so the networks draw v1's initial weights
        autoencoder = LatentAutoencoder(layout.embedding_width, config.hidden).to(device)
        opt_ae = torch.optim.Adam(autoencoder.parameters(), lr=config.lr_g, betas=betas)
    return TrainState(
        config,
        device,
        kernel,
        gen,
        critic,
        opt_g,
        opt_d,
        noise_rng,
        batch_rng,
        real_correlation(data, config.corr_form, device),
        schedule,
        graphs=graphs,
        autoencoder=autoencoder,
        opt_ae=opt_ae,
        c_texture=real_texture(data, device) if config.texture_weight > 0 else None,
        c_switch=real_switching(data, device) if config.switch_weight > 0 else None,
        c_share=real_shares(data, device) if config.share_weight > 0 and data.schema.blocks() else None,
    )
