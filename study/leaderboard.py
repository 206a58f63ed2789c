"""The study's leaderboard: one row per trial with its configuration, status and last/best of every metric."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from healthgym_core.evaluation.collapse import FAITHFUL, missed_targets, targets_text, verdict
from healthgym_core.evaluation.distances import EARLIER_RANK_METRIC
from healthgym_core.evaluation.verdicts import best_of
from study.experiment import CODE_KEY, METRICS, PBT_LOG, PBT_LOG_KEPT, RANK_METRIC, TRIAL_DIR

COLLAPSE = (
    "diversity_ratio",
    "value_diversity",
    "distinct_share",
    "joint_tvd",
    "joint_max_cell",
    "joint_cell_coverage",
)
REPORTED = METRICS + ("ks_mean", "tvd_mean", "coverage", *COLLAPSE, "D_loss", "G_loss", "GP", "Corr", "W_gap")
FLOORS = ("fd_feat_floor", "emd_feat_floor", "critic_gap_floor", "energy_feat_floor")


def trial_status(epochs: int, max_epochs: int, diverged: bool, error: bool, ended: bool = False) -> str:
    """`ended`: the upstream reference trial stopped at its verdict (study/trainable.py), which completes it."""
    if error:
        return "error"
    if diverged:
        return "diverged"
    return "completed" if epochs >= max_epochs or ended else "pruned"


def trial_row(
    trial_id: str,
    config: dict,
    factors: list[str],
    history: pd.DataFrame,
    max_epochs: int,
    error: bool = False,
    checkpoint: str | None = None,
    path: str | None = None,
    exploits: Sequence[Exploit] = (),
) -> dict:
    """A leaderboard row from a trial's per-epoch metrics (`history`: one row per report)."""
    diverged = bool("diverged" in history and (history["diverged"].fillna(0) > 0).any())
    good = (
        history[history.get("diverged", pd.Series(0, index=history.index)).fillna(0) == 0] if len(history) else history
    )
    epochs = int(good["epoch"].max()) if len(good) and "epoch" in good else 0
    ended = bool("reference_ended" in good and (good["reference_ended"].fillna(0) > 0).any())
    row = {"trial_id": trial_id, "status": trial_status(epochs, max_epochs, diverged, error, ended), "epochs": epochs}
    row["pruned"] = row["status"] == "pruned"
    for f in factors:
        row[f] = config.get(f)
    row["seed"] = config.get("seed")
    row["lineage"] = lineage(good, factors, exploits, max_epochs)
    row["reference"] = config.get("reference") or ""
    for m in REPORTED:
        if m in good and len(good):
            col = good[m].astype(float)
            row[f"last_{m}"] = float(col.iloc[-1])
            row[f"best_{m}"] = best_of(m, col)
        else:
            row[f"last_{m}"] = row[f"best_{m}"] = math.nan
    for k in ("g_steps", "d_steps", "sequence_months"):
        row[k] = int(good[k].iloc[-1]) if k in good and len(good) else 0
    for fl in FLOORS:
        row[fl] = float(good[fl].iloc[-1]) if fl in good and len(good) else math.nan
    last = {m: row[f"last_{m}"] for m in REPORTED} | {"fd_feat_floor": row["fd_feat_floor"]}
    row["collapse"], _ = verdict(last) if math.isfinite(row["last_diversity_ratio"]) else ("", "")
    row["checkpoint"] = checkpoint
    row["path"] = path
    row[CODE_KEY] = str(good[CODE_KEY].iloc[-1]) if CODE_KEY in good and len(good) else ""
    return row


def _short(v: object) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


Exploit = tuple[int, str, dict]  # (first epoch on the donor's weights, the donor's trial id, the configuration after)


def pbt_log_lines(folder: Path) -> list[str]:
    """Ray's PBT log lines in the experiment folder: those kept before each resume (`keep_pbt_log`), then the current
    driver's, each once."""
    files = [folder / PBT_LOG_KEPT, folder / PBT_LOG]
    lines = [line for f in files if f.is_file() for line in f.read_text().splitlines() if line.strip()]
    return list(dict.fromkeys(lines))


def keep_pbt_log(folder: Path) -> None:
    """Before a study resumes: add PBT's log lines to PBT_LOG_KEPT. Ray writes the log in the driver's staging folder
    and syncs it over the experiment folder's copy; a resumed driver starts with an empty one, so without this the
    exploits made before the resume vanish from the log (and, where their first report was lost with the killed
    driver, from the lineage)."""
    lines = pbt_log_lines(folder)
    if lines:
        (folder / PBT_LOG_KEPT).write_text("\n".join(lines) + "\n")


