"""Reading a response into claims (live_ros.evaluation.claims): objects of the world's
vocabulary, event kinds by their synonyms, kinds attached clause by clause."""

from __future__ import annotations

from pathlib import Path

import pytest

from live_ros.data.annotations import load_annotation
from live_ros.data.dialogue_plans import build_plan
from live_ros.data.generic import spoken_annotation
from live_ros.data.world_objects import object_catalog
from live_ros.evaluation.claims import GENERIC, KIND_PHRASES, KINDS, Claim, aliases, claims


ROOT = Path(__file__).resolve().parent.parent
# the world's whole vocabulary (live_ros/data/assets/objects.json): two-word nouns included
VOCABULARY = sorted(object_catalog())


@pytest.mark.parametrize(
    "text, expected",
    [
        # the scene updates of live_ros/data/dialogue_responders.py
        ("Now I see a cat and a rocket.", [("cat", "appears"), ("rocket", "appears")]),
        (
            "Now I see a cat, a coffee cup and a rocket.",
            [("cat", "appears"), ("coffee cup", "appears"), ("rocket", "appears")],
        ),
        ("Now nothing is on screen.", []),
        ("Now none: the scene is empty.", []),
        ("Now 2: a cat and a horse.", [("cat", "appears"), ("horse", "appears")]),
        ("The coffee cup moves down.", [("coffee cup", "moves")]),
        ("The coffee cup stops.", [("coffee cup", "stops")]),
        ("The astronaut gets bigger.", [("astronaut", "grows")]),
        ("The astronaut stops growing.", [("astronaut", "stops")]),
        ("The horse gets smaller.", [("horse", "shrinks")]),
        ("The cat turns around.", [("cat", "turns")]),
        ("The cat appears.", [("cat", "appears")]),
        ("The cat leaves.", [("cat", "leaves")]),
        ("Then the cat appeared and the rocket left.", [("cat", "appears"), ("rocket", "leaves")]),
        ("The last thing: the coffee cup moved down.", [("coffee cup", "moves")]),
        ("I see a cat and an astronaut.", [("cat", "appears"), ("astronaut", "appears")]),
        ("Nothing is on screen, only the background.", []),
        ("Okay, I am watching.", []),
        # kinds on the objects of their own clause
        ("The cat appears and the rocket leaves.", [("cat", "appears"), ("rocket", "leaves")]),
        ("The cat and the rocket appear.", [("cat", "appears"), ("rocket", "appears")]),
        ("The cat appears and then leaves.", [("cat", "appears"), ("cat", "leaves")]),
        ("The cat appears. It turns around.", [("cat", "appears"), ("cat", "turns")]),
        ("The cat moves towards the rocket.", [("cat", "moves"), ("rocket", None)]),
        # synonyms, aliases, plurals, directions
        ("The cat enters.", [("cat", "appears")]),
        ("A cat shows up.", [("cat", "appears")]),
        ("The cat has left.", [("cat", "leaves")]),
        ("The cat is no longer in view.", [("cat", "leaves")]),
        ("The cup stops.", [("coffee cup", "stops")]),
        ("The shuttle comes to rest.", [("space shuttle", "stops")]),
        ("Two CATS pop up.", [("cat", "appears")]),
        ("The coffee cup moves to the left.", [("coffee cup", "moves")]),
        ("The horse on the left goes away.", [("horse", "leaves")]),
        ("The rocket goes up.", [("rocket", "moves")]),
        ("The astronaut comes closer.", [("astronaut", "grows")]),
        ("The astronaut moves away.", [("astronaut", "shrinks")]),
        ("The motorcycle faces the other way.", [("motorcycle", "turns")]),
        # the generic answer for an object the model cannot name
        ("Something I can't name appears.", [(GENERIC, "appears")]),
        ("An unknown object leaves.", [(GENERIC, "leaves")]),
        ("I don't know what it is, but it appears.", [(GENERIC, "appears")]),
        ("There is an object.", [(GENERIC, "appears")]),
    ],
)
def test_claims(text, expected):
    assert claims(text, VOCABULARY) == [Claim(o, k) for o, k in expected]


def test_aliases_are_the_last_word_unless_it_is_taken():
    world = aliases(VOCABULARY)
    assert world["cup"] == "coffee cup" and world["shuttle"] == "space shuttle" and world["wheel"] == "colour wheel"
    # "cup" is an object of its own: the longest name wins and "cup" stays itself
    assert aliases(["cup", "coffee cup"]) == {"cup": "cup", "coffee cup": "coffee cup"}
    assert claims("The coffee cup and the cup appear.", ["cup", "coffee cup"]) == [
        Claim("coffee cup", "appears"),
        Claim("cup", "appears"),
    ]
    # two nouns ending in the same word: neither gets it
    assert "cup" not in aliases(["coffee cup", "tea cup"])
    # a word of the response that is no object of the vocabulary is no claim
    assert claims("The giraffe appears.", VOCABULARY) == []
    assert claims("The cathedral appears.", ["cat"]) == []


def test_the_phrase_tables_cover_every_kind():
    assert set(KIND_PHRASES) == set(KINDS)
    for kind in KINDS:
        assert claims(f"The cat {kind}.", ["cat"]) == [Claim("cat", kind)]


def test_every_template_update_of_the_demo_parses_into_world_kinds():
    """Each response the template responder writes for the demo video (the standing
    narration and every question's updates) names only the demo's objects, with world kinds,
    and every narration sentence claims exactly its event."""
    ann = load_annotation(ROOT / "media" / "demo.json")
    plan = build_plan(ann, 2.0, 0)
    texts = [text for q in plan["questions"] for _, text in q["updates"]]
    assert len(texts) > 20
    for text in texts:
        for c in claims(text, VOCABULARY):
            assert c.object in ann.objects and c.kind in KINDS, (text, c)
    by_text = {e.text: (e.object, e.kind) for e in ann.events} | {e.end_text: (e.object, "stops") for e in ann.events}
    for _, text, _ in plan["narration"]:
        assert claims(text, VOCABULARY) == [Claim(*by_text[text])]


def test_the_generic_narration_of_the_demo_helmet_claims_the_generic_object():
    """Said by a model that cannot name it (live_ros/data/generic.py), the never-trained
    helmet of the demo is the generic object, with the kind of its event."""
    ann = load_annotation(ROOT / "media" / "demo.json")
    trained = ["cat", "coffee cup", "rocket", "astronaut"]
    narration = [text for _, text, _ in build_plan(spoken_annotation(ann, trained), 2.0, 0)["narration"]]
    generic = [c for text in narration for c in claims(text, VOCABULARY) if c.object == GENERIC]
    assert generic == [Claim(GENERIC, "appears"), Claim(GENERIC, "leaves")]
    assert not any("helmet" in text.lower() for text in narration)
