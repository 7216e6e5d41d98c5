"""Random scenes of the world's splits: deterministic per seed, the evaluation splits hold
out backgrounds, crops, scales, entries and objects, and long streams keep one object back
for an early reminder."""

from __future__ import annotations

import numpy as np
import pytest

from live_ros.data import world, world_backgrounds, world_objects, world_splits


def test_deterministic_per_seed():
    a = world_splits.random_scene(11, "train", 0, duration=12.0)
    b = world_splits.random_scene(11, "train", 0, duration=12.0)
    c = world_splits.random_scene(12, "train", 0, duration=12.0)
    assert a.to_dict() == b.to_dict() and a.to_dict() != c.to_dict()
    fa, ra = world.render_frames(a)
    fb, rb = world.render_frames(b)
    assert np.array_equal(fa, fb)
    assert [e.to_dict() for e in ra.events()] == [e.to_dict() for e in rb.events()]
    assert ra.annotation().to_dict() == rb.annotation().to_dict()


def test_splits_hold_out_factors():
    for seed in range(12):
        train = world_splits.random_scene(seed, "train", seed, duration=60.0)
        ev = world_splits.random_scene(seed, "eval", seed, duration=60.0)
        timing = world_splits.random_scene(seed, "eval-timing", seed, duration=60.0)
        assert (
            train.background in world_backgrounds.TRAIN_BACKGROUNDS
            and ev.background in world_backgrounds.EVAL_BACKGROUNDS
        )
        for scene, entries, exits in (
            (train, world_splits.TRAIN.entries, world_splits.TRAIN.exits),
            (ev, world_splits.EVAL.entries, world_splits.EVAL.exits),
        ):
            for actor in scene.actors:
                styles = {a.kind: a.style for a in actor.actions if a.kind in ("enter", "leave")}
                assert styles["enter"] in entries + ("start",)  # start: on screen from the first frame
                assert styles.get("leave", exits[0]) in exits
        for actor in train.actors:
            spec = world_objects.object_catalog()[actor.noun]
            assert spec.split in ("named", "generic") and actor.look.crop in spec.train_crops
            assert 0.45 * 240 - 1 <= actor.look.size <= 0.68 * 240 + 1
        for actor in ev.actors:
            spec = world_objects.object_catalog()[actor.noun]
            assert spec.split in ("named", "unseen") and actor.look.crop == spec.heldout_crop
            assert not (0.45 * 240 + 1 < actor.look.size < 0.68 * 240 - 1)
        assert all(a.noun in world_objects.unseen_objects() for a in timing.actors)
        assert train.video_id != ev.video_id


def test_long_stream_reminder():
    need = world_splits.long_min_seconds(2048, 10, 2.0)
    assert need == pytest.approx(1024.0)
    # a small, low-rate render of a long scene: the same script, cheap to measure
    scene = world_splits.random_scene(0, "long", 0, size=(160, 120), fps=2.0)
    assert scene.duration == world_splits.LONG_DEFAULT_MINUTES * 60 >= need
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
    assert [t.time for t in answers] == [first]  # on the 2 fps grid already (source 2 fps)
