"""Grounding clips (live_ros/data/grounding.py): short 'what do you see?' streams cut from a
world dataset, answered with the objects visible at the clip's last frame."""

from __future__ import annotations

import torch

from live_ros.data import world
from live_ros.data.features import load_features, save_features
from live_ros.data.grounding import answer, build_grounding
from live_ros.data.streams import load_samples, save_samples


def test_clips_answer_with_the_objects_visible_at_their_last_frame(tmp_path):
    scene = world.check_scene()
    ann = world.render_video(scene, tmp_path / "w" / "videos" / "check.mp4", tmp_path / "w" / "annotations" / "check.json")
    from live_ros.data.streams import StreamSample

    n = int(scene.duration * 2) + 1
    save_samples([StreamSample("check", scene.duration, 2.0, [])], tmp_path / "w" / "streams.jsonl")
    tokens = torch.arange(n, dtype=torch.float16)[:, None, None].expand(n, 10, 4).contiguous()
    save_features(tmp_path / "w" / "features" / "check.safetensors", tokens, torch.arange(n) / 2.0,
                  {"format": "live_ros.features/1", "encoder_id": "e", "fps": "2.0"})
    path = build_grounding(tmp_path / "w", tmp_path / "g", per_video=12, context=2, seed=1)
    clips = load_samples(path)
    assert len(clips) == 12
    for clip in clips:
        k = clip.meta["frame"]
        feats, _, _ = load_features(clip.features)
        assert feats.shape == (2, 10, 4) and feats[-1, 0, 0].item() == k and clip.num_frames == 2
        visible = world_visible(ann, k / 2.0)
        assert clip.turns[0].role == "user" and clip.turns[1].text == answer(visible)
    assert answer([]) == "Nothing is on screen, only the background."
    assert answer(["cat", "rocket"]) == "I see a cat and a rocket."


def world_visible(ann, t):
    from live_ros.data.annotations import visible_objects

    return visible_objects(e for e in sorted(ann.events, key=lambda e: e.time) if e.time <= t + 1e-6)
