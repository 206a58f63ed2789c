"""Curriculum schedules: which sequence length L each training step uses across an epoch.

Sequences are the first L months of each patient. A schedule is one string so that it can be a categorical
choice in a search:

    ladder:10-20-30-40-50-60   every epoch, one pass over the training patients at each length, in order
                               (the upstream Health Gym default; a descending list is the control)
    staged:3:20-40-60          3 epochs at 20, then 3 at 40, then 60 for the rest; each epoch makes as many
                               passes as lengths are listed, all at the current length
    full  | full:60 | full:60:6  only one length (default: all months), 6 passes per epoch by default
    random:10-20-30-40-50-60   as many passes as lengths listed; each batch takes a random listed length

An epoch of any built-in schedule written with six lengths (and of `full`) therefore makes six passes, the
upstream ladder's count, so epochs cost the same number of generator steps across schedules.

Batches: every pass shuffles the training patients and cuts them into batches of `batch_size`; a smaller final
batch is used (upstream's `drop_last` silently trained nothing when a length had fewer patients than a batch).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from healthgym_core.errors import ConfigError

UPSTREAM_SCHEDULE = "ladder:10-20-30-40-50-60"
FULL_PASSES = 6
KINDS = ("ladder", "staged", "full", "random")


@dataclass(frozen=True)
class Step:
    length: int
    batch: np.ndarray  # positions into the training patients


@dataclass(frozen=True)
class Schedule:
    kind: str
    lengths: tuple[int, ...]  # () for `full` without a length: all months
    epochs_per_stage: int = 1
    passes: int = 1

    @classmethod
    def parse(cls, text: str) -> Schedule:
        text = str(text).strip()
        kind, _, rest = text.partition(":")
        if kind not in KINDS:
            raise ConfigError(
                f"unknown schedule {text!r}: the kind must be one of {', '.join(KINDS)} (e.g. {UPSTREAM_SCHEDULE})"
            )

        def lengths_of(part: str) -> tuple[int, ...]:
            try:
                out = tuple(int(p) for p in part.split("-"))
            except ValueError:
                raise ConfigError(
                    f"schedule {text!r}: lengths must be whole numbers joined by '-', got {part!r}"
                ) from None
            if not out or any(v < 1 for v in out):
                raise ConfigError(f"schedule {text!r}: lengths must be at least 1")
            return out

        if kind == "full":
            parts = rest.split(":") if rest else []
            if len(parts) > 2:
                raise ConfigError(f"schedule {text!r}: write full, full:L or full:L:PASSES")
            lengths = lengths_of(parts[0]) if parts and parts[0] else ()
            if len(lengths) > 1:
                raise ConfigError(f"schedule {text!r}: full takes one length")
            passes = FULL_PASSES
            if len(parts) == 2:
                try:
                    passes = int(parts[1])
                except ValueError:
                    raise ConfigError(f"schedule {text!r}: passes must be a whole number") from None
                if passes < 1:
                    raise ConfigError(f"schedule {text!r}: passes must be at least 1")
            return cls("full", lengths, 1, passes)
        if kind == "staged":
            k, _, lens = rest.partition(":")
            try:
                per_stage = int(k)
            except ValueError:
                raise ConfigError(f"schedule {text!r}: write staged:EPOCHS_PER_STAGE:L1-L2-...") from None
            if per_stage < 1:
                raise ConfigError(f"schedule {text!r}: epochs per stage must be at least 1")
            lengths = lengths_of(lens)
            return cls("staged", lengths, per_stage, len(lengths))
        if not rest:
            raise ConfigError(f"schedule {text!r}: list the lengths, e.g. {kind}:10-20-30-40-50-60")
        lengths = lengths_of(rest)
        return cls(kind, lengths, 1, len(lengths))

    def __str__(self) -> str:
        lens = "-".join(str(v) for v in self.lengths)
        if self.kind == "full":
            return "full" + (f":{lens}" if lens else "") + (f":{self.passes}" if self.passes != FULL_PASSES else "")
        if self.kind == "staged":
            return f"staged:{self.epochs_per_stage}:{lens}"
        return f"{self.kind}:{lens}"

    @property
    def max_length(self) -> int | None:
        return max(self.lengths) if self.lengths else None

    def check(self, n_months: int) -> None:
        """Refuse lengths the data does not have."""
        too_long = [v for v in self.lengths if v > n_months]
        if too_long:
            raise ConfigError(
                f"schedule {str(self)!r}: length {too_long[0]} is longer than the data's {n_months} months"
            )

    def lengths_in_epoch(self, epoch: int, n_months: int) -> tuple[int, ...]:
        """The lengths used by the passes of `epoch` (0-based). For `random`, the list drawn from."""
        if self.kind == "full":
            return ((self.lengths[0] if self.lengths else n_months),) * self.passes
        if self.kind == "staged":
            stage = min(epoch // self.epochs_per_stage, len(self.lengths) - 1)
            return (self.lengths[stage],) * self.passes
        return self.lengths

    def epoch_plan(
        self, epoch: int, n_train: int, batch_size: int, rng: np.random.Generator, n_months: int
    ) -> list[Step]:
        """The steps of one epoch: a length and a batch of training-patient positions each."""
        if batch_size < 1:
            raise ConfigError(f"batch size must be at least 1, got {batch_size}")
        steps: list[Step] = []
        for length in self.lengths_in_epoch(epoch, n_months):
            perm = rng.permutation(n_train)
            batches = [perm[i : i + batch_size] for i in range(0, n_train, batch_size)]
            if self.kind == "random":
                drawn = rng.choice(np.asarray(self.lengths), size=len(batches))
                steps.extend(Step(int(v), b) for v, b in zip(drawn, batches))
            else:
                steps.extend(Step(length, b) for b in batches)
        return steps
