import pandas as pd
import pytest
import torch

from healthgym_core.checkpoint import load_checkpoint, restore_state, save_checkpoint
from healthgym_core.data.cohort import cohort_from_frame
from healthgym_core.epoch import train_epoch
from healthgym_core.errors import CheckpointError
from healthgym_core.sampling import sample
from healthgym_core.state import build_state


def test_resume_reproduces_an_uninterrupted_run_exactly(small_data, tiny_config, tmp_path):
    straight = build_state(tiny_config, small_data)
    expected = [train_epoch(straight, small_data).records for _ in range(3)]

    first = build_state(tiny_config, small_data)
    got = [train_epoch(first, small_data).records]
    save_checkpoint(tmp_path / "c.pt", first, small_data)
    del first
    resumed = restore_state(load_checkpoint(tmp_path / "c.pt"), small_data)
    assert resumed.epoch == 1 and resumed.g_steps == 6
    got += [train_epoch(resumed, small_data).records for _ in range(2)]
    assert got == expected


def test_checkpoint_loads_with_weights_only(small_data, tiny_config, tmp_path):
    state = build_state(tiny_config, small_data)
    path = save_checkpoint(tmp_path / "c.pt", state, small_data)
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "healthgym-checkpoint" and isinstance(raw["meta"], str)
    meta = load_checkpoint(path)["meta"]
    assert meta["config"]["n_critic"] == 2 and meta["data_fingerprint"] == small_data.fingerprint
    assert meta["split"]["val"] == small_data.split.val.tolist()
    assert not list(tmp_path.glob(".*tmp"))  # atomic write left no temporary file


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "healthgym-checkpoint", "x": Evil()}, path)
    with pytest.raises(CheckpointError, match="refused to load"):
        load_checkpoint(path)


def test_truncated_and_foreign_checkpoints(small_data, tiny_config, tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", build_state(tiny_config, small_data), small_data)
    data = path.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(tmp_path / "cut.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a Health Gym checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    ckpt = torch.load(path, weights_only=True)
    ckpt["version"] = 99
    torch.save(ckpt, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="version 99 is not supported"):
        load_checkpoint(tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_sample_is_in_the_input_format_and_validates(small_data, tiny_config, tmp_path):
    state = build_state(tiny_config, small_data)
    train_epoch(state, small_data)
    path = save_checkpoint(tmp_path / "c.pt", state, small_data)
    frame = sample(path, 7, months=12, seed=1, out=tmp_path / "s.parquet")
    assert list(frame.columns) == small_data.schema.columns + ["PatientID", "Timestep"]
    assert len(frame) == 7 * 12 and frame["PatientID"].tolist()[::12] == list(range(7))
    assert set(frame["Gender"].unique()) <= {1.0, 2.0} and set(frame["Ethnic"].unique()) <= {1.0, 2.0, 3.0, 4.0}
    cohort = cohort_from_frame(pd.read_parquet(tmp_path / "s.parquet"), small_data.schema, "s.parquet")
    assert (cohort.n_patients, cohort.n_months) == (7, 12)
    assert sample(path, 7, months=12, seed=1).equals(frame)  # seeded
    csv = sample(path, 3, out=tmp_path / "s.csv")
    assert len(csv) == 3 * 60 and (tmp_path / "s.csv").exists()
