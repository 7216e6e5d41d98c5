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
