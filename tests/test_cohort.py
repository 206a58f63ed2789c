"""Loading and strict validation of cohort files, through the library and the data CLI."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from healthgym_core.data.cohort import load_cohort, read_cohort
from healthgym_core.data.simulate import simulate_cohort
from healthgym_core.errors import DataError


@pytest.fixture(scope="module")
def frame():
    return simulate_cohort(6, seed=1, months=12)


def write(frame, path):
    frame.to_csv(path, index=False)
    return path


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "healthgym_core.data", *map(str, args)], capture_output=True, text=True
    )


def test_simulate_then_validate_and_describe_via_cli(tmp_path):
    out = tmp_path / "cohort.csv"
    r = run_cli("simulate", "--patients", 200, "--seed", 0, "--out", out)
    assert r.returncode == 0, r.stderr
    assert "NOT the Health Gym dataset" in r.stderr
    r = run_cli("validate", out)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"{out}: valid: 200 patients x 60 months, 13 variables (schema full13)"
    r = run_cli("describe", out)
    assert r.returncode == 0 and "median" in r.stdout and "switch regimen" in r.stdout
    # The same file goes through the published-CSV loader path.
    c = read_cohort(out)
    assert c.n_patients == 200 and c.reals.shape == (200, 60, 3) and c.codes.shape == (200, 60, 10)


def test_parquet_and_csv_load_identically(tmp_path, frame):
    frame.to_parquet(tmp_path / "c.parquet", index=False)
    a = read_cohort(write(frame, tmp_path / "c.csv"))
    b = read_cohort(tmp_path / "c.parquet")
    assert np.array_equal(a.reals, b.reals) and np.array_equal(a.codes, b.codes)
    assert a.fingerprint() == b.fingerprint()


def test_v1_release_format_loads(tmp_path, frame):
    v1 = frame.rename(columns={"Timestep": "Timepoints"})
    v1.insert(0, "Unnamed: 0", np.arange(len(v1)))
    c = read_cohort(write(v1, tmp_path / "v1.csv"))
    assert c.time_column == "Timepoints" and c.n_patients == 6 and c.n_months == 12
    v2 = read_cohort(write(frame, tmp_path / "v2.csv"))
    assert np.array_equal(c.reals, v2.reals)


def test_internal_codes_follow_the_documented_order(tmp_path, frame):
    c = read_cohort(write(frame, tmp_path / "c.csv"))
    j = [v.name for v in c.schema.categoricals].index("Ethnic")
    raw = frame["Ethnic"].to_numpy().reshape(6, 12)
    assert np.array_equal(c.codes[:, :, j], raw.astype(int) - 1)  # 1 Asian .. 4 Other -> 0..3


def test_unordered_rows_are_sorted(tmp_path, frame):
    shuffled = frame.sample(frac=1.0, random_state=0)
    a = read_cohort(write(shuffled, tmp_path / "s.csv"))
    b = read_cohort(write(frame, tmp_path / "o.csv"))
    assert np.array_equal(a.reals, b.reals) and np.array_equal(a.patient_ids, b.patient_ids)


def test_to_frame_round_trip(tmp_path, frame):
    c = read_cohort(write(frame, tmp_path / "c.csv"))
    back = c.to_frame()
    pd.testing.assert_frame_equal(back, frame[back.columns.tolist()], check_dtype=False)


def _mutations():
    def missing_column(f):
        return f.drop(columns=["CD4"])

    def unknown_code(f):
        f.loc[7, "Ethnic"] = 7.0
        return f

    def nan(f):
        f.loc[3, "VL"] = np.nan
        return f

    def negative(f):
        f.loc[5, "CD4"] = -2.0
        return f

    def duplicated_month(f):
        f.loc[4, "Timestep"] = 3
        return f

    def missing_month(f):
        return f.drop(index=13)

    def text_in_numeric(f):
        f["VL"] = f["VL"].astype(object)
        f.loc[9, "VL"] = "high"
        return f

    def fractional_code(f):
        f.loc[2, "Gender"] = 1.5
        return f

    def infinite(f):
        f.loc[6, "VL"] = np.inf
        return f

    return {
        "missing_column": (missing_column, ["column 'CD4'", "missing required column"]),
        "unknown_code": (unknown_code, ["column 'Ethnic'", "row 8", "unknown code", "value 7"]),
        "nan": (nan, ["column 'VL'", "row 4", "missing value"]),
        "negative": (negative, ["column 'CD4'", "row 6", "negative value", "value -2"]),
        "duplicated_month": (duplicated_month, ["column 'Timestep'", "row 5", "duplicate row for patient 0 month 3"]),
        "missing_month": (missing_month, ["patient 1 lacks month 1"]),
        "text_in_numeric": (text_in_numeric, ["column 'VL'", "row 10", "not a number", "value 'high'"]),
        "fractional_code": (fractional_code, ["column 'Gender'", "row 3", "unknown code", "value 1.5"]),
        "infinite": (infinite, ["column 'VL'", "row 7", "not a finite number"]),
    }


@pytest.mark.parametrize("case", list(_mutations()))
def test_malformed_files_give_one_line_and_exit_2(tmp_path, frame, case):
    mutate, needles = _mutations()[case]
    path = write(mutate(frame.copy()), tmp_path / f"{case}.csv")
    with pytest.raises(DataError) as e:
        read_cohort(path)
    for n in needles:
        assert n in str(e.value), str(e.value)
    r = run_cli("validate", path)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}") and "Traceback" not in r.stderr


@pytest.mark.parametrize(
    "content,needle",
    [
        (b"", "empty file"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", "not a CSV text file"),
        (b"PAR1\x00\x01", "looks like a Parquet file"),
        (b"VL,CD4\n", "missing required column"),
        (b"a,b\n1,2\n3,4,5,6\n", "not a well-formed CSV"),
        ("VL,CD4\n\xe9\xe8\n".encode("latin-1"), "not UTF-8"),
    ],
)
def test_unreadable_files(tmp_path, content, needle):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    r = run_cli("validate", path)
    assert r.returncode == 2 and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_missing_file_and_missing_download(tmp_path, monkeypatch):
    r = run_cli("validate", tmp_path / "nope.csv")
    assert r.returncode == 2 and "file not found" in r.stderr
    monkeypatch.setenv("HEALTHGYM_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DataError, match="python -m healthgym_core.data fetch"):
        load_cohort("art4hiv")


def test_simulate_refuses_unknown_extension_and_writes_nothing(tmp_path):
    r = run_cli("simulate", "--patients", 5, "--out", tmp_path / "c.xlsx")
    assert r.returncode == 2 and ".csv or .parquet" in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_user_schema_cohort(tmp_path):
    schema = tmp_path / "s.toml"
    schema.write_text(
        'patient_column = "pid"\ntime_column = "month"\n'
        '[[variables]]\nname = "w"\nkind = "real"\n'
        '[[variables]]\nname = "drug"\nkind = "categorical"\ncodes = [10, 20, 30]\n'
    )
    rng = np.random.default_rng(0)
    f = pd.DataFrame(
        {
            "pid": np.repeat([5, 9, 11], 4),
            "month": np.tile(range(4), 3),
            "w": rng.uniform(50, 90, 12),
            "drug": rng.choice([10, 20, 30], 12),
        }
    )
    path = tmp_path / "mine.csv"
    f.to_csv(path, index=False)
    c = load_cohort(path, str(schema))
    assert (c.n_patients, c.n_months) == (3, 4) and c.patient_ids.tolist() == [5, 9, 11]
    assert run_cli("validate", path, "--schema", schema).returncode == 0
    f.loc[0, "drug"] = 40
    f.to_csv(path, index=False)
    r = run_cli("validate", path, "--schema", schema)
    assert r.returncode == 2 and "column 'drug'" in r.stderr and "expected one of 10, 20, 30" in r.stderr


def test_patients_keeps_the_first_n(tmp_path, frame):
    c = load_cohort(write(frame, tmp_path / "c.csv"), "demo7", patients=4)
    assert c.n_patients == 4 and c.patient_ids.tolist() == [0, 1, 2, 3]


def test_validate_recognises_the_schema_a_file_matches(tmp_path, frame):
    """An export of a demo7 study holds only the demo7 columns: validate recognises that schema (it used to assume
    full13 and fail on 'Rel CD4'); a file matching no built-in schema fails against the closest one and names
    --schema."""
    from healthgym_core.data.schema import BUILTIN_SCHEMAS

    demo7 = BUILTIN_SCHEMAS["demo7"]
    export = write(frame[[*demo7.columns, "PatientID", "Timestep"]], tmp_path / "synthetic_best.csv")
    r = run_cli("validate", export)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("7 variables (schema demo7)")
    full10 = write(frame[[*BUILTIN_SCHEMAS["full10"].columns, "PatientID", "Timestep"]], tmp_path / "f10.csv")
    assert read_cohort(full10).schema.name == "full10"
    broken = write(frame[[c for c in demo7.columns if c != "CD4"] + ["PatientID", "Timestep"]], tmp_path / "no_cd4.csv")
    r = run_cli("validate", broken)
    line = r.stderr.strip()
    assert r.returncode == 2 and len(line.splitlines()) == 1
    assert "column 'CD4': missing required column" in line
    assert "closest: demo7" in line and "--schema demo7, full10, full13" in line
    assert run_cli("validate", export, "--schema", "full13").returncode == 2  # an explicit schema is still strict
