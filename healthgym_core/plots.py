"""Figures: upstream-style learning dynamics and real-vs-synthetic marginals."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib import colormaps  # noqa: E402
from scipy.stats import gaussian_kde  # noqa: E402

from healthgym_core.atomic import atomic_write  # noqa: E402
from healthgym_core.data.schema import Schema  # noqa: E402


def _save(fig: plt.Figure, out: str | Path) -> Path:
    path = atomic_write(
        out, lambda p: fig.savefig(p, format=Path(out).suffix.lstrip(".") or "png", dpi=110, bbox_inches="tight")
    )
    plt.close(fig)
    return path


def learning_dynamics_axes(ax: plt.Axes, steps: pd.DataFrame, title: str = "") -> None:
    """D_loss (solid) and G_loss (dashed) step by step, the saw-tooth of the curriculum visible; each segment and
    point coloured by its length L (D: red at the shortest to blue at the longest; G: grey to brown)."""
    lengths = sorted(steps["L"].unique())
    span = max(len(lengths) - 1, 1)
    frac = {L: i / span for i, L in enumerate(lengths)}
    x = np.arange(len(steps))
    L = steps["L"].to_numpy()
    d_cmap, g_cmap = colormaps["coolwarm_r"], colormaps["copper"]
    for col, style, color_of in (
        ("D_loss", "-", lambda f: d_cmap(f)),
        ("G_loss", "--", lambda f: g_cmap(0.25 + 0.75 * f)),
    ):
        y = steps[col].to_numpy()
        for i in range(len(x) - 1):  # each segment takes the colour of the step it leads to
            ax.plot(x[i : i + 2], y[i : i + 2], style, lw=0.9, color=color_of(frac[L[i + 1]]))
        for length in lengths:
            m = L == length
            ax.plot(x[m], y[m], "o", ms=2.5, color=color_of(frac[length]), label=f"{col} L={length}")
    ax.axhline(0, color="k", lw=0.5)
    first, last = int(steps["epoch"].min()), int(steps["epoch"].max())
    ax.set_xlabel(f"training step (epochs {first}-{last})")
    ax.set_ylabel("loss")
    ax.set_title(title or f"Learning dynamics, epochs {first}-{last}")
    ax.legend(fontsize=6, ncol=6, loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False)


def learning_dynamics(
    steps: pd.DataFrame, out: str | Path, windows: list[tuple[int, int]] | None = None, title: str = ""
) -> Path:
    """One panel per epoch window (default: the first and last 20 epochs), in the style of the upstream blog."""
    last = int(steps["epoch"].max())
    if windows is None:
        windows = [(1, min(20, last))] + ([(max(1, last - 19), last)] if last > 20 else [])
    fig, axes = plt.subplots(1, len(windows), figsize=(7 * len(windows), 4), squeeze=False)
    for ax, (a, b) in zip(axes[0], windows):
        part = steps[(steps["epoch"] >= a) & (steps["epoch"] <= b)]
        if len(part):
            learning_dynamics_axes(ax, part.reset_index(drop=True), f"{title} epochs {a}-{b}".strip())
    return _save(fig, out)


def real_vs_synthetic(
    schema: Schema,
    real: tuple[np.ndarray, np.ndarray],
    fake: tuple[np.ndarray, np.ndarray],
    out: str | Path,
    title: str = "Held-out real vs synthetic",
) -> Path:
    """Densities for reals (log10 scale), side-by-side bars for categoricals, pooled over patient-months."""
    n = len(schema.variables)
    cols = 4
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    (r_reals, r_codes), (f_reals, f_codes) = real, fake
    for j, v in enumerate(schema.reals):
        ax = axes.ravel()[j]
        a = np.log10(r_reals[:, :, j].ravel() + 1e-3)
        b = np.log10(f_reals[:, :, j].ravel() + 1e-3)
        grid = np.linspace(min(a.min(), b.min()), max(a.max(), b.max()), 200)
        for vals, label, color in ((a, "real", "tab:blue"), (b, "synthetic", "tab:orange")):
            if np.ptp(vals) > 0:
                sub = vals if vals.size <= 20000 else np.random.default_rng(0).choice(vals, 20000, replace=False)
                dens = gaussian_kde(sub)(grid)
                ax.fill_between(grid, dens, alpha=0.35, color=color, label=label)
            else:
                ax.axvline(vals[0], color=color, label=label)
        real_peak = gaussian_kde(a)(grid).max() if np.ptp(a) > 0 else 1.0
        ax.set_ylim(0, 1.6 * real_peak)  # a collapsed synthetic spike must not hide the real density
        ax.set_title(f"{v.name} (log10)")
        ax.legend(fontsize=7)
    for j, v in enumerate(schema.categoricals):
        ax = axes.ravel()[schema.n_real + j]
        p = np.bincount(r_codes[:, :, j].ravel(), minlength=v.num_classes) / r_codes[:, :, j].size
        q = np.bincount(f_codes[:, :, j].ravel(), minlength=v.num_classes) / f_codes[:, :, j].size
        x = np.arange(v.num_classes)
        ax.bar(x - 0.2, p, 0.4, label="real", color="tab:blue")
        ax.bar(x + 0.2, q, 0.4, label="synthetic", color="tab:orange")
        ax.set_xticks(x, [s[:12] for s in v.labels], rotation=35, ha="right", fontsize=7)
        ax.set_ylim(0, 1)
        ax.set_title(v.name)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, out)