def pbt_exploits(folder: Path) -> dict[str, list[Exploit]]:
    """Every exploit Ray's PBT logged in the experiment folder, by exploiting trial. The driver writes the log as each
    exploit happens, so it keeps exploits whose first report was lost with a killed driver."""
    lines = pbt_log_lines(folder)
    if not lines:
        return {}
    ids = {}  # a trial tag's leading experiment index ("3_gp_weight=...") -> the trial's id
    for d in folder.iterdir():
        found = TRIAL_DIR.search(d.name)
        if found and d.is_dir():
            ids[found.group(2)] = found.group(1)
    out: dict[str, list[Exploit]] = {}
    for line in lines:
        try:  # [trial tag, donor tag, trial iteration, donor iteration, donor config, new config]
            tag, donor_tag, _, donor_epoch, _, config = json.loads(line)
            first, config = int(donor_epoch) + 1, dict(config)
        except (ValueError, TypeError):  # a line cut short by a killed driver, or not Ray's format
            continue
        me, donor = ids.get(str(tag).split("_")[0]), ids.get(str(donor_tag).split("_")[0])
        if me and donor:
            out.setdefault(me, []).append((first, donor, config))
    return out


# How a lineage names a trial whose weights this one took: it trained on from them, or (the donor had finished) it
# is a copy of them.
TOOK_FROM, COPY_OF = "from trial", "a copy of trial"
_DONOR = re.compile(rf"(?:{TOOK_FROM}|{COPY_OF}) (\S+) \(its ")


def donors(line: str) -> list[str]:
    """The trials a lineage (see `lineage`) says this trial took weights from, in order; empty when none."""
    return _DONOR.findall(line)


def lineage(
    history: pd.DataFrame, factors: list[str], exploits: Sequence[Exploit] = (), max_epochs: int | None = None
) -> str:
    """Which configuration a trial ran in which epochs and whose weights it took (population-based training):
    "1-4: lr_g=0.0002 | 5-8 from trial ab12 (its epoch-4 weights): lr_g=0.00024". Empty when it never changed.
    `exploits` (from PBT's log) name donors whose first report after the exploit is missing from `history`. A row
    marked `cloned` (or an exploit of a donor at `max_epochs`) is a copy of a finished trial: nothing trained after."""
    history = _with_exploits(history, factors, exploits, max_epochs)
    cols = [f"config/{f}" for f in factors if f"config/{f}" in history]
    if not len(history) or "epoch" not in history or (not cols and "exploited_from" not in history):
        return ""
    h = history.sort_values("epoch", kind="stable")
    parents = h["exploited_from"] if "exploited_from" in h else pd.Series([None] * len(h), index=h.index)
    clones = h["cloned"].fillna(False).astype(bool) if "cloned" in h else pd.Series(False, index=h.index)
    segments: list[list] = []
    for (_, r), parent, cloned in zip(h.iterrows(), parents, clones):
        values = tuple(r[c] for c in cols)
        took = parent if isinstance(parent, str) and parent else None
        if not segments or took or values != segments[-1][2]:
            segments.append([int(r["epoch"]), int(r["epoch"]), values, took, bool(took and cloned)])
        else:
            segments[-1][1] = int(r["epoch"])
    if len(segments) == 1 and not segments[0][3]:
        return ""
    parts = []
    for first, last, values, took, cloned in segments:
        span = f"{first}-{last}" if last > first else f"{first}"
        origin = f" {TOOK_FROM} {took} (its epoch-{first - 1} weights)" if took else ""
        if cloned:
            origin = f" {COPY_OF} {took} (its final epoch-{first} weights, not trained further)"
        setting = ", ".join(f"{c[7:]}={_short(v)}" for c, v in zip(cols, values))
        parts.append(f"{span}{origin}: {setting}")
    return " | ".join(parts)


def _with_exploits(
    history: pd.DataFrame, factors: list[str], exploits: Sequence[Exploit], max_epochs: int | None = None
) -> pd.DataFrame:
    """The history with each logged exploit marked at its first epoch (a row added where that report is missing).
    An exploit of a donor that had finished (its first epoch past `max_epochs`) marks the last epoch as a copy."""
    if not exploits or "epoch" not in history:
        return history
    h = history.reset_index(drop=True)
    if "exploited_from" not in h:
        h["exploited_from"] = None
    h["exploited_from"] = h["exploited_from"].astype(object)
    h["cloned"] = h["cloned"].fillna(False).astype(bool) if "cloned" in h else False
    extra = []
    for epoch, donor, config in exploits:
        cloned = max_epochs is not None and epoch > max_epochs
        epoch = epoch - 1 if cloned else epoch
        at = h.index[h["epoch"] == epoch]
        if len(at):
            h.loc[at[0], "exploited_from"] = donor
            h.loc[at[0], "cloned"] = bool(h.loc[at[0], "cloned"]) or cloned
        else:
            config_cols = {f"config/{f}": config.get(f) for f in factors}
            extra.append({"epoch": epoch, "exploited_from": donor, "cloned": cloned, **config_cols})
    return pd.concat([h, pd.DataFrame(extra)], ignore_index=True) if extra else h


