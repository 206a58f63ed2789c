"""Variable specs, built-in ART-for-HIV schemas, user TOML schemas, and the one-hot feature layout.

The layout follows Health Gym v1: real variables first (one column each), then one one-hot block per binary or
categorical variable in schema order. Embedding sizes follow upstream: real 1, binary 2, categorical 4.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from healthgym_core.errors import DataError
from healthgym_core.tomlfile import read_toml

Kind = Literal["real", "bin", "cat"]
EMBEDDING_SIZE = {"real": 1, "bin": 2, "cat": 4}
KIND_ALIASES = {"real": "real", "bin": "bin", "binary": "bin", "cat": "cat", "categorical": "cat"}


@dataclass(frozen=True)
class Variable:
    """One modelled variable. `codes` are the raw values in the file; internal codes are their positions."""

    name: str
    kind: Kind
    column: str
    codes: tuple[int, ...] = ()
    labels: tuple[str, ...] = ()
    embedding_size: int = 1

    @property
    def num_classes(self) -> int:
        return 1 if self.kind == "real" else len(self.codes)

    @property
    def width(self) -> int:
        return self.num_classes

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "kind": self.kind,
            "column": self.column,
            "codes": list(self.codes),
            "labels": list(self.labels),
            "embedding_size": self.embedding_size,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Variable:
        return cls(
            name=d["name"],
            kind=d["kind"],
            column=d["column"],
            codes=tuple(int(c) for c in d.get("codes", ())),
            labels=tuple(str(s) for s in d.get("labels", ())),
            embedding_size=int(d["embedding_size"]),
        )


@dataclass(frozen=True)
class LayoutRow:
    """One row of the upstream `dtype` table."""

    index: int
    name: str
    kind: Kind
    num_classes: int
    embedding_size: int
    start: int
    end: int


@dataclass(frozen=True)
class Schema:
    """What a cohort file holds and how it maps to the model's one-hot layout."""

    name: str
    variables: tuple[Variable, ...]
    patient_column: str = "PatientID"
    time_column: str = "Timestep"
    time_aliases: tuple[str, ...] = ()
    ignored_columns: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        kinds = [v.kind for v in self.variables]
        n_real = kinds.count("real")
        if kinds[:n_real] != ["real"] * n_real:
            raise ValueError(f"schema {self.name!r}: real variables must come first")
        names = [v.name for v in self.variables]
        if len(set(names)) != len(names):
            raise ValueError(f"schema {self.name!r}: duplicate variable names")

    # -- layout ---------------------------------------------------------------------------------------------
    @property
    def reals(self) -> tuple[Variable, ...]:
        return tuple(v for v in self.variables if v.kind == "real")

    @property
    def categoricals(self) -> tuple[Variable, ...]:
        """Binary and categorical variables, in layout order."""
        return tuple(v for v in self.variables if v.kind != "real")

    @property
    def n_real(self) -> int:
        return len(self.reals)

    def layout(self) -> list[LayoutRow]:
        rows, start = [], 0
        for i, v in enumerate(self.variables):
            rows.append(LayoutRow(i, v.name, v.kind, v.num_classes, v.embedding_size, start, start + v.width))
            start += v.width
        return rows

    @property
    def width(self) -> int:
        return sum(v.width for v in self.variables)

    @property
    def embedding_width(self) -> int:
        return sum(v.embedding_size for v in self.variables)

    def blocks(self) -> list[tuple[int, int]]:
        """[start, end) spans of the binary/categorical one-hot blocks."""
        return [(r.start, r.end) for r in self.layout() if r.kind != "real"]

    @property
    def columns(self) -> list[str]:
        return [v.column for v in self.variables]

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "variables": [v.to_dict() for v in self.variables],
            "patient_column": self.patient_column,
            "time_column": self.time_column,
            "time_aliases": list(self.time_aliases),
            "ignored_columns": list(self.ignored_columns),
        }

    @classmethod
    def from_dict(cls, d: dict) -> Schema:
        return cls(
            name=d["name"],
            variables=tuple(Variable.from_dict(v) for v in d["variables"]),
            patient_column=d["patient_column"],
            time_column=d["time_column"],
            time_aliases=tuple(d.get("time_aliases", ())),
            ignored_columns=tuple(d.get("ignored_columns", ())),
        )

    def describe_layout(self) -> str:
        head = f"{'index':>5} {'name':<16} {'type':<5} {'classes':>7} {'emb':>4} {'start':>5} {'end':>4}"
        lines = [head]
        for r in self.layout():
            lines.append(
                f"{r.index:>5} {r.name:<16} {r.kind:<5} {r.num_classes:>7} {r.embedding_size:>4} {r.start:>5} {r.end:>4}"
            )
        return "\n".join(lines)


