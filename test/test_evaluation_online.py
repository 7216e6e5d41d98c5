"""Online evaluation through the engine (live_ros/evaluation/online.py): the scoring of what
the engine said against a stream's own turns, and one stream end to end through a steered
tiny model (test_engine.py's ``steer``: frame (0, 1) speaks, (1, 0) stays silent)."""

from __future__ import annotations

import torch
from test_engine import SILENT, SPEAK, VDIM, engine, steer, tiny

from live_ros.data.features import FORMAT, save_features
from live_ros.data.streams import StreamSample, TimedTurn
from live_ros.evaluation.online import evaluate_online, score_stream, turn_refs
from live_ros.evaluation.score import Said

FPS = 2.0


def stream() -> StreamSample:
    """10 frames (4.5 s): a question answered at once at 1.0 s, two frame-triggered turns at
    2.0 s and 4.0 s, the second a reminder for the cup (its event at 3.9 s)."""
    turns = [
        TimedTurn("user", 1.0, "What is there?", kind="question"),
        TimedTurn("assistant", 1.0, "A table.", kind="answer"),
        TimedTurn("assistant", 2.0, "A ball rolls in.", kind="narration", event="enter:ball@2.0"),
        TimedTurn("assistant", 4.0, "The cup is here.", kind="reminder", event="enter:cup@3.9"),
    ]
    return StreamSample("s", 4.5, FPS, turns)


def said(t: float, text: str, proactive: bool = True) -> Said:
    return Said(int(t * 100), 0, "narration", text, t, proactive, t)


def test_turn_refs_leave_out_the_immediate_answers():
    refs = turn_refs(stream())
    assert [(r.time, r.kind, r.object) for r in refs] == [(2.0, "narration", "ball"), (4.0, "reminder", "cup")]


def test_score_stream_matches_in_the_window_and_checks_the_reminder():
    row = score_stream(stream(), [said(2.5, "A ball rolls in."), said(4.5, "the cup is here"), said(0.5, "noise")])
    assert row["turns"] == 2 and row["matched"] == 2 and row["spurious"] == 1
    assert abs(row["time_diff"] - 0.5) < 1e-9 and abs(row["signed_time_diff"] - 0.5) < 1e-9
    assert row["missed_rate"] == 0.0
    assert row["reminders"] == [
        {
            "object": "cup",
            "event_time": 3.9,
            "turn_time": 4.0,
            "honoured": True,
            "response": "the cup is here",
            "response_time": 4.5,
        }
    ]
    late = score_stream(stream(), [said(5.5, "the cup")])  # 1.5 s after the reminder's turn: not honoured
    assert late["reminders"][0]["honoured"] is False and late["missed_rate"] == 0.5


def test_a_stream_through_the_engine(tmp_path):
    model, tokens = tiny()
    steer(model, tokens)
    speak_at = {4, 8}  # 2.0 s and 4.0 s: the frames of the two proactive turns
    frames = torch.stack([SPEAK if k in speak_at else SILENT for k in range(10)])
    save_features(
        tmp_path / "s.safetensors",
        frames.half(),
        torch.arange(10, dtype=torch.float64) / FPS,
        {
            "format": FORMAT,
            "encoder_id": "",
            "fps": FPS,
            "video": "s.mp4",
            "num_frames": 10,
            "num_tokens": frames.shape[1],
            "dim": VDIM,
        },
    )
    result = evaluate_online(engine(model, tokens, theta=0.5, max_new_tokens=4), [stream()], tmp_path)
    row = result["per_stream"][0]
    proactive = [s for s in row["said"] if s["proactive"]]
    assert [s["time"] for s in proactive] == [2.0, 4.0]
    assert row["frames"] == 10 and row["matched"] == 2 and row["spurious"] == 0
    assert result["streams"] == 1 and result["metrics"]["time_diff"] == 0.0


def test_the_standing_instruction_opens_the_stream_and_the_words_are_scored(tmp_path):
    """The stream's instruction is the engine's for that stream; a stream with an annotation
    gets word scores (the tiny model says nothing: its responses come in time, naming nothing)."""
    import copy
    import json

    from live_ros.evaluation.online import format_online, without_questions

    model, tokens = tiny()
    steer(model, tokens)
    frames = torch.stack([SPEAK if k in (4, 8) else SILENT for k in range(10)])
    save_features(
        tmp_path / "s.safetensors",
        frames.half(),
        torch.arange(10, dtype=torch.float64) / FPS,
        {"format": FORMAT, "encoder_id": "", "fps": FPS, "num_frames": 10, "num_tokens": 10, "dim": VDIM},
    )
    annotation = {
        "format": "live_ros.annotation/1",
        "video_id": "s",
        "duration": 4.5,
        "events": [
            {"time": 2.0, "kind": "appears", "object": "ball", "text": "The ball appears."},
            {"time": 3.9, "kind": "appears", "object": "cup", "text": "The cup appears."},
        ],
    }
    (tmp_path / "s.json").write_text(json.dumps(annotation))
    sample = copy.copy(stream())
    sample.instruction = "Narrate what you see."
    sample.meta = {"annotation": str(tmp_path / "s.json")}
    quiet = without_questions(sample)
    assert [t.text for t in quiet.turns] == ["A ball rolls in.", "The cup is here."] and quiet.instruction
    eng = engine(model, tokens, theta=0.5, max_new_tokens=4)
    result = evaluate_online(eng, [quiet], tmp_path)
    prefix = tokens.prefix_ids + tokens.user_ids("Narrate what you see.")
    assert eng.fed_ids[: len(prefix)] == prefix
    words = result["per_stream"][0]["words"]
    assert words["scored"] and [e["verdict"] for e in words["events"]] == ["WRONG OBJECT", "WRONG OBJECT"]
    assert result["words"]["events"] == 2 and result["words"]["responded"] == 2 and result["words"]["correct"] == 0
    assert all(s["kind"] == "narration" for s in result["per_stream"][0]["said"])
    text = format_online(result)
    assert text.index("words, all streams") < text.index("timing against the streams' turns")
