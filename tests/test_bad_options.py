"""Bad options through the plain trainer and the study CLI: refused up front, one clear line, exit 2, nothing written.

Extends tests/test_train_cli.py (n_critic 0, GP weight -1, ladder:10-90, batch 999, spiral:3, missing data,
--sample-out .xlsx, --resume without a checkpoint) and tests/test_study.py (unknown space, --num-samples 0,
--batch-size 5000, --resume without a study, --cpus-per-trial 0), which are not repeated here.

Every case runs in-process (training, Ray and the study are replaced by tripwires that fail the test); a
representative subset also runs as real subprocesses (slow).
"""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from healthgym_core import cli
from study.presets import PRESETS
from tests.study_helpers import env, study

# The trainer's tiny configuration of tests/test_train_cli.py: 60 simulated patients, 42 of them for training.
TINY = [
    "--patients",
    "60",
    "--hidden",
    "8",
    "--batch-size",
    "16",
    "--n-critic",
    "1",
    "--schedule",
    "ladder:4-8",
    "--eval-samples",
    "32",
    "--sample-patients",
    "5",
    "--threads",
    "1",
    "--quiet",
    "--epochs",
    "1",
]

# Files a case may name: {file} is a regular file, {space:NAME} a space file below.
SPACES = {
    "negative_low": '[[factor]]\nname = "gp_weight"\nlow = -1.0\nhigh = 10.0\nwhy = "x"\n',
    "bad_schedule": '[[factor]]\nname = "schedule"\nchoices = ["ladder:10-20", "zigzag:3"]\nwhy = "x"\n',
    "long_schedule": '[[factor]]\nname = "schedule"\nchoices = ["ladder:10-20", "ladder:10-90"]\nwhy = "x"\n',
    "n_critic_0": '[[factor]]\nname = "n_critic"\nchoices = [0, 5]\nwhy = "x"\n',
    "syntax": '[[factor]\nname = "n_critic"\n',
    "unknown_factor": '[[factor]]\nname = "learning_rate"\nchoices = [0.001]\nwhy = "x"\n',
    "log_from_0": '[[factor]]\nname = "gp_weight"\nlow = 0.0\nhigh = 10.0\nlog = true\nwhy = "x"\n',
    "fixed_batch_0": "[fixed]\nbatch_size = 0\n",
    "bad_reach": '[[factor]]\nname = "critic_reach"\nchoices = ["final", "sideways"]\nwhy = "x"\n',
    "critic_hidden_negative": '[[factor]]\nname = "critic_hidden"\nchoices = [0, -8]\nwhy = "x"\n',
}

