"""Errors that end a command with one clear line and exit code 2."""

from __future__ import annotations

SHOWN = 80  # characters of an offending value an error line quotes


def shown(value: object) -> str:
    """An offending value as an error line quotes it: its repr, cut to SHOWN characters (a 1 MB cell is not echoed)."""
    text = repr(value)
    return text if len(text) <= SHOWN else f"{text[: SHOWN - 3]}... ({len(text):,} characters)"


class HealthGymError(Exception):
    """Base class: a user-facing problem, reported as one line (exit code 2 from the CLIs)."""

    exit_code = 2


class DataError(HealthGymError):
    """A cohort file or schema file is malformed. The message names the file, column, value and row."""

    def __init__(
        self,
        file: str,
        problem: str,
        *,
        column: str | None = None,
        value: object = None,
        row: int | None = None,
    ) -> None:
        self.file, self.problem, self.column, self.value, self.row = file, problem, column, value, row
        parts = [str(file)]
        if column is not None:
            parts.append(f"column {column!r}")
        if row is not None:
            parts.append(f"row {row}")
        message = ": ".join(parts) + ": " + problem
        if value is not None:
            message += f" (value {shown(value)})"
        super().__init__(" ".join(message.split()))


class ConfigError(HealthGymError):
    """A training or study option is invalid."""


class CheckpointError(HealthGymError):
    """A checkpoint is missing, truncated or from an incompatible version."""


class NonFiniteLossError(HealthGymError):
    """A loss went NaN or infinite; raised before any optimiser step applies it."""

    def __init__(self, epoch: int, step: int, length: int, values: dict[str, float]) -> None:
        self.epoch, self.step, self.length, self.values = epoch, step, length, dict(values)
        shown = ", ".join(f"{k}={v:.4g}" for k, v in values.items())
        super().__init__(f"non-finite loss at epoch {epoch}, step {step} (L={length}): {shown}")
