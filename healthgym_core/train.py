"""Plain trainer (no Ray): python -m healthgym_core.train --config cpu_base --epochs N --out DIR

Trains one configuration with the same `train_epoch` the study uses, evaluates on validation patients after
every epoch, and writes into DIR:

    run.json                 the configuration and where the data came from
    steps.parquet            per-step log (epoch, step, L, D_loss, GP, grad_norm, D_real, D_fake, W_gap, G_loss, Corr)
    epochs.csv               per-epoch means, budget counters and validation metrics
    checkpoints/last.pt      resumable state (also best.pt: lowest energy_feat, the ranking metric; epoch_NNNN.pt
                             every --checkpoint-every N epochs)
    synthetic.csv            a synthetic cohort sampled from the last generator, with its card beside it
                             (synthetic.card.json, synthetic.card.html: fidelity on test patients, privacy)
    learning_dynamics.png    D_loss / G_loss per step coloured by curriculum length
    real_vs_synthetic.png    held-out validation patients vs synthetic ones
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch
from tqdm import tqdm

from healthgym_core import cli
from healthgym_core.atomic import atomic_write, check_creatable_folder, check_table_suffix, plain_name, write_table
from healthgym_core.checkpoint import load_checkpoint, restore_state, save_checkpoint
from healthgym_core.config import FIELDS, TrainConfig
from healthgym_core.configs import NAMED, NamedConfig, load_config
from healthgym_core.data.cohort import MAX_PATIENTS, load_cohort
from healthgym_core.data.prepared import PreparedData, prepare_data
from healthgym_core.epoch import run_epoch
from healthgym_core.errors import ConfigError
from healthgym_core.evaluation.card import card_paths
from healthgym_core.evaluation.distances import RANK_METRIC
from healthgym_core.plots import learning_dynamics, real_vs_synthetic
from healthgym_core.sampling import card_summary, export_cohort, generate
from healthgym_core.state import TrainState, build_state


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m healthgym_core.train",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    g = p.add_argument_group("data")
    g.add_argument(
        "--data",
        default="simulated",
        help="cohort file (.csv/.parquet), 'simulated' (the embedded simulated cohort, NOT the Health Gym dataset) "
        "or 'art4hiv' (the cached download)",
    )
    g.add_argument("--schema", default="demo7", help="demo7, full10, full13 or a .toml schema file")
    g.add_argument(
        "--patients",
        type=int,
        default=None,
        action=cli.number_range(1, MAX_PATIENTS),
        help="first N patients (simulated: generate N; default 2000)",
    )
    g.add_argument("--data-seed", type=int, default=0, action=cli.at_least(0), help="seed of the simulated cohort")
    g.add_argument(
        "--split-seed", type=int, default=0, action=cli.at_least(0), help="seed of the 70/15/15 patient split"
    )
    t = p.add_argument_group("training")
    t.add_argument(
        "--config",
        default=None,
        metavar="NAME|FILE",
        help=f"a named configuration ({', '.join(NAMED)}) or a .toml configuration file; the options given here "
        "override its values (default: upstream's, every option's default)",
    )
    t.add_argument(
        "--epochs",
        type=int,
        default=10,
        action=cli.at_least(1),
        help="total epochs (with --resume: train until this many)",
    )
    t.add_argument(
        "--seed", type=int, default=TrainConfig.seed, action=cli.at_least(0), help=FIELDS["seed"].metadata["help"]
    )
    x = p.add_argument_group("execution and output")
    for f in FIELDS.values():
        if f.name != "seed":
            cli.add_dataclass_options(t if f.metadata["group"] == "training" else x, TrainConfig, [f.name])
    x.add_argument(
        "--threads", type=int, default=None, action=cli.at_least(1), help="torch CPU threads (default: torch's choice)"
    )
    x.add_argument(
        "--sample-patients",
        type=int,
        default=1000,
        action=cli.at_least(1),
        help="patients in the exported synthetic cohort",
    )
    x.add_argument(
        "--sample-out", default="synthetic.csv", help="file name of the export inside --out (.csv or .parquet)"
    )
    x.add_argument(
        "--checkpoint-every",
        type=int,
        default=0,
        action=cli.at_least(0),
        metavar="N",
        help="also keep checkpoints/epoch_NNNN.pt every N epochs, to score a long run's checkpoints later (0: no)",
    )
    x.add_argument("--out", required=True, help="output folder")
    x.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    x.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def write_figures(out: Path, steps: pd.DataFrame, state: TrainState, data: PreparedData) -> None:
    learning_dynamics(steps, out / "learning_dynamics.png")
    soft = generate(state.generator, max(len(data.split.val), 200), data.n_months, state.config.seed + 7).numpy()
    fake = data.transform.decode(soft)
    real_vs_synthetic(
        data.schema,
        (data.val_cohort.reals, data.val_cohort.codes),
        fake,
        out / "real_vs_synthetic.png",
        title=f"Validation patients vs synthetic, epoch {state.epoch} ({data.source.split(' (')[0]})",
    )


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, NamedConfig | None]:
    """The flags, over the --config file's values (a flag given on the command line wins)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    given, _ = pre.parse_known_args(argv)
    p = parser()
    named = load_config(given.config) if given.config else None
    if named is not None:
        p.set_defaults(**named.options)
    return p.parse_args(argv), named


