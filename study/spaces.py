"""Read search spaces (search_spaces/*.toml or a user's file) and turn them into Optuna distributions.

A space file holds a `description` and a list of `[[factor]]` tables. Each factor names a training option
(a TrainConfig field) and is either a choice (`choices = [...]`) or a range (`low`, `high`, optional
`log = true`; whole numbers when both bounds are integers), with a one-line `why`. An optional `[fixed]` table
sets other options for every trial of the space.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import search_spaces
from healthgym_core.config import TrainConfig, defaults
from healthgym_core.errors import ConfigError, DataError
from healthgym_core.tomlfile import read_toml

SPACES_DIR = Path(search_spaces.__file__).parent
BUILTIN = ("curriculum", "critic", "correlation", "full", "baseline", "optimizer", "quirks", "all", "texture")
# What a space may search or fix: every training option but the seed (set per trial) and how it executes.
TUNABLE = {f.name for f in fields(TrainConfig)} - {"device", "kernel", "seed", "tf32", "graphs"}
# What population-based training perturbs by default (`mutable = true/false` on a factor says otherwise).
DEFAULT_MUTABLE = ("n_critic", "gp_weight", "corr_weight", "lr_g", "lr_d")


@dataclass(frozen=True)
class Factor:
    name: str
    why: str
    choices: tuple | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    mutable: bool | None = None  # may population-based training change it mid-run? None: see `is_mutable`

    @property
    def is_mutable(self) -> bool:
        """The space's word, else the settings PBT can change between epochs without rebuilding the networks."""
        return self.mutable if self.mutable is not None else self.name in DEFAULT_MUTABLE

    @property
    def is_int(self) -> bool:
        return self.choices is None and isinstance(self.low, int) and isinstance(self.high, int)

    def contains(self, value: Any) -> bool:
        if self.choices is not None:
            return value in self.choices
        return self.low <= value <= self.high

    def to_dict(self) -> dict:
        """The factor as data (study.json keeps it so): name, why, and choices or low/high/log."""
        out = {"name": self.name, "why": self.why}
        if self.choices is not None:
            out["choices"] = list(self.choices)
        else:
            out.update(low=self.low, high=self.high, log=self.log)
        out["mutable"] = self.is_mutable
        return out

    @classmethod
    def from_dict(cls, d: dict, where: str = "study.json") -> Factor:
        """A factor as `to_dict` wrote it (a study record keeps them so), checked as a space file's are."""
        return factor_from_table(d, 0, where)

    def clamp(self, value: Any) -> Any:
        """A perturbed value put back inside the factor's range (and made whole for an integer factor)."""
        if self.choices is not None:
            return value if value in self.choices else self.choices[0]
        value = min(max(value, self.low), self.high)
        return int(round(value)) if self.is_int else float(value)

    def distribution(self):
        """The factor as an Optuna distribution: the one mapping from a space's declaration to what is sampled (Optuna
        suggests from it, and PBT's Tune domains are made from it)."""
        import optuna.distributions as d

        if self.choices is not None:
            return d.CategoricalDistribution(list(self.choices))
        if self.is_int:
            return d.IntDistribution(int(self.low), int(self.high), log=self.log)
        return d.FloatDistribution(float(self.low), float(self.high), log=self.log)

    def describe(self) -> str:
        if self.choices is not None:
            return f"{self.name} in {{{', '.join(map(str, self.choices))}}}"
        scale = " (log)" if self.log else ""
        return f"{self.name} in [{self.low}, {self.high}]{scale}"


@dataclass(frozen=True)
class SearchSpace:
    name: str
    description: str
    factors: tuple[Factor, ...]
    fixed: dict = field(default_factory=dict)
    path: str = ""

    def optuna_distributions(self) -> dict:
        return {f.name: f.distribution() for f in self.factors}

    def upstream_point(self) -> dict | None:
        """The upstream configuration (every option's default) restricted to this space's factors, or None if it lies
        outside."""
        point = upstream_point([f.name for f in self.factors])
        if not all(f.contains(point[f.name]) for f in self.factors):
            return None
        return point


