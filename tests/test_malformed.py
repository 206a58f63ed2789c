"""Every malformed cohort of tests/malformed_corpus.py through `validate`, the plain trainer and the study CLI.

Each entry point a case names must end with exit code 2 and exactly one `error: ...` line holding the expected
text, no traceback, before anything is trained, before Ray starts, and without writing a file anywhere (its
--out / --storage, the corpus folder, the working folder). Entry points a case does not name must accept it
(`validate` exits 0 on a valid file that is only too small to train on).

Every case runs in-process through all three entry points (fast; training and Ray are replaced by tripwires); a
representative subset, one or more per category, also runs as real subprocesses (slow).
"""

from __future__ import annotations

import atexit
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from healthgym_core import cli
from tests.malformed_corpus import Case, build_corpus
from tests.study_helpers import env, study

_FOLDER = Path(tempfile.mkdtemp(prefix="healthgym-malformed-"))
atexit.register(shutil.rmtree, _FOLDER, ignore_errors=True)
CASES = {c.name: c for c in build_corpus(_FOLDER / "corpus")}

# One or more per category, and every fault that only training sees.
SUBPROCESS = [
    "column_twice",
    "folder_as_cohort",
    "utf16",
    "truncated_parquet",
    "dates_as_months",
    "unknown_code",
    "nan",
    "negative_real",
    "huge_values",
    "unequal_lengths",
    "three_patients",
    "eight_patients",
    "forty_patients",
    "shorter_than_schedule",
    "schema_syntax",
    "schema_contradicts_codes",
]
ENTRY_POINTS = ("validate", "train", "study")


def snapshot(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): (p.stat().st_size if p.is_file() else -1) for p in folder.rglob("*")}


def argv_for(entry: str, case: Case, work: Path) -> list[str]:
    schema = ["--schema", case.schema] if case.schema else []
    if entry == "validate":
        return ["validate", str(case.path), *schema]
    if entry == "train":
        return ["--data", str(case.path), *schema, "--out", str(work / "out"), "--epochs", "1", "--quiet"]
    return ["--data", str(case.path), *schema, "--smoke", "--storage", str(work / "store"), "--no-dashboard"]


def check(entry: str, case: Case, code: int, out: str, err: str, work: Path) -> None:
    if entry not in case.fails:
        assert code == 0 and "valid:" in out, (case.name, entry, code, err[-2000:])
        return
    lines = err.strip().splitlines()
    assert code == 2, (case.name, entry, code, err[-3000:])
    assert "Traceback" not in err, err[-3000:]
    assert len(lines) == 1, (case.name, entry, err[-3000:])
    assert lines[0].startswith("error: ") and case.expected in lines[0], (case.name, entry, lines[0], case.expected)
    assert out == "", out
    assert "Started a local Ray" not in err
    for name in ("out", "store"):  # nothing written: the folders the command was given were never created
        assert not (work / name).exists(), (case.name, entry, sorted(p.name for p in (work / name).rglob("*")))
    assert not any((work / "cwd").iterdir()), list((work / "cwd").iterdir())


def _main(entry: str):
    if entry == "validate":
        from healthgym_core.data.__main__ import main
    elif entry == "train":
        from healthgym_core.train import main
    else:
        from study.driver import main
    return main


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("name", list(CASES))
def test_in_process(name, entry, tmp_path, monkeypatch, capsys, tripwires):
    case = CASES[name]
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    before = snapshot(_FOLDER / "corpus")
    code = cli.run(_main(entry), argv_for(entry, case, tmp_path))
    captured = capsys.readouterr()
    check(entry, case, code, captured.out, captured.err, tmp_path)
    assert snapshot(_FOLDER / "corpus") == before


def _run_subprocess(case: Case, entry: str, work: Path) -> subprocess.CompletedProcess:
    (work / "cwd").mkdir(parents=True)
    argv = argv_for(entry, case, work)
    if entry == "study":
        return study(*argv, timeout=180, cwd=work / "cwd")
    module = "healthgym_core.data" if entry == "validate" else "healthgym_core.train"
    return subprocess.run(
        [sys.executable, "-m", module, *argv], capture_output=True, text=True, env=env(), cwd=work / "cwd", timeout=180
    )


@pytest.fixture(scope="module")
def subprocess_results(tmp_path_factory):
    """All subprocess runs at once, three at a time (each one is mostly imports)."""
    root = tmp_path_factory.mktemp("malformed-sub")
    before = snapshot(_FOLDER / "corpus")
    jobs = {(n, e): root / f"{n}-{e}" for n in SUBPROCESS for e in ENTRY_POINTS}
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {k: pool.submit(_run_subprocess, CASES[k[0]], k[1], w) for k, w in jobs.items()}
        results = {k: (f.result(), jobs[k]) for k, f in futures.items()}
    assert snapshot(_FOLDER / "corpus") == before
    return results


@pytest.mark.slow
@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("name", SUBPROCESS)
def test_subprocess(name, entry, subprocess_results):
    r, work = subprocess_results[(name, entry)]
    check(entry, CASES[name], r.returncode, r.stdout, r.stderr, work)


def test_corpus_covers_every_category():
    cases = list(CASES.values())
    assert len(cases) >= 25 and len({c.name for c in cases}) == len(cases)
    assert {
        "structure",
        "encoding",
        "types",
        "codes",
        "values",
        "ranges",
        "ordering",
        "size",
        "schema",
        "schema vs data",
    } <= {c.category for c in cases}
    assert all(set(c.fails) <= set(ENTRY_POINTS) and c.fails for c in cases)
    name, category, path, schema, expected = cases[0]  # a case unpacks as the five documented fields
    assert (name, category) == (cases[0].name, cases[0].category)
    assert set(SUBPROCESS) <= set(CASES)
