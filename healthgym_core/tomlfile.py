"""Read a TOML file into a dict, or fail with one line naming the file (not a traceback)."""

from __future__ import annotations

import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from healthgym_core.errors import DataError


def read_toml(path: Path, what: str) -> dict:
    """The TOML table in `path`; `what` names the kind of file in the error ("schema file", "space file", ...)."""
    file = str(path)
    if not path.is_file():
        raise DataError(file, f"{what} not found")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise DataError(file, f"{what} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as e:
        raise DataError(file, f"not valid TOML: {e}") from None
    except RecursionError:  # tomllib recurses once per nesting level
        raise DataError(file, "not valid TOML: nested too deeply") from None
