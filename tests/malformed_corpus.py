"""A corpus of malformed cohorts (and schema files), built on demand from a small valid simulated cohort.

`build_corpus(folder)` writes one file per fault into `folder` and returns the cases. Every case ends each entry
point it names in `fails` with one `error: ...` line and exit code 2 before anything is trained or written; the
entry points it does not name accept it (a file can be valid and still too small to train on).

    python -m tests.malformed_corpus FOLDER     # build it and print the fault table of docs/reliability.md

Entry points: `validate` (python -m healthgym_core.data validate, default schema full13), `train`
(python -m healthgym_core.train, default schema demo7, batch 256, ladder 10..60) and `study`
(python study/run.py --smoke: batch 64, the first 92 patients, the upstream ladder checked against the data).
Every data fault lies in a column that both full13 and demo7 read, so all three see the same fault.
"""

from __future__ import annotations

import gzip
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from healthgym_core.data.simulate import simulate_cohort

ALL = ("validate", "train", "study")
TRAINING = ("train", "study")  # faults only for training: the file itself is valid

# The base cohort: 12 patients x 12 months, 144 rows (row N is line N+1 of the CSV). Patient p's month m is
# row 12 * p + m + 1.
N_PATIENTS, N_MONTHS, SEED = 12, 12, 1


@dataclass(frozen=True)
class Case:
    name: str
    category: str
    path: Path  # the cohort argument
    schema: str | None  # the --schema argument, or None for each entry point's default
    expected: str  # a substring of the one-line error message
    fails: tuple[str, ...] = ALL  # entry points that must refuse it (the others must accept it)
    what: str = ""  # the fault in words

    def __iter__(self):  # (name, category, cohort path, schema arg or None, expected substring)
        return iter((self.name, self.category, self.path, self.schema, self.expected))


def base_frame(n_patients: int = N_PATIENTS, months: int = N_MONTHS) -> pd.DataFrame:
    return simulate_cohort(n_patients, seed=SEED, months=months)


def _row(patient: int, month: int) -> int:
    """Frame index of (patient, month) in the base frame."""
    return patient * N_MONTHS + month


SCHEMA_OK = """name = "mine"
[[variables]]
name = "VL"
kind = "real"
[[variables]]
name = "Gender"
kind = "binary"
codes = [1, 2]
"""