def _real(name: str, column: str) -> Variable:
    return Variable(name, "real", column, embedding_size=1)


def _bin(name: str, column: str, codes: tuple[int, ...], labels: tuple[str, ...]) -> Variable:
    return Variable(name, "bin", column, codes, labels, EMBEDDING_SIZE["bin"])


def _cat(name: str, column: str, codes: tuple[int, ...], labels: tuple[str, ...]) -> Variable:
    return Variable(name, "cat", column, codes, labels, EMBEDDING_SIZE["cat"])


# The ART-for-HIV variables with their published raw codes (v2.0 release; the v1 release uses the same codes).
ART4HIV = {
    "VL": _real("VL", "VL"),
    "CD4": _real("CD4", "CD4"),
    "Rel_CD4": _real("Rel_CD4", "Rel CD4"),
    "Gender": _bin("Gender", "Gender", (1, 2), ("Male", "Female")),
    "Ethnic": _cat("Ethnic", "Ethnic", (1, 2, 3, 4), ("Asian", "African", "Caucasian", "Other")),
    "Base_Drug_Combo": _cat(
        "Base_Drug_Combo",
        "Base Drug Combo",
        (0, 1, 2, 3, 4, 5),
        ("FTC + TDF", "3TC + ABC", "FTC + TAF", "DRV + FTC + TDF", "FTC + RTVB + TDF", "Other"),
    ),
    "Comp_INI": _cat("Comp_INI", "Comp. INI", (0, 1, 2, 3), ("DTG", "RAL", "EVG", "Not Applied")),
    "Comp_NNRTI": _cat("Comp_NNRTI", "Comp. NNRTI", (0, 1, 2, 3), ("NVP", "EFV", "RPV", "Not Applied")),
    "Extra_PI": _cat("Extra_PI", "Extra PI", (0, 1, 2, 3, 4, 5), ("DRV", "RTVB", "LPV", "RTV", "ATV", "Not Applied")),
    "Extra_pk_En": _bin("Extra_pk_En", "Extra pk-En", (0, 1), ("False", "True")),
    "VL_M": _bin("VL_M", "VL (M)", (0, 1), ("False", "True")),
    "CD4_M": _bin("CD4_M", "CD4 (M)", (0, 1), ("False", "True")),
    "Drug_M": _bin("Drug_M", "Drug (M)", (0, 1), ("False", "True")),
}

# Column order of the published v2.0 CSV.
ART4HIV_COLUMNS = [
    "VL",
    "CD4",
    "Rel CD4",
    "Gender",
    "Ethnic",
    "Base Drug Combo",
    "Comp. INI",
    "Comp. NNRTI",
    "Extra PI",
    "Extra pk-En",
    "VL (M)",
    "CD4 (M)",
    "Drug (M)",
    "PatientID",
    "Timestep",
]


def _art_schema(name: str, names: list[str]) -> Schema:
    return Schema(
        name=name,
        variables=tuple(ART4HIV[n] for n in names),
        patient_column="PatientID",
        time_column="Timestep",
        time_aliases=("Timepoints",),
        ignored_columns=("Unnamed: 0",),
    )


DEMO7 = ["VL", "CD4", "Gender", "Ethnic", "Base_Drug_Combo", "Extra_PI", "Extra_pk_En"]
FULL10 = [
    "VL",
    "CD4",
    "Rel_CD4",
    "Gender",
    "Ethnic",
    "Base_Drug_Combo",
    "Comp_INI",
    "Comp_NNRTI",
    "Extra_PI",
    "Extra_pk_En",
]
FULL13 = FULL10 + ["VL_M", "CD4_M", "Drug_M"]

BUILTIN_SCHEMAS: dict[str, Schema] = {
    "demo7": _art_schema("demo7", DEMO7),
    "full10": _art_schema("full10", FULL10),
    "full13": _art_schema("full13", FULL13),
}


def get_schema(name_or_path: str | Path) -> Schema:
    """A built-in schema by name (demo7, full10, full13) or a user schema from a TOML file."""
    key = str(name_or_path)
    if key in BUILTIN_SCHEMAS:
        return BUILTIN_SCHEMAS[key]
    path = Path(key)
    if path.suffix.lower() == ".toml" or path.exists():
        return load_schema_toml(path)
    raise DataError(key, f"unknown schema; use one of {', '.join(BUILTIN_SCHEMAS)} or a .toml schema file")


