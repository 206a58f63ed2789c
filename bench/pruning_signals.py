"""Which early signal predicts a trial's final quality on test patients, and what ASHA would have spent.

    python bench/pruning_signals.py SOURCE [SOURCE ...] [--export RECORD.csv] [--json ...] [--csv ...]

A SOURCE is a study run to its full budget with no pruning (`python study/run.py ... --scheduler none`), or the
record `--export` wrote of one: each trial's per-epoch signals, configuration and final test quality in one small
CSV, which outlives the experiment folder (commit it), so a signal study can run in batches, in different sessions,
and be read as one. The trials of all SOURCEs are read together, in the order given. The script
1. scores every completed trial's last checkpoint on the test patients (the same scoring as `study/evaluate.py`;
   cached in EXPERIMENT/test_scores.csv, so a second call scores nothing);
2. for every signal a trial reports per epoch and every epoch (a candidate first rung), the Spearman correlation
   of the signal's value at that epoch with the trial's final test quality, with a bootstrap 95% interval over
   trials. Signals and qualities are oriented so that +1 means "a better value at the rung, a better trial at the
   end" (a pruning signal wants a large positive value);
3. replays ASHA on the recorded curves with Ray's own scheduler (`AsyncHyperBandScheduler`, as the study builds
   it): the trials start in the study's order, `--concurrency` at a time, one epoch per time unit each, and every
   result goes through `on_trial_result`. It reports the trial-epochs ASHA would have run (as a share of the
   no-pruning study's) and the trial the leaderboard would have ranked first, with its test quality against the
   no-pruning winner's. The proposals are the ones the no-pruning study made: a real ASHA study's TPE would have
   seen other results, and a pruned trial's freed slot would have gone to a new proposal. ASHA never stops the
   first trial a study starts, so the replay is repeated with the trials started in `--orders` random orders: the
   mean share spent and how often the winner stays within two seed sds of the no-pruning winner.
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
from scipy.stats import rankdata

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from healthgym_core.atomic import write_table  # noqa: E402
from healthgym_core.errors import ConfigError  # noqa: E402
from healthgym_core.evaluation.distances import EARLIER_RANK_METRIC  # noqa: E402
from healthgym_core.evaluation.verdicts import badness  # noqa: E402
from study.base import UPSTREAM_REFERENCE  # noqa: E402
from study.experiment import study_data  # noqa: E402
from study.leaderboard import COLLAPSE, completed_by_rank, trial_row  # noqa: E402
from study.reporting.loading import checkpoint_file, load_experiment  # noqa: E402

SIGNALS = ("wasserstein_gap", "emd_feat", "critic_gap", "fd_feat", "sliced_w", "coverage", "ks_mean", "tvd_mean")
SIGNALS += tuple(c for c in COLLAPSE if c != "joint_max_cell")
# The quality the committed signal records hold, on test patients at the end of the full budget: emd_feat ranked
# trials when they were made (energy_feat ranks now; its early values are not measured against final quality yet).
QUALITY = EARLIER_RANK_METRIC
QUALITIES = (QUALITY, "fd_feat", "joint_cell_coverage")
SCORES_FILE = "test_scores.csv"
BOOTSTRAP = 2000
CONFIG = "config."  # a record's column prefix for a trial's configuration (factors, seed, reference)
TEST = "test_"  # ... and for its final test quality


def test_scores(exp, n: int, seed: int) -> pd.DataFrame:
    """Final test-patient quality of every completed trial (trial_id, QUALITIES), cached in the experiment folder."""
    from study.final_runs import score_checkpoint

    cache = exp.folder / SCORES_FILE
    done = exp.board[exp.board["status"] == "completed"]
    if cache.is_file():
        cached = pd.read_csv(cache, dtype={"trial_id": str})
        if set(done["trial_id"]) <= set(cached["trial_id"]):
            return cached
    data = study_data(exp.record)
    rows = []
    for i, (_, row) in enumerate(done.iterrows(), 1):
        ckpt = checkpoint_file(exp.folder, row)
        if ckpt is None:
            print(f"  {row['trial_id']}: no checkpoint, left out", file=sys.stderr)
            continue
        scores = score_checkpoint(ckpt.parent, data, n or 2 * len(data.split.test), seed)
        rows.append({"trial_id": row["trial_id"], **{q: scores[q] for q in QUALITIES}})
        print(f"  scored {i}/{len(done)} on test patients: {row['trial_id']}", file=sys.stderr)
    out = pd.DataFrame(rows)
    write_table(out, cache)
    return out


def spearman_rows(x: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Spearman correlation of each row of x with the same row of q ([B, n] each; average ranks for ties)."""
    rx, rq = rankdata(x, axis=1), rankdata(q, axis=1)
    rx, rq = rx - rx.mean(1, keepdims=True), rq - rq.mean(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (rx * rq).sum(1) / np.sqrt((rx * rx).sum(1) * (rq * rq).sum(1))


def rank_correlations(curves: dict[str, pd.DataFrame], quality: pd.Series, seed: int = 0) -> pd.DataFrame:
    """Spearman(signal at epoch e, final quality) over trials, with a bootstrap 95% interval (trials resampled);
    both oriented so that +1 is a perfect predictor. `curves`: trial_id -> per-epoch history; `quality`: the final
    quality per trial_id, oriented lower = better."""
    trials = [t for t in quality.index if t in curves]
    by_epoch = {t: curves[t].set_index("epoch") for t in trials}
    epochs = sorted(set.intersection(*(set(by_epoch[t].index.astype(int)) for t in trials)))
    boot = np.random.default_rng(seed).integers(0, len(trials), size=(BOOTSTRAP, len(trials)))
    q = quality.loc[trials].to_numpy(float)
    rows = []
    for signal in SIGNALS:
        if not all(signal in by_epoch[t] for t in trials):
            continue
        for e in epochs:
            x = badness(signal, np.array([float(by_epoch[t].at[e, signal]) for t in trials]))
            if not np.isfinite(x).all():
                continue
            rho = float(spearman_rows(x[None], q[None])[0])
            draws = spearman_rows(x[boot], q[boot])
            lo, hi = np.nanpercentile(draws, [2.5, 97.5])
            rows.append({"signal": signal, "epoch": e, "n": len(trials), "rho": rho, "lo": lo, "hi": hi})
    return pd.DataFrame(rows)


def replay_asha(curves: dict[str, pd.Series], max_t: int, grace: int, rf: float, concurrency: int) -> dict[str, int]:
    """Epochs each trial would run under Ray's ASHA (mode min) fed these curves. `curves`: trial_id -> the
    signal per epoch 1..k in start order (k < max_t: the trial ended there, e.g. it diverged)."""
    from ray.tune.schedulers import AsyncHyperBandScheduler, TrialScheduler

    asha = AsyncHyperBandScheduler(
        time_attr="epoch", metric="signal", mode="min", max_t=max_t, grace_period=grace, reduction_factor=rf
    )
    waiting = list(curves)
    events: list[tuple[int, int, str]] = []  # (time, start order, trial): trial's next epoch ends at that time
    order = {t: i for i, t in enumerate(waiting)}
    ran = dict.fromkeys(curves, 0)
    stubs = {t: SimpleNamespace(trial_id=t) for t in curves}

    def start(t: str, now: int) -> None:
        asha.on_trial_add(None, stubs[t])
        heapq.heappush(events, (now + 1, order[t], t))

    for _ in range(min(concurrency, len(waiting))):
        start(waiting.pop(0), 0)
    while events:
        now, _, t = heapq.heappop(events)
        ran[t] += 1
        value = float(curves[t].iloc[ran[t] - 1])
        result = {"epoch": ran[t], "signal": value if math.isfinite(value) else 1e9}
        action = asha.on_trial_result(None, stubs[t], result)
        if action == TrialScheduler.STOP or ran[t] >= len(curves[t]):
            asha.on_trial_complete(None, stubs[t], result)
            if waiting:
                start(waiting.pop(0), now)
        else:
            heapq.heappush(events, (now + 1, order[t], t))
    return ran


@dataclass
class Trials:
    """No-pruning trials as the analysis reads them: start order, configurations, per-epoch curves, test quality."""

    order: list[str]  # trial ids in start order
    configs: dict[str, dict]  # trial id -> its factors, seed and reference
    factors: list[str]
    histories: dict[str, pd.DataFrame]  # trial id -> one row per epoch (numeric columns)
    scores: pd.DataFrame  # index trial id, columns QUALITIES
    max_t: int

    def __post_init__(self) -> None:
        self._rows: dict[tuple[str, int], dict] = {}

    def row(self, t: str, epochs: int) -> dict:
        """Trial t's leaderboard row had it stopped after `epochs` epochs (cached: replays ask for the same ones)."""
        if (t, epochs) not in self._rows:
            h = self.histories[t]
            self._rows[t, epochs] = trial_row(t, self.configs[t], self.factors, h[h["epoch"] <= epochs], self.max_t)
        return self._rows[t, epochs]

    def by_study(self) -> dict[str, list[str]]:
        """Trial ids per source study, in start order (a study's first trial is its base). Ids read from records
        are "RECORD/ID"; a study folder's are plain (one study, "")."""
        studies: dict[str, list[str]] = {}
        for t in self.order:
            studies.setdefault(t.rsplit("/", 1)[0] if "/" in t else "", []).append(t)
        return studies

    def record(self) -> pd.DataFrame:
        """One row per trial and epoch: the trial, its configuration, its final test quality, its signals."""
        parts = []
        for number, t in enumerate(self.order):
            h = self.histories[t].select_dtypes("number").copy()
            front = {"trial_id": t, "trial_number": number, "max_epochs": self.max_t}
            front |= {CONFIG + k: self.configs[t].get(k) for k in (*self.factors, "seed", "reference")}
            front |= {TEST + q: float(self.scores.loc[t, q]) for q in QUALITIES}
            parts.append(pd.concat([pd.DataFrame([front] * len(h), index=h.index), h], axis=1))
        return pd.concat(parts, ignore_index=True)

    @classmethod
    def from_record(cls, path: Path) -> Trials:
        try:
            table = pd.read_csv(path, dtype={"trial_id": str})
        except (OSError, ValueError) as e:
            raise ConfigError(f"{path}: not a readable signal record ({e})") from None
        need = {"trial_id", "trial_number", "max_epochs", "epoch", *(TEST + q for q in QUALITIES)}
        if missing := sorted(need - set(table.columns)):
            raise ConfigError(f"{path}: not a signal record (no column {missing[0]}; write one with --export)")
        table["trial_id"] = path.stem + "/" + table["trial_id"]  # ids unique across batches
        keys = [c for c in table.columns if c.startswith(CONFIG)]
        firsts = table.sort_values(["trial_number", "epoch"]).groupby("trial_id", sort=False).first()
        firsts = firsts.sort_values("trial_number")
        signals = [c for c in table.columns if c not in {"trial_id", "trial_number", "max_epochs", *keys}]
        signals = [c for c in signals if not c.startswith(TEST)]
        return cls(
            order=list(firsts.index),
            configs={t: {k[len(CONFIG) :]: _plain(r[k]) for k in keys} for t, r in firsts.iterrows()},
            factors=[k[len(CONFIG) :] for k in keys if k[len(CONFIG) :] not in ("seed", "reference")],
            histories={t: g.sort_values("epoch")[signals].reset_index(drop=True) for t, g in table.groupby("trial_id")},
            scores=firsts[[TEST + q for q in QUALITIES]].rename(columns=lambda c: c[len(TEST) :]),
            max_t=int(firsts["max_epochs"].max()),
        )

    @classmethod
    def from_experiment(cls, folder: Path, samples: int, seed: int) -> Trials:
        exp = load_experiment(folder)
        max_t = exp.plan.max_epochs
        done = exp.board[exp.board["status"] == "completed"]
        others = len(exp.board) - len(done)
        print(f"{exp.folder}: {len(done)} trials completed {max_t} epochs ({others} not, left out)", file=sys.stderr)
        scores = test_scores(exp, samples, seed).set_index("trial_id")
        board = exp.board.sort_values("trial_number")
        order = [t for t in board["trial_id"] if t in scores.index]
        rows = board.set_index("trial_id")
        keys = (*exp.factors, "seed", "reference")
        return cls(
            order=order,
            configs={t: {k: _plain(rows.at[t, k]) for k in keys if k in rows} for t in order},
            factors=list(exp.factors),
            histories={t: exp.histories[t] for t in order},
            scores=scores.loc[order, list(QUALITIES)],
            max_t=max_t,
        )

    @classmethod
    def read(cls, sources: list[Path], samples: int, seed: int) -> Trials:
        """The trials of every source, in the order given (a folder: a study; a file: an exported record)."""
        parts = [cls.from_experiment(s.resolve(), samples, seed) if s.is_dir() else cls.from_record(s) for s in sources]
        if len({p.max_t for p in parts}) > 1:
            budgets = ", ".join(f"{s}: {p.max_t}" for s, p in zip(sources, parts))
            raise ConfigError(f"the sources ran different epoch budgets ({budgets}); read ones of one budget together")
        ids = [t for p in parts for t in p.order]
        if len(set(ids)) < len(ids):
            raise ConfigError("a trial appears in two sources (the same study given twice?)")
        return cls(
            order=ids,
            configs={t: c for p in parts for t, c in p.configs.items()},
            factors=list(dict.fromkeys(f for p in parts for f in p.factors)),
            histories={t: h for p in parts for t, h in p.histories.items()},
            scores=pd.concat([p.scores for p in parts]),
            max_t=parts[0].max_t,
        )


def _plain(value):
    """A configuration value as the leaderboard stores it (NaN read from a CSV: absent)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    return value.item() if isinstance(value, np.generic) else value


def replay_winner(trials: Trials, ran: dict[str, int]) -> str | None:
    """The trial the leaderboard would rank first had each trial stopped after `ran[trial]` epochs."""
    rows = [trials.row(t, ran[t]) for t in trials.order if t in ran]
    done = completed_by_rank(pd.DataFrame(rows))
    return str(done["trial_id"].iloc[0]) if len(done) else None


def shuffled_replays(
    trials: Trials,
    series: dict[str, pd.Series],
    grace: int,
    rf: int,
    concurrency: int,
    orders: int,
    seed_sd: float,
    best: float,
) -> dict[str, float]:
    """ASHA replayed with the trials started in `orders` random orders (the same orders for every setting): the
    mean share of the no-pruning trial-epochs, the mean gap of the winner's test quality to the no-pruning
    winner's, and the share of orders whose winner is within two seed sds of it."""
    rng = np.random.default_rng(0)
    total = len(trials.order) * trials.max_t
    shares, gaps = [], []
    for _ in range(orders):
        shuffled = {t: series[t] for t in rng.permutation(trials.order)}
        ran = replay_asha(shuffled, trials.max_t, grace, rf, concurrency)
        winner = replay_winner(trials, ran)
        shares.append(sum(ran.values()) / total)
        gaps.append(float(trials.scores.loc[winner, QUALITY] - best) if winner else np.inf)
    gaps = np.array(gaps)
    return {
        "orders": orders,
        "share_mean": float(np.mean(shares)),
        "gap_mean": float(np.mean(gaps)),
        "orders_within_seed_spread": float(np.mean(gaps <= 2 * seed_sd)) if math.isfinite(seed_sd) else np.nan,
    }


def base_vs_upstream(trials: Trials, signal: str) -> pd.DataFrame:
    """Per study (source) and epoch, how far the base (a study's first trial) is ahead of the upstream reference on
    `signal` (> 0: ahead). A first rung where the base is behind lets ASHA stop the base for a collapsed reference."""
    rows = []
    for study, ids in trials.by_study().items():
        upstream = [t for t in ids if trials.configs[t].get("reference") == UPSTREAM_REFERENCE]
        if not upstream or upstream[0] == ids[0]:
            continue
        b, u = (trials.histories[t].set_index("epoch")[signal] for t in (ids[0], upstream[0]))
        ahead = badness(signal, u) - badness(signal, b)
        rows += [{"study": study, "epoch": int(e), "ahead": float(v)} for e, v in ahead.dropna().items()]
    return pd.DataFrame(rows, columns=["study", "epoch", "ahead"])


def seed_spread(summary: Path) -> float:
    """The seed sd of the test ranking metric for one configuration: the base arm's in an evaluation's summary."""
    try:
        table = pd.read_csv(summary).set_index("metric")
        return float(table.loc[QUALITY, "base_sd"])
    except (OSError, KeyError, ValueError) as e:
        raise ValueError(f"--seed-spread {summary}: no base_sd for {QUALITY} in it ({e})") from None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("sources", type=Path, nargs="+", metavar="SOURCE", help="a study folder or an exported record")
    p.add_argument("--samples", type=int, default=0, help="synthetic patients per trial (default: 2x the test set)")
    p.add_argument("--seed", type=int, default=1000, help="the sampling seed for the test scores")
    p.add_argument("--concurrency", type=int, default=2, help="trials at once in the ASHA replay")
    p.add_argument("--graces", default="1,2,3,4,5,6,8,12", help="first rungs to replay")
    p.add_argument("--factors", default="2,3,4", help="reduction factors to replay")
    p.add_argument(
        "--orders",
        type=int,
        default=50,
        help="also replay ASHA with the trials started in this many random orders (the study's order favours its "
        "first trial, which ASHA never stops)",
    )
    p.add_argument(
        "--seed-spread",
        type=Path,
        default=None,
        help=f"an evaluation's final_summary.csv: its base arm's seed sd of the test {QUALITY} says whether a "
        "replayed winner is as good as the no-pruning one (gap <= 2 sd, evaluate.py's rule for two arms)",
    )
    p.add_argument("--export", type=Path, default=None, help="write the sources' trials as one record (a CSV)")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--csv", type=Path, default=None, help="every signal x epoch correlation")
    args = p.parse_args()

    try:
        seed_sd = seed_spread(args.seed_spread) if args.seed_spread else float("nan")
        for s in args.sources:
            if not s.exists():
                raise ConfigError(f"{s}: no such study folder or record")
        trials = Trials.read(args.sources, args.samples, args.seed)
    except (ValueError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.export:
        write_table(trials.record(), args.export)
        print(f"wrote {args.export}: {len(trials.order)} trials", file=sys.stderr)
    scores, order, max_t = trials.scores, trials.order, trials.max_t
    curves = trials.histories

    tables = {}
    for quality in QUALITIES:
        tables[quality] = rank_correlations(curves, badness(quality, scores[quality]))
    corr = pd.concat([t.assign(quality=q) for q, t in tables.items()], ignore_index=True)
    if args.csv:
        corr.to_csv(args.csv, index=False, float_format="%.4f")

    best_all = replay_winner(trials, dict.fromkeys(order, max_t))
    total = len(order) * max_t
    replays = []
    for signal in ("emd_feat", "wasserstein_gap", "critic_gap", "fd_feat", "sliced_w"):
        series = {t: badness(signal, curves[t].set_index("epoch")[signal]) for t in order}
        for grace in (int(g) for g in args.graces.split(",")):
            for rf in (int(f) for f in args.factors.split(",")):
                if grace >= max_t:
                    continue
                ran = replay_asha(series, max_t, grace, rf, args.concurrency)
                winner = replay_winner(trials, ran)
                gap = float(scores.loc[winner, QUALITY] - scores.loc[best_all, QUALITY]) if winner else np.nan
                row = {
                    "signal": signal,
                    "grace": grace,
                    "rf": rf,
                    "trial_epochs": sum(ran.values()),
                    "share": sum(ran.values()) / total,
                    "winner": winner,
                    f"winner_test_{QUALITY}": float(scores.loc[winner, QUALITY]) if winner else np.nan,
                    "gap_to_no_pruning": gap,
                    "within_seed_spread": bool(gap <= 2 * seed_sd) if math.isfinite(seed_sd) else None,
                }
                if args.orders:
                    row |= shuffled_replays(
                        trials,
                        series,
                        grace,
                        rf,
                        args.concurrency,
                        args.orders,
                        seed_sd,
                        scores.loc[best_all, QUALITY],
                    )
                replays.append(row)
    replay = pd.DataFrame(replays)

    print(
        f"\nno pruning: {len(order)} trials x {max_t} epochs = {total} trial-epochs; winner {best_all} "
        f"(test {QUALITY} {scores.loc[best_all, QUALITY]:.3f})"
    )
    for quality, t in tables.items():
        print(f"\nSpearman with the final test {quality} (+1: predicts), 95% bootstrap interval:")
        wide = t.assign(cell=t.apply(lambda r: f"{r.rho:+.2f} [{r.lo:+.2f},{r.hi:+.2f}]", axis=1))
        keep = [e for e in sorted(t["epoch"].unique()) if e in (1, 2, 3, 4, 6, 8, 12, 18, 24, max_t)]
        print(wide[wide["epoch"].isin(keep)].pivot(index="signal", columns="epoch", values="cell").to_string())
    margins = base_vs_upstream(trials, QUALITY)
    if len(margins):
        by_epoch = margins[margins["epoch"] <= 12].groupby("epoch")["ahead"]
        print(
            f"\nthe base ahead of the upstream reference on {QUALITY} (epoch: studies where it is ahead / studies, its smallest lead):"
        )
        print("  ".join(f"{e}: {(g > 0).sum()}/{len(g)} {g.min():+.2f}" for e, g in by_epoch))
    print("\nASHA replayed on the recorded curves:")
    print(replay.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "sources": [str(s) for s in args.sources],
                    "trials": len(order),
                    "max_epochs": max_t,
                    "no_pruning_winner": best_all,
                    "seed_sd": seed_sd,
                    "test_scores": scores.reset_index().to_dict(orient="records"),
                    "correlations": corr.to_dict(orient="records"),
                    "asha_replay": replay.to_dict(orient="records"),
                    "base_vs_upstream": margins.to_dict(orient="records"),
                },
                indent=1,
                default=float,
            )
        )
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
