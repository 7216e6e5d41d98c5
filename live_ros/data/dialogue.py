"""Streaming dialogue generation (VideoLLM-online, paper section 3.2): annotations ->
timed dialogues (:class:`~live_ros.data.streams.StreamSample`) on the model's fps grid.

Two routes, as in the paper:

- **Online** annotations (Ego4D narrations: dense, said when they happen) map directly:
  a narration request ("Narrate what you see.") as the stream's standing instruction,
  then each narration an assistant turn at its time (:func:`narration_stream`).
- **Offline** annotations (COIN steps ``[start, end]``, the world's events) go through a
  *plan* of questions and their responses written in advance
  (:mod:`live_ros.data.dialogue_plans`, by a responder of
  :mod:`live_ros.data.dialogue_responders`), and one draw of its question insertions
  (:func:`offline_stream`).

Training streams carry their plan in ``sample.meta["plan"]``: :func:`redraw` gives fresh
insertions (and a fresh standing instruction, or none) each time a sample is drawn.
Evaluation streams keep the turns fixed by their seed (``meta["fixed"] = True``) and open
with live_llm's default instruction, as the deployed node does.
"""

from __future__ import annotations

import copy
from typing import Sequence

import numpy as np

from live_ros.data.annotations import VideoAnnotation
from live_ros.data.dialogue_plans import (
    EPS,
    as_rng,
    build_plan,
    draw_instruction,
    draw_turns,
    grid_index,
    num_grid_frames,
)
from live_ros.data.dialogue_responders import Responder, event_id, templates, unique
from live_ros.data.streams import StreamSample, TimedTurn


def narration_stream(
    annotation: VideoAnnotation,
    fps: float = 2.0,
    rng: np.random.Generator | int | None = 0,
    instruction: str | None = None,
    start: float = 0.0,
    duration: float | None = None,
) -> StreamSample:
    """An online annotation as a stream: the instruction as the stream's standing
    instruction (before the first frame, as live_llm holds it), each event's text an
    assistant turn at the first grid frame at or after it. Narrations that fall on the
    same frame are merged into one turn.

    ``start``/``duration`` cut a window of the video (``start`` is rounded to the grid; turn
    times are then relative to it and ``meta["start"]`` says where the window begins)."""
    rng = as_rng(rng)
    start = round(start * fps) / fps
    total = annotation.duration - start if duration is None else min(duration, annotation.duration - start)
    n = num_grid_frames(total, fps)
    if instruction is None:
        options = templates()["narration"]
        instruction = options[int(rng.integers(len(options)))]
    turns: list[TimedTurn] = []
    by_time: dict[float, list[tuple[str, str]]] = {}
    for e in annotation.events:
        t = e.time - start
        if t < -EPS:
            continue
        k = grid_index(t, fps)
        if k >= n:
            continue
        text = e.text or f"{e.object} {e.kind}".strip()
        if text:
            by_time.setdefault(k / fps, []).append((text, event_id(e, "start")))
    for t in sorted(by_time):
        texts = unique([x for x, _ in by_time[t]])
        turns.append(
            TimedTurn(
                "assistant", t, " ".join(texts), kind="narration", event="; ".join(unique([x for _, x in by_time[t]]))
            )
        )
    vid = annotation.video_id if start == 0 and duration is None else f"{annotation.video_id}@{start:g}"
    meta = {"source": annotation.source, "kind": "narration", "instruction": instruction}
    if start:
        meta["start"] = start
    return StreamSample(vid, round(total, 6), fps, turns, video=annotation.video, meta=meta, instruction=instruction)


def narration_windows(
    annotation: VideoAnnotation,
    fps: float = 2.0,
    window: float | None = None,
    rng: np.random.Generator | int | None = 0,
) -> list[StreamSample]:
    """:func:`narration_stream` over consecutive windows of ``window`` seconds (None: the
    whole video). Windows without narrations are skipped."""
    rng = as_rng(rng)
    if not window:
        return [narration_stream(annotation, fps, rng)]
    out = []
    start = 0.0
    while start < annotation.duration - EPS:
        sample = narration_stream(annotation, fps, rng, start=start, duration=window)
        if any(t.role == "assistant" for t in sample.turns):
            out.append(sample)
        start += round(window * fps) / fps
    return out