def upstream_point(names: list[str]) -> dict:
    """Upstream's values of these options: their defaults (healthgym_core/config.py declares upstream once)."""
    up = defaults()
    return {k: up[k] for k in names}


def _bad(path: str, problem: str) -> DataError:
    return DataError(path, problem)


def factor_from_table(item: Any, i: int, file: str) -> Factor:
    """The i-th factor table of a space file (or of a study record's space), checked: a DataError naming `file`."""
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        raise _bad(file, f"factor {i + 1} has no name")
    name = item["name"]
    if name not in TUNABLE:
        raise _bad(file, f"factor {name!r} is not a training option (one of {', '.join(sorted(TUNABLE))})")
    extra = set(item) - {"name", "why", "choices", "low", "high", "log", "mutable"}
    if extra:
        raise _bad(file, f"factor {name!r}: unknown key {sorted(extra)[0]!r}")
    mutable = item.get("mutable")
    if mutable is not None and not isinstance(mutable, bool):
        raise _bad(file, f"factor {name!r}: mutable must be true or false")
    why = item.get("why", "")
    if not isinstance(why, str) or not why.strip():
        raise _bad(file, f"factor {name!r}: give a one-line why")
    if item.get("choices") is not None:
        choices = item["choices"]
        if not isinstance(choices, list) or not choices or item.get("low") is not None or item.get("high") is not None:
            raise _bad(file, f"factor {name!r}: choices must be a non-empty list (and no low/high)")
        return Factor(name, why, choices=tuple(choices), mutable=mutable)
    low, high = item.get("low"), item.get("high")
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (low, high))
    if not numbers or low >= high:
        raise _bad(file, f"factor {name!r}: needs choices, or numbers low < high")
    log = item.get("log", False)
    if not isinstance(log, bool):
        raise _bad(file, f"factor {name!r}: log must be true or false")
    if log and low <= 0:
        raise _bad(file, f"factor {name!r}: a log range needs low > 0")
    return Factor(name, why, low=low, high=high, log=log, mutable=mutable)


def load_space(name_or_path: str) -> SearchSpace:
    """A built-in space by name or a user's space file (.toml)."""
    if name_or_path in BUILTIN:
        path = SPACES_DIR / f"{name_or_path}.toml"
    else:
        path = Path(name_or_path)
        if path.suffix.lower() != ".toml" and not path.exists():
            raise ConfigError(f"unknown space {name_or_path!r}: use one of {', '.join(BUILTIN)} or a .toml space file")
    file = str(path)
    raw = read_toml(path, "space file")
    unknown = set(raw) - {"description", "factor", "fixed"}
    if unknown:
        raise _bad(file, f"unknown key {sorted(unknown)[0]!r} (expected description, [[factor]], [fixed])")
    factors = [factor_from_table(item, i, file) for i, item in enumerate(raw.get("factor", []))]
    names = [f.name for f in factors]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        raise _bad(file, f"factor {dup!r} is listed twice")
    fixed = raw.get("fixed", {})
    if not isinstance(fixed, dict) or set(fixed) - TUNABLE:
        raise _bad(file, f"[fixed] may only set training options, not {sorted(set(fixed) - TUNABLE)}")
    space = SearchSpace(path.stem, str(raw.get("description", "")), tuple(factors), dict(fixed), file)
    _check_values(space, file)
    return space


def _check_values(space: SearchSpace, file: str) -> None:
    """Every choice and bound must make a valid training config (schedules parse, weights >= 0, ...)."""
    base = TrainConfig()
    samples = [dict(space.fixed)]
    for f in space.factors:
        values = f.choices if f.choices is not None else (f.low, f.high)
        samples += [{**space.fixed, f.name: v} for v in values]
    for s in samples:
        try:
            TrainConfig(**{**base.to_dict(), **s}).validate()
        except (ConfigError, TypeError) as e:
            raise _bad(file, f"invalid value in the space: {e}") from None
