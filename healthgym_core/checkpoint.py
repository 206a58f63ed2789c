"""Checkpoints: everything needed to resume a trial exactly or to sample from its generator.

Only tensors, numbers and strings are stored (metadata as JSON text), so a checkpoint loads with
`torch.load(..., weights_only=True)`: no pickled code runs. Writes are atomic.
"""

from __future__ import annotations

import dataclasses
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import torch

from healthgym_core.atomic import atomic_write
from healthgym_core.config import TrainConfig
from healthgym_core.data.prepared import PreparedData
from healthgym_core.data.schema import Schema
from healthgym_core.data.split import Split
from healthgym_core.data.transforms import CohortTransform
from healthgym_core.errors import CheckpointError
from healthgym_core.nn import fused
from healthgym_core.nn.generator import Generator
from healthgym_core.nn.layout import Layout
from healthgym_core.state import TrainState, build_state

FORMAT = "healthgym-checkpoint"
VERSION = 2  # 2: the networks keep their LSTMs in one `BiLSTM` block (state-dict keys `lstm.*`)


def checkpoint_dict(state: TrainState, data: PreparedData, extra_meta: dict | None = None) -> dict:
    meta = {
        "epoch": state.epoch,
        "g_steps": state.g_steps,
        "d_steps": state.d_steps,
        "sequence_months": state.sequence_months,
        "config": state.config.to_dict(),
        "kernel": state.kernel,
        "schema": data.schema.to_dict(),
        "split": data.split.to_dict(),
        "transform": data.transform.to_dict(),
        "data_fingerprint": data.fingerprint,
        "source": data.source,
        "n_months": data.n_months,
        **(extra_meta or {}),  # e.g. the study trial that wrote it
    }
    extra = {}
    if state.autoencoder is not None:  # the v2 prior's autoencoder (its buffer is in the generator's state dict)
        extra = {"autoencoder": state.autoencoder.state_dict(), "opt_ae": state.opt_ae.state_dict()}
    return {
        **extra,
        "format": FORMAT,
        "version": VERSION,
        "meta": json.dumps(meta),
        "generator": state.generator.state_dict(),
        "critic": state.critic.state_dict(),
        "opt_g": state.opt_g.state_dict(),
        "opt_d": state.opt_d.state_dict(),
        "noise_rng": state.noise_rng.get_state().cpu(),
        "batch_rng": json.dumps(state.batch_rng.bit_generator.state),
    }


def save_checkpoint(path: str | Path, state: TrainState, data: PreparedData, extra_meta: dict | None = None) -> Path:
    """Atomically write the checkpoint; on failure the previous file at `path` is intact."""
    buffer = io.BytesIO()  # serialise first: a full disk then fails in a plain file write (OSError), not in torch
    torch.save(checkpoint_dict(state, data, extra_meta), buffer)
    return atomic_write(path, lambda p: p.write_bytes(buffer.getbuffer()))


def load_checkpoint(path: str | Path) -> dict:
    """Load with weights_only=True and check the format; a clear CheckpointError otherwise."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or corrupt: {first[:120]})") from None
    except Exception as e:  # pickle.UnpicklingError and friends from weights_only
        raise CheckpointError(
            f"{path}: refused to load ({type(e).__name__}); only weights-only checkpoints are accepted"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a Health Gym checkpoint")
    if ckpt.get("version") != VERSION:
        raise CheckpointError(
            f"{path}: checkpoint version {ckpt.get('version')} is not supported (this version reads {VERSION})"
        )
    try:
        ckpt["meta"] = json.loads(ckpt["meta"])
    except (KeyError, TypeError, json.JSONDecodeError):
        raise CheckpointError(f"{path}: checkpoint metadata is damaged") from None
    return ckpt


def restore_state(ckpt: dict, data: PreparedData, config: TrainConfig | None = None) -> TrainState:
    """Rebuild the exact training state. The data must be the same (checked by fingerprint).

    With `config` (population-based training: another trial's weights under new settings), that config rules: its
    learning rates and betas replace the saved optimisers' (whose moment estimates are kept), and its other options
    (n_critic, the penalty and correlation weights, the schedule) apply from the next step."""
    meta = ckpt["meta"]
    if meta["data_fingerprint"] != data.fingerprint:
        raise CheckpointError(
            f"checkpoint was trained on data {meta['data_fingerprint']} but the prepared data is {data.fingerprint}"
        )
    cfg = dataclasses.replace(config) if config is not None else TrainConfig.from_dict(meta["config"])
    cfg.kernel = "auto" if meta["kernel"] == "fused" else meta["kernel"]  # fused where it runs, else nn.LSTM
    state = build_state(cfg, data)
    try:
        state.generator.load_state_dict(ckpt["generator"])
        state.critic.load_state_dict(ckpt["critic"])
        state.opt_g.load_state_dict(ckpt["opt_g"])
        state.opt_d.load_state_dict(ckpt["opt_d"])
        if state.autoencoder is not None:
            state.autoencoder.load_state_dict(ckpt["autoencoder"])
            state.opt_ae.load_state_dict(ckpt["opt_ae"])
    except (RuntimeError, KeyError, ValueError) as e:
        raise CheckpointError(
            f"checkpoint does not match the model built from its config ({str(e).splitlines()[0][:120]})"
        ) from None
    if config is not None:
        betas = (cfg.beta1, cfg.beta2)
        for opt, lr in ((state.opt_g, cfg.lr_g), (state.opt_d, cfg.lr_d), (state.opt_ae, cfg.lr_g)):
            for group in opt.param_groups if opt is not None else ():
                group["lr"], group["betas"] = lr, betas
    state.noise_rng.set_state(ckpt["noise_rng"])
    bit = np.random.PCG64()
    bit.state = json.loads(ckpt["batch_rng"])
    state.batch_rng = np.random.Generator(bit)
    state.epoch, state.g_steps, state.d_steps = meta["epoch"], meta["g_steps"], meta["d_steps"]
    state.sequence_months = meta["sequence_months"]
    return state


def generator_from_checkpoint(
    ckpt: dict, device: str | torch.device = "cpu"
) -> tuple[Generator, CohortTransform, dict]:
    """The trained generator, the data transform and the metadata; no training data needed."""
    meta = ckpt["meta"]
    cfg = TrainConfig.from_dict(meta["config"])
    schema = Schema.from_dict(meta["schema"])
    kernel = meta["kernel"]
    if kernel == "fused" and (torch.device(device).type != "cpu" or fused.available() is not None):
        kernel = "native"  # the same weights (nn.LSTM's), so the same generator
    gen = Generator(
        Layout.of(schema),
        cfg.noise_size,
        cfg.hidden,
        kernel=kernel,
        align_reverse=cfg.align_reverse,
        noise_prior=cfg.noise_prior,
        real_head=cfg.real_head,
    )
    try:
        gen.load_state_dict(ckpt["generator"])
    except RuntimeError as e:
        raise CheckpointError(
            f"generator weights do not match the checkpoint's config ({str(e).splitlines()[0][:120]})"
        ) from None
    return gen.to(device), CohortTransform.from_dict(meta["transform"]), meta


def checkpoint_split(ckpt: dict) -> Split:
    return Split.from_dict(ckpt["meta"]["split"])
