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


def test_score_verb_checks_saved_responses_against_the_demo_annotation(tmp_path, capsys):
    """`live-ros score`: hand-made responses with known right and wrong words, against the
    bundled video's annotation (media/demo.json: the cat appears at 4.4 s, the coffee cup at
    15.0 s, the rocket at 27.4 s, the helmet at 52.3 s, the astronaut at 71.5 s; the helmet
    leaves at 66.9 s). The helmet is an object no model was trained on: with
    --known-objects, the generic answer is the right one for it."""
    from conftest import ROOT

    from live_ros.cli import main

    responses = [
        {"video_time": 4.5, "text": "The cat appears.", "kind": "narration"},
        {"video_time": 15.5, "text": "The astronaut appears.", "kind": "narration"},  # wrong object, not there
        {"video_time": 28.0, "text": "The rocket leaves.", "kind": "narration"},  # right object, wrong event
        {"video_time": 30.0, "text": "I see a cat, a coffee cup and a rocket.", "kind": "answer", "query_id": 1},
        {"video_time": 40.0, "text": "The horse appears.", "kind": "narration"},  # no event; not in the video
    ]
    path = tmp_path / "responses.json"
    path.write_text(json.dumps({"responses": responses}))
    out = tmp_path / "words.json"
    assert main(["score", str(path), "--annotations", str(ROOT / "media" / "demo.json"), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    words = json.loads(out.read_text())
    verdicts = {(e["time"], e["noun"] if "noun" in e else e["object"]): e["verdict"] for e in words["events"]}
    assert verdicts[(4.4, "cat")] == "OK"
    assert verdicts[(15.0, "coffee cup")] == "WRONG OBJECT"
    assert verdicts[(27.4, "rocket")] == "WRONG EVENT"
    assert verdicts[(52.3, "helmet")] == "MISSED"
    s = words["summary"]
    assert (s["events"], s["responded"], s["correct"], s["responses"], s["spurious"], s["hallucinated"]) == (
        13,
        3,
        1,
        4,
        1,
        2,
    )
    assert printed.index("events 13") < printed.index("WRONG OBJECT")
    assert "HALLUCINATED" in printed and "astronaut" in printed
    # the helmet, never trained: right when said generically, wrong by its name (it is there:
    # no hallucination)
    helmet = tmp_path / "helmet.json"
    said = [
        {"video_time": 52.5, "text": "Something I can't name appears.", "kind": "narration"},
        {"video_time": 67.0, "text": "The helmet leaves.", "kind": "narration"},
    ]
    helmet.write_text(json.dumps(said))
    known = "cat,coffee cup,rocket,astronaut,horse"
    demo = str(ROOT / "media" / "demo.json")
    assert main(["score", str(helmet), "--annotations", demo, "--known-objects", known, "--json", str(out)]) == 0
    capsys.readouterr()
    words = json.loads(out.read_text())
    expected = {(e["time"], e["noun"]): (e["object"], e["verdict"]) for e in words["events"]}
    assert expected[(52.3, "helmet")] == ("something", "OK")
    assert expected[(66.9, "helmet")] == ("something", "WRONG OBJECT")
    assert words["summary"]["hallucinated"] == 0
    # without an annotation: every response listed with its time, nothing called spurious
    assert main(["score", str(path)]) == 0
    printed = capsys.readouterr().out
    assert "cannot score" in printed and "40.00 s" in printed and "spurious" not in printed
