"""Annotation formats: Ego4D narrations, COIN steps, the project's own JSON."""

from __future__ import annotations

import json

import pytest

from live_ros.data.annotations import (
    AnnotationError,
    Event,
    VideoAnnotation,
    clean_narration,
    load_annotation,
    load_coin,
    load_ego4d_narrations,
    save_annotation,
    timeline_text,
)

EGO4D = {
    "videos": {
        "uid-a": {
            "narration_pass_1": {
                "narrations": [
                    {"timestamp_sec": 3.4, "narration_text": "#C C picks up the knife"},
                    {"timestamp_sec": 1.1, "narration_text": "#C C opens the drawer #unsure"},
                    {"timestamp_sec": 5.0, "narration_text": "#O a man walks in."},
                    {"timestamp_sec": 6.0, "narration_text": "#unsure"},
                ]
            }
        },
        "uid-b": {
            "narration_pass_1": {"narrations": []},
            "narration_pass_2": {"narrations": [{"timestamp_sec": 2.0, "narration_text": "#C C cuts a carrot"}]},
        },
        "uid-c": {"status": "redacted"},
    }
}

COIN = {
    "database": {
        "vid1": {
            "annotation": [
                {"segment": [12.0, 20.5], "label": "remove the old tire"},
                {"segment": [2.0, 8.0], "label": "jack up the car"},
            ],
            "class": "ChangeCarTire",
            "subset": "training",
            "duration": 30.0,
        },
        "vid2": {
            "annotation": [{"segment": [1.0, 4.0], "label": "pour water"}],
            "class": "MakeTea",
            "subset": "testing",
            "duration": 10.0,
        },
    }
}


def test_clean_narration():
    assert clean_narration("#C C picks up the knife") == "C picks up the knife."
    assert clean_narration("#c c opens the door #unsure ") == "C opens the door."
    assert clean_narration("#O  a man   walks in.") == "A man walks in."
    assert clean_narration("#unsure") == ""
    assert clean_narration("#C C stirs, ") == "C stirs."


def test_ego4d_narrations(tmp_path):
    path = tmp_path / "all_narrations_redacted.json"
    path.write_text(json.dumps(EGO4D))
    anns = {a.video_id: a for a in load_ego4d_narrations(path, video_dir=tmp_path / "videos")}
    assert set(anns) == {"uid-a"}  # pass 2 only with passes=("narration_pass_1",); uid-c has none
    a = anns["uid-a"]
    assert a.online and a.domain == "narration" and a.source == "ego4d"
    assert [e.time for e in a.events] == [1.1, 3.4, 5.0]
    assert [e.text for e in a.events] == ["C opens the drawer.", "C picks up the knife.", "A man walks in."]
    assert a.duration == pytest.approx(7.0)  # last narration + 2 s tail
    assert a.video.endswith("videos/uid-a.mp4")
    both = load_ego4d_narrations(path, passes=("narration_pass_1", "narration_pass_2"), durations={"uid-b": 9.0})
    b = {x.video_id: x for x in both}["uid-b"]
    assert b.duration == 9.0 and b.events[0].text == "C cuts a carrot."


def test_ego4d_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="all_narrations_redacted"):
        load_ego4d_narrations(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"database": {}}))
    with pytest.raises(AnnotationError, match="videos"):
        load_ego4d_narrations(bad)


def test_coin(tmp_path):
    path = tmp_path / "COIN.json"
    path.write_text(json.dumps(COIN))
    anns = load_coin(path)
    assert [a.video_id for a in anns] == ["vid1", "vid2"]
    a = anns[0]
    assert not a.online and a.domain == "procedure" and a.duration == 30.0 and a.meta["task"] == "ChangeCarTire"
    assert [(e.time, e.end, e.object, e.kind) for e in a.events] == [
        (2.0, 8.0, "jack up the car", "step"),
        (12.0, 20.5, "remove the old tire", "step"),
    ]
    assert a.critical_times() == [2.0, 8.0, 12.0, 20.5]
    assert timeline_text(a).splitlines()[0] == "2.0-8.0 s: jack up the car"
    assert [a.video_id for a in load_coin(path, subset="testing")] == ["vid2"]


def test_own_format_roundtrip(tmp_path):
    ann = VideoAnnotation(
        "v1",
        12.5,
        video="",
        events=[
            Event(1.0, "appears", "cat", "The cat appears."),
            Event(4.0, "moves", "cat", "The cat moves up.", end=5.5, end_text="The cat stops."),
            Event(8.0, "leaves", "cat", "The cat leaves."),
        ],
        source="world",
        fps=10.0,
        size=[320, 240],
        objects=["cat"],
        tracks={"cat": [[0.9, [0, 10, 20, 40], False], [1.0, [0, 10, 40, 40], True], [8.0, None, False]]},
    )
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "v1.mp4").write_bytes(b"")
    ann.video = "../videos/v1.mp4"
    path = save_annotation(ann, tmp_path / "ann" / "v1.json")
    data = json.loads(path.read_text())
    assert data["format"] == "live_ros.annotation/1"
    assert data["events"][1] == {
        "time": 4.0,
        "end": 5.5,
        "kind": "moves",
        "object": "cat",
        "text": "The cat moves up.",
        "end_text": "The cat stops.",
    }
    back = load_annotation(path)
    assert back.video == str((tmp_path / "videos" / "v1.mp4").resolve())
    assert [e.to_dict() for e in back.events] == [e.to_dict() for e in ann.events]
    assert back.on_screen(0.5) == [] and back.on_screen(1.0) == ["cat"] and back.on_screen(8.0) == []
    assert back.box_at("cat", 0.95) == ([0, 10, 20, 40], False)
    assert back.box_at("cat", 3.0) == ([0, 10, 40, 40], True)
    assert back.box_at("cat", 9.0) == (None, False)


def test_own_format_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        load_annotation(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps({"format": "live_ros.annotation/1", "video_id": "x", "duration": 1, "events": [{"kind": "appears"}]})
    )
    with pytest.raises(AnnotationError, match="bad.json.*time"):
        load_annotation(bad)
    bad.write_text(json.dumps({"format": "other/2", "video_id": "x", "duration": 1}))
    with pytest.raises(AnnotationError, match="other/2"):
        load_annotation(bad)