def offline_stream(
    annotation: VideoAnnotation,
    fps: float = 2.0,
    rng: np.random.Generator | int | None = 0,
    responder: Responder | None = None,
    fixed: bool = False,
    plan: dict | None = None,
    forced: Sequence[tuple[float, int]] = (),
    **plan_args,
) -> StreamSample:
    """An offline annotation as a stream: a plan (kept in ``meta["plan"]`` for
    :func:`redraw`) and one draw of its insertions and standing instruction. ``fixed``: an
    evaluation stream (its draw is final, ``meta["fixed"] = True``; it opens with the
    default instruction)."""
    from live_ros.model.format import DEFAULT_INSTRUCTION

    rng = as_rng(rng)
    plan = plan or build_plan(annotation, fps, rng, responder, **plan_args)
    draw_seed = int(rng.integers(2**31))
    instruction = DEFAULT_INSTRUCTION if fixed else draw_instruction(np.random.default_rng([draw_seed, 1]))
    turns = draw_turns(plan, draw_seed, forced=forced, narrate=bool(instruction))
    meta = {
        "source": annotation.source,
        "kind": "dialogue",
        "domain": annotation.domain,
        "plan": plan,
        "fixed": bool(fixed),
        "draw_seed": draw_seed,
    }
    if forced:
        meta["forced"] = [[float(t), int(q)] for t, q in forced]
    return StreamSample(
        annotation.video_id,
        round(annotation.duration, 6),
        fps,
        turns,
        video=annotation.video,
        meta=meta,
        instruction=instruction,
    )


def redraw(sample: StreamSample, rng: np.random.Generator | int | None = None) -> StreamSample:
    """A fresh draw of a training stream's insertions (new question times, questions and
    dropped responses) and standing instruction; fixed (evaluation) streams and streams
    without a plan come back unchanged."""
    plan = sample.meta.get("plan")
    if not plan or sample.meta.get("fixed"):
        return sample
    rng = as_rng(rng)
    out = copy.copy(sample)
    out.meta = dict(sample.meta)
    forced = [(float(t), int(q)) for t, q in sample.meta.get("forced", [])]
    out.instruction = draw_instruction(rng) if "narration" in plan else ""
    out.turns = draw_turns(plan, rng, forced=forced, narrate=bool(out.instruction))
    return out


# --------------------------------------------------------------------------- sources


def world_stream(
    annotation: VideoAnnotation,
    fps: float = 2.0,
    rng: np.random.Generator | int | None = 0,
    fixed: bool = False,
    responder: Responder | None = None,
) -> StreamSample:
    """A world annotation as a dialogue stream; long streams (``meta["late_object"]``) get
    the reminder of the late object's appearance asked early (in the first 20 s). Objects
    outside the world's named vocabulary are said generically
    (:func:`live_ros.data.generic.spoken_annotation`)."""
    from live_ros.data.generic import spoken_annotation
    from live_ros.data.world_objects import named_objects

    rng = as_rng(rng)
    annotation = spoken_annotation(annotation, named_objects())
    late = annotation.meta.get("late_object")
    if late:
        plan = build_plan(annotation, fps, rng, responder, must_remind=[("appears", late)])
        qid = next(
            q["id"]
            for q in plan["questions"]
            if q["category"] == "reminder" and q["mode"] == "remind-appears" and q["target"]["object"] == late
        )
        asked = float(rng.uniform(5.0, 20.0))
        sample = offline_stream(annotation, fps, rng, fixed=fixed, plan=plan, forced=[(asked, qid)])
    else:
        sample = offline_stream(annotation, fps, rng, responder, fixed=fixed)
    sample.meta["split"] = annotation.meta.get("split", "")
    return sample


def streams_from_annotations(
    annotations: Sequence[VideoAnnotation],
    fps: float = 2.0,
    seed: int = 0,
    responder: Responder | None = None,
    fixed: bool = False,
    window: float | None = None,
) -> list[StreamSample]:
    """Online annotations -> narration streams (optionally in windows of ``window`` s);
    offline ones -> dialogue streams with plans. Deterministic in ``seed``."""
    out = []
    for i, ann in enumerate(annotations):
        rng = np.random.default_rng([int(seed), i])
        if ann.online:
            out.extend(narration_windows(ann, fps, window, rng))
        elif ann.source == "world":
            out.append(world_stream(ann, fps, rng, fixed=fixed, responder=responder))
        else:
            out.append(offline_stream(ann, fps, rng, responder, fixed=fixed))
    return out


def format_dialogue(sample: StreamSample) -> str:
    """A readable transcript: ``[  12.5 s] User: ...``."""
    lines = [f"# {sample.video_id}  ({sample.duration:.1f} s, {sample.num_frames} frames at {sample.fps:g} fps)"]
    lines.append(
        f"[ before  ] User (instruction): {sample.instruction}"
        if sample.instruction
        else "[ before  ] (no instruction: silent until asked)"
    )
    for turn in sample.turns:
        who = "User" if turn.role == "user" else "Assistant"
        tag = f" ({turn.kind})" if turn.kind else ""
        lines.append(f"[{turn.time:7.1f} s] {who}{tag}: {turn.text}")
    return "\n".join(lines)