STATUS_ORDER = {"completed": 0, "running": 1, "pruned": 2, "diverged": 3, "error": 4, "pending": 5}
# A collapsed trial never outranks one that is not: one metric alone can rank a collapsed generator above one that
# is leaving collapse (fd_feat did, docs/learning_curves.md).
COLLAPSE_ORDER = {"faithful": 0, "partial": 1, "collapsed": 2}


def rank(board: pd.DataFrame) -> pd.DataFrame:
    """Completed trials first, then running, pruned, diverged, errored; within each, collapsed trials after the
    others, then by the final comparable metric. The first completed row is the study's best trial."""
    collapse = board["collapse"] if "collapse" in board else pd.Series("", index=board.index)
    board = board.assign(
        _o=board["status"].map(STATUS_ORDER),
        _c=collapse.map(COLLAPSE_ORDER).fillna(1),
        _m=board[rank_column(board)].fillna(np.inf),
    )
    return board.sort_values(["_o", "_c", "_m"], kind="stable").drop(columns=["_o", "_c", "_m"]).reset_index(drop=True)


def rank_column(board: pd.DataFrame) -> str:
    """The column a leaderboard ranks by: last_energy_feat, or in one written before it existed, last_emd_feat."""
    col, earlier = f"last_{RANK_METRIC}", f"last_{EARLIER_RANK_METRIC}"
    return earlier if earlier in board and (col not in board or board[col].isna().all()) else col


def with_rank_columns(board: pd.DataFrame) -> pd.DataFrame:
    """A leaderboard written before the ranking metric existed, with its columns added empty, so that pages built
    for today's boards show it (ranked by `rank_column`, the earlier metric) instead of failing."""
    missing = [c for c in (f"last_{RANK_METRIC}", f"best_{RANK_METRIC}", f"{RANK_METRIC}_floor") if c not in board]
    return board.assign(**dict.fromkeys(missing, np.nan)) if missing else board


def completed_by_rank(board: pd.DataFrame) -> pd.DataFrame:
    """The completed trials, best first (the order of `rank`)."""
    board = rank(board)
    return board[board["status"] == "completed"]


def format_board(board: pd.DataFrame, factors: list[str], metric: str, top: int = 20) -> str:
    cols = [
        "trial_id",
        "status",
        "epochs",
        *factors,
        f"last_{RANK_METRIC}",
        f"last_{metric}",
        "last_fd_feat",
        "last_coverage",
        "last_diversity_ratio",
        "last_joint_tvd",
        "collapse",
    ]
    cols = [c for c in dict.fromkeys(cols) if c and c in board]
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_colwidth", 32):
        return board[cols].head(top).to_string(index=False, float_format=lambda v: f"{v:.4g}")


def mark_roles(
    board: pd.DataFrame, factors: list[str], base_point: dict | None, base_is_upstream: bool
) -> pd.DataFrame:
    """`upstream`: the upstream configuration (its reference trial, or on an upstream base the trials with its factor
    values); `role`: "base" for the base point's trial, "upstream reference" for the reference trial."""
    from study.base import is_reference
    from study.spaces import upstream_point

    def matches(row: dict, point: dict) -> bool:
        return all(row.get(k) == v for k, v in point.items())

    rows = board.to_dict("records")
    ref = [is_reference(r) for r in rows]
    up_point = upstream_point(list(factors))
    board = board.copy()
    board["upstream"] = [
        is_ref or (base_is_upstream and (matches(r, up_point) if factors else True)) for r, is_ref in zip(rows, ref)
    ]
    board["role"] = [
        "upstream reference"
        if is_ref
        else ("base" if base_point is not None and factors and matches(r, base_point) else "")
        for r, is_ref in zip(rows, ref)
    ]
    return board


# When a trial meets every target but fd_feat's: the learning curves (docs/learning_curves.md) show that neither
# longer training nor a larger generator closes it at the sizes measured, so there is no change to advise.
FD_FEAT_LIMIT = (
    "Only fd_feat misses, and nothing measured closes it: it measures the month-to-month changes, and no setting at "
    "hidden 32 or 64 came within 50x its floor in 3,000 generator steps (docs/learning_curves.md); the paper size "
    "(--preset gpu) is unmeasured."
)


