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
    ann = world.render_video(
        scene, tmp_path / "w" / "videos" / "check.mp4", tmp_path / "w" / "annotations" / "check.json"
    )
    from live_ros.data.streams import StreamSample

    n = int(scene.duration * 2) + 1
    save_samples([StreamSample("check", scene.duration, 2.0, [])], tmp_path / "w" / "streams.jsonl")
    tokens = torch.arange(n, dtype=torch.float16)[:, None, None].expand(n, 10, 4).contiguous()
    save_features(
        tmp_path / "w" / "features" / "check.safetensors",
        tokens,
        torch.arange(n) / 2.0,
        {"format": "live_ros.features/1", "encoder_id": "e", "fps": "2.0"},
    )
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


def test_windows_cut_a_question_or_a_narration_moment_from_the_plan(tmp_path):
    from live_ros.data.dialogue import offline_stream
    from live_ros.data.dialogue_plans import _answer_at
    from live_ros.data.grounding import build_windows

    scene = world.check_scene()
    ann = world.render_video(
        scene, tmp_path / "w" / "videos" / "check.mp4", tmp_path / "w" / "annotations" / "check.json"
    )
    stream = offline_stream(ann, 2.0, rng=3)
    save_samples([stream], tmp_path / "w" / "streams.jsonl")
    n = stream.num_frames
    tokens = torch.arange(n, dtype=torch.float16)[:, None, None].expand(n, 10, 4).contiguous()
    save_features(
        tmp_path / "w" / "features" / "check.safetensors",
        tokens,
        torch.arange(n) / 2.0,
        {"format": "live_ros.features/1", "encoder_id": "e", "fps": "2.0"},
    )
    windows = load_samples(build_windows(tmp_path / "w", tmp_path / "win", per_video=20, seed=2))
    assert len(windows) >= 15
    questions = {q["text"]: q for q in stream.meta["plan"]["questions"]}
    narration = stream.meta["plan"]["narration"]
    seen = set()
    for win in windows:
        a, b = win.meta["frames"]
        feats, _, _ = load_features(win.features)
        assert feats.shape == (b - a + 1, 10, 4) and feats[0, 0, 0].item() == a and feats[-1, 0, 0].item() == b
        assert win.num_frames == b - a + 1 and win.meta["fixed"] and win.meta["category"] != "past"
        said = {round(t - a / 2.0, 6): text for t, text, _ in narration if a / 2.0 < t <= b / 2.0 + 1e-6}
        if not win.meta["question"]:  # narration only, cut around a narration moment
            seen.add("narration")
            assert win.instruction and win.meta["category"] == "narration" and said
            assert {u.time: u.text for u in win.turns} == said
            assert all(u.role == "assistant" and u.kind == "narration" for u in win.turns)
            continue
        q = questions[win.meta["question"]]
        user, ans, *updates = win.turns
        assert (user.role, user.time, user.text) == ("user", 0.0, q["text"])
        assert (ans.role, ans.time, ans.text) == ("assistant", 0.0, _answer_at(q, a / 2.0))
        assert all(u.role == "assistant" and u.time > 0 for u in updates)
        if win.instruction:  # the question on top of the narration, which goes on after the answer
            seen.add("question and narration")
            assert {u.time for u in updates} == set(said)
            assert all(u.kind in ("narration", "reminder") for u in updates)
        else:  # silent until asked: the question's own updates
            seen.add("question")
            plan_updates = {round(t - a / 2.0, 6): text for t, text in q["updates"] if a / 2.0 < t <= b / 2.0 + 1e-6}
            assert updates and {u.time: u.text for u in updates} == plan_updates
    assert seen == {"narration", "question and narration", "question"}
