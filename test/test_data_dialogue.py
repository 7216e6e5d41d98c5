"""Streaming dialogue generation (paper section 3.2): online narration streams and their
windows, offline streams with a plan and fresh draws, the dispatch by annotation kind, and
the `generate` verbs from annotation files."""

from __future__ import annotations

import json

from dialogue_helpers import FPS, on_grid, scene_annotation

from live_ros.data import dialogue
from live_ros.data.annotations import Event, VideoAnnotation, load_ego4d_narrations
from live_ros.data.dialogue import narration_stream, offline_stream, redraw
from live_ros.data.streams import load_samples, save_samples


def test_ego4d_online_stream(tmp_path):
    path = tmp_path / "n.json"
    path.write_text(
        json.dumps(
            {
                "videos": {
                    "v": {
                        "narration_pass_1": {
                            "narrations": [
                                {"timestamp_sec": 0.3, "narration_text": "#C C opens the fridge"},
                                {"timestamp_sec": 2.0, "narration_text": "#C C takes a bottle"},
                                {"timestamp_sec": 3.1, "narration_text": "#C C closes the fridge"},
                                {"timestamp_sec": 3.4, "narration_text": "#C C looks around"},
                                {"timestamp_sec": 9.9, "narration_text": "#C C sits"},
                            ]
                        }
                    }
                }
            }
        )
    )
    ann = load_ego4d_narrations(path, durations={"v": 6.0})[0]
    s = narration_stream(ann, FPS, rng=0, instruction="Narrate what you see.")
    assert s.num_frames == 13
    assert s.instruction == "Narrate what you see."  # before the first frame, as live_llm holds it
    assert [(t.role, t.time, t.text) for t in s.turns] == [
        ("assistant", 0.5, "C opens the fridge."),
        ("assistant", 2.0, "C takes a bottle."),
        ("assistant", 3.5, "C closes the fridge. C looks around."),  # same frame: merged
    ]  # 9.9 s is past the video
    turns = s.to_turns()
    assert [(t.role, t.num_frames) for t in turns][:3] == [("user", 0), ("stream", 2), ("assistant", 0)]
    assert sum(t.num_frames for t in turns) == s.num_frames
    windows = dialogue.narration_windows(ann, FPS, window=3.0, rng=0)
    assert [w.meta.get("start", 0.0) for w in windows] == [0.0, 3.0]
    assert [t.time for t in windows[1].turns if t.role == "assistant"] == [0.5]  # 3.1 and 3.4 -> 3.5 - 3.0


def test_offline_stream_redraw_and_jsonl(tmp_path):
    ann = scene_annotation()
    train = offline_stream(ann, FPS, rng=7)
    assert "plan" in train.meta and not train.meta["fixed"]
    draws = {tuple((t.time, t.text) for t in redraw(train, s).turns) for s in range(12)}
    assert len(draws) > 3  # fresh insertions per draw
    again = offline_stream(ann, FPS, rng=7)
    assert [(t.time, t.text) for t in again.turns] == [(t.time, t.text) for t in train.turns]
    fixed = offline_stream(ann, FPS, rng=7, fixed=True)
    assert redraw(fixed, 99) is fixed
    path = save_samples([train, fixed], tmp_path / "s.jsonl")
    back = load_samples(path)
    assert back[0].meta["plan"] == json.loads(json.dumps(train.meta["plan"]))
    assert [(t.time, t.text) for t in redraw(back[0], 5).turns] == [(t.time, t.text) for t in redraw(train, 5).turns]


def test_streams_from_annotations_dispatch(tmp_path):
    online = VideoAnnotation(
        "o", 5.0, events=[Event(1.2, "narration", "", "C waves.")], source="ego4d", domain="narration", online=True
    )
    samples = dialogue.streams_from_annotations([online, scene_annotation()], FPS, seed=3)
    assert samples[0].meta["kind"] == "narration" and samples[1].meta["kind"] == "dialogue"
    again = dialogue.streams_from_annotations([online, scene_annotation()], FPS, seed=3)
    assert [s.to_dict() for s in samples] == [s.to_dict() for s in again]
    text = dialogue.format_dialogue(samples[1])
    assert text.startswith("# scene1") and "User" in text


def test_generate_verbs_from_files(tmp_path):
    import argparse

    from live_ros.cli import data as cli_data
    from live_ros.data.annotations import save_annotation

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="verb")
    cli_data.add(sub)
    (tmp_path / "n.json").write_text(
        json.dumps(
            {
                "videos": {
                    "v": {"narration_pass_1": {"narrations": [{"timestamp_sec": 1.2, "narration_text": "#C C waves"}]}}
                }
            }
        )
    )
    (tmp_path / "c.json").write_text(
        json.dumps(
            {
                "database": {
                    "c": {
                        "annotation": [{"segment": [1.0, 3.0], "label": "pour water"}],
                        "class": "Tea",
                        "subset": "testing",
                        "duration": 6.0,
                    }
                }
            }
        )
    )
    save_annotation(scene_annotation(), tmp_path / "ann" / "scene1.json")
    for argv, kind in (
        (["ego4d", str(tmp_path / "n.json")], "narration"),
        (["coin", str(tmp_path / "c.json"), "--fixed"], "dialogue"),
        (["annotations", str(tmp_path / "ann")], "dialogue"),
    ):
        out = tmp_path / argv[0]
        args = parser.parse_args(["generate", *argv, "--out", str(out)])
        assert args.run(args) == 0
        samples = load_samples(out / "streams.jsonl")
        assert len(samples) == 1 and samples[0].meta["kind"] == kind
        assert all(on_grid(t.time) for t in samples[0].turns)
    args = parser.parse_args(["generate", "coin", str(tmp_path / "missing.json"), "--out", str(tmp_path / "x")])
    assert args.run(args) == 1
