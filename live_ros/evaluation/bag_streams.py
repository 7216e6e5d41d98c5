"""The pure side of replay-eval (torch and the model, no rclpy): its inputs (the bag's
camera scan, annotated events and questions), and ``live-ros evaluate``'s TimeDiff on the
same stream the graph saw.

The stream is built from what the replay had: the frames the LLM took (the bag's sampled
images, preprocessed and encoded exactly as camera_subscriber + frame_encoder do, one frame
at a time), the questions at their times with their expected answers (else the answer the
graph gave), and one assistant turn per annotated event at the first frame at or after it
(events on the same frame share a turn), the way ``live-ros generate`` places responses.
:func:`live_ros.evaluation.offline.evaluate` then runs its teacher-forced forward and metrics on it.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from live_ros.bags import bagio
from live_ros.data.streams import StreamSample, TimedTurn
from live_ros.evaluation.score import Asked, EventRef, events_from_annotation

EPS = 1e-6


def replay_inputs(
    bag: str | Path,
    topic: str | None = None,
    annotations: str | Path | None = None,
    questions: str | Path | None = None,
    known_objects: Sequence[str] | None = None,
):
    """(scan, events, annotation source, questions, truth) of a replay: the bag's camera
    topic, the events of ``annotations`` (else the annotation stored in the bag), the
    questions file, and the ground truth the words are scored against
    (:func:`live_ros.evaluation.truth.truth_from_annotation`, None without an annotation;
    ``known_objects``: the nouns the model names, others expect the generic answer);
    raises BagError / ValueError."""
    from live_ros.evaluation.truth import truth_from_annotation, world_vocabulary

    from live_ros.bags.schedule import load_questions

    scan = bagio.scan_camera(bag, topic)
    annotation, source = scan.annotation, "bag custom_data" if scan.annotation else None
    if annotations:
        from live_ros.data.annotations import load_annotation

        annotation, source = load_annotation(Path(annotations)).to_dict(), str(annotations)
    events = events_from_annotation(annotation) if annotation else []
    truth = truth_from_annotation(annotation, known_objects, world_vocabulary()) if annotation else None
    return scan, events, source, load_questions(questions) if questions else [], truth


def replay_offline(
    system,
    scan,
    taken,
    answers: Sequence[dict],
    events: Sequence[EventRef],
    fps: float,
    out: str | Path,
    *,
    theta: float | None,
    instruction: str = "",
) -> dict:
    """The offline metrics of a replay: decode the images the LLM took (``taken``: their
    frame plans, with ``order`` in the bag and ``stamp``) from the bag, encode them with
    ``system``'s encoder, build the stream with the replay's ``answers`` (the report's
    score answers) and the graph's standing ``instruction``, and run ``live-ros evaluate``
    on it in ``out/offline``."""
    keep = {p.order for p in taken}
    frames = [bagio.decode_rgb(raw, scan.msgtype) for img, raw in bagio.iter_camera(scan) if img.order in keep]
    tokens = encode_frames(system.encoder, frames)
    first = taken[0].stamp
    times = [p.stamp - first for p in taken]
    asked = [
        Asked(
            a["time"],
            a["question"],
            a["expected"],
            a["query_id"],
            a["answer"],
            a["refused"],
            a.get("expected_at"),
            a.get("answer_time"),
        )
        for a in answers
    ]
    sample = offline_stream(safe_id(Path(scan.bag).name), times, events, asked, fps, instruction)
    return offline_metrics(
        system.model,
        system.tokens,
        tokens,
        times,
        sample,
        Path(out) / "offline",
        theta=theta,
        encoder_id=system.encoder.encoder_id,
    )


def encode_frames(encoder, frames: Sequence[np.ndarray]):
    """Frame tokens [T, N, D] float32, one frame per call (as frame_encoder in lockstep),
    as one new stream."""
    import torch

    encoder.reset()
    return torch.cat([encoder.encode([f]).float().cpu() for f in frames]) if frames else torch.zeros(0)


def offline_stream(
    video_id: str,
    frame_times: Sequence[float],
    events: Sequence[EventRef],
    asked: Sequence[Asked],
    fps: float,
    instruction: str = "",
) -> StreamSample:
    """The replay as a timed stream on the model's grid (frame k at k / fps), opened by the
    graph's standing ``instruction``."""
    n = len(frame_times)
    duration = (n - 1) / fps if n else 0.0
    turns: list[TimedTurn] = []
    for q in asked:
        if q.time > duration + EPS:
            continue
        turns.append(TimedTurn("user", q.time, q.text, kind="question"))
        if q.expected_at is not None:  # a reminder: the expected answer is due later, at its event
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
    return StreamSample(
        video_id, round(duration, 6), fps, turns, meta={"source": "replay-eval"}, instruction=instruction
    )


