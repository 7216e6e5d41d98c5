"""The `evaluate` verb (live_ros/cli/evaluate.py) end to end with the embedded preset, and
its refusals of bad input."""

from __future__ import annotations

import argparse
import json
import math

import pytest
from test_evaluation_offline import garden, kitchen, write_features

from live_ros.cli.evaluate import add_evaluate
from live_ros.data.streams import save_samples


def _cli(argv):
    parser = argparse.ArgumentParser(prog="live-ros")
    add_evaluate(parser.add_subparsers(dest="verb"))
    return parser.parse_args(argv)


def test_evaluate_verb_with_the_embedded_preset(tmp_path, capsys):
    """The verb end to end: the untrained embedded model (SmolLM2-135M, EfficientNet-Lite0
    features: 10 tokens of 2 x 1280, frame and difference) on one short hand-made stream."""
    from live_ros.model.encoders import build_encoder, embedded_encoder_config

    encoder = build_encoder(embedded_encoder_config())
    encoder_id = encoder.encoder_id
    sample = kitchen()
    write_features(
        tmp_path / "features", sample.video_id, sample.num_frames, dim=encoder.dim, ntok=10, encoder_id=encoder_id
    )
    streams = save_samples([sample, garden()], tmp_path / "streams.jsonl")
    args = _cli(
        [
            "evaluate",
            str(streams),
            "--features",
            str(tmp_path / "features"),
            "--preset",
            "embedded",
            "--limit",
            "1",
            "--json",
            str(tmp_path / "metrics.json"),
            "--threads",
            "2",
        ]
    )
    assert args.run(args) == 0
    out, err = capsys.readouterr()
    assert "LM-PPL" in out and "TimeDiff@0.725" in out and "streams: 1  turns: 4 (timed: 3;" in out
    assert "preset embedded" in err and "[1/1] kitchen" in err
    data = json.loads((tmp_path / "metrics.json").read_text())
    assert data["streams"] == 1 and data["settings"]["encoder_id"] == encoder_id
    assert data["settings"]["max_positions"] == 8192
    assert all(math.isfinite(data["metrics"][k]) for k in ("lm_ppl", "time_diff", "fluency", "lm_correctness"))


def test_evaluate_verb_reports_bad_input(tmp_path, capsys):
    args = _cli(["evaluate", str(tmp_path / "missing.jsonl"), "--features", str(tmp_path)])
    assert args.run(args) == 1
    assert "missing.jsonl does not exist" in capsys.readouterr().err
    streams = save_samples([garden()], tmp_path / "s.jsonl")
    args = _cli(["evaluate", str(streams), "--features", str(tmp_path / "nofolder")])
    assert args.run(args) == 1
    assert "is not a folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _cli(["evaluate", str(streams), "--features", "x", "--preset", "embedded", "--checkpoint", "y"])
