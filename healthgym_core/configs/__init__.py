"""Named training configurations: TOML files of training options, shipped with the package.

A configuration file holds an `about` line (where it comes from), a `scored` line (what it scored, measured) and an
`[options]` table whose keys are `TrainConfig` fields, checked by the same rules. Options it leaves out keep their
defaults, which are Health Gym v1's (`upstream`). Use one by name (`upstream`, `cpu_base`, `stronger_critic`) or by
path: `python -m healthgym_core.train --config NAME|FILE`, `python study/run.py --base NAME|FILE`.

    python -m healthgym_core.configs            # every named configuration with its options
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from healthgym_core.config import FIELDS, TrainConfig, defaults
from healthgym_core.errors import ConfigError, DataError
from healthgym_core.tomlfile import read_toml

HERE = Path(__file__).resolve().parent
NAMED = tuple(sorted(p.stem for p in HERE.glob("*.toml")))
# What a configuration may set: the training options. Sizes and execution choices belong to the command line (or a
# study's preset); the seed to each run.
SIZES = ("batch_size", "hidden", "noise_dim", "eval_samples")
OPTIONS = tuple(k for k, f in FIELDS.items() if f.metadata["group"] == "training" and k not in (*SIZES, "seed"))


@dataclass(frozen=True)
class NamedConfig:
    name: str
    path: str
    about: str
    scored: str
    options: dict  # only what the file sets; `full()` adds the defaults

    def full(self) -> dict:
        """Every training option (OPTIONS): the defaults (upstream's), then the file's."""
        return {**upstream_options(), **self.options}

    def describe(self) -> str:
        changes = ", ".join(f"{k}={v}" for k, v in self.options.items()) or "no changes"
        return f"{self.name} ({changes})"


def upstream_options() -> dict:
    """The upstream Health Gym v1 configuration: every training option at its default. The one definition."""
    return {k: v for k, v in defaults().items() if k in OPTIONS}


def config_path(name_or_path: str, flag: str = "--config") -> Path:
    if name_or_path in NAMED:
        return HERE / f"{name_or_path}.toml"
    path = Path(name_or_path).expanduser()
    if path.suffix.lower() != ".toml":
        raise ConfigError(f"{flag} {name_or_path!r}: unknown configuration; one of {', '.join(NAMED)} or a .toml file")
    return path


def load_config(name_or_path: str, flag: str = "--config") -> NamedConfig:
    """A named configuration or a configuration file, every option checked by TrainConfig's own rules."""
    path = config_path(name_or_path, flag)
    file = str(path)
    raw = read_toml(path, "configuration file")
    unknown = sorted(set(raw) - {"about", "scored", "options"})
    if unknown:
        raise DataError(file, f"unknown key {unknown[0]!r} (expected about, scored, [options])")
    for key in ("about", "scored"):
        if not isinstance(raw.get(key, ""), str):
            raise DataError(file, f"{key} must be a string")
    options = raw.get("options", {})
    if not isinstance(options, dict):
        raise DataError(file, "[options] must be a table of training options")
    names = {f.name for f in fields(TrainConfig)}
    for key, value in options.items():
        if key not in names:
            raise DataError(file, f"[options]: {key!r} is not a training option")
        if key not in OPTIONS:
            raise DataError(
                file, f"[options]: {key!r} is a size, seed or execution choice; give it on the command line"
            )
        kind = {"int": int, "float": float, "str": str, "bool": bool}.get(FIELDS[key].type, object)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            options[key] = value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise DataError(file, f"[options]: {key} takes a {kind.__name__}", value=value)
    try:
        TrainConfig(**{**defaults(), **options}).validate()
    except ConfigError as e:
        raise DataError(file, f"[options]: {e}") from None
    name = path.stem if path.parent == HERE else file
    return NamedConfig(name, file, raw.get("about", ""), raw.get("scored", ""), dict(options))


def main() -> int:
    for name in NAMED:
        c = load_config(name)
        print(f"{name}: {c.about}\n  scored: {c.scored}\n  options: {c.describe()}\n")
    return 0