def build_corpus(folder: str | Path) -> list[Case]:
    """Write every faulty cohort and schema file into `folder` (created) and return the cases."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    base = base_frame()
    csv_text = base.to_csv(index=False)
    cases: list[Case] = []

    def csv(name: str, frame: pd.DataFrame) -> Path:
        path = folder / f"{name}.csv"
        frame.to_csv(path, index=False)
        return path

    def raw(name: str, data: bytes, suffix: str = ".csv") -> Path:
        path = folder / f"{name}{suffix}"
        path.write_bytes(data)
        return path

    def add(name, category, path, expected, fails=ALL, schema=None, what=""):
        cases.append(Case(name, category, Path(path), None if schema is None else str(schema), expected, fails, what))

    def edit(frame: pd.DataFrame, column: str, row: int, value) -> pd.DataFrame:
        frame = frame.copy()
        frame[column] = frame[column].astype(object)
        frame.loc[row, column] = value
        return frame

    good = csv("valid", base)  # the schema faults read this (valid) cohort
    lines = csv_text.splitlines(keepends=True)
    header = lines[0].rstrip("\n")

    # -- structure ------------------------------------------------------------------------------------------
    p = csv("missing_column", base.drop(columns=["CD4"]))
    add("missing_column", "structure", p, "column 'CD4': missing required column", what="the CD4 column is absent")
    p = csv("missing_patient_column", base.drop(columns=["PatientID"]))
    add(
        "missing_patient_column",
        "structure",
        p,
        "column 'PatientID': missing required column",
        what="no PatientID column",
    )
    p = csv("missing_time_column", base.drop(columns=["Timestep"]))
    add(
        "missing_time_column",
        "structure",
        p,
        "column 'Timestep': missing required column",
        what="no Timestep (or Timepoints) column",
    )
    twice = pd.concat([base, base[["VL"]].rename(columns={"VL": "VL_copy"})], axis=1)
    text = twice.to_csv(index=False).replace("VL_copy", "VL", 1)
    p = raw("column_twice", text.encode())
    add(
        "column_twice",
        "structure",
        p,
        "column 'VL': column appears twice in the header",
        what="the header names VL twice",
    )
    p = raw("empty_file", b"")
    add("empty_file", "structure", p, "empty file", what="0 bytes")
    p = raw("blank_lines_only", b"\n\n\n")
    add("blank_lines_only", "structure", p, "empty file (no header)", what="only newlines, no header")
    p = raw("header_only", (header + "\n").encode())
    add("header_only", "structure", p, "no data rows", what="the header line and nothing else")
    ragged = lines[:5] + [lines[5].rstrip("\n") + ",1,2\n"] + lines[6:]
    p = raw("ragged_row", "".join(ragged).encode())
    add(
        "ragged_row",
        "structure",
        p,
        "not a well-formed CSV: Error tokenizing data. C error: Expected 15 fields in line 6, saw 17",
        what="data line 6 has two extra fields",
    )
    short = lines[:8] + [",".join(lines[8].rstrip("\n").split(",")[:-2]) + "\n"] + lines[9:]
    p = raw("short_row", "".join(short).encode())
    add(
        "short_row",
        "structure",
        p,
        "column 'PatientID': row 8: missing value",
        what="data row 8 lacks its last two fields",
    )
    p = raw("semicolon_delimited", base.to_csv(index=False, sep=";").encode())
    add(
        "semicolon_delimited",
        "structure",
        p,
        "column 'VL': missing required column (found: VL;CD4;",
        what="fields separated by ';' (one column for pandas)",
    )
    p = folder / "a_folder.csv"
    p.mkdir(exist_ok=True)
    add("folder_as_cohort", "structure", p, "is a folder, not a cohort file", what="a directory passed as the cohort")
    add("missing_file", "structure", folder / "no_such_file.csv", "file not found", what="the path does not exist")

    # -- encoding and file format ---------------------------------------------------------------------------
    p = raw("binary_csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    add("binary_csv", "encoding", p, "not a CSV text file (binary content)", what="a PNG image named .csv")
    p = raw("gzip_named_csv", gzip.compress(csv_text.encode(), mtime=0))
    add(
        "gzip_named_csv", "encoding", p, "not a CSV text file (binary content)", what="a gzip-compressed CSV named .csv"
    )
    base.to_parquet(folder / "parquet_named_csv.csv", index=False)
    add(
        "parquet_named_csv",
        "encoding",
        folder / "parquet_named_csv.csv",
        "looks like a Parquet file",
        what="Parquet content with a .csv name",
    )
    base.to_parquet(folder / "whole.parquet.tmp", index=False)
    whole = (folder / "whole.parquet.tmp").read_bytes()
    (folder / "whole.parquet.tmp").unlink()
    p = raw("truncated_parquet", whole[: len(whole) // 2], ".parquet")
    add("truncated_parquet", "encoding", p, "not a readable Parquet file", what="the first half of a Parquet file")
    p = raw("csv_named_parquet", csv_text.encode(), ".parquet")
    add("csv_named_parquet", "encoding", p, "not a readable Parquet file", what="CSV text with a .parquet name")
    latin = csv_text.replace("Base Drug Combo", "Base Drug Combo (r\u00e9gime)", 1).encode("latin-1")
    p = raw("latin1_bytes", latin)
    add(
        "latin1_bytes",
        "encoding",
        p,
        "not UTF-8 text (bad byte at offset",
        what="an 'e acute' in latin-1 in the header",
    )
    p = raw("utf16", csv_text.encode("utf-16"))
    add("utf16", "encoding", p, "not UTF-8 text (UTF-16; save it as UTF-8)", what="UTF-16 text with a byte-order mark")

    # -- types ----------------------------------------------------------------------------------------------
    p = csv("text_in_numeric", edit(base, "VL", 9, "high"))
    add("text_in_numeric", "types", p, "column 'VL': row 10: not a number (value 'high')", what="'high' in VL")
    p = csv("labels_not_codes", edit(base, "Gender", 0, "Male"))
    add(
        "labels_not_codes",
        "types",
        p,
        "column 'Gender': row 1: not a number (value 'Male')",
        what="a label where a code belongs",
    )
    p = csv("fractional_patient_id", edit(base, "PatientID", 12, 1.5))
    add(
        "fractional_patient_id",
        "types",
        p,
        "column 'PatientID': row 13: a patient id must be a whole number (value 1.5)",
        what="PatientID 1.5",
    )
    p = csv("text_patient_id", base.assign(PatientID="P" + base["PatientID"].astype(str)))
    add("text_patient_id", "types", p, "column 'PatientID': row 1: not a number (value 'P0')", what="ids like P0, P1")
    p = csv("huge_patient_id", edit(base, "PatientID", 0, 10**20))
    add("huge_patient_id", "types", p, "a patient id is too large to read exactly", what="a 21-digit patient id")
    p = csv("fractional_month", edit(base, "Timestep", 2, 2.5))
    add(
        "fractional_month",
        "types",
        p,
        "column 'Timestep': row 3: a month must be a whole number (value 2.5)",
        what="Timestep 2.5",
    )
    dated = base.assign(Timestep=pd.Timestamp("2020-01-01") + pd.to_timedelta(base["Timestep"] * 30, unit="D"))
    p = folder / "dates_as_months.parquet"
    dated.to_parquet(p, index=False)
    add(
        "dates_as_months",
        "types",
        p,
        "column 'Timestep': row 1: not a number (dates or times)",
        what="Parquet Timestep holding dates",
    )

    # -- codes ----------------------------------------------------------------------------------------------
    p = csv("unknown_code", edit(base, "Ethnic", 7, 7.0))
    add(
        "unknown_code",
        "codes",
        p,
        "column 'Ethnic': row 8: unknown code (expected one of 1, 2, 3, 4) (value 7)",
        what="Ethnic 7",
    )
    p = csv("fractional_code", edit(base, "Gender", 2, 1.5))
    add(
        "fractional_code",
        "codes",
        p,
        "column 'Gender': row 3: unknown code (expected one of 1, 2) (value 1.5)",
        what="Gender 1.5",
    )
    p = csv("negative_code", edit(base, "Base Drug Combo", 20, -1.0))
    add("negative_code", "codes", p, "column 'Base Drug Combo': row 21: unknown code", what="Base Drug Combo -1")

    # -- values and ranges -----------------------------------------------------------------------------------
    nan = lines[:4] + ["NaN," + lines[4].split(",", 1)[1]] + lines[5:]
    p = raw("nan", "".join(nan).encode())
    add("nan", "values", p, "column 'VL': row 4: missing value", what="the text NaN in VL")
    p = csv("empty_cell", edit(base, "CD4", 30, np.nan))
    add("empty_cell", "values", p, "column 'CD4': row 31: missing value", what="an empty CD4 cell")
    p = csv("infinite", edit(base, "VL", 6, np.inf))
    add("infinite", "values", p, "column 'VL': row 7: not a finite number (value inf)", what="inf in VL")
    p = csv("negative_real", edit(base, "CD4", 5, -2.0))
    add(
        "negative_real",
        "ranges",
        p,
        "column 'CD4': row 6: negative value (real variables must be 0 or more) (value -2)",
        what="CD4 -2",
    )
    p = csv("negative_month", base.assign(Timestep=base["Timestep"] - 1))
    add(
        "negative_month",
        "ranges",
        p,
        "column 'Timestep': row 1: months must be 0 or more (value -1)",
        what="months -1..10",
    )
    p = csv("huge_values", base.assign(VL=1e300))
    add(
        "huge_values",
        "ranges",
        p,
        "column 'VL': values too large to train on",
        fails=TRAINING,
        what="VL 1e300 in every row (valid numbers, beyond float32 after the transform)",
    )

    # -- ordering (one row per patient and month, months 0..T-1) -------------------------------------------
    p = csv("duplicate_month", edit(base, "Timestep", 4, 3))
    add(
        "duplicate_month",
        "ordering",
        p,
        "row 5: duplicate row for patient 0 month 3",
        what="patient 0 has month 3 twice, no month 4",
    )
    p = csv("missing_month", base.drop(index=_row(1, 1)))
    add("missing_month", "ordering", p, "patient 1 lacks month 1", what="patient 1's month 1 row is absent")
    p = csv("months_from_1", base.assign(Timestep=base["Timestep"] + 1))
    add(
        "months_from_1",
        "ordering",
        p,
        "patient 0 lacks month 0: every patient needs the same months 0..12",
        what="months numbered 1..12",
    )
    p = csv("unequal_lengths", base[~((base["PatientID"] == 3) & (base["Timestep"] >= 10))])
    add("unequal_lengths", "ordering", p, "patient 3 lacks month 10", what="patient 3 has 10 months, the others 12")
    p = csv("same_id_twice", base.assign(PatientID=base["PatientID"].where(base["PatientID"] != 5, 4)))
    add("same_id_twice", "ordering", p, "duplicate row for patient 4 month 0", what="two patients share PatientID 4")

    # -- size (valid files, too small to train on) ----------------------------------------------------------
    p = csv("three_patients", base_frame(3, 60))
    add(
        "three_patients",
        "size",
        p,
        "3 patients are too few to split 70%/15%/15%",
        fails=TRAINING,
        what="3 patients x 60 months",
    )
    p = csv("eight_patients", base_frame(8, 60))
    add(
        "eight_patients",
        "size",
        p,
        "8 patients are too few: the split leaves 1 validation patient(s)",
        fails=TRAINING,
        what="8 patients x 60 months: 1 validation patient, no covariance for the metrics",
    )
    p = csv("forty_patients", base_frame(40, 60))
    add(
        "forty_patients",
        "size",
        p,
        "is larger than the 28 training patients",
        fails=TRAINING,
        what="40 patients x 60 months: 28 training patients < batch (train 256, study smoke 64)",
    )
    add(
        "shorter_than_schedule",
        "size",
        good,
        "length 20 is longer than the data's 12 months",
        fails=TRAINING,
        what="12 months < the ladder 10..60",
    )

    # -- schema files ---------------------------------------------------------------------------------------
    def schema(name: str, text: str | bytes) -> Path:
        path = folder / f"{name}.toml"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return path

    s = schema("schema_syntax", SCHEMA_OK.replace('kind = "real"', "kind = real"))
    add("schema_syntax", "schema", good, "not valid TOML", schema=s, what="an unquoted string")
    s = schema("schema_unknown_kind", SCHEMA_OK.replace('kind = "real"', 'kind = "numeric"'))
    add(
        "schema_unknown_kind",
        "schema",
        good,
        "variable 'VL': kind must be real, binary or categorical (value 'numeric')",
        schema=s,
        what="kind = numeric",
    )
    s = schema("schema_binary_3_codes", SCHEMA_OK.replace("codes = [1, 2]", "codes = [1, 2, 3]"))
    add(
        "schema_binary_3_codes",
        "schema",
        good,
        "variable 'Gender': a binary variable needs exactly 2 codes",
        schema=s,
        what="a binary variable with 3 codes",
    )
    s = schema("schema_text_codes", SCHEMA_OK.replace("codes = [1, 2]", 'codes = ["M", "F"]'))
    add(
        "schema_text_codes",
        "schema",
        good,
        "codes must be a non-empty list of integers",
        schema=s,
        what="codes as text",
    )
    s = schema("schema_no_variables", 'name = "empty"\n')
    add("schema_no_variables", "schema", good, "schema lists no [[variables]]", schema=s, what="no [[variables]]")
    s = schema("schema_unknown_key", 'units = "mg"\n' + SCHEMA_OK)
    add("schema_unknown_key", "schema", good, "unknown key 'units'", schema=s, what="a top-level key the format lacks")
    s = schema("schema_not_utf8", SCHEMA_OK.replace('"mine"', '"r\u00e9gime"').encode("latin-1"))
    add("schema_not_utf8", "schema", good, "schema file is not UTF-8 text", schema=s, what="latin-1 bytes")
    add(
        "schema_missing_file",
        "schema",
        good,
        "schema file not found",
        schema=folder / "no_such_schema.toml",
        what="the .toml path does not exist",
    )
    s = schema("schema_absent_column", SCHEMA_OK + '[[variables]]\nname = "Weight"\nkind = "real"\n')
    add(
        "schema_absent_column",
        "schema vs data",
        good,
        "column 'Weight': missing required column",
        schema=s,
        what="a variable the data lacks",
    )
    s = schema("schema_absent_patient_column", 'patient_column = "pid"\n' + SCHEMA_OK)
    add(
        "schema_absent_patient_column",
        "schema vs data",
        good,
        "column 'pid': missing required column",
        schema=s,
        what="patient_column = pid, the data has PatientID",
    )
    s = schema(
        "schema_contradicts_codes", SCHEMA_OK + '[[variables]]\nname = "Ethnic"\nkind = "categorical"\ncodes = [1, 2]\n'
    )
    add(
        "schema_contradicts_codes",
        "schema vs data",
        good,
        "column 'Ethnic': row 1: unknown code (expected one of 1, 2) (value 4)",
        schema=s,
        what="Ethnic codes [1, 2]; the data has 1..4",
    )
    s = schema("schema_contradicts_kind", SCHEMA_OK.replace("codes = [1, 2]", "codes = [0, 1]"))
    add(
        "schema_contradicts_kind",
        "schema vs data",
        good,
        "column 'Gender': row 13: unknown code (expected one of 0, 1) (value 2)",
        schema=s,
        what="Gender coded 0/1 in the schema, 1/2 in the data",
    )
    add(
        "schema_unknown_name",
        "schema",
        good,
        "unknown schema; use one of demo7, full10, full13",
        schema="demo8",
        what="--schema demo8 (no such built-in, no such file)",
    )
    return cases


def run_case_validate(case: Case) -> tuple[int, str]:
    """`validate` in-process: (exit code, stderr)."""
    import contextlib
    import io

    from healthgym_core import cli
    from healthgym_core.data.__main__ import main

    err, out = io.StringIO(), io.StringIO()
    argv = ["validate", str(case.path)] + (["--schema", case.schema] if case.schema else [])
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = cli.run(main, argv)
    return code, err.getvalue()


def markdown_table(cases: list[Case], folder: Path) -> str:
    """The fault table of docs/reliability.md: the one line `validate` prints (the trainer for training-only faults)."""
    import contextlib
    import io

    from healthgym_core import cli
    from healthgym_core.train import main as train_main

    rows = [
        "| # | fault | category | what | entry points that refuse it | message (one representative run) | exit |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, c in enumerate(cases, 1):
        if "validate" in c.fails:
            code, err = run_case_validate(c)
            shown = "validate"
        else:
            buf = io.StringIO()
            argv = ["--data", str(c.path), "--out", str(folder / "_out"), "--epochs", "1", "--quiet"]
            with contextlib.redirect_stderr(buf):
                code = cli.run(train_main, argv + (["--schema", c.schema] if c.schema else []))
            err, shown = buf.getvalue(), "train"
        line = err.strip().replace(str(folder) + "/", "").replace("|", "\\|")
        rows.append(
            f"| {i} | `{c.name}` | {c.category} | {c.what} | {', '.join(c.fails)} | `{line}` ({shown}) | {code} |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    import warnings

    warnings.simplefilter("ignore")
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "malformed")
    if target.exists():
        shutil.rmtree(target)
    corpus = build_corpus(target)
    print(markdown_table(corpus, target))
    print(f"\n{len(corpus)} faults in {len({c.category for c in corpus})} categories", file=sys.stderr)
