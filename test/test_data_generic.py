"""The generic way of speaking about an object the model cannot name
(live_ros/data/generic.py): every sentence it makes reads, to the scorer
(live_ros/evaluation/claims.py), as the generic object with the event's kind."""

from __future__ import annotations

import pytest

from live_ros.data.annotations import Event, VideoAnnotation
from live_ros.data.generic import GENERIC_NOUN, generic_event, spoken_annotation
from live_ros.evaluation.claims import GENERIC, claims

NOUNS = ("cat", "rocket", "helmet")

CASES = [
    Event(1.0, "appears", "helmet", "The helmet appears."),
    Event(2.0, "leaves", "helmet", "The helmet leaves."),
    Event(3.0, "turns", "helmet", "The helmet turns around."),
    Event(4.0, "moves", "helmet", "The helmet moves to the left.", end=5.0, end_text="The helmet stops."),
]


@pytest.mark.parametrize("event", CASES, ids=lambda e: e.kind)
def test_generic_sentences_read_as_the_generic_object_with_the_kind(event):
    said = generic_event(event)
    assert said.object == GENERIC_NOUN and "helmet" not in said.text
    got = claims(said.text, NOUNS)
    assert [(c.object, c.kind) for c in got] == [(GENERIC, event.kind)]
    assert said.meta["true_object"] == "helmet" and event.object == "helmet"  # the truth is left alone


def test_end_text_becomes_generic_too():
    said = generic_event(CASES[3])
    assert said.end_text == f"The {GENERIC_NOUN} stops."
    assert [c.object for c in claims(said.end_text, NOUNS)] == [GENERIC]


def test_spoken_annotation_rewrites_only_unknown_objects():
    ann = VideoAnnotation(
        video_id="v",
        duration=10.0,
        events=[Event(1.0, "appears", "cat", "The cat appears."), *CASES],
        source="world",
        domain="scene",
        objects=["cat", "helmet"],
    )
    spoken = spoken_annotation(ann, ["cat", "rocket"])
    assert [e.object for e in spoken.events] == ["cat"] + [GENERIC_NOUN] * 4
    assert spoken.objects == sorted(["cat", GENERIC_NOUN])
    assert [e.object for e in ann.events] == ["cat", "helmet", "helmet", "helmet", "helmet"]
    assert spoken_annotation(ann, ["cat", "helmet"]) is ann  # all known: nothing to rewrite
