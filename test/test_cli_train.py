"""The ``live-ros train`` verb (live_ros/cli/train.py): one step from a config file,
no checkpoint folders with run.save_every=0, a bad override refused with exit status 1."""

from __future__ import annotations

import argparse

import pytest
from training_helpers import make_run

from live_ros.cli.train import add


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny base LLM folder, 4 training streams and 1 held-out stream with features, and their config."""
    return make_run(tmp_path_factory.mktemp("train"))


def test_cli_runs_one_step(setup, tmp_path, capsys):
    _, path = setup
    parser = argparse.ArgumentParser()
    add(parser.add_subparsers(dest="verb"))
    args = parser.parse_args(
        [
            "train",
            "--config",
            str(path),
            "--out",
            str(tmp_path / "cli"),
            "--max-steps",
            "1",
            "--quiet",
            "--no-eval",
            "run.save_every=0",
        ]
    )
    assert args.run(args) == 0
    assert (tmp_path / "cli" / "final" / "adapter_model.safetensors").is_file()
    assert not list((tmp_path / "cli").glob("checkpoint-*"))
    bad = parser.parse_args(["train", "--config", str(path), "--out", str(tmp_path / "bad"), "objective.mode=x"])
    assert bad.run(bad) == 1
    assert "objective.mode" in capsys.readouterr().err
