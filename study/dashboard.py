"""python study/dashboard.py EXPERIMENT [--port N]: a live dashboard of a study, in the browser.

Serves on 127.0.0.1 (a free port unless --port) and prints its address, which carries a token as Jupyter's does;
requests without it get 401. The page follows the experiment folder while the study runs (new trials, epochs,
pruning and PBT decisions appear without a reload) and works the same on a finished study or a copy of its folder.
On a cluster, run it on the head node and forward its port: `ssh -L 8899:127.0.0.1:8899 HEAD` with `--port 8899`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable without installing it
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from healthgym_core import cli  # noqa: E402
from healthgym_core.errors import ConfigError  # noqa: E402

TOKEN_ENV = "HEALTHGYM_DASHBOARD_TOKEN"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python study/dashboard.py", description=__doc__.split("\n\n")[0])
    p.add_argument("experiment", help="the experiment folder (with study.json), e.g. experiments/curriculum")
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    p.add_argument(
        "--token",
        default=None,
        help=f"the access token, at least 16 characters (default: ${TOKEN_ENV} if set, else a random one, printed "
        "in the address); a token on the command line shows in `ps`, the variable does not",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be 0-65535, got {args.port}")
    from study.live.server import serve

    folder = Path(args.experiment).expanduser()
    if not folder.is_dir():
        raise ConfigError(f"{folder}: no such folder")
    try:
        server, address = serve(folder, args.port, token=args.token or os.environ.get(TOKEN_ENV) or None)
    except OSError as e:
        raise ConfigError(f"--port {args.port}: cannot listen on 127.0.0.1 ({e.strerror or e})") from None
    print(f"study dashboard: {address}", flush=True)
    print("(Ctrl-C to stop)", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