TRAIN = {
    "corr_weight_negative": (["--corr-weight", "-2"], "corr_weight=-2.0: must be a finite number of 0 or more"),
    "gp_weight_nan": (["--gp-weight", "nan"], "gp_weight=nan: must be a finite number"),
    "gp_weight_inf": (["--gp-weight", "inf"], "gp_weight=inf: must be a finite number"),
    "graphs_on_cpu": (["--graphs", "on", "--device", "cpu"], "graphs='on' needs a CUDA device, but the device is cpu"),
    "schedule_nonsense": (["--schedule", "nonsense:1"], "unknown schedule 'nonsense:1'"),
    "schedule_no_lengths": (["--schedule", "ladder:"], "list the lengths"),
    "schedule_length_0": (["--schedule", "ladder:10-0"], "lengths must be at least 1"),
    "schedule_stage_0": (["--schedule", "staged:0:2-4"], "epochs per stage must be at least 1"),
    "schedule_full_too_long": (["--schedule", "full:100"], "length 100 is longer than the data's 60 months"),
    "batch_one_too_many": (["--batch-size", "43"], "batch_size=43 is larger than the 42 training patients"),
    "batch_0": (["--batch-size", "0"], "batch_size=0: must be a whole number of 1-1,000,000"),
    "hidden_0": (["--hidden", "0"], "hidden=0: must be a whole number of 1-4,096"),
    "critic_hidden_negative": (["--critic-hidden", "-1"], "critic_hidden=-1: must be a whole number of 0-4,096"),
    "texture_weight_negative": (
        ["--texture-weight", "-1"],
        "texture_weight=-1.0: must be a finite number of 0 or more",
    ),
    "switch_weight_inf": (["--switch-weight", "inf"], "switch_weight=inf: must be a finite number of 0 or more"),
    "summary_weight_nan": (["--summary-weight", "nan"], "summary_weight=nan: must be a finite number of 0 or more"),
    "share_weight_negative": (["--share-weight", "-1"], "share_weight=-1.0: must be a finite number of 0 or more"),
    "lr_g_0": (["--lr-g", "0"], "lr_g=0.0: must be a positive number"),
    "lr_d_nan": (["--lr-d", "nan"], "lr_d=nan: must be a positive number"),
    "eval_samples_1": (["--eval-samples", "1"], "eval_samples=1: must be a whole number of 2-1,000,000"),
    "epochs_0": (["--epochs", "0"], "--epochs must be at least 1, got 0"),
    "sample_patients_0": (["--sample-patients", "0"], "--sample-patients must be at least 1, got 0"),
    "threads_0": (["--threads", "0"], "--threads must be at least 1, got 0"),
    "threads_too_many": (["--threads", "100000"], "--threads 100000 is more than the"),
    "seed_negative": (["--seed", "-1"], "--seed must be 0 or more, got -1"),
    "split_seed_negative": (["--split-seed", "-1"], "--split-seed must be 0 or more, got -1"),
    "data_seed_negative": (["--data-seed", "-1"], "--data-seed must be 0 or more, got -1"),
    "patients_0": (["--patients", "0"], "--patients must be 1-1,000,000, got 0"),
    "patients_negative": (["--patients", "-5"], "--patients must be 1-1,000,000, got -5"),
    "patients_too_few": (["--patients", "8"], "8 patients are too few"),
    "device_unknown": (["--device", "tpu"], "device='tpu': must be one of auto, cpu, cuda or cuda:N"),
    "schema_unknown": (["--schema", "nosuch"], "nosuch: unknown schema"),
    "out_under_a_file": (["--out", "{file}/run"], "is a file, not a folder"),
    "out_is_a_file": (["--out", "{file}"], "is a file, not a folder"),
}
if not torch.cuda.is_available():
    TRAIN["device_cuda_absent"] = (["--device", "cuda"], "device='cuda': CUDA is not available on this machine")

STUDY = {
    "space_negative_low": (
        ["--space", "{space:negative_low}"],
        "invalid value in the space: gp_weight=-1.0: must be a finite number of 0 or more",
    ),
    "space_bad_schedule": (
        ["--space", "{space:bad_schedule}"],
        "invalid value in the space: unknown schedule 'zigzag:3'",
    ),
    "space_long_schedule": (["--space", "{space:long_schedule}"], "length 90 is longer than the data's 60 months"),
    "space_n_critic_0": (["--space", "{space:n_critic_0}"], "invalid value in the space: n_critic=0"),
    "space_syntax": (["--space", "{space:syntax}"], "not valid TOML"),
    "space_unknown_factor": (["--space", "{space:unknown_factor}"], "factor 'learning_rate' is not a training option"),
    "space_log_from_0": (["--space", "{space:log_from_0}"], "a log range needs low > 0"),
    "space_fixed_batch_0": (["--space", "{space:fixed_batch_0}"], "invalid value in the space: batch_size=0"),
    "space_bad_reach": (["--space", "{space:bad_reach}"], "invalid value in the space: critic_reach='sideways'"),
    "space_critic_hidden_negative": (
        ["--space", "{space:critic_hidden_negative}"],
        "invalid value in the space: critic_hidden=-8",
    ),
    "space_file_missing": (["--space", "{dir}/nosuch.toml"], "space file not found"),
    "storage_under_a_file": (["--storage", "{file}/sub"], "is a file, not a folder"),
    "storage_is_a_file": (["--storage", "{file}"], "is a file, not a folder"),
    "local_dir_under_a_file": (
        ["--storage", "s3://bucket/prefix", "--local-dir", "{file}/sub"],
        "is a file, not a folder",
    ),
    "seed_negative": (["--seed", "-2"], "--seed must be 0 or more, got -2"),
    "split_seed_negative": (["--split-seed", "-1"], "--split-seed must be 0 or more, got -1"),
    "batch_one_too_many": (["--batch-size", "65"], "batch_size=65 is larger than the 64 training patients"),
    "eval_samples_1": (["--eval-samples", "1"], "eval_samples=1: must be a whole number of 2-1,000,000"),
    "patients_too_few": (["--patients", "8"], "8 patients are too few"),
    "max_epochs_0": (["--max-epochs", "0"], "--max-epochs must be at least 1, got 0"),
    "grace_period_0": (["--grace-period", "0"], "--grace-period must be at least 1, got 0"),
    "grace_beyond_max_epochs": (
        ["--grace-period", "5", "--max-epochs", "3"],
        "grace period 5 is more than --max-epochs 3",
    ),
    "preset_grace_beyond_max_epochs": (
        ["--preset", "cpu", "--max-epochs", "1"],
        f"grace period {PRESETS['cpu'].grace_period} is more than --max-epochs 1",  # the cpu preset's own grace
    ),
    "reduction_factor_1": (["--reduction-factor", "1"], "--reduction-factor must be at least 2, got 1"),
    "budget_0": (["--budget", "0"], "--budget must be at least 1, got 0"),
    "budget_below_one_trial": (["--budget", "2"], "--budget 2 is less than one trial's 3 epochs (--max-epochs)"),
    "gpus_negative": (["--gpus-per-trial", "-1"], "--gpus-per-trial must be 0 or more, got -1.0"),
    "max_failures_negative": (["--max-failures", "-1"], "--max-failures must be 0 or more, got -1"),
    "max_concurrent_0": (["--max-concurrent", "0"], "--max-concurrent must be at least 1, got 0"),
    "hidden_0": (["--hidden", "0"], "--hidden must be 1-4,096, got 0"),
    "export_patients_0": (["--export-patients", "0"], "--export-patients must be 1-1,000,000, got 0"),
    "schema_unknown": (["--schema", "nosuch"], "nosuch: unknown schema"),
}

