"""Grounding streams: short clips that ask what is on screen, to teach the connector which
frame tokens mean which object (the alignment stage of LLaVA-style video LLMs, which
VideoLLM-online builds on; our long dialogue streams name an object in only a few
responses each, too little signal on 2 cores).

From a generated world dataset (``streams.jsonl``, ``annotations/``, ``features/``): for
random frames k of every video, a stream of the ``context`` frames ending at k, a
present-tense question after frame k ("What do you see now?") and the answer the
dialogue's template responder gives for the objects visible then ("I see a cat and a
rocket.", "Nothing is on screen, only the background."). Each clip's features are a slice
of the video's features file, written as its own file.

    live-ros generate grounding data/world/train --out data/world/grounding --per-video 24
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from live_ros.data.annotations import load_annotation, visible_objects
from live_ros.data.generic import spoken_annotation
from live_ros.data.world_objects import named_objects
from live_ros.data.streams import StreamSample, TimedTurn, load_samples, save_samples

QUESTIONS_FILE = Path(__file__).resolve().parent / "assets" / "questions.json"


def _questions() -> list[str]:
    data = json.loads(QUESTIONS_FILE.read_text())
    return [q["q"] for q in data["present"] if q["mode"] == "current" and q["domain"] in ("any", "scene")]


def answer(visible: list[str]) -> str:
    """The template responder's answer to a present-tense question (dialogue_responders.py, mode current)."""
    from live_ros.data.dialogue_responders import _article, _join

    if not visible:
        return "Nothing is on screen, only the background."
    return f"I see {_join([_article(v) for v in visible])}."


def _save_slice(out_dir: Path, clip_id: str, source: Path, tokens, times, meta: dict, a: int, b: int) -> Path:
    """Frames a..b (inclusive) of a video's features as the clip's own features file, times from 0."""
    from live_ros.data.features import features_path, save_features

    return save_features(
        features_path(out_dir / "features", clip_id),
        tokens[a : b + 1].clone(),
        times[a : b + 1] - times[a],
        {**meta, "num_frames": b - a + 1, "derived_from": f"{source}[{a}:{b + 1}]"},
    )


def build_grounding(
    world_dir: str | Path, out_dir: str | Path, per_video: int = 24, context: int = 2, seed: int = 0
) -> Path:
    """Write ``out_dir/streams.jsonl`` and ``out_dir/features/*.safetensors``; returns the
    streams file. ``world_dir`` holds streams.jsonl, annotations/ and features/."""
    from live_ros.data.features import features_path, load_features

    world_dir, out_dir = Path(world_dir), Path(out_dir)
    samples = load_samples(world_dir / "streams.jsonl")
    questions = _questions()
    rng = np.random.default_rng(seed)
    out: list[StreamSample] = []
    for sample in samples:
        feats_file = features_path(world_dir / "features", sample.video_id)
        ann_file = world_dir / "annotations" / f"{sample.video_id}.json"
        if not feats_file.is_file() or not ann_file.is_file():
            raise FileNotFoundError(
                f"grounding needs {feats_file} and {ann_file}: generate the world dataset and "
                f"extract its features first (live-ros generate world / live-ros extract)"
            )
        tokens, times, meta = load_features(feats_file)
        spoken = spoken_annotation(load_annotation(ann_file), named_objects())
        events = sorted(spoken.events, key=lambda e: e.time)
        n = int(tokens.shape[0])
        picks = rng.choice(np.arange(context - 1, n), size=min(per_video, n - context + 1), replace=False)
        for k in sorted(int(p) for p in picks):
            t = k / sample.fps
            visible = visible_objects(e for e in events if e.time <= t + 1e-6)
            clip_id = f"{sample.video_id}-g{k:04d}"
            path = _save_slice(out_dir, clip_id, feats_file, tokens, times, meta, k - context + 1, k)
            end = (context - 1) / sample.fps
            q = questions[int(rng.integers(len(questions)))]
            out.append(
                StreamSample(
                    clip_id,
                    end,
                    sample.fps,
                    [
                        TimedTurn("user", end, q, kind="present"),
                        TimedTurn("assistant", end, answer(visible), kind="answer"),
                    ],
                    features=str(path),
                    meta={"source": "grounding", "fixed": True, "from": sample.video_id, "frame": k},
                )
            )
    return save_samples(out, out_dir / "streams.jsonl")


