"""Shared command-line plumbing: one-line errors and exit code 2 for bad input, range-checked options, and flags
derived from a dataclass's documented fields."""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from collections.abc import Callable, Iterable, Sequence

from healthgym_core.errors import ConfigError, HealthGymError


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


def number_range(
    minimum: float | None = None, maximum: float | None = None, *, strict: bool = False
) -> type[argparse.Action]:
    """An argparse action refusing a value that is not a finite number within [minimum, maximum] (above `minimum`
    when `strict`) with one ConfigError line, e.g. `--epochs must be at least 1, got 0`. Argparse does not catch
    it, so `run` prints it and exits 2. The one number check of every numeric option."""
    if minimum is None:
        rule = f"at most {maximum:,}"
    elif strict:
        rule = "positive" if minimum == 0 else f"more than {minimum}"
    else:
        rule = "0 or more" if minimum == 0 else f"at least {minimum}"
    if minimum is not None and maximum is not None:
        rule = f"{minimum:,}-{maximum:,}" if not strict else f"{rule} and at most {maximum:,}"

    class NumberRange(argparse.Action):
        def __call__(self, parser, namespace, values, option_string=None):
            bad = not math.isfinite(values)
            bad = bad or (minimum is not None and (values < minimum or (strict and values == minimum)))
            bad = bad or (maximum is not None and values > maximum)
            if bad:
                raise ConfigError(f"{option_string} must be {rule}, got {values}")
            setattr(namespace, self.dest, values)

    return NumberRange


def at_least(minimum: float, *, strict: bool = False, most: float | None = None) -> type[argparse.Action]:
    """`number_range(minimum, most)`: a finite number of at least `minimum` (more than it, `strict`)."""
    return number_range(minimum, most, strict=strict)


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_dataclass_options(
    group: argparse._ActionsContainer, cls: type, names: Iterable[str] | None = None, defaults: dict | None = None
) -> None:
    """One flag per documented field of `cls` (its `metadata["help"]`): the field's type, its default (or
    `defaults[name]`), argparse `choices` from `metadata["choices"]`, and `metadata["check"]` applied at parse time
    (a function value -> error text or None, reported as `name=value: text`, as `validate` reports it) at parse
    time. A bool field is a switch (`--x` / `--no-x`)."""
    wanted = None if names is None else set(names)
    for f in dataclasses.fields(cls):
        if "help" not in f.metadata or (wanted is not None and f.name not in wanted):
            continue
        default = (defaults or {}).get(f.name, f.default)
        if f.type in ("bool", bool):
            # --x / --no-x: a configuration file may have turned it on
            group.add_argument(
                flag(f.name), action=argparse.BooleanOptionalAction, default=default, help=f.metadata["help"]
            )
            continue
        convert = {"int": int, "float": float, "str": str}.get(f.type, f.type)
        choices = f.metadata.get("choices")  # argparse's own check, before any other
        check = None if choices else f.metadata.get("check")
        group.add_argument(
            flag(f.name),
            type=_checked(f.name, convert, check),
            default=default,
            choices=choices,
            help=f.metadata["help"],
        )


def _checked(name: str, convert: Callable, check: Callable | None) -> Callable[[str], object]:
    def parse(text: str) -> object:
        value = convert(text)  # a ValueError is argparse's "invalid int value"
        problem = check(value) if check else None
        if problem:
            raise ConfigError(f"{name}={value!r}: {problem}")
        return value

    parse.__name__ = convert.__name__  # argparse names the type in its own messages
    return parse


def dataclass_from_args(cls: type, args: argparse.Namespace, **overrides):
    """`cls` from the parsed flags that `add_dataclass_options` made (fields without a flag keep their default)."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    return cls(**{**values, **overrides})
