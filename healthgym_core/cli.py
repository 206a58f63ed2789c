"""Shared command-line plumbing: one-line errors and exit code 2 for bad input."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from healthgym_core.errors import HealthGymError


def run(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> int:
    """Run a CLI entry point; a HealthGymError becomes `error: <one line>` on stderr and exit code 2."""
    try:
        return int(main(argv) or 0)
    except HealthGymError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