def safe_id(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "replay"


def offline_metrics(
    model,
    tokens,
    frame_tokens,
    frame_times: Sequence[float],
    sample: StreamSample,
    work_dir: str | Path,
    *,
    theta: float | None,
    encoder_id: str,
) -> dict:
    """``live-ros evaluate`` on ``sample`` with ``frame_tokens`` [T, N, D] (written as the
    stream's features file in ``work_dir``). Returns the stream's metrics, compact."""
    import torch

    from live_ros.data.features import FORMAT, save_features
    from live_ros.evaluation.offline import evaluate

    work_dir = Path(work_dir)
    save_features(
        work_dir / f"{sample.video_id}.safetensors",
        frame_tokens.to(torch.float16).contiguous(),
        torch.tensor(list(frame_times), dtype=torch.float64),
        {
            "format": FORMAT,
            "encoder_id": encoder_id,
            "fps": repr(float(sample.fps)),
            "video": "replay-eval",
            "num_frames": frame_tokens.shape[0],
            "num_tokens": frame_tokens.shape[1],
            "dim": frame_tokens.shape[2],
        },
    )
    result = evaluate(model, tokens, [sample], work_dir, theta=theta)
    rec = result["per_stream"][0]
    notes = list(rec.get("notes", []))
    steps = np.diff(np.asarray(frame_times, dtype=float))
    if steps.size and np.abs(steps - 1.0 / sample.fps).max() > 0.05 / sample.fps:
        notes.append(
            f"the frames taken are not on a regular {sample.fps:g} fps grid (gaps in the bag): offline "
            f"frame k is the k-th frame taken, placed at k / fps"
        )
    return {
        "time_diff": rec.get("time_diff"),
        "time_diff_theta": rec.get("time_diff_theta"),
        "theta": theta,
        "fluency": rec.get("fluency"),
        "fluency_theta": rec.get("fluency_theta"),
        "lm_ppl": rec.get("lm_ppl"),
        "lm_correctness": rec.get("lm_correctness"),
        "missed": rec.get("missed"),
        "missed_theta": rec.get("missed_theta"),
        "turns": rec.get("turns"),
        "timed_turns": rec.get("timed_turns"),
        "frames": rec.get("frames"),
        "notes": notes,
        "stream": sample.to_dict(),
    }


def engine_decisions(
    model, tokens, frame_tokens, stamps: Sequence[float], config, questions: Sequence[tuple[int, str]] = ()
):
    """The core engine alone on ``frame_tokens`` (one frame at a time, as live_llm in
    lockstep): per frame {stamp, spoke, p_interval, response}; ``questions``: (number of
    frames taken before it, text). Returns (decisions, answers)."""
    from live_ros.engine import ResponseEvent, StreamEngine

    engine = StreamEngine(model, tokens, config)
    decisions, answers = [], []
    pending = sorted(questions)

    def ask_due(taken: int) -> None:
        while pending and pending[0][0] <= taken:
            _, text = pending.pop(0)
            final = [e for e in engine.ask(text) if isinstance(e, ResponseEvent) and e.final]
            answers.append(final[-1].text if final else None)

    for k, (tok, stamp) in enumerate(zip(frame_tokens, stamps)):
        ask_due(k)
        events = engine.take_frame(tok, float(stamp))
        final = [e for e in events if isinstance(e, ResponseEvent) and e.final]
        first = events[0]
        p = first.p_interval if first.kind == "silent" else (final[-1].p_interval if final else None)
        decisions.append(
            {
                "stamp": float(stamp),
                "spoke": bool(final),
                "p_interval": p,
                "response": final[-1].text if final else None,
            }
        )
    ask_due(len(stamps))
    return decisions, answers