def collapse_summary(board: pd.DataFrame, base: dict | None = None) -> str:
    """Plain words on collapse for the console and the report's first screen: is the best trial, or every trial,
    collapsed (with its numbers), and what to change (`base`: the study's base record, so that it does not advise
    what the best trial already does)."""
    done = board[board["status"] == "completed"]
    scored = board[board.get("collapse", pd.Series("", index=board.index)).astype(str) != ""]
    if not len(scored):
        return ""
    best = done.iloc[0] if len(done) else scored.iloc[0]
    status = best.get("collapse", "")
    numbers = (
        f"diversity {best['last_diversity_ratio']:.2f} of real (values {best.get('last_value_diversity', np.nan):.2f}), "
        f"distinct patients {best['last_distinct_share']:.2f}, "
        f"category coverage {best['last_coverage']:.2f}, Gender x Ethnic TVD {best['last_joint_tvd']:.2f}, "
        f"fd_feat {best['last_fd_feat']:.3g} (floor {best['fd_feat_floor']:.3g})"
    )
    counts = scored["collapse"].value_counts()
    if (scored["collapse"] == "collapsed").all():
        head = f"COLLAPSED: every trial ({len(scored)}) is collapsed; the best one has {numbers}."
    elif status == "collapsed":
        head = f"COLLAPSED: the best trial {best['trial_id']} is collapsed ({numbers})."
    elif status == "faithful":
        return (
            f"The best trial {best['trial_id']} is not collapsed and meets the faithfulness targets "
            f"({targets_text()}): {numbers}."
        )
    else:
        shown = {k: best.get(f"last_{k}", np.nan) for k in FAITHFUL if k != "fd_feat_ratio"}
        missed = missed_targets(shown | {"fd_feat": best["last_fd_feat"], "fd_feat_floor": best["fd_feat_floor"]})
        head = (
            f"The best trial {best['trial_id']} is not collapsed but misses the faithfulness targets on "
            f"{', '.join(f'{k} {v}' for k, v in missed.items())}: {numbers}."
        )
    n_ok = int(counts.get("faithful", 0))
    config = (base or {}).get("config") or {}
    prior = best.get("noise_prior") if "noise_prior" in board else config.get("noise_prior")
    if status == "partial" and list(missed) == ["fd_feat_ratio"]:
        return head + f" {n_ok} of {len(scored)} trials meet the targets. {FD_FEAT_LIMIT}"
    advice = [
        "train longer (--max-epochs)",
        "search the settings upstream never varied (--space optimizer or --space all)",
    ]
    if prior != "buffer":
        advice.append("add Health Gym v2's noise prior (--set noise_prior=buffer)")
    return (
        head + f" {n_ok} of {len(scored)} trials meet the targets. What to change: {', '.join(advice[:-1])} or "
        f"{advice[-1]}; docs/learning_curves.md measures how many generator steps each needs."
    )


def board_from_results(results, factors: list[str], max_epochs: int) -> pd.DataFrame:
    """The leaderboard from Tune's results (a ResultGrid: each result's config, metrics, history, checkpoint, path),
    ranked."""
    rows = []
    exploits = pbt_exploits(Path(results.experiment_path)) if len(results) else {}
    for r in results:
        history = r.metrics_dataframe if r.metrics_dataframe is not None else pd.DataFrame()
        ckpt = r.checkpoint.path if r.checkpoint is not None else None
        # The trial's own id from its folder: under PBT its last metrics may be a copy of the trial it cloned.
        found = TRIAL_DIR.search(Path(r.path).name)
        trial_id = found.group(1) if found else (r.metrics or {}).get("trial_id") or Path(r.path).name
        last = r.metrics or {}
        done = int(history["epoch"].max()) if len(history) and "epoch" in history else 0
        if last.get("epoch", 0) > done:
            # Under PBT the last report can be missing from the trial's history (a paused trial's final result), or
            # be a copy: PBT cloned a trial that had already finished into this one, which ends in its final state.
            extra = {**last, **{f"config/{k}": v for k, v in r.config.items()}}
            if last.get("trial_id") not in (None, trial_id):
                extra["exploited_from"], extra["cloned"] = last["trial_id"], True
            history = pd.concat([history, pd.DataFrame([extra])], ignore_index=True)
        rows.append(
            trial_row(
                trial_id,
                r.config,
                factors,
                history,
                max_epochs,
                error=r.error is not None,
                checkpoint=ckpt,
                path=r.path,
                exploits=exploits.get(trial_id, ()),
            )
        )
    return rank(pd.DataFrame(rows))
