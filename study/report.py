"""python study/report.py EXPERIMENT [--out FILE] [--figures DIR]: one self-contained HTML report of a finished study.

The report (EXPERIMENT/report.html by default) embeds every figure as a base64 PNG and its CSS and a few lines of
JavaScript inline, so it opens offline and can be mailed as one file. Sections: where the data came from, the
leaderboard, the search as pictures (per-epoch curves, best so far, factors, Optuna importances), whether the
trials' own Wasserstein gaps agree with the comparable ranking metric, the learning dynamics of the best and the upstream
trial, real vs synthetic patients from the best checkpoint, and the final evaluation when one was run. The pieces
live in `study/reporting/`.
"""

from __future__ import annotations

import argparse
import base64
import html
import re
import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable without installing it
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from healthgym_core import cli  # noqa: E402
from healthgym_core.atomic import atomic_write, check_creatable_folder  # noqa: E402
from healthgym_core.errors import ConfigError  # noqa: E402
from study.reporting.html import log  # noqa: E402
from study.reporting.loading import load_experiment  # noqa: E402
from study.reporting.page import render  # noqa: E402


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python study/report.py",
        description="Write one self-contained HTML report (figures embedded) of a study folder.",
    )
    p.add_argument("experiment", help="the experiment folder (the one with study.json, e.g. experiments/curriculum)")
    p.add_argument("--out", default=None, help="the HTML file to write (default: EXPERIMENT/report.html)")
    p.add_argument(
        "--figures",
        default=None,
        metavar="DIR",
        help="also write every figure of the report as DIR/NAME.png, NAME from its description "
        "(for pages such as docs/results.md)",
    )
    return p


FIGURE = re.compile(r'<img class="fig" alt="([^"]*)" src="data:image/png;base64,([^"]*)"')


def save_figures(page: str, folder: Path) -> list[Path]:
    """Every figure embedded in `page` as folder/NAME.png, NAME the figure's alt text as a file name."""
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for alt, data in FIGURE.findall(page):
        name = re.sub(r"[^a-z0-9]+", "_", html.unescape(alt).lower()).strip("_") or "figure"
        path = folder / f"{name}.png"
        n = 2
        while path in written:  # two figures with one description
            path, n = folder / f"{name}_{n}.png", n + 1
        png = base64.b64decode(data)
        atomic_write(path, lambda p, png=png: p.write_bytes(png))
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    folder = Path(args.experiment).expanduser().resolve()
    out = Path(args.out).expanduser() if args.out else folder / "report.html"
    if out.is_dir():
        raise ConfigError(f"--out {out}: a folder, not a file")
    check_creatable_folder(out.parent, "--out")
    if args.figures:  # checked before anything is written
        check_creatable_folder(Path(args.figures).expanduser(), "--figures")
    exp = load_experiment(folder)
    log(f"{len(exp.board)} trials in {folder}")
    page = render(exp)

    atomic_write(out, lambda p: p.write_text(page, encoding="utf-8"))
    log(f"wrote {out} ({len(page) / 1e6:.1f} MB)")
    if args.figures:
        figures = save_figures(page, Path(args.figures).expanduser())
        log(f"wrote {len(figures)} figures to {args.figures}")
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
