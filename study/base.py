"""The base of a study: the training options every trial shares unless the space searches them.

The preset's named configuration by default (the CPU preset's is `balanced`, the GPU preset's `upstream`).
`--base NAME|FILE` takes a named configuration or a configuration file (`healthgym_core/configs/`), `--base
EXPERIMENT` the best completed trial of an earlier study (by the ranking metric), and `--set KEY=VALUE` fixes single
options on top; sizes (batch, hidden, noise) stay the preset's. Every search evaluates its base point first; when the
base is not upstream, it also runs the upstream configuration as a reference trial (`reference: upstream` in its
config). Imports no Ray.
"""

from __future__ import annotations

import math
from pathlib import Path

from healthgym_core.config import FIELDS, TrainConfig, defaults
from healthgym_core.configs import NAMED, OPTIONS, SIZES, config_path, load_config, upstream_options
from healthgym_core.errors import ConfigError
from healthgym_core.evaluation.distances import EARLIER_RANK_METRIC
from study.experiment import RANK_METRIC, read_leaderboard, read_study_record
from study.leaderboard import completed_by_rank, rank_column

# The options a base carries from one study to the next: a named configuration's (the training options but the seed
# and the sizes).
BASE_OPTIONS = OPTIONS
UPSTREAM_REFERENCE = "upstream"  # the `reference` value of the upstream reference trial


def parse_set(item: str) -> tuple[str, object]:
    """`KEY=VALUE` -> (option, typed value), checked by the option's own rule."""
    key, sep, text = item.partition("=")
    key = key.strip().replace("-", "_")
    if not sep or not key:
        raise ConfigError(f"--set {item!r}: write KEY=VALUE, e.g. --set lr_g=2e-4")
    if key not in BASE_OPTIONS:
        hint = " (a size: use --batch-size, --hidden or --eval-samples)" if key in SIZES else ""
        raise ConfigError(f"--set {item!r}: {key!r} is not a training option{hint}; one of {', '.join(BASE_OPTIONS)}")
    kind = FIELDS[key].type
    text = text.strip()
    try:
        if kind in ("bool", bool):
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError
            value: object = text.lower() in ("true", "1")
        elif kind in ("int", int):
            value = int(text)
        elif kind in ("float", float):
            value = float(text)
        else:
            value = text
    except ValueError:
        raise ConfigError(f"--set {item!r}: {key} takes a {kind} value, got {text!r}") from None
    check = FIELDS[key].metadata.get("check")
    problem = check(value) if check else None
    if problem:
        raise ConfigError(f"--set {item!r}: {key}={value!r}: {problem}")
    return key, value


def base_from_study(folder: str | Path) -> tuple[dict, dict]:
    """(the options of the best completed trial of the study in `folder`, where they came from)."""
    folder = Path(folder).expanduser().resolve()
    if not (folder / "study.json").is_file():
        raise ConfigError(f"--base {folder}: not a study folder (no study.json)")
    record = read_study_record(folder)
    try:
        board = read_leaderboard(folder)
    except ConfigError as e:
        raise ConfigError(f"--base {e}") from None
    done = completed_by_rank(board)
    if not len(done):
        raise ConfigError(
            f"--base {folder}: no trial of that study completed its epochs, so it has no best configuration"
        )
    row = done.iloc[0]
    options = {
        **upstream_options(),
        **{k: v for k, v in record.get("base", {}).get("config", {}).items() if k in BASE_OPTIONS},
    }
    for f in record.get("space", {}).get("factors", []):
        name = f["name"]
        if name in BASE_OPTIONS and name in row:
            v = row[name]
            options[name] = v.item() if hasattr(v, "item") else v
    column = rank_column(board)
    origin = {"study": str(folder), "trial_id": str(row["trial_id"]), column[len("last_") :]: float(row[column])}
    TrainConfig(**{**defaults(), **options}).validate()
    return options, origin


def base_options(base: str) -> tuple[dict, dict]:
    """(options, where they came from) of `--base NAME|FILE|EXPERIMENT`: a named configuration, a configuration
    file, or an earlier study's folder."""
    if base in NAMED or Path(base).suffix.lower() == ".toml":
        named = load_config(base, "--base")
        return named.full(), {"config": named.name, "values": named.options}
    if not Path(base).expanduser().is_dir():
        config_path(base, "--base")  # an unknown name: say which names there are
    return base_from_study(base)


def study_base(base_arg: str | None, sets: list[str] | None, searched: list[str], preset: dict | None = None) -> dict:
    """The study's base record: {"from": where (a configuration, the preset's configuration or an earlier study),
    "set": {...}, "config": options}. `--base` replaces the preset's configuration; --set applies on top of either."""
    if base_arg:
        options, origin = base_options(base_arg)
    else:
        name = (preset or {}).get("base") or UPSTREAM_REFERENCE
        if name == UPSTREAM_REFERENCE:
            options, origin = upstream_options(), UPSTREAM_REFERENCE
        else:
            named = load_config(name)
            options = named.full()
            origin = {"preset": preset["name"], "config": named.name, "values": named.options}
    fixed = dict(parse_set(s) for s in sets or [])
    clash = sorted(set(fixed) & set(searched))
    if clash:
        raise ConfigError(f"--set {clash[0]}: the space searches {clash[0]}; remove it from the space or from --set")
    options.update(fixed)
    TrainConfig(**{**defaults(), **options}).validate()
    return {"from": origin, "set": fixed, "config": options}


def is_reference(config: dict) -> bool:
    """Whether a trial's config (or a leaderboard row) is the upstream reference trial's."""
    return config.get("reference") == UPSTREAM_REFERENCE


def is_upstream(base: dict) -> bool:
    up = upstream_options()
    return all(_same(base["config"].get(k), v) for k, v in up.items())


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-12)
    return a == b


def describe(base: dict) -> str:
    """One line on the base, for the console and the report."""
    src = base["from"]
    if src == UPSTREAM_REFERENCE:
        text = "the upstream Health Gym v1 configuration"
    elif "values" in src:
        named = f"configuration {src['config']}" if "config" in src else "base"
        owner = f"the {src['preset']} preset's {named}" if "preset" in src else f"the {named}"
        text = owner + " (" + ", ".join(f"{k}={v}" for k, v in src["values"].items()) + ")"
    else:
        metric = RANK_METRIC if RANK_METRIC in src else EARLIER_RANK_METRIC
        text = f"the best trial {src['trial_id']} of {src['study']} ({metric} {src.get(metric, float('nan')):.4g})"
    if base["set"]:
        text += ", with " + ", ".join(f"{k}={v}" for k, v in base["set"].items())
    return text
