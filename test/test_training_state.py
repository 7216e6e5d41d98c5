"""Checkpoints and resume (live_ros/training/state.py, through the loop): a run stopped
at a step and resumed equals an uninterrupted one (data draws, dropout RNG, optimizer,
schedule); a checkpoint of another model is refused."""

from __future__ import annotations

import random

import pytest
import torch
from safetensors.torch import load_file
from training_helpers import make_run

from live_ros.training.config import ConfigError, load_config
from live_ros.training.loop import train
from live_ros.training.state import (
    STATE_FILE,
    checkpoints,
    latest_checkpoint,
    prune_checkpoints,
    rng_state,
    set_rng_state,
)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny base LLM folder, 4 training streams and 1 held-out stream with features, and their config."""
    return make_run(tmp_path_factory.mktemp("train"))


def test_resume_continues_at_the_step_with_the_same_result(setup, tmp_path):
    _, path = setup
    config = lambda: load_config(path, ["eval.enabled=false"])  # noqa: E731
    full = train(config(), out_dir=tmp_path / "full", max_steps=4, progress=False)

    part = train(config(), out_dir=tmp_path / "part", max_steps=4, progress=False, stop_after=3)
    assert part.interrupted and part.final_dir is None and part.steps == 3
    assert latest_checkpoint(tmp_path / "part").name == "checkpoint-3"
    with pytest.raises(ConfigError, match="--resume"):
        train(config(), out_dir=tmp_path / "part", max_steps=4, progress=False)
    resumed = train(config(), out_dir=tmp_path / "part", max_steps=4, progress=False, resume=True)
    assert resumed.start_step == 3 and resumed.steps == 4
    assert [h["step"] for h in resumed.history] == [1, 2, 3, 4]
    for a, b in zip(full.history, resumed.history):  # dropout and augmentation are on: RNG and draws restored
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-7) and a["lr"] == pytest.approx(b["lr"])
    a = load_file(str(tmp_path / "full" / "checkpoint-4" / "adapter_model.safetensors"))  # fp32
    b = load_file(str(tmp_path / "part" / "checkpoint-4" / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-7)
    assert full.stats["tokens"] == resumed.stats["tokens"] and full.stats["streams"] == resumed.stats["streams"]
    with pytest.raises(ConfigError, match="does not fit"):  # resuming with another LoRA rank
        train(
            load_config(path, ["eval.enabled=false", "lora.r=8"]),
            out_dir=tmp_path / "part",
            max_steps=4,
            progress=False,
            resume=True,
        )


def test_checkpoints_lists_the_complete_ones_and_pruning_keeps_the_newest(tmp_path):
    for name in ("checkpoint-2", "checkpoint-10", "checkpoint-4"):
        (tmp_path / name).mkdir()
        (tmp_path / name / STATE_FILE).write_bytes(b"")
    (tmp_path / "checkpoint-12").mkdir()  # no training state: a checkpoint being written
    (tmp_path / "checkpoint-x").mkdir()
    assert [step for step, _ in checkpoints(tmp_path)] == [2, 4, 10]  # by step, not by name
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoint-10"
    assert latest_checkpoint(tmp_path / "nowhere") is None
    prune_checkpoints(tmp_path, 2)
    assert [step for step, _ in checkpoints(tmp_path)] == [4, 10] and (tmp_path / "checkpoint-12").is_dir()
    prune_checkpoints(tmp_path, 0)  # at least one is kept
    assert [step for step, _ in checkpoints(tmp_path)] == [10]


def test_rng_state_survives_a_save_and_load(tmp_path):
    state = rng_state()
    expect = torch.rand(4), random.random()
    torch.save(state, tmp_path / "rng.pt")
    torch.rand(7), random.random()  # move on, as the steps after a checkpoint do
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))  # Python's tuples come back as lists
    got = torch.rand(4), random.random()
    assert torch.equal(got[0], expect[0]) and got[1] == expect[1]
