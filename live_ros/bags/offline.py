"""The offline side of replay-eval: ``live-ros evaluate``'s TimeDiff on the same stream the
graph saw (pure: torch and the model, no rclpy).

The stream is built from what the replay had: the frames the LLM took (the bag's sampled
images, preprocessed and encoded exactly as camera_subscriber + frame_encoder do, one frame
at a time), the questions at their times with their expected answers (else the answer the
graph gave), and one assistant turn per annotated event at the first frame at or after it
(events on the same frame share a turn), the way ``live-ros generate`` places responses.
:func:`live_ros.evaluate.evaluate` then runs its teacher-forced forward and metrics on it.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from live_ros.bags.score import Asked, EventRef
from live_ros.data.streams import StreamSample, TimedTurn

EPS = 1e-6


def encode_frames(encoder, frames: Sequence[np.ndarray]):
    """Frame tokens [T, N, D] float32, one frame per call (as frame_encoder in lockstep),
    as one new stream."""
    import torch

    encoder.reset()
    return torch.cat([encoder.encode([f]).float().cpu() for f in frames]) if frames else torch.zeros(0)


def offline_stream(video_id: str, frame_times: Sequence[float], events: Sequence[EventRef],
                   asked: Sequence[Asked], fps: float) -> StreamSample:
    """The replay as a timed stream on the model's grid (frame k at k / fps)."""
    n = len(frame_times)
    duration = (n - 1) / fps if n else 0.0
    turns: list[TimedTurn] = []
    for q in asked:
        if q.time > duration + EPS:
            continue
        turns.append(TimedTurn("user", q.time, q.text, kind="question"))
        if q.expected_at is not None:   # a reminder: the expected answer is due later, at its event
            continue
        answer = q.expected if q.expected is not None else q.answer
        if answer:
            turns.append(TimedTurn("assistant", q.time, answer, kind="answer"))
    by_frame: dict[int, list[str]] = {}
    for e in events:
        k = int(math.ceil(e.time * fps - EPS))
        if 0 <= k < n:
            text = e.text or f"{e.object} {e.kind}".strip()
            if text and text not in by_frame.setdefault(k, []):
                by_frame[k].append(text)
    for k in sorted(by_frame):
        turns.append(TimedTurn("assistant", k / fps, " ".join(by_frame[k]), kind="narration"))
    turns.sort(key=lambda t: (t.time, 0 if t.role == "user" else 1))
    return StreamSample(video_id, round(duration, 6), fps, turns, meta={"source": "replay-eval"})


def safe_id(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "replay"


def offline_metrics(model, tokens, frame_tokens, frame_times: Sequence[float], sample: StreamSample,
                    work_dir: str | Path, *, theta: float | None, encoder_id: str) -> dict:
    """``live-ros evaluate`` on ``sample`` with ``frame_tokens`` [T, N, D] (written as the
    stream's features file in ``work_dir``). Returns the stream's metrics, compact."""
    import torch

    from live_ros.data.features import FORMAT, save_features
    from live_ros.evaluate import evaluate

    work_dir = Path(work_dir)
    save_features(work_dir / f"{sample.video_id}.safetensors", frame_tokens.to(torch.float16).contiguous(),
                  torch.tensor(list(frame_times), dtype=torch.float64),
                  {"format": FORMAT, "encoder_id": encoder_id, "fps": repr(float(sample.fps)),
                   "video": "replay-eval", "num_frames": frame_tokens.shape[0],
                   "num_tokens": frame_tokens.shape[1], "dim": frame_tokens.shape[2]})
    result = evaluate(model, tokens, [sample], work_dir, theta=theta)
    rec = result["per_stream"][0]
    notes = list(rec.get("notes", []))
    steps = np.diff(np.asarray(frame_times, dtype=float))
    if steps.size and np.abs(steps - 1.0 / sample.fps).max() > 0.05 / sample.fps:
        notes.append(f"the frames taken are not on a regular {sample.fps:g} fps grid (gaps in the bag): offline "
                     f"frame k is the k-th frame taken, placed at k / fps")
    return {"time_diff": rec.get("time_diff"), "time_diff_theta": rec.get("time_diff_theta"), "theta": theta,
            "fluency": rec.get("fluency"), "fluency_theta": rec.get("fluency_theta"), "lm_ppl": rec.get("lm_ppl"), "lm_correctness": rec.get("lm_correctness"),
            "missed": rec.get("missed"), "missed_theta": rec.get("missed_theta"), "turns": rec.get("turns"),
            "timed_turns": rec.get("timed_turns"), "frames": rec.get("frames"), "notes": notes,
            "stream": sample.to_dict()}


def engine_decisions(model, tokens, frame_tokens, stamps: Sequence[float], config, questions: Sequence[tuple[int, str]] = ()):
    """The core engine alone on ``frame_tokens`` (one frame at a time, as live_llm in
    lockstep): per frame {stamp, spoke, p_interval, response}; ``questions``: (number of
    frames taken before it, text). Returns (decisions, answers)."""
    from live_ros.engine import StreamEngine

    engine = StreamEngine(model, tokens, config)
    decisions, answers = [], []
    pending = sorted(questions)

    def ask_due(taken: int) -> None:
        while pending and pending[0][0] <= taken:
            _, text = pending.pop(0)
            final = [e for e in engine.ask(text) if getattr(e, "final", False)]
            answers.append(final[-1].text if final else None)

    for k, (tok, stamp) in enumerate(zip(frame_tokens, stamps)):
        ask_due(k)
        events = engine.take_frame(tok, float(stamp))
        final = [e for e in events if getattr(e, "final", False)]
        first = events[0]
        p = first.p_interval if first.kind == "silent" else (final[-1].p_interval if final else None)
        decisions.append({"stamp": float(stamp), "spoke": bool(final), "p_interval": p,
                          "response": final[-1].text if final else None})
    ask_due(len(stamps))
    return decisions, answers
