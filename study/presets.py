"""Study sizes. The CPU preset finishes a whole study on a 2-core laptop in about 10 minutes; the GPU preset
trains at the paper size (HD 128, batch 256); the smoke preset is for tests (under 2 minutes)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

# Share of a GPU per trial when the cluster has GPUs. A placeholder (4 trials per GPU) until
# `bench/trials_per_device.py --device cuda` has measured the throughput curve; see bench/README.md.
DEFAULT_GPUS_PER_TRIAL = 0.25


def gpus_per_trial(requested: float | None, gpus_available: float) -> float:
    """The study's GPU request per trial: what was asked for, else the default with GPUs and 0 without."""
    if requested is not None:
        return requested
    return DEFAULT_GPUS_PER_TRIAL if gpus_available > 0 else 0.0


def setting(args: dict, preset: dict, key: str):
    """A study size: the command-line override when one was given, else the preset's value."""
    v = args.get(key)
    return v if v is not None else preset.get(key)


@dataclass(frozen=True)
class Preset:
    name: str
    patients: int  # simulated cohort size (or the first N patients of a file)
    hidden: int
    batch_size: int
    eval_samples: int
    num_samples: int
    max_epochs: int
    grace_period: int
    reduction_factor: int
    note: str

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS = {
    "cpu": Preset(
        "cpu",
        patients=400,
        hidden=32,
        batch_size=140,
        eval_samples=400,
        num_samples=12,
        max_epochs=8,
        grace_period=2,
        reduction_factor=2,
        note="CPU preset: hidden 32, batch 140, 400 patients, 12 trials x up to 8 epochs (a laptop study, "
        "not the paper size; use --preset gpu or --hidden/--batch-size/--patients to change it)",
    ),
    "gpu": Preset(
        "gpu",
        patients=8916,
        hidden=128,
        batch_size=256,
        eval_samples=2000,
        num_samples=64,
        max_epochs=100,
        grace_period=10,
        reduction_factor=3,
        note="GPU preset: paper size (hidden 128, batch 256), 8,916 patients, 64 trials x up to 100 epochs",
    ),
    "smoke": Preset(
        "smoke",
        patients=92,
        hidden=8,
        batch_size=64,
        eval_samples=48,
        num_samples=4,
        max_epochs=3,
        grace_period=1,
        reduction_factor=2,
        note="smoke preset: a tiny study for tests",
    ),
}