TRAIN_SUBPROCESS = [
    "corr_weight_negative",
    "schedule_nonsense",
    "eval_samples_1",
    "patients_0",
    "threads_too_many",
    "seed_negative",
    "out_under_a_file",
]
STUDY_SUBPROCESS = [
    "space_negative_low",
    "space_bad_schedule",
    "space_long_schedule",
    "storage_under_a_file",
    "grace_beyond_max_epochs",
    "max_concurrent_0",
    "seed_negative",
    "eval_samples_1",
]


def prepare(tmp_path: Path, args: list[str]) -> tuple[list[str], Path]:
    """Write the files a case names; the case's argv and the regular file standing in the way."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder\n")
    (tmp_path / "cwd").mkdir()
    out = []
    for a in args:
        for name, text in SPACES.items():
            if a == f"{{space:{name}}}":
                (tmp_path / f"{name}.toml").write_text(text)
                a = str(tmp_path / f"{name}.toml")
        out.append(a.replace("{file}", str(blocker)).replace("{dir}", str(tmp_path)))
    return out, blocker


def train_argv(tmp_path: Path, args: list[str]) -> list[str]:
    argv, _ = prepare(tmp_path, args)
    return TINY + (["--out", str(tmp_path / "out")] if "--out" not in argv else []) + argv


def study_argv(tmp_path: Path, args: list[str]) -> list[str]:
    argv, _ = prepare(tmp_path, args)
    return (
        ([] if "--preset" in argv else ["--smoke"])
        + ["--no-dashboard"]
        + (["--storage", str(tmp_path / "store")] if "--storage" not in argv else [])
        + argv
    )


def snapshot(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): (p.stat().st_size if p.is_file() else -1) for p in folder.rglob("*")}


def check(code: int, out: str, err: str, needle: str, tmp_path: Path, before: dict) -> None:
    lines = err.strip().splitlines()
    assert code == 2, (code, err[-3000:])
    assert "Traceback" not in err and len(lines) == 1, err[-3000:]
    assert lines[0].startswith("error: ") and needle in lines[0], (lines[0], needle)
    assert out == "" and "Started a local Ray" not in err
    assert snapshot(tmp_path) == before  # nothing written: no --out, no --storage, nothing in the working folder


@pytest.mark.parametrize("case", list(TRAIN))
def test_trainer_refuses(case, tmp_path, monkeypatch, capsys, tripwires):
    from healthgym_core.train import main

    args, needle = TRAIN[case]
    argv = train_argv(tmp_path, args)
    monkeypatch.chdir(tmp_path / "cwd")
    before = snapshot(tmp_path)
    code = cli.run(main, argv)
    captured = capsys.readouterr()
    check(code, captured.out, captured.err, needle, tmp_path, before)


@pytest.mark.parametrize("case", list(STUDY))
def test_study_refuses(case, tmp_path, monkeypatch, capsys, tripwires):
    from study.driver import main

    args, needle = STUDY[case]
    argv = study_argv(tmp_path, args)
    monkeypatch.chdir(tmp_path / "cwd")
    before = snapshot(tmp_path)
    code = cli.run(main, argv)
    captured = capsys.readouterr()
    check(code, captured.out, captured.err, needle, tmp_path, before)


@pytest.mark.parametrize(
    "args",
    [
        ["--n-critic", "abc"],
        ["--corr-form", "2030"],
        ["--kernel", "bogus"],
        ["--critic-reach", "sideways"],
        ["--real-head", "tanh"],
    ],
)
def test_trainer_argparse_errors_exit_2_and_write_nothing(args, tmp_path, capsys):
    """argparse's own refusals: exit 2 and nothing written; argparse prints its usage line before the error."""
    from healthgym_core.train import main

    argv = train_argv(tmp_path, args)
    before = snapshot(tmp_path)
    with pytest.raises(SystemExit) as e:
        cli.run(main, argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and "error: argument" in err.strip().splitlines()[-1] and "Traceback" not in err
    assert snapshot(tmp_path) == before


def _subprocess(kind: str, case: str, work: Path) -> tuple[subprocess.CompletedProcess, dict]:
    if kind == "train":
        argv = train_argv(work, TRAIN[case][0])
        before = snapshot(work)
        r = subprocess.run(
            [sys.executable, "-m", "healthgym_core.train", *argv],
            capture_output=True,
            text=True,
            env=env(),
            cwd=work / "cwd",
            timeout=180,
        )
    else:
        argv = study_argv(work, STUDY[case][0])
        before = snapshot(work)
        r = study(*argv, timeout=180, cwd=work / "cwd")
    return r, before


@pytest.fixture(scope="module")
def subprocess_results(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad-options")
    jobs = [("train", c) for c in TRAIN_SUBPROCESS] + [("study", c) for c in STUDY_SUBPROCESS]
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {j: pool.submit(_subprocess, j[0], j[1], root / f"{j[0]}-{j[1]}") for j in jobs}
        return {j: (f.result(), root / f"{j[0]}-{j[1]}") for j, f in futures.items()}


@pytest.mark.slow
@pytest.mark.parametrize(
    "kind,case", [("train", c) for c in TRAIN_SUBPROCESS] + [("study", c) for c in STUDY_SUBPROCESS]
)
def test_subprocess_refuses(kind, case, subprocess_results):
    (r, before), work = subprocess_results[(kind, case)]
    needle = (TRAIN if kind == "train" else STUDY)[case][1]
    check(r.returncode, r.stdout, r.stderr, needle, work, before)


def markdown() -> str:
    """The bad-options table of docs/reliability.md: every case in-process, with the line it prints."""
    import contextlib
    import io
    import tempfile

    import healthgym_core.train as train
    from study import driver, tuning

    def tripped(*a, **k):
        raise AssertionError("started")

    train.run_epoch = tuning.start_ray = tuning.run_study = tripped
    rows = ["| CLI | bad option | space file | message | exit |", "|---|---|---|---|---|"]
    for kind, table, main, make in (
        ("train", TRAIN, train.main, train_argv),
        ("study", STUDY, driver.main, study_argv),
    ):
        for args, _ in table.values():
            with tempfile.TemporaryDirectory() as d:
                work = Path(d) / "w"
                argv = make(work, args)
                err = io.StringIO()
                with contextlib.redirect_stderr(err):
                    code = cli.run(main, argv)
                line = err.getvalue().strip().replace(str(work), "TMP").replace("|", "\\|")
                shown = " ".join(args).replace("{file}", "FILE").replace("{dir}", "TMP")
                space = ""
                for name, text in SPACES.items():
                    if f"{{space:{name}}}" in shown:
                        shown = shown.replace(f"{{space:{name}}}", f"{name}.toml")
                        space = "`" + "; ".join(text.strip().splitlines()).replace("|", "\\|") + "`"
                rows.append(f"| {kind} | `{shown}` | {space} | `{line}` | {code} |")
    return "\n".join(rows)


if __name__ == "__main__":
    import warnings

    warnings.simplefilter("ignore")
    print(markdown())