def load_schema_toml(path: str | Path) -> Schema:
    """Read a user schema. Real variables may be listed anywhere; they are moved first as the model needs.

    Format::

        name = "my_cohort"
        patient_column = "PatientID"
        time_column = "Month"
        [[variables]]
        name = "VL"            # column defaults to name
        kind = "real"
        [[variables]]
        name = "Sex"
        kind = "binary"        # or "categorical"
        codes = [1, 2]
        labels = ["Male", "Female"]   # optional, defaults to the codes as text
    """
    path = Path(path)
    file = str(path)
    raw = read_toml(path, "schema file")
    known_top = {"name", "patient_column", "time_column", "variables", "ignored_columns"}
    for key in raw:
        if key not in known_top:
            raise DataError(file, f"unknown key {key!r} (expected one of {', '.join(sorted(known_top))})")
    items = raw.get("variables")
    if not isinstance(items, list) or not items:
        raise DataError(file, "schema lists no [[variables]]")
    variables: list[Variable] = []
    for i, item in enumerate(items):
        where = f"variable {i + 1}"
        if not isinstance(item, dict) or "name" not in item:
            raise DataError(file, f"{where} has no name")
        name = item["name"]
        if not isinstance(name, str) or not name.strip():
            raise DataError(file, f"{where}: name must be non-empty text", value=name)
        where = f"variable {name!r}"
        unknown = set(item) - {"name", "kind", "column", "codes", "labels"}
        if unknown:
            raise DataError(file, f"{where}: unknown key {sorted(unknown)[0]!r}")
        kind = KIND_ALIASES.get(str(item.get("kind", "")).lower())
        if kind is None:
            raise DataError(file, f"{where}: kind must be real, binary or categorical", value=item.get("kind"))
        column = item.get("column", name)
        if not isinstance(column, str) or not column:
            raise DataError(file, f"{where}: column must be non-empty text", value=column)
        if kind == "real":
            if "codes" in item or "labels" in item:
                raise DataError(file, f"{where}: a real variable takes no codes or labels")
            variables.append(_real(name, column))
            continue
        codes = item.get("codes")
        if (
            not isinstance(codes, list)
            or not codes
            or not all(isinstance(c, int) and not isinstance(c, bool) for c in codes)
        ):
            raise DataError(file, f"{where}: codes must be a non-empty list of integers", value=codes)
        if len(set(codes)) != len(codes):
            raise DataError(file, f"{where}: codes repeat", value=codes)
        if kind == "bin" and len(codes) != 2:
            raise DataError(file, f"{where}: a binary variable needs exactly 2 codes", value=codes)
        if kind == "cat" and len(codes) < 2:
            raise DataError(file, f"{where}: a categorical variable needs at least 2 codes", value=codes)
        labels = item.get("labels", [str(c) for c in codes])
        if not isinstance(labels, list) or len(labels) != len(codes):
            raise DataError(file, f"{where}: labels must be a list as long as codes", value=labels)
        maker = _bin if kind == "bin" else _cat
        variables.append(maker(name, column, tuple(codes), tuple(str(s) for s in labels)))
    names = [v.name for v in variables]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise DataError(file, f"variable {dup!r} is listed twice")
    cols = [v.column for v in variables]
    dup = next((c for c in cols if cols.count(c) > 1), None)
    if dup is not None:
        raise DataError(file, f"column {dup!r} is used by two variables")
    if not any(v.kind == "real" for v in variables) and not any(v.kind != "real" for v in variables):
        raise DataError(file, "schema has no variables")
    patient_column = raw.get("patient_column", "PatientID")
    time_column = raw.get("time_column", "Timestep")
    for key, val in (("patient_column", patient_column), ("time_column", time_column)):
        if not isinstance(val, str) or not val:
            raise DataError(file, f"{key} must be non-empty text", value=val)
        if val in cols:
            raise DataError(file, f"{key} {val!r} is also a variable's column")
    if patient_column == time_column:
        raise DataError(file, "patient_column and time_column are the same column", value=patient_column)
    ignored = raw.get("ignored_columns", [])
    if not isinstance(ignored, list) or not all(isinstance(c, str) for c in ignored):
        raise DataError(file, "ignored_columns must be a list of column names", value=ignored)
    name = raw.get("name", path.stem)
    ordered = [v for v in variables if v.kind == "real"] + [v for v in variables if v.kind != "real"]
    return Schema(str(name), tuple(ordered), patient_column, time_column, (), tuple(ignored))
