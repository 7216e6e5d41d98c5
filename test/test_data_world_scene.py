"""A scene's annotation (events and per-frame tracks) matches the pixels of the decoded
video: an actor annotated visible is drawn there, and a frame with nothing annotated is the
background."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from live_ros.data import world, world_backgrounds, world_splits
from live_ros.data.annotations import load_annotation


def decode(path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def test_annotations_match_decoded_pixels(tmp_path):
    scene = world_splits.random_scene(5, "eval", 2, duration=30.0)
    ann = world.render_video(scene, tmp_path / "videos" / "v.mp4", tmp_path / "ann" / "v.json")
    ann = load_annotation(tmp_path / "ann" / "v.json")
    assert Path(ann.video).is_file() and ann.duration == 30.0
    frames = decode(ann.video)
    assert len(frames) == 301 and frames[0].shape == (240, 320, 3)
    W, H = ann.size
    bg = world_backgrounds.render_background(
        ann.meta["background"], W, H, np.random.default_rng(ann.meta["background_seed"])
    ).astype(np.float32)
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
