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
from pathlib import Path

import numpy as np

from live_ros.data.annotations import load_annotation, visible_objects
from live_ros.data.streams import StreamSample, TimedTurn, load_samples, save_samples

QUESTIONS_FILE = Path(__file__).resolve().parent / "assets" / "questions.json"


def _questions() -> list[str]:
    data = json.loads(QUESTIONS_FILE.read_text())
    return [q["q"] for q in data["present"] if q["mode"] == "current" and q["domain"] in ("any", "scene")]


def answer(visible: list[str]) -> str:
    """The template responder's answer to a present-tense question (dialogue.py, mode current)."""
    from live_ros.data.dialogue import _article, _join

    if not visible:
        return "Nothing is on screen, only the background."
    return f"I see {_join([_article(v) for v in visible])}."


def build_grounding(world_dir: str | Path, out_dir: str | Path, per_video: int = 24, context: int = 2,
                    seed: int = 0) -> Path:
    """Write ``out_dir/streams.jsonl`` and ``out_dir/features/*.safetensors``; returns the
    streams file. ``world_dir`` holds streams.jsonl, annotations/ and features/."""
    from live_ros.data.features import features_path, load_features, save_features

    world_dir, out_dir = Path(world_dir), Path(out_dir)
    samples = load_samples(world_dir / "streams.jsonl")
    questions = _questions()
    rng = np.random.default_rng(seed)
    out: list[StreamSample] = []
    for sample in samples:
        feats_file = features_path(world_dir / "features", sample.video_id)
        ann_file = world_dir / "annotations" / f"{sample.video_id}.json"
        if not feats_file.is_file() or not ann_file.is_file():
            raise FileNotFoundError(f"grounding needs {feats_file} and {ann_file}: generate the world dataset and "
                                    f"extract its features first (live-ros generate world / live-ros extract)")
        tokens, times, meta = load_features(feats_file)
        events = sorted(load_annotation(ann_file).events, key=lambda e: e.time)
        n = int(tokens.shape[0])
        picks = rng.choice(np.arange(context - 1, n), size=min(per_video, n - context + 1), replace=False)
        for k in sorted(int(p) for p in picks):
            t = k / sample.fps
            visible = visible_objects(e for e in events if e.time <= t + 1e-6)
            clip_id = f"{sample.video_id}-g{k:04d}"
            path = save_features(features_path(out_dir / "features", clip_id),
                                 tokens[k - context + 1:k + 1].clone(), times[k - context + 1:k + 1] - times[k - context + 1],
                                 {**meta, "num_frames": context, "derived_from": f"{feats_file}[{k - context + 1}:{k + 1}]"})
            end = (context - 1) / sample.fps
            q = questions[int(rng.integers(len(questions)))]
            out.append(StreamSample(clip_id, end, sample.fps,
                                    [TimedTurn("user", end, q, kind="present"),
                                     TimedTurn("assistant", end, answer(visible), kind="answer")],
                                    features=str(path), meta={"source": "grounding", "fixed": True,
                                                              "from": sample.video_id, "frame": k}))
    return save_samples(out, out_dir / "streams.jsonl")
