"""Load and strictly validate a longitudinal cohort: the published ART-for-HIV CSV (v2.0 or v1), the simulated
cohort, or a user's CSV/Parquet file with a TOML schema.

Every violation raises one `DataError` line naming the file, column, offending value and the first row where it
occurs. Rows are numbered from 1 over the data rows (row N is line N+1 of a CSV with its header).
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from healthgym_core.data.schema import BUILTIN_SCHEMAS, Schema, get_schema
from healthgym_core.errors import DataError

MAX_PATIENTS = 1_000_000  # a cohort larger than this (60 months: 6 GB of values) is taken for a typo
MAX_MONTHS = 1_200  # a century of monthly records

SIMULATED = "simulated"
ART4HIV = "art4hiv"
DEFAULT_SIMULATED_PATIENTS = 2000


@dataclass
class Cohort:
    """A validated cohort as dense arrays: every patient has the same months 0..T-1.

    reals: [P, T, R] float64 in original units; codes: [P, T, C] int64 internal codes (positions in each
    variable's code list), both in schema order; patient_ids: [P] the file's PatientID values.
    """

    schema: Schema
    source: str
    patient_ids: np.ndarray
    reals: np.ndarray
    codes: np.ndarray
    time_column: str

    @property
    def n_patients(self) -> int:
        return int(self.reals.shape[0])

    @property
    def n_months(self) -> int:
        return int(self.reals.shape[1])

    @property
    def is_simulated(self) -> bool:
        return self.source.lower().startswith("simulated")

    def subset(self, index: np.ndarray) -> Cohort:
        index = np.asarray(index)
        return Cohort(
            self.schema, self.source, self.patient_ids[index], self.reals[index], self.codes[index], self.time_column
        )

    def fingerprint(self) -> str:
        """Identity of the data the model sees (schema variables and values), 16 hex digits of SHA-256."""
        h = hashlib.sha256()
        h.update(repr([v.to_dict() for v in self.schema.variables]).encode())
        for a in (self.patient_ids.astype(np.int64), self.reals.astype(np.float64), self.codes.astype(np.int64)):
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()[:16]

    def to_frame(self) -> pd.DataFrame:
        """Back to the file's own long format: original columns, raw codes, patient and time columns."""
        return frame_from_arrays(self.schema, self.reals, self.codes, self.patient_ids, self.time_column)


def frame_from_arrays(
    schema: Schema,
    reals: np.ndarray,
    codes: np.ndarray,
    patient_ids: np.ndarray | None = None,
    time_column: str | None = None,
) -> pd.DataFrame:
    """Long-format DataFrame (one row per patient-month) from dense arrays in schema order."""
    n, t = reals.shape[0], reals.shape[1]
    if patient_ids is None:
        patient_ids = np.arange(n)
    data: dict[str, np.ndarray] = {}
    for j, v in enumerate(schema.reals):
        data[v.column] = reals[:, :, j].reshape(-1).astype(np.float64)
    for j, v in enumerate(schema.categoricals):
        raw = np.asarray(v.codes, dtype=np.float64)
        data[v.column] = raw[codes[:, :, j].reshape(-1)]
    data[schema.patient_column] = np.repeat(np.asarray(patient_ids, dtype=np.int64), t)
    data[time_column or schema.time_column] = np.tile(np.arange(t, dtype=np.int64), n)
    return pd.DataFrame(data)


# -- reading --------------------------------------------------------------------------------------------------


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV or Parquet file, turning every parse failure into a one-line DataError."""
    path = Path(path)
    file = str(path)
    if not path.exists():
        raise DataError(file, "file not found")
    if path.is_dir():
        raise DataError(file, "is a folder, not a cohort file")
    if path.stat().st_size == 0:
        raise DataError(file, "empty file")
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        try:
            return pd.read_parquet(path)
        except Exception as e:  # pyarrow raises many types
            raise DataError(file, f"not a readable Parquet file ({type(e).__name__})") from None
    with open(path, "rb") as f:
        head = f.read(65536)
    if head.startswith(b"PAR1"):
        raise DataError(file, "looks like a Parquet file; give it a .parquet extension")
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DataError(file, "not UTF-8 text (UTF-16; save it as UTF-8)")
    if b"\x00" in head:
        raise DataError(file, "not a CSV text file (binary content)")
    encoding = "utf-8-sig"
    try:
        head.decode(encoding)
    except UnicodeDecodeError as e:
        if e.start < len(head) - 4:  # a cut multi-byte character at the end of the sample is fine
            raise DataError(file, f"not UTF-8 text (bad byte at offset {e.start})") from None
    try:
        frame = pd.read_csv(path, encoding=encoding, low_memory=False)
    except pd.errors.EmptyDataError:
        raise DataError(file, "empty file (no header)") from None
    except pd.errors.ParserError as e:
        raise DataError(file, "not a well-formed CSV: " + str(e).strip().splitlines()[-1]) from None
    except UnicodeDecodeError as e:
        raise DataError(file, f"not UTF-8 text (bad byte at offset {e.start})") from None
    # pandas renames a repeated header name (VL, VL.1), so look at the header as written.
    if b"\n" in head:
        header = next(csv.reader(io.StringIO(head.decode(encoding, errors="replace"))), [])
        dup = first_repeat(c for c in header if c)
        if dup is not None:
            raise DataError(file, "column appears twice in the header", column=dup)
    return frame


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _shown(x: object) -> object:
    if isinstance(x, (float, np.floating)) and float(x).is_integer():
        return int(x)
    if isinstance(x, np.generic):
        return x.item()
    return x


def _numeric(frame: pd.DataFrame, column: str, file: str) -> np.ndarray:
    """Column as float64; text, missing and infinite values are errors."""
    col = frame[column]
    if pd.api.types.is_datetime64_any_dtype(col.dtype) or pd.api.types.is_timedelta64_dtype(col.dtype):
        raise DataError(file, "not a number (dates or times)", column=column, row=1, value=str(col.iloc[0]))
    if col.dtype == bool:
        col = col.astype(np.int64)
    if pd.api.types.is_numeric_dtype(col.dtype):
        values = col.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        values = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        bad = np.isnan(values) & col.notna().to_numpy()
        if bad.any():
            i = _first(bad)
            raise DataError(file, "not a number", column=column, row=i + 1, value=col.iloc[i])
    missing = np.isnan(values)
    if missing.any():
        raise DataError(file, "missing value", column=column, row=_first(missing) + 1)
    inf = np.isinf(values)
    if inf.any():
        i = _first(inf)
        raise DataError(file, "not a finite number", column=column, row=i + 1, value=float(values[i]))
    return values


def _integers(values: np.ndarray, column: str, file: str, what: str) -> np.ndarray:
    frac = values != np.round(values)
    if frac.any():
        i = _first(frac)
        raise DataError(file, f"{what} must be a whole number", column=column, row=i + 1, value=float(values[i]))
    big = np.abs(values) > 2**53
    if big.any():
        i = _first(big)
        raise DataError(
            file,
            f"{what} is too large to read exactly (more than 2^53)",
            column=column,
            row=i + 1,
            value=float(values[i]),
        )
    return values.astype(np.int64)


def first_repeat(names) -> str | None:
    """The first name seen a second time, in one pass (a header of a million columns is read in a second)."""
    seen: set = set()
    for name in names:
        if name in seen:
            return name
        seen.add(name)
    return None


def cohort_from_frame(frame: pd.DataFrame, schema: Schema, file: str, source: str | None = None) -> Cohort:
    """Validate a long-format frame against the schema and convert it to dense arrays."""
    if len(frame.columns) == 0:
        raise DataError(file, "no columns")
    cols = [str(c) for c in frame.columns]
    frame = frame.set_axis(cols, axis=1)
    dup = first_repeat(cols)
    if dup is not None:
        raise DataError(file, "column appears twice in the header", column=dup)
    time_column = schema.time_column
    if time_column not in cols:
        time_column = next((a for a in schema.time_aliases if a in cols), schema.time_column)
    for c in [*schema.columns, schema.patient_column, time_column]:
        if c not in cols:
            hint = f" (found: {', '.join(cols[:20])})" if len(cols) <= 20 else ""
            raise DataError(file, "missing required column" + hint, column=c)
    if len(frame) == 0:
        raise DataError(file, "no data rows")

    pid = _integers(_numeric(frame, schema.patient_column, file), schema.patient_column, file, "a patient id")
    time = _numeric(frame, time_column, file)
    time = _integers(time, time_column, file, "a month")
    if (time < 0).any():
        i = _first(time < 0)
        raise DataError(file, "months must be 0 or more", column=time_column, row=i + 1, value=int(time[i]))

    reals = []
    for v in schema.reals:
        x = _numeric(frame, v.column, file)
        neg = x < 0
        if neg.any():
            i = _first(neg)
            raise DataError(
                file,
                "negative value (real variables must be 0 or more)",
                column=v.column,
                row=i + 1,
                value=_shown(x[i]),
            )
        reals.append(x)
    codes = []
    for v in schema.categoricals:
        x = _numeric(frame, v.column, file)
        lookup = {float(c): k for k, c in enumerate(v.codes)}
        mapped = pd.Series(x).map(lookup).to_numpy(dtype=np.float64, na_value=np.nan)
        unknown = np.isnan(mapped)
        if unknown.any():
            i = _first(unknown)
            allowed = ", ".join(str(c) for c in v.codes)
            raise DataError(
                file, f"unknown code (expected one of {allowed})", column=v.column, row=i + 1, value=_shown(x[i])
            )
        codes.append(mapped.astype(np.int64))

    keys = pd.DataFrame({"p": pid, "t": time})
    dup_rows = keys.duplicated(keep="first").to_numpy()
    if dup_rows.any():
        i = _first(dup_rows)
        raise DataError(
            file,
            f"duplicate row for patient {pid[i]} month {time[i]} (one row per patient and month)",
            column=time_column,
            row=i + 1,
            value=int(time[i]),
        )
    n_months = int(time.max()) + 1
    counts = keys.groupby("p", sort=False)["t"].agg(["size", "min", "max"])
    bad = counts[(counts["size"] != n_months) | (counts["min"] != 0) | (counts["max"] != n_months - 1)]
    if len(bad):
        p = bad.index[0]
        have = set(time[pid == p].tolist())
        missing = next(m for m in range(n_months) if m not in have)
        i = _first(pid == p)
        raise DataError(
            file,
            f"patient {p} lacks month {missing}: every patient needs the same months 0..{n_months - 1}",
            column=time_column,
            row=i + 1,
        )

    order = np.lexsort((time, pid))
    n_pat = len(counts)
    shape = (n_pat, n_months)
    real_arr = np.stack([r[order].reshape(shape) for r in reals], axis=-1) if reals else np.zeros(shape + (0,))
    code_arr = (
        np.stack([c[order].reshape(shape) for c in codes], axis=-1) if codes else np.zeros(shape + (0,), np.int64)
    )
    patient_ids = pid[order].reshape(shape)[:, 0]
    return Cohort(schema, source or file, patient_ids, real_arr, code_arr, time_column)


AUTO = "auto"  # the schema argument that recognises the built-in schema a file's columns match


def _has_columns(schema: Schema, cols: set[str]) -> int:
    """How many of the schema's required columns (variables, patient, time or an alias) the file has."""
    time = schema.time_column in cols or any(a in cols for a in schema.time_aliases)
    return sum(c in cols for c in schema.columns) + (schema.patient_column in cols) + time


def match_schema(columns) -> tuple[Schema, bool]:
    """The largest built-in schema all of whose columns the file has (True), else the closest one: the fewest
    required columns missing, the larger on a tie (False)."""
    cols = {str(c) for c in columns}

    def missing(s: Schema) -> int:
        return len(s.columns) + 2 - _has_columns(s, cols)

    ranked = sorted(BUILTIN_SCHEMAS.values(), key=lambda s: (missing(s), -len(s.variables)))
    full = [s for s in ranked if missing(s) == 0]
    return (full[0], True) if full else (ranked[0], False)


def read_cohort(path: str | Path, schema: Schema | str = AUTO) -> Cohort:
    """Read and validate a cohort file (CSV or Parquet). With `auto`, against the built-in schema its columns
    match (demo7, full10, full13); a file that matches none fails against the closest, and the error says so."""
    frame = read_table(path)
    if not (isinstance(schema, str) and schema == AUTO):
        return cohort_from_frame(frame, get_schema(schema) if isinstance(schema, str) else schema, str(path))
    matched, exact = match_schema(frame.columns)
    try:
        return cohort_from_frame(frame, matched, str(path))
    except DataError as e:
        if exact:
            raise
        others = ", ".join(BUILTIN_SCHEMAS)
        raise DataError(
            e.file,
            f"{e.problem}; the columns match no built-in schema (closest: {matched.name}): pass "
            f"--schema {others} or a .toml schema file",
            column=e.column,
            value=e.value,
            row=e.row,
        ) from None


def simulated_cohort(
    n_patients: int = DEFAULT_SIMULATED_PATIENTS, seed: int = 0, schema: Schema | str = "demo7"
) -> Cohort:
    """The embedded default dataset: a simulated ART-for-HIV cohort (NOT the Health Gym dataset)."""
    from healthgym_core.data.simulate import simulate_cohort, simulated_notice

    if isinstance(schema, str):
        schema = get_schema(schema)
    frame = simulate_cohort(n_patients, seed=seed)
    return cohort_from_frame(frame, schema, SIMULATED, source=simulated_notice(seed, n_patients))


def load_cohort(
    source: str | Path,
    schema: Schema | str = "demo7",
    *,
    patients: int | None = None,
    seed: int = 0,
) -> Cohort:
    """A cohort from a path, the name `simulated` (generated from `seed`), or `art4hiv` (the cached download).

    `patients` keeps the first N patients (by PatientID), as upstream keeps PatientID < 300 for its demo; for the
    simulated cohort it is the number generated.
    """
    name = str(source)
    if isinstance(schema, str) and schema == AUTO and name in (SIMULATED, ART4HIV):
        schema = "full13"  # both hold every published column
    if isinstance(schema, str) and schema != AUTO:
        schema = get_schema(schema)
    if patients is not None and not 1 <= patients <= MAX_PATIENTS:
        raise DataError(name, f"--patients must be 1-{MAX_PATIENTS:,}", value=patients)
    if name == SIMULATED:
        cohort = simulated_cohort(patients or DEFAULT_SIMULATED_PATIENTS, seed=seed, schema=schema)
    elif name == ART4HIV:
        from healthgym_core.data.download import cached_path

        path = cached_path()
        if not path.exists():
            raise DataError(ART4HIV, f"not downloaded yet ({path}); run: python -m healthgym_core.data fetch")
        cohort = read_cohort(path, schema)
        cohort.source = f"Health Gym v2.0 ART-for-HIV CSV ({path})"
    else:
        cohort = read_cohort(name, schema)
    if patients is not None and name != SIMULATED:
        cohort = cohort.subset(np.arange(min(patients, cohort.n_patients)))
    return cohort
