"""The search as pictures: per-epoch curves, best so far, factors, importances, gap-vs-ranking-metric agreement,
learning dynamics."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from healthgym_core.evaluation.verdicts import direction
from study.experiment import OPTUNA_FILE, RANK_FLOOR, RANK_METRIC, STEPS_FILE, companion_metric
from study.reporting.html import esc, figure_html, fmt, guarded, note, section, table_html
from study.reporting.loading import Experiment, read_steps
from study.reporting.overview import _describe_trial
from study.reporting.plotting import asha_rungs, is_categorical, log_axis, spans_decades, status_scatter, trial_styles


def curves_figure(exp: Experiment) -> str:
    """The pruning and ranking metrics (or fd_feat) per epoch for every trial; pruned trials dashed, ending where
    ASHA stopped them."""
    metrics = [exp.metric, companion_metric(exp.metric)]
    styles, handles = trial_styles(exp)
    fig, axes = plt.subplots(
        1, len(metrics), figsize=(6.4 * len(metrics) + 2.6, 4.4), squeeze=False, layout="constrained"
    )
    for ax, m in zip(axes[0], metrics):
        ends = []
        for _, row in exp.board.iterrows():
            h, st = exp.histories.get(row["trial_id"], pd.DataFrame()), styles[row["trial_id"]]
            if m not in h or not len(h):
                continue
            ax.plot(
                h["epoch"],
                h[m],
                ls=st.ls,
                color=st.color,
                alpha=st.alpha,
                lw=st.lw,
                marker="." if len(h) < 15 else None,
            )
            ends += list(h[m])
            if row["status"] == "pruned":
                ax.plot(h["epoch"].iloc[-1], h[m].iloc[-1], "x", color=st.color, ms=7, mew=1.6, alpha=0.8)
            elif row["status"] in ("diverged", "error"):
                ax.plot(h["epoch"].iloc[-1], h[m].iloc[-1], "X", color="tab:red", ms=8)
        for r in asha_rungs(exp):
            ax.axvline(r, color="0.75", lw=0.8, ls=":", zorder=0)
        if f"{m}_floor" in exp.board:
            ax.axhline(exp.board[f"{m}_floor"].median(), color="tab:green", lw=1, ls="-.", label="real-vs-real floor")
            ax.legend(loc="upper right", fontsize=8)
        if spans_decades(ends):
            log_axis(ax, "y")
        ax.set_xlabel("epoch")
        ax.set_ylabel(m)
        role = "pruning metric" if m == exp.metric else ("ranking metric" if m == RANK_METRIC else "reported")
        ax.set_title(f"{m} per epoch ({role}, {direction(m)} is better)")
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.legend(handles=handles, loc="outside right upper", fontsize=8, frameon=False)
    rungs = asha_rungs(exp)
    cap = (
        "Every trial's per-epoch report. Dashed, faded lines are trials ASHA stopped; each ends (x) at the epoch it "
        "was stopped." + (f" Dotted verticals: ASHA rungs (epochs {', '.join(map(str, rungs))})." if rungs else "")
    )
    return figure_html(fig, f"{exp.metric} per epoch for every trial", cap)


def best_so_far_figure(exp: Experiment) -> str:
    b = exp.board.sort_values("trial_number").reset_index(drop=True)
    last, best = b[f"last_{RANK_METRIC}"].astype(float), b[f"best_{RANK_METRIC}"].astype(float)
    done = np.where((b["status"] == "completed") & np.isfinite(last), last, np.inf)
    board_best = np.minimum.accumulate(done)
    any_best = np.minimum.accumulate(np.where(np.isfinite(best), best, np.inf))
    b = b.assign(compute=b["g_steps"].astype(float).cumsum() if "g_steps" in b else np.arange(1, len(b) + 1))
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.3), layout="constrained")
    for ax, x, label in (
        (axes[0], "trial_number", "trial number (order Tune started them)"),
        (axes[1], "compute", "cumulative generator steps spent by trials 1..k"),
    ):
        status_scatter(ax, b, x, f"last_{RANK_METRIC}")
        ax.step(
            b[x],
            np.where(np.isfinite(board_best), board_best, np.nan),
            where="post",
            color="tab:blue",
            lw=2,
            label="best completed trial so far (leaderboard)",
        )
        ax.step(
            b[x],
            np.where(np.isfinite(any_best), any_best, np.nan),
            where="post",
            color="tab:purple",
            lw=1.2,
            ls="--",
            label="best at any epoch of any trial so far",
        )
        if RANK_FLOOR in b:
            ax.axhline(b[RANK_FLOOR].median(), color="tab:green", lw=1, ls="-.", label="real-vs-real floor")
        if spans_decades(list(last) + list(best)):
            log_axis(ax, "y")
        ax.set_xlabel(label)
        ax.set_ylabel(f"final {RANK_METRIC}")
    axes[0].xaxis.get_major_locator().set_params(integer=True)
    axes[0].set_title(f"Best {RANK_METRIC} so far, by trial")
    axes[1].set_title(f"Best {RANK_METRIC} so far, by compute")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize=8, frameon=False)
    return figure_html(
        fig,
        f"best {RANK_METRIC} so far",
        f"Points: each trial's final {RANK_METRIC} (hollow: pruned, measured at the "
        "epoch it stopped). Lower is better; the floor is what real patients score against real patients.",
    )


def factors_figure(exp: Experiment) -> str:
    b, y = exp.board, f"last_{RANK_METRIC}"
    if not exp.factors:  # a baseline study: one configuration, its spread over seeds
        b = b.assign(configuration="upstream default")
    factors = exp.factors or ["configuration"]
    n = len(factors)
    cols = min(n, 2)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(7.2 * cols, 0.9 + 3.6 * rows), squeeze=False, layout="constrained")
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    logy = spans_decades(b[y])
    for ax, f in zip(axes.ravel(), factors):
        frame = b[[f, y, "status", "trial_id"]].dropna(subset=[y])
        if is_categorical(b[f]):
            _categorical_panel(ax, frame.assign(**{f: frame[f].astype(str)}), f, y, logy)
        else:
            status_scatter(ax, frame, f, y)
            if f in exp.log_factors() or spans_decades(frame[f], ratio=30):
                log_axis(ax, "x")
            elif pd.api.types.is_integer_dtype(b[f]):
                ax.xaxis.get_major_locator().set_params(integer=True)
            ax.set_xlabel(f)
            ax.set_ylabel(f"final {RANK_METRIC}")
            if logy:
                log_axis(ax, "y")
        ax.set_title(f"{f} vs final {RANK_METRIC}" if exp.factors else f"final {RANK_METRIC} over seeds (no factors)")
    handles, labels = axes.ravel()[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize=8, frameon=False)
    return figure_html(
        fig,
        "factors against the final metric",
        f"Lower is better. Hollow points: pruned trials, whose {RANK_METRIC} is from an earlier epoch; boxes are "
        "drawn over completed trials where a level has at least 3.",
    )


def _categorical_panel(ax: plt.Axes, frame: pd.DataFrame, f: str, y: str, logy: bool) -> None:
    """Levels on the y axis (long schedule strings stay readable), metric on x; jittered points, boxes where n >= 3."""
    levels = list(dict.fromkeys(frame.sort_values(f)[f]))
    pos = {v: i for i, v in enumerate(levels)}
    done = frame[frame["status"] == "completed"]
    boxes = [(pos[v], g[y].to_numpy()) for v, g in done.groupby(f) if len(g) >= 3]
    if boxes:
        ax.boxplot(
            [d for _, d in boxes],
            positions=[p for p, _ in boxes],
            vert=False,
            widths=0.5,
            showfliers=False,
            medianprops=dict(color="tab:blue"),
            boxprops=dict(color="0.5"),
            whiskerprops=dict(color="0.5"),
        )
    jitter = np.random.default_rng(0).uniform(-0.15, 0.15, len(frame))
    status_scatter(ax, frame.assign(_y=[pos[v] for v in frame[f]] + jitter), y, "_y")
    ax.set_yticks(range(len(levels)), levels, fontsize=8)
    ax.set_ylim(-0.6, len(levels) - 0.4)
    ax.invert_yaxis()
    ax.set_xlabel(f"final {RANK_METRIC}")
    ax.set_ylabel(f)
    if logy:
        log_axis(ax, "x")
    ax.grid(axis="x", alpha=0.3)


def importance_html(exp: Experiment) -> str:
    """Optuna's parameter importances: for the objective Optuna saw (the pruning metric) and for the final ranking metric."""
    db = exp.folder / OPTUNA_FILE
    if not exp.factors:
        return note("Parameter importances: the space has no factors.")
    if not db.is_file():
        return note(f"Parameter importances: no {OPTUNA_FILE} in the experiment folder.")
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=exp.name, storage=f"sqlite:///{db}")
    except Exception as e:  # noqa: BLE001 - a damaged or foreign database must not end the report
        return note(
            f"Parameter importances skipped: cannot load the Optuna study {esc(exp.name)} "
            f"({esc(type(e).__name__)}: {esc(e)})."
        )
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE and t.value is not None]
    results, notes = [], []
    results.append(_importances(optuna, complete, lambda t: t.value, f"{exp.metric} as Optuna recorded it", notes))
    seed0 = exp.plan.seed
    done = exp.board[exp.board["status"] == "completed"]
    final = done.set_index("seed")[f"last_{RANK_METRIC}"] if "seed" in done else pd.Series(dtype=float)
    results.append(
        _importances(
            optuna,
            [t for t in complete if seed0 + t.number in final.index],
            lambda t: float(final[seed0 + t.number]),
            f"final {RANK_METRIC}, completed trials",
            notes,
        )
    )
    results = [r for r in results if r]
    text = "".join(note(n) for n in notes)
    if not results:
        return "<h3>Parameter importances</h3>" + text
    fig, axes = plt.subplots(
        1,
        len(results),
        figsize=(5.6 * len(results), 0.9 + 0.45 * max(len(r[1]) for r in results)),
        squeeze=False,
        layout="constrained",
    )
    for ax, (title, imp) in zip(axes[0], results):
        names = list(imp)[::-1]
        ax.barh(names, [imp[k] for k in names], color="tab:blue")
        ax.set_xlim(0, 1.05)
        ax.set_xlabel("importance (sums to 1)")
        ax.set_title(title, fontsize=10)
    values = "; ".join(
        f"{title.splitlines()[0]}: " + ", ".join(f"{k} {v:.2f}" for k, v in imp.items()) for title, imp in results
    )
    cap = (
        f"{esc(values)}. Optuna records the last value each trial reported for the pruning metric (pruned trials: an "
        "earlier epoch's)." + (" With one factor the importance is 1 by construction." if len(exp.factors) == 1 else "")
    )
    return "<h3>Parameter importances</h3>" + figure_html(fig, "Optuna parameter importances", cap) + text


