"""Sample a synthetic cohort from a trained generator, in the input's own format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from healthgym_core.atomic import write_table
from healthgym_core.checkpoint import generator_from_checkpoint, load_checkpoint
from healthgym_core.data.cohort import frame_from_arrays
from healthgym_core.data.transforms import CohortTransform
from healthgym_core.errors import ConfigError
from healthgym_core.nn.generator import Generator


@torch.no_grad()
def generate(generator: Generator, n: int, length: int, seed: int, chunk: int = 1024) -> torch.Tensor:
    """n soft sequences from a fixed noise stream (drawn on the CPU, so identical on any device)."""
    rng = torch.Generator().manual_seed(seed)
    device = generator.fc1.weight.device
    was_training = generator.training
    generator.eval()
    out = []
    for i in range(0, n, chunk):
        z = generator.noise(min(chunk, n - i), length, rng)  # drawn from the CPU generator, then on the device
        out.append(generator(z.to(device)).float().cpu())
    generator.train(was_training)
    return torch.cat(out)


def sample_arrays(
    checkpoint: str | Path | dict, n_patients: int, seed: int = 0, months: int | None = None, device: str = "cpu"
) -> tuple[np.ndarray, np.ndarray, CohortTransform]:
    """n_patients synthetic patients from a checkpoint's generator, decoded: (reals [N, T, R] in original units,
    internal codes [N, T, C], the transform); months default to the training data's."""
    ckpt = load_checkpoint(checkpoint) if not isinstance(checkpoint, dict) else checkpoint
    gen, transform, meta = generator_from_checkpoint(ckpt, device)
    months = months or int(meta["n_months"])
    if months < 1:
        raise ConfigError(f"months must be at least 1, got {months}")
    reals, codes = transform.decode(generate(gen, n_patients, months, seed).numpy(), seed)
    return reals, codes, transform


def sample(
    checkpoint: str | Path | dict,
    n_patients: int,
    months: int | None = None,
    seed: int = 0,
    out: str | Path | None = None,
    device: str = "cpu",
) -> pd.DataFrame:
    """n_patients synthetic patients x months (default: the training data's months), with original codes, a
    PatientID column (0..n-1) and the time column; written as CSV or Parquet by extension when `out` is given."""
    if n_patients < 1:
        raise ConfigError(f"n_patients must be at least 1, got {n_patients}")
    reals, codes, transform = sample_arrays(checkpoint, n_patients, seed, months, device)
    frame = frame_from_arrays(transform.schema, reals, codes)
    if out is not None:
        write_table(frame, out)
    return frame
