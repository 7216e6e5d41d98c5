"""The synthetic world: deterministic per seed, annotations that match the pixels of the
decoded video, split hold-outs, long streams, the CLI verb and the committed demo."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

import live_ros  # noqa: F401
from live_ros.data import world
from live_ros.data.annotations import load_annotation
from live_ros.data.streams import load_samples

ROOT = Path(__file__).resolve().parent.parent


def decode(path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def test_vocabulary_and_cutouts():
    named, unseen = world.named_objects(), world.unseen_objects()
    assert {"cat", "coffee cup", "rocket", "astronaut", "horse", "motorcycle"} <= set(named)
    assert unseen and not set(named) & set(unseen)
    for noun, spec in world.object_catalog().items():
        for crop in range(len(spec.crops)):
            rgb, alpha = world.cutout(noun, crop)
            assert rgb.dtype == np.uint8 and rgb.shape[:2] == alpha.shape
            assert 0.2 < alpha.mean() <= 1.0 and alpha.max() == pytest.approx(1.0, abs=0.01), (noun, crop)
    assert world.article("astronaut") == "an astronaut" and world.article("cat") == "a cat"


def test_deterministic_per_seed():
    a = world.random_scene(11, "train", 0, duration=12.0)
    b = world.random_scene(11, "train", 0, duration=12.0)
    c = world.random_scene(12, "train", 0, duration=12.0)
    assert a.to_dict() == b.to_dict() and a.to_dict() != c.to_dict()
    fa, ra = world.render_frames(a)
    fb, rb = world.render_frames(b)
    assert np.array_equal(fa, fb)
    assert [e.to_dict() for e in ra.events()] == [e.to_dict() for e in rb.events()]
    assert ra.annotation().to_dict() == rb.annotation().to_dict()


def test_splits_hold_out_factors():
    for seed in range(12):
        train = world.random_scene(seed, "train", seed, duration=60.0)
        ev = world.random_scene(seed, "eval", seed, duration=60.0)
        timing = world.random_scene(seed, "eval-timing", seed, duration=60.0)
        assert train.background in world.TRAIN_BACKGROUNDS and ev.background in world.EVAL_BACKGROUNDS
        for scene, entries, exits in ((train, world.TRAIN.entries, world.TRAIN.exits),
                                      (ev, world.EVAL.entries, world.EVAL.exits)):
            for actor in scene.actors:
                styles = {a.kind: a.style for a in actor.actions if a.kind in ("enter", "leave")}
                assert styles["enter"] in entries + ("start",)   # start: on screen from the first frame
                assert styles.get("leave", exits[0]) in exits
        for actor in train.actors:
            spec = world.object_catalog()[actor.noun]
            assert actor.noun in world.named_objects() and actor.look.crop in spec.train_crops
            assert 0.45 * 240 - 1 <= actor.look.size <= 0.68 * 240 + 1
        for actor in ev.actors:
            spec = world.object_catalog()[actor.noun]
            assert actor.noun in world.named_objects() and actor.look.crop == spec.heldout_crop
            assert not (0.45 * 240 + 1 < actor.look.size < 0.68 * 240 - 1)
        assert all(a.noun in world.unseen_objects() for a in timing.actors)
        assert train.video_id != ev.video_id


def test_annotations_match_decoded_pixels(tmp_path):
    scene = world.random_scene(5, "eval", 2, duration=30.0)
    ann = world.render_video(scene, tmp_path / "videos" / "v.mp4", tmp_path / "ann" / "v.json")
    ann = load_annotation(tmp_path / "ann" / "v.json")
    assert Path(ann.video).is_file() and ann.duration == 30.0
    frames = decode(ann.video)
    assert len(frames) == 301 and frames[0].shape == (240, 320, 3)
    W, H = ann.size
    bg = world.render_background(ann.meta["background"], W, H,
                                 np.random.default_rng(ann.meta["background_seed"])).astype(np.float32)
    empty = drawn_visible = 0
    for j, frame in enumerate(frames):
        t = j / ann.fps
        diff = np.abs(frame.astype(np.float32) - bg)
        states = {aid: ann.box_at(aid, t) for aid in ann.tracks}
        if all(box is None for box, _ in states.values()):
            assert diff.mean() < 4.0, f"frame {j}: nothing annotated but the frame is not the background"
            empty += 1
        for aid, (box, visible) in states.items():
            if visible:
                x0, y0, x1, y1 = box
                assert diff[y0:y1, x0:x1].mean() > 8.0, f"frame {j}: {aid} annotated visible but not in the pixels"
                drawn_visible += 1
        # what is on screen (from the events) agrees with the per-frame tracks
        on = sorted(ann.on_screen(t))
        assert on == sorted({ann.meta["actors"][a] for a, (_, v) in states.items() if v}), f"frame {j}"
    assert empty > 0 and drawn_visible > 0
    for e in ann.events:
        if e.kind in ("appears", "leaves"):
            j = round(e.time * ann.fps)
            assert ann.box_at(e.meta["actor"], e.time)[1] == (e.kind == "appears")
            assert ann.box_at(e.meta["actor"], (j - 1) / ann.fps)[1] == (e.kind == "leaves")  # "first frame"


def test_long_stream_reminder():
    need = world.long_min_seconds(2048, 10, 2.0)
    assert need == pytest.approx(1024.0)
    # a small, low-rate render of a long scene: the same script, cheap to measure
    scene = world.random_scene(0, "long", 0, size=(160, 120), fps=2.0)
    assert scene.duration == world.LONG_DEFAULT_MINUTES * 60 >= need
    _, rendered = world.render_frames(scene)
    ann = rendered.annotation()
    late = ann.meta["late_object"]
    first = min(e.time for e in ann.events if e.kind == "appears" and e.object == late)
    assert first >= 0.7 * scene.duration
    from live_ros.data.dialogue import world_stream

    sample = world_stream(ann, fps=2.0, rng=1, fixed=True)
    users = [t for t in sample.turns if t.role == "user"]
    assert late in users[0].text and users[0].time <= 20.0
    answers = [t for t in sample.turns if t.kind == "reminder" and f"appears:{late}@" in t.event]
    assert [t.time for t in answers] == [first]   # on the 2 fps grid already (source 2 fps)


def test_generate_world_verb(tmp_path):
    from live_ros.data import verbs

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="verb")
    verbs.add_generate(sub)
    verbs.add_extract(sub)
    args = parser.parse_args(["generate", "world", "--out", str(tmp_path / "w"), "--streams", "2", "--seed", "4",
                              "--split", "eval", "--minutes", "0.25", "--quiet"])
    assert args.run(args) == 0
    samples = load_samples(tmp_path / "w" / "streams.jsonl")
    assert len(samples) == 2
    for s in samples:
        assert Path(s.video).is_file() and s.duration == 15.0 and s.meta["fixed"] and s.meta["split"] == "eval"
        ann = load_annotation(s.meta["annotation"])
        assert ann.video == s.video
        for t in s.turns:
            assert abs(t.time * 2 - round(t.time * 2)) < 1e-9
    bad = parser.parse_args(["generate", "world", "--out", str(tmp_path / "x"), "--split", "long", "--minutes", "5"])
    assert bad.run(bad) == 1      # shorter than 10x the cache budget: refused with the reason


def test_demo_matches_committed_media():
    demo_json = ROOT / "media" / "demo.json"
    if not demo_json.is_file():
        pytest.skip("media/demo.json not rendered yet (live-ros generate demo)")
    committed = json.loads(demo_json.read_text())
    _, rendered = world.render_frames(world.demo_scene())
    ann = rendered.annotation("demo.mp4")
    assert [e.to_dict() for e in ann.events] == committed["events"]
    assert 60 <= ann.duration <= 120 and len(ann.events) >= 6
    assert (ROOT / "media" / "demo.mp4").stat().st_size < 3_000_000