def _importances(optuna, trials: list, target: Callable, title: str, notes: list[str]) -> tuple[str, dict] | None:
    """Importances over `trials` (needs >= 2 and a varying parameter), via an in-memory copy of the study."""
    if len(trials) < 2:
        notes.append(f"Importances for {esc(title)} skipped: {len(trials)} trial(s) to learn from; need at least 2.")
        return None
    varying = {k for t in trials for k in t.params if len({str(u.params.get(k)) for u in trials}) > 1}
    if not varying:
        notes.append(f"Importances for {esc(title)} skipped: the parameters do not vary across these trials.")
        return None
    try:
        copy = optuna.create_study(direction="minimize")
        copy.add_trials(
            [optuna.trial.create_trial(params=t.params, distributions=t.distributions, value=target(t)) for t in trials]
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:  # fANOVA, Optuna's default, needs scikit-learn
                evaluator, how = optuna.importance.FanovaImportanceEvaluator(seed=0), "fANOVA"
            except ImportError:
                evaluator, how = optuna.importance.PedAnovaImportanceEvaluator(), "PED-ANOVA; fANOVA needs scikit-learn"
            imp = optuna.importance.get_param_importances(copy, evaluator=evaluator)
        return f"{title}\n({how})", imp
    except Exception as e:  # noqa: BLE001 - importances are an extra; never end the report for them
        notes.append(f"Importances for {esc(title)} skipped ({esc(type(e).__name__)}: {esc(e)}).")
        return None


def search_html(exp: Experiment) -> str:
    if any(len(h) for h in exp.histories.values()):
        curves = guarded("search curves", lambda: curves_figure(exp))
    else:
        curves = note(
            "No trial folder with a result.json was found next to study.json (remote storage? copy the "
            "trial folders here), so the per-epoch curves are missing.",
            warn=True,
        )
    parts = [
        "<h3>Every trial per epoch</h3>",
        curves,
        "<h3>Best so far</h3>",
        guarded("best so far", lambda: best_so_far_figure(exp)),
        "<h3>Factors against the final metric</h3>",
        guarded("factors", lambda: factors_figure(exp)),
        guarded("parameter importances", lambda: importance_html(exp)),
    ]
    return section("search", "The search", "".join(parts))


def agreement_html(exp: Experiment) -> str:
    """Does the trials' own Wasserstein gap rank them like the comparable ranking metric?"""
    from scipy.stats import spearmanr

    gap, fd = "last_wasserstein_gap", f"last_{RANK_METRIC}"
    frame = exp.board[["trial_id", "status", gap, fd]].replace([np.inf, -np.inf], np.nan).dropna()
    rho, p = math.nan, math.nan
    if len(frame) >= 3:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a constant column: rho is undefined (nan)
            rho, p = spearmanr(frame[gap], frame[fd])
    fig, ax = plt.subplots(figsize=(7.5, 4.8), layout="constrained")
    status_scatter(ax, frame, gap, fd, annotate=len(frame) <= 15)
    if spans_decades(frame[fd]):
        log_axis(ax, "y")
    ax.set_xlabel("final Wasserstein gap (the trial's own critic; lower = closer by its own account)")
    ax.set_ylabel(f"final {RANK_METRIC} (shared feature space; lower is better)")
    shown = (
        f"Spearman rho = {rho:.2f} (p = {p:.2g}, n = {len(frame)})"
        if np.isfinite(rho)
        else f"n = {len(frame)}: too few for a rank correlation"
    )
    ax.set_title(shown)
    ax.legend(fontsize=8, loc="best")
    body = (
        figure_html(fig, f"Wasserstein gap vs {RANK_METRIC} across trials")
        + f'<p class="lead">{agreement_sentence(rho, len(frame))}</p>'
    )
    return section(
        "agreement",
        "Does the trial's own Wasserstein gap agree with the comparable metric?",
        body + per_epoch_agreement(exp),
    )


def agreement_sentence(rho: float, n: int) -> str:
    if not np.isfinite(rho):
        if n >= 3:
            return "One of the two metrics is the same for every trial, so their rank correlation is undefined."
        return (
            f"With {n} trial(s) the question cannot be answered; a study with more trials (at least 3 with "
            "finite metrics) can."
        )
    if rho >= 0.7:
        verdict = (
            "they agree well: a trial the critic says is close is usually close in the shared feature space, "
            f"so ranking or pruning on the gap keeps roughly the trials {RANK_METRIC} would keep"
        )
    elif rho >= 0.3:
        verdict = (
            f"they agree only loosely: the gap orders trials somewhat like {RANK_METRIC}, but pruning on it "
            f"can stop trials {RANK_METRIC} would keep"
        )
    elif rho > -0.3:
        verdict = (
            f"they do not agree: the ordering by the trials' own critics is nearly unrelated to {RANK_METRIC}, so "
            f"pruning on the gap picks trials close to at random with respect to {RANK_METRIC}"
        )
    else:
        verdict = (
            f"they disagree: trials whose critic reports a smaller gap tend to have a worse {RANK_METRIC}, as expected "
            "if weaker critics report smaller gaps"
        )
    small = " With this few trials the estimate is very uncertain." if n < 10 else ""
    return (
        f"Across {n} trials the rank correlation between the final Wasserstein gap and the final {RANK_METRIC} is "
        f"{rho:.2f}: {verdict}.{small} Pruned trials' final values come from the epoch they stopped at; the table "
        "below compares trials at the same epoch, as ASHA does."
    )


def per_epoch_agreement(exp: Experiment) -> str:
    from scipy.stats import spearmanr

    rows = []
    frames = [h.assign(trial_id=t) for t, h in exp.histories.items() if len(h)]
    if not frames:
        return ""
    allh = pd.concat(frames, ignore_index=True)
    if "wasserstein_gap" not in allh or RANK_METRIC not in allh:
        return ""
    for epoch, g in allh.groupby("epoch"):
        g = g[["wasserstein_gap", RANK_METRIC]].replace([np.inf, -np.inf], np.nan).dropna()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rho = spearmanr(g["wasserstein_gap"], g[RANK_METRIC])[0] if len(g) >= 3 else math.nan
        rows.append({"epoch": int(epoch), "trials reporting": len(g), f"Spearman rho (gap vs {RANK_METRIC})": rho})
    table = table_html(pd.DataFrame(rows), sortable=False)
    return (
        "<h3>At the same epoch</h3><p>Rank correlation across the trials that reached each epoch "
        f"(blank: fewer than 3).</p>{table}"
    )


def dynamics_html(exp: Experiment) -> str:
    best, up = exp.best(), exp.upstream()
    trials = []
    if best is not None:
        trials.append(("best trial", best))
    if up is not None and (best is None or up["trial_id"] != best["trial_id"]):
        trials.append(("upstream default", up))
    if not trials:
        return section("dynamics", "Learning dynamics", note("No completed or upstream trial to show."))
    intro = (
        "<p>Per training step, in the upstream blog's style: D_loss solid (red at the shortest length L to blue at "
        "the longest), G_loss dashed. The curriculum makes a saw-tooth; the losses are not a quality metric "
        "(the critic's gap grows with L). Early and late windows of each trial.</p>"
    )
    if best is not None and up is not None and up["trial_id"] == best["trial_id"]:
        intro += note("The best trial is the upstream default configuration, shown once.")
    figs = [
        guarded(f"learning dynamics {what}", lambda what=what, row=row: _dynamics_figure(exp, what, row))
        for what, row in trials
    ]
    return section("dynamics", "Learning dynamics", intro + "".join(figs))


def dynamics_windows(last: int, width: int = 20) -> list[tuple[int, int]]:
    """Early and late windows of up to `width` epochs each (one window when the trial is that short)."""
    if last <= 1:
        return [(1, max(last, 1))]
    w = min(width, math.ceil(last / 2))
    return [(1, w), (last - w + 1, last)]


def _dynamics_figure(exp: Experiment, what: str, row: pd.Series) -> str:
    from healthgym_core.plots import learning_dynamics_axes

    steps = read_steps(row["trial_dir"])
    if not len(steps):
        return note(f"{esc(what)} {_describe_trial(exp, row)}: no {STEPS_FILE} in its folder.")
    windows = dynamics_windows(int(steps["epoch"].max()))
    fig, axes = plt.subplots(
        1, len(windows), figsize=(7.2 * len(windows), 4.2), squeeze=False, sharey=True, layout="constrained"
    )
    for ax, (a, b) in zip(axes[0], windows):
        part = steps[(steps["epoch"] >= a) & (steps["epoch"] <= b)].reset_index(drop=True)
        learning_dynamics_axes(ax, part, f"{what} {row['trial_id']}: epochs {a}-{b}")
        ax.get_legend().remove()
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize=7, frameon=False)
    status = f"{row['status']}, {fmt(row['epochs'])} epochs"
    return f"<h3>{esc(what.capitalize())}: {_describe_trial(exp, row)} ({esc(status)})</h3>" + figure_html(
        fig, f"learning dynamics of the {what}"
    )