def build_windows(
    world_dir: str | Path,
    out_dir: str | Path,
    per_video: int = 8,
    before: tuple[int, int] = (1, 12),
    after: tuple[int, int] = (0, 3),
    seed: int = 0,
) -> Path:
    """Event windows: short streams cut around the responses of a training stream's plan,
    so that naming the object that just appeared gets more gradient per second of compute
    than the full streams give it (a 70 s stream names about five events in ~1,500
    positions; a window names one in ~120).

    Per window: a question of the plan that has an update at grid frame ``u`` (present-tense
    narration, a reminder, "tell me about anything that comes into view"), inserted ``before`` frames earlier
    (uniform in the closed range, not before frame 0) with its answer then, its updates as
    :func:`~live_ros.data.dialogue_plans.assemble_turns` schedules them, and ``after`` more
    silent frames. Past-tense questions are left out: their answer at the insertion tells of
    frames the window does not hold. Each window draws a standing instruction as the full
    streams do (:func:`~live_ros.data.dialogue_plans.draw_instruction`); with one, the plan's
    narration is said in the window too, and half of those windows hold no question at all
    (narration only, cut around a narration moment ``u``). Windows are ``fixed`` (no redraw)
    and carry their own features slice. Writes ``out_dir/streams.jsonl`` and
    ``out_dir/features/``; returns the streams file."""
    from live_ros.data.dialogue_plans import assemble_turns, draw_instruction
    from live_ros.data.features import features_path, load_features

    world_dir, out_dir = Path(world_dir), Path(out_dir)
    samples = load_samples(world_dir / "streams.jsonl")
    rng = np.random.default_rng(seed)
    out: list[StreamSample] = []
    for sample in samples:
        plan = sample.meta.get("plan")
        if not plan:
            raise ValueError(f"stream '{sample.video_id}' has no plan: windows need `live-ros generate world` streams")
        feats_file = features_path(world_dir / "features", sample.video_id)
        if not feats_file.is_file():
            raise FileNotFoundError(
                f"windows need {feats_file}: extract the world dataset's features first "
                f"(live-ros extract {world_dir / 'videos'} --out {world_dir / 'features'})"
            )
        tokens, times, meta = load_features(feats_file)
        n = min(int(tokens.shape[0]), int(plan["num_frames"]))
        fps = float(plan["fps"])
        # (question, update frame) pairs, drawn evenly over the question categories
        by_cat: dict[str, list[tuple[dict, int]]] = {}
        for q in plan["questions"]:
            if q["category"] == "past":
                continue
            for tu, _ in q["updates"]:
                u = int(round(tu * fps))
                if 0 < u < n:
                    by_cat.setdefault(q["category"], []).append((q, u))
        narration = plan.get("narration") or []
        moments = [int(round(tn * fps)) for tn, _, _ in narration if 0 < round(tn * fps) < n]
        cats = sorted(by_cat)
        for w in range(per_video if cats else 0):
            instruction = draw_instruction(rng) if narration else ""
            ask = not (instruction and moments and rng.random() < 0.5)
            q = None
            if ask:
                pool = by_cat[cats[int(rng.integers(len(cats)))]]
                q, u = pool[int(rng.integers(len(pool)))]
                lo_q = int(math.ceil(q["window"][0] * fps - 1e-6))
            else:
                u, lo_q = moments[int(rng.integers(len(moments)))], 0
            a = max(0, lo_q, u - int(rng.integers(before[0], before[1] + 1)))
            if a >= u:
                continue
            b = min(n - 1, u + int(rng.integers(after[0], after[1] + 1)))
            t0, t1 = a / fps, b / fps
            said = [x for x in narration if t0 + 1e-6 < x[0]] if instruction else None
            turns = [
                TimedTurn(t.role, round(t.time - t0, 6), t.text, kind=t.kind, event=t.event)
                for t in assemble_turns([(t0, q)] if q is not None else [], said)
                if t.time <= t1 + 1e-6
            ]
            clip_id = f"{sample.video_id}-w{w:02d}-{a:04d}"
            path = _save_slice(out_dir, clip_id, feats_file, tokens, times, meta, a, b)
            out.append(
                StreamSample(
                    clip_id,
                    round(t1 - t0, 6),
                    fps,
                    turns,
                    features=str(path),
                    meta={
                        "source": "window",
                        "fixed": True,
                        "from": sample.video_id,
                        "frames": [a, b],
                        "question": q["text"] if q is not None else "",
                        "category": q["category"] if q is not None else "narration",
                    },
                    instruction=instruction,
                )
            )
    return save_samples(out, out_dir / "streams.jsonl")