def main(argv: Sequence[str] | None = None) -> int:
    args, named = parse_args(argv)
    out = Path(args.out)
    if args.threads is not None:
        if args.threads > (os.cpu_count() or 1):
            raise ConfigError(f"--threads {args.threads} is more than the {os.cpu_count()} CPUs of this machine")
        torch.set_num_threads(args.threads)
    plain_name(args.sample_out, "--sample-out")  # the export stays inside --out
    check_table_suffix(args.sample_out)
    check_creatable_folder(out, "--out")
    last = out / "checkpoints" / "last.pt"
    if not args.resume and (last.exists() or (out / "run.json").exists()):
        raise ConfigError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    if args.resume and not last.exists():
        raise ConfigError(f"--resume: no checkpoint at {last}")
    config = cli.dataclass_from_args(TrainConfig, args).validate()

    # Everything is checked before anything is written.
    cohort = load_cohort(args.data, args.schema, patients=args.patients, seed=args.data_seed)
    data = prepare_data(cohort, split_seed=args.split_seed)
    if args.resume:
        ckpt = load_checkpoint(last)
        state = restore_state(ckpt, data)
        steps = pd.read_parquet(out / "steps.parquet") if (out / "steps.parquet").exists() else pd.DataFrame()
        if len(steps):
            steps = steps[steps["epoch"] <= state.epoch]
        if (out / "epochs.csv").exists():  # the per-epoch history lives in epochs.csv, not in checkpoints
            past = pd.read_csv(out / "epochs.csv")
            state.history = past[past["epoch"] <= state.epoch].to_dict("records")
        if state.epoch >= args.epochs:
            print(
                f"{out}: already trained {state.epoch} epochs (--epochs {args.epochs}); nothing to do", file=sys.stderr
            )
    else:
        state = build_state(config, data)
        steps = pd.DataFrame()

    out.mkdir(parents=True, exist_ok=True)
    print(f"data: {data.describe()}", file=sys.stderr)
    print(
        f"device {state.device}, kernel {state.kernel}, CUDA graphs {'on' if state.graphs else 'off'}, "
        f"{torch.get_num_threads()} threads",
        file=sys.stderr,
    )
    run_info = {
        "config": state.config.to_dict(),
        "data": {
            "source": data.source,
            "fingerprint": data.fingerprint,
            "schema": data.schema.name,
            "split": {
                "seed": data.split.seed,
                "train": len(data.split.train),
                "val": len(data.split.val),
                "test": len(data.split.test),
            },
        },
        "named_config": named.name if named else None,
        "argv": list(argv or sys.argv[1:]),
    }
    atomic_write(out / "run.json", lambda p: p.write_text(json.dumps(run_info, indent=2)))

    history = [h for h in state.history]
    best = min((h.get(RANK_METRIC, float("inf")) for h in history), default=float("inf"))
    bar = tqdm(total=args.epochs, initial=state.epoch, unit="epoch", disable=args.quiet, file=sys.stderr)
    while state.epoch < args.epochs:
        records, summary = run_epoch(state, data)
        steps = pd.concat([steps, pd.DataFrame(records)], ignore_index=True)
        write_table(steps, out / "steps.parquet")
        save_checkpoint(last, state, data)
        if args.checkpoint_every and state.epoch % args.checkpoint_every == 0:
            save_checkpoint(out / "checkpoints" / f"epoch_{state.epoch:04d}.pt", state, data)
        if summary[RANK_METRIC] < best:
            best = summary[RANK_METRIC]
            save_checkpoint(out / "checkpoints" / "best.pt", state, data)
        write_table(pd.DataFrame(state.history), out / "epochs.csv")
        bar.set_postfix(
            D=f"{summary['D_loss']:.2f}",
            G=f"{summary['G_loss']:.2f}",
            gap=f"{summary['wasserstein_gap']:.2f}",
            fd=f"{summary['fd_feat']:.2f}",
        )
        bar.update(1)
    bar.close()
    if len(steps):
        write_figures(out, steps, state, data)
    card = export_cohort(last, args.sample_patients, out / args.sample_out, data, seed=state.config.seed)
    print(f"{args.sample_out}: {card_summary(card)}", file=sys.stderr)
    print(f"note: trained on {data.source}", file=sys.stderr)
    js, page = card_paths(out / args.sample_out)
    print(
        f"wrote {out}: steps.parquet, epochs.csv, checkpoints/, {args.sample_out} with its card ({js.name}, "
        f"{page.name}), learning_dynamics.png, real_vs_synthetic.png"
    )
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
