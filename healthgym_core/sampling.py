"""Sample a synthetic cohort from a trained generator, in the input's own format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from healthgym_core.atomic import write_table
from healthgym_core.checkpoint import generator_from_checkpoint, load_checkpoint
from healthgym_core.data.cohort import frame_from_arrays
from healthgym_core.data.prepared import PreparedData
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


def export_cohort(
    checkpoint: str | Path,
    n_patients: int,
    out: str | Path,
    data: PreparedData,
    seed: int = 0,
    made_by: dict | None = None,
) -> dict:
    """Sample a cohort from a checkpoint, write it (`out`, CSV or Parquet) and its card beside it
    (healthgym_core/evaluation/card.py: OUT.card.json and OUT.card.html), each atomically; returns the card.
    `data` must be the data the generator was trained on (its test patients score the card)."""
    from healthgym_core.evaluation.card import cohort_card, write_card

    if n_patients < 1:
        raise ConfigError(f"n_patients must be at least 1, got {n_patients}")
    ckpt = load_checkpoint(checkpoint)
    meta = ckpt["meta"]
    if meta.get("data_fingerprint") != data.fingerprint:
        raise ConfigError(
            f"{checkpoint}: trained on data {meta.get('data_fingerprint')}, not on {data.fingerprint}; its card "
            "needs the data it was trained on"
        )
    reals, codes, transform = sample_arrays(ckpt, n_patients, seed)
    made = {
        "checkpoint": str(checkpoint),
        "epoch": int(meta.get("epoch", 0)),
        "generator_steps": int(meta.get("g_steps", 0)),
        "sampling_seed": int(seed),
        **(made_by or {}),
        "configuration": meta.get("config", {}),
    }
    card = cohort_card(data, reals, codes, made, Path(out).name, seed)
    write_table(frame_from_arrays(transform.schema, reals, codes), out)
    write_card(out, card)
    return card


def card_summary(card: dict) -> str:
    """One line on a card: its fidelity verdict with the targets it misses, and its privacy verdict."""
    f, p = card["fidelity"], card["privacy"]
    missed = [r for r in f["measures"] if r["meets_target"] is False]
    if missed:
        head = (
            f"NOT YET FAITHFUL: the cohort misses {len(missed)} of {f['targets']} targets on test patients: "
            + ", ".join(f"{r['measure']} {_short(r['value'])} ({r['target']})" for r in missed)
        )
    else:
        head = f"the cohort meets all {f['targets']} fidelity targets on test patients"
    failed = [c["check"] for c in p["checks"] if not c["passes"]]
    return head + "; privacy " + (p["verdict"] if not failed else f"fails ({', '.join(failed)})")


def _short(v: float | None) -> str:
    return "-" if v is None else f"{v:.3g}"
