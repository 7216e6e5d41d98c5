"""The words of responses against ground truth (live_ros.evaluation.truth): right object,
right event, hallucinated objects, repeats; pure, no ROS.

Times are sums and differences of a few decimal literals: offsets are compared with
``pytest.approx`` at 1e-9, far below the 0.1 s frame step of the annotations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from live_ros.data.annotations import VideoAnnotation, load_annotation
from live_ros.data.dialogue_plans import build_plan
from live_ros.data.generic import spoken_annotation
from live_ros.evaluation.claims import GENERIC
from live_ros.evaluation.score import Said
from live_ros.evaluation.truth import format_totals, format_words, merge_scores, score_words, truth_from_annotation

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "media" / "demo.json"
# nouns a model was trained to name: not the helmet, the demo's never-trained object (52.3-66.9 s)
TRAINED = ["cat", "coffee cup", "rocket", "astronaut", "horse"]
BOX = [10, 10, 60, 60]

# A small scene: a cat, a coffee cup that moves, a logo (never trained), a rocket.
SCENE = {
    "format": "live_ros.annotation/1",
    "video_id": "hand",
    "duration": 20.0,
    "objects": ["cat", "coffee cup", "logo", "rocket"],
    "events": [
        {"time": 2.0, "kind": "appears", "object": "cat", "text": "The cat appears."},
        {"time": 4.0, "kind": "appears", "object": "coffee cup", "text": "The coffee cup appears."},
        {"time": 6.0, "kind": "appears", "object": "logo", "text": "The logo appears."},
        {
            "time": 8.0,
            "end": 9.0,
            "kind": "moves",
            "object": "coffee cup",
            "text": "The coffee cup moves down.",
            "end_text": "The coffee cup stops.",
        },
        {"time": 11.0, "kind": "turns", "object": "cat", "text": "The cat turns around."},
        {"time": 14.0, "kind": "leaves", "object": "cat", "text": "The cat leaves."},
        {"time": 17.0, "kind": "appears", "object": "rocket", "text": "The rocket appears."},
        {"time": 17.0, "kind": "leaves", "object": "coffee cup", "text": "The coffee cup leaves."},
    ],
    "tracks": {
        "cat": [[0.0, None, False], [1.8, BOX, False], [2.0, BOX, True], [14.0, BOX, False], [14.2, None, False]],
        "coffee cup": [[0.0, None, False], [4.0, BOX, True], [17.0, None, False]],
        "logo": [[0.0, None, False], [6.0, BOX, True]],
        "rocket": [[0.0, None, False], [16.9, BOX, False], [17.0, BOX, True]],
    },
}
# event index in the truth (sorted by time; the move's end is a "stops" at 9.0)
CAT_APPEARS, CUP_APPEARS, LOGO_APPEARS, CUP_MOVES, CUP_STOPS, CAT_TURNS, CAT_LEAVES, ROCKET, CUP_LEAVES = range(9)


def say(t: float, text: str, proactive: bool = True, rid: int | None = None) -> Said:
    return Said(rid if rid is not None else int(round(t * 100)), 0 if proactive else 1, "narration", text, t, proactive)


def scene(known=None):
    return truth_from_annotation(SCENE, known_objects=known)


def verdicts(score) -> dict[int, str]:
    return {i: e["verdict"] for i, e in enumerate(score.events) if e["verdict"] != "MISSED"}


def test_truth_from_tracks_and_from_events():
    truth = scene()
    assert [(e.time, e.kind, e.object) for e in truth.events][CUP_MOVES : CUP_STOPS + 1] == [
        (8.0, "moves", "coffee cup"),
        (9.0, "stops", "coffee cup"),
    ]
    assert len(truth.events) == 9
    # in view while the box is drawn (not only while the flag says visible), until the end
    assert truth.in_view == {
        "cat": [(1.8, 14.2)],
        "coffee cup": [(4.0, 17.0)],
        "logo": [(6.0, 20.0)],
        "rocket": [(16.9, 20.0)],
    }
    no_tracks = truth_from_annotation({**SCENE, "tracks": {}})
    assert no_tracks.in_view["cat"] == [(2.0, 14.0)] and no_tracks.in_view["rocket"] == [(17.0, 20.0)]
    # a VideoAnnotation reads as its dict; the untrained logo expects the generic object
    known = truth_from_annotation(VideoAnnotation.from_dict(SCENE), known_objects=TRAINED)
    assert known.events[LOGO_APPEARS].object == GENERIC and known.events[LOGO_APPEARS].noun == "logo"
    assert known.events[CAT_APPEARS].object == "cat"
    assert "horse" in known.objects and GENERIC not in known.objects
    json.dumps(known.to_dict(), allow_nan=False)


def test_demo_truth():
    truth = truth_from_annotation(load_annotation(DEMO))
    assert len(truth.events) == 13  # 11 annotated + the ends of the move and the growth
    assert [(e.time, e.kind, e.object) for e in truth.events if e.kind == "stops"] == [
        (59.5, "stops", "coffee cup"),
        (86.5, "stops", "astronaut"),
    ]
    assert truth.in_view["cat"] == [(4.1, 45.5)] and truth.in_view["helmet"] == [(52.1, 67.0)]
    assert truth.visible("rocket", 81.0, 81.2) and not truth.visible("rocket", 81.6, 90.0)
    # every noun is known: the helmet is expected by its name
    assert [(e.time, e.kind, e.object) for e in truth.events if e.noun == "helmet"] == [
        (52.3, "appears", "helmet"),
        (66.9, "leaves", "helmet"),
    ]


def test_the_demo_helmet_expects_the_generic_answer():
    """The helmet is one of the world's never-trained objects (live_ros/data/assets/objects.json,
    split unseen): with the trained nouns, its two events expect the generic object, the
    generic sentences of live_ros/data/generic.py are right and its name is not."""
    ann = load_annotation(DEMO)
    truth = truth_from_annotation(ann, known_objects=TRAINED)
    helmet = [(e.time, e.kind, e.object) for e in truth.events if e.noun == "helmet"]
    assert helmet == [(52.3, "appears", GENERIC), (66.9, "leaves", GENERIC)]
    assert all(e.object == e.noun for e in truth.events if e.noun != "helmet")
    appears, leaves = (i for i, e in enumerate(truth.events) if e.noun == "helmet")
    generic = score_words(
        truth, [say(52.5, "Something I can't name appears."), say(67.0, "The object I can't name leaves.")]
    )
    assert verdicts(generic) == {appears: "OK", leaves: "OK"} and generic.summary["hallucinated"] == 0
    named = score_words(truth, [say(52.5, "The helmet appears."), say(67.0, "The helmet leaves.")])
    assert verdicts(named) == {appears: "WRONG OBJECT", leaves: "WRONG OBJECT"}
    assert named.summary["hallucinated"] == 0  # the helmet is there: a wrong name, no hallucination
    # another trained name in its place is wrong too, and names an object not there
    horse = score_words(truth, [say(52.5, "The horse appears.")])
    assert verdicts(horse) == {appears: "WRONG OBJECT"} and horse.responses[0]["hallucinated"] == ["horse"]


def test_right_object_and_kind_wrong_kind_wrong_object():
    said = [say(2.3, "The cat appears."), say(4.2, "The rocket appears."), say(11.2, "The cat moves.")]
    s = score_words(scene(), said)
    assert verdicts(s) == {CAT_APPEARS: "OK", CUP_APPEARS: "WRONG OBJECT", CAT_TURNS: "WRONG EVENT"}
    assert s.events[CAT_APPEARS]["offset"] == pytest.approx(0.3, abs=1e-9)
    assert s.events[CAT_TURNS]["right_object"] and not s.events[CAT_TURNS]["right_kind"]
    # the rocket is nowhere in view at 4.2 s; the cat is, so a wrong kind about it is no hallucination
    assert [r["hallucinated"] for r in s.responses] == [[], ["rocket"], []]
    sm = s.summary
    assert (sm["events"], sm["responded"], sm["right_object"], sm["right_kind"], sm["correct"]) == (9, 3, 2, 2, 1)
    assert (sm["responses"], sm["matched"], sm["spurious"], sm["hallucinated"]) == (3, 3, 0, 1)
    assert sm["hallucinated_per_100"] == pytest.approx(100 / 3)
    assert sm["mean_abs_offset"] == pytest.approx(0.7 / 3) and sm["by_kind"]["appears"] == {
        "events": 4,
        "responded": 2,
        "correct": 1,
    }


def test_synonyms_and_aliases():
    said = [say(2.1, "The cat enters."), say(9.2, "The cup stops."), say(14.3, "The cat has left.")]
    s = score_words(scene(), said)
    assert verdicts(s) == {CAT_APPEARS: "OK", CUP_STOPS: "OK", CAT_LEAVES: "OK"}
    assert s.summary["hallucinated"] == 0


def test_generic_answer_for_a_never_trained_object():
    generic = score_words(scene(TRAINED), [say(6.2, "Something I can't name appears.")])
    assert verdicts(generic) == {LOGO_APPEARS: "OK"}
    # a trained name for it is wrong, even one in view (the cat: not hallucinated) ...
    named = score_words(scene(TRAINED), [say(6.2, "The cat appears."), say(6.3, "The logo appears.")])
    assert verdicts(named) == {LOGO_APPEARS: "WRONG OBJECT"}
    assert named.summary["spurious"] == 1 and named.summary["hallucinated"] == 0
    # ... and with every object known, the noun is the right answer and the generic one is not
    assert verdicts(score_words(scene(), [say(6.2, "The logo appears.")])) == {LOGO_APPEARS: "OK"}
    assert verdicts(score_words(scene(), [say(6.2, "Something appears.")])) == {LOGO_APPEARS: "WRONG OBJECT"}


def test_hallucination_looks_back_recent_seconds():
    said = [
        say(11.1, "The rocket leaves."),  # no rocket before 16.9 s
        say(15.0, "The cat leaves."),  # the cat was drawn until 14.2 s: within 1.5 s before
        say(16.0, "The cat appears."),  # 1.8 s after the cat went: not in [14.5, 16.5]
        say(16.5, "The rocket appears."),  # the rocket comes at 16.9 s: within 0.5 s ahead
    ]
    s = score_words(scene(), said)
    assert [r["hallucinated"] for r in s.responses] == [["rocket"], [], ["cat"], []]
    assert s.events[CAT_TURNS]["verdict"] == "WRONG OBJECT"  # in time, wrong words
    assert [r["verdict"] for r in s.responses][:3] == [
        "matched, HALLUCINATED rocket",
        "matched",
        "spurious, HALLUCINATED cat",
    ]


def test_repeats_need_no_event_in_between():
    said = [
        say(2.2, "The cat appears."),
        say(3.0, "the cat appears"),  # same normalized text, nothing happened since 2.2 s
        say(3.5, "The cat appears!"),
        say(5.0, "The cat appears."),  # the coffee cup appeared at 4.0 s in between
        say(5.5, "The cat appears."),
    ]
    s = score_words(scene(), said)
    assert [r["repeat"] for r in s.responses] == [False, True, True, False, True]
    assert s.summary["repeats"] == 3 and s.summary["longest_repeat_run"] == 3
    # an answer to a question neither breaks nor counts
    answered = score_words(
        scene(), [say(2.2, "The cat appears."), say(2.5, "I see a cat.", False), say(3.0, "The cat appears.")]
    )
    assert [r["repeat"] for r in answered.responses] == [False, False, True]
    assert answered.summary["responses"] == 2 and answered.summary["answers"] == 1
    assert answered.responses[1]["verdict"] == "answer" and not answered.responses[1]["spurious"]


def test_outside_the_window_is_spurious_and_the_event_missed():
    # +1.6 s and -1.0 s from the cat leaving at 14.0 s (and no other event within reach)
    said = [say(15.6, "The cat leaves."), say(13.0, "The cat leaves.")]
    s = score_words(scene(), said)
    assert s.events[CAT_LEAVES]["verdict"] == "MISSED" and s.summary["responded"] == 0
    assert s.summary["spurious"] == 2 and s.summary["matched"] == 0 and s.summary["hallucinated"] == 0
    # a wider window takes the late one
    wide = score_words(scene(), said, window=(-0.5, 2.0))
    assert wide.events[CAT_LEAVES]["said_at"] == 15.6 and wide.events[CAT_LEAVES]["verdict"] == "OK"


def test_one_response_with_two_right_claims_serves_two_events():
    said = [say(17.1, "The rocket appears and the cup leaves."), say(17.2, "The rocket appears.")]
    s = score_words(scene(), said)
    assert verdicts(s) == {ROCKET: "OK", CUP_LEAVES: "OK"}
    assert s.responses[0]["events"] == [ROCKET, CUP_LEAVES] and s.responses[1]["spurious"]
    assert s.summary["matched"] == 1 and s.summary["correct"] == 2


def test_right_words_win_over_closer_wrong_ones():
    # the closest response names the wrong object; the event takes the right one, and the
    # wrong one is left spurious (it is closer, but says nothing right about the event)
    said = [say(2.0, "The rocket appears."), say(2.8, "The cat appears.")]
    s = score_words(scene(), said)
    assert s.events[CAT_APPEARS]["said_at"] == 2.8 and s.events[CAT_APPEARS]["verdict"] == "OK"
    assert [r["verdict"] for r in s.responses] == ["spurious, HALLUCINATED rocket", "matched"]


def test_the_template_narrator_of_the_demo_is_all_right():
    """The standing narration the template responder writes for the demo (what the model
    is trained to say, on the 2 fps grid: the never-trained helmet said generically,
    live_ros/data/generic.py) gets every event right and nothing wrong."""
    ann = load_annotation(DEMO)
    spoken = spoken_annotation(ann, TRAINED)
    narration = build_plan(spoken, 2.0, 0)["narration"]
    assert "Something I can't name appears." in [text for _, text, _ in narration]
    said = [say(t, text, rid=k) for k, (t, text, _) in enumerate(narration)]
    s = score_words(truth_from_annotation(ann, known_objects=TRAINED), said)
    sm = s.summary
    assert (sm["events"], sm["correct"], sm["spurious"], sm["hallucinated"], sm["repeats"]) == (13, 13, 0, 0, 0)
    assert 0 <= sm["mean_signed_offset"] <= 0.5  # the grid is 0.5 s: a response is at most one step late
    # the narration of the annotation as it is names the helmet: right with every noun known,
    # two wrong objects for a model that was never trained on it
    named = [say(t, text, rid=k) for k, (t, text, _) in enumerate(build_plan(ann, 2.0, 0)["narration"])]
    assert score_words(truth_from_annotation(ann), named).summary["correct"] == 13
    wrong = score_words(truth_from_annotation(ann, known_objects=TRAINED), named).summary
    assert (wrong["correct"], wrong["right_object"], wrong["hallucinated"]) == (11, 11, 0)


def test_demo_mixed_responses_and_text():
    ann = load_annotation(DEMO)
    said = [
        say(4.6, "Now I see a cat."),
        say(15.2, "Now I see a cat and a cup."),
        say(27.5, "The helmet appears."),  # the rocket appears; the helmet comes at 52 s
        say(36.3, "The cat moves."),
        say(40.0, "The cat moves."),
        say(45.5, "The cat is gone."),
        say(70.0, "What is on screen?", proactive=False),
    ]
    s = score_words(truth_from_annotation(ann), said)
    assert [e["verdict"] for e in s.events[:5]] == ["OK", "OK", "WRONG OBJECT", "WRONG EVENT", "OK"]
    assert s.summary["missed"] == 8 and s.summary["repeats"] == 1 and s.summary["hallucinated"] == 1
    text = format_words(s)
    assert text.splitlines()[0] == (
        "events 13: responded in time 5, right object 4, right kind 4, right event 3 (23 %), "
        "mean |offset| 0.22 s (signed +0.22 s)"
    )
    assert "responses 6: matched 5, spurious 1, hallucinated 1 (16.7 per 100), repeats 1 (longest run 2)" in text
    for word in ("MISSED", "WRONG OBJECT", "WRONG EVENT", "HALLUCINATED helmet", "spurious, repeat", "answer"):
        assert word in text
    assert len(format_words(s, max_rows=2).splitlines()) < len(text.splitlines())
    json.dumps(s.to_dict(), allow_nan=False)

    totals = merge_scores([s, s.to_dict(), score_words(None, said)])
    assert (totals["streams"], totals["unscored"], totals["events"], totals["correct"]) == (3, 1, 26, 6)
    assert totals["hallucinated_per_100"] == pytest.approx(100 / 6) and totals["longest_repeat_run"] == 2
    assert format_totals(totals).splitlines()[0] == "streams 3 (1 without annotated events, not scored)"


def test_without_events_nothing_is_scored():
    said = [say(1.0, "The cat appears."), say(2.5, "I see a cat.", False)]
    for truth in (None, truth_from_annotation({**SCENE, "events": [], "tracks": {}})):
        s = score_words(truth, said)
        assert not s.scored and s.events == [] and [r["time"] for r in s.responses] == [1.0, 2.5]
        text = format_words(s)
        assert text.splitlines()[0] == "cannot score: no annotated events (give --annotations)"
        assert "[   1.00 s] narration: The cat appears." in text and "2.50 s" in text
    steps = {**SCENE, "events": [{"time": 1.0, "end": 3.0, "kind": "step", "object": "pour water"}], "tracks": {}}
    assert "1 annotated events are steps" in format_words(score_words(truth_from_annotation(steps), said))
