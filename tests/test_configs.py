"""Named configurations (healthgym_core/configs/*.toml): they load, they say what they scored, bad ones are refused
in one line, and the trainer takes one with the command line on top."""

import json
import subprocess
import sys

import pytest

from healthgym_core.config import defaults
from healthgym_core.configs import NAMED, load_config, upstream_options
from healthgym_core.errors import DataError


def test_the_named_configurations_load_and_say_where_they_come_from():
    assert {"upstream", "cpu_base", "stronger_critic"} <= set(NAMED)
    for name in NAMED:
        c = load_config(name)
        assert len(c.about) > 40 and "emd_feat" in c.scored and "seeds" in c.scored
    assert load_config("upstream").options == {}  # upstream is the defaults, declared once in config.py
    assert load_config("upstream").full() == upstream_options()
    assert upstream_options() == {k: v for k, v in defaults().items() if k in upstream_options()}
    assert load_config("stronger_critic").full()["n_critic"] == 10


@pytest.mark.parametrize(
    "text, needle",
    [
        ("[options]\nn_critic = 0\n", "[options]: n_critic=0: must be a whole number of 1-100"),
        ("[options]\nlearning_rate = 1e-3\n", "'learning_rate' is not a training option"),
        ("[options]\nhidden = 64\n", "'hidden' is a size, seed or execution choice"),
        ('[options]\nn_critic = "five"\n', "n_critic takes a int"),
        ("[options]\nfresh_real_batch = 1\n", "fresh_real_batch takes a bool"),
        ("colour = 'red'\n", "unknown key 'colour'"),
        ("[options\n", "not valid TOML"),
        ("a = " + "[" * 5000 + "1" + "]" * 5000 + "\n", "not valid TOML: nested too deeply"),
    ],
)
def test_a_bad_configuration_file_is_refused_naming_the_file(tmp_path, text, needle):
    f = tmp_path / "mine.toml"
    f.write_text(text)
    with pytest.raises(DataError) as e:
        load_config(str(f))
    assert str(f) in str(e.value) and needle in str(e.value) and "\n" not in str(e.value)


def test_a_whole_number_is_taken_for_a_float_option(tmp_path):
    f = tmp_path / "mine.toml"
    f.write_text("about = 'mine'\n[options]\ngp_weight = 20\n")
    assert load_config(str(f)).options == {"gp_weight": 20.0}


def run_train(*args):
    return subprocess.run(
        [sys.executable, "-m", "healthgym_core.train", *map(str, args)], capture_output=True, text=True
    )


TINY = ["--patients", "60", "--hidden", "8", "--batch-size", "16", "--schedule", "ladder:4-8", "--eval-samples", "32"]
TINY += ["--sample-patients", "5", "--threads", "1", "--quiet", "--epochs", "1"]


def test_the_trainer_takes_a_configuration_and_the_command_line_wins(tmp_path):
    out = tmp_path / "run"
    r = run_train("--config", "stronger_critic", "--n-critic", "2", "--no-align-reverse", *TINY, "--out", out)
    assert r.returncode == 0, r.stderr
    run = json.loads((out / "run.json").read_text())
    cfg = run["config"]
    assert run["named_config"] == "stronger_critic"
    assert cfg["n_critic"] == 2 and cfg["align_reverse"] is False  # given on the command line
    assert cfg["gp_weight"] == pytest.approx(26.922621958236096) and cfg["corr_form"] == "2022"  # from the file
    assert cfg["hidden"] == 8  # sizes stay the command line's


@pytest.mark.parametrize("config", ["strongest", "nope.toml"])
def test_the_trainer_refuses_a_bad_configuration_in_one_line(tmp_path, config):
    r = run_train("--config", config, *TINY, "--out", tmp_path / "run")
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert config in lines[0]
    assert not (tmp_path / "run").exists()


def test_a_deeply_nested_space_or_schema_is_refused_in_one_line(tmp_path):
    from healthgym_core.data.schema import load_schema_toml
    from study.spaces import load_space

    deep = tmp_path / "deep.toml"
    deep.write_text("a = " + "[" * 5000 + "1" + "]" * 5000 + "\n")
    for load in (load_space, load_schema_toml):
        with pytest.raises(DataError) as e:
            load(str(deep))
        assert str(e.value) == f"{deep}: not valid TOML: nested too deeply"
