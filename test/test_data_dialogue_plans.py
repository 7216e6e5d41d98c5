"""Plans of offline dialogues (paper section 3.2): the fps grid, question insertion,
dropped responses, reminders answered at their event, and procedure (COIN) steps."""

from __future__ import annotations

import json

from dialogue_helpers import FPS, on_grid, question, scene_annotation

from live_ros.data.annotations import load_coin
from live_ros.data.dialogue_plans import _answer_at, assemble_turns, build_plan, draw_turns, snap


def test_snap_grid():
    assert snap(0.0, 2) == 0.0 and snap(0.2, 2) == 0.5 and snap(0.5, 2) == 0.5 and snap(0.5000001, 2) == 0.5
    assert snap(10.3, 2) == 10.5 and snap(10.01, 2) == 10.5 and snap(3.0, 2) == 3.0


def test_insertion_drops_earlier_responses_and_answers_at_insertion():
    ann = scene_annotation()
    plan = build_plan(ann, FPS, rng=0, per_category=50, max_reminders=20)
    watch = next(q for q in plan["questions"] if q["mode"] == "watch")
    present = next(q for q in plan["questions"] if q["mode"] == "current")
    turns = assemble_turns([(8.0, watch)])
    assert turns[0].role == "user" and turns[0].time == 8.0 and turns[1].role == "assistant" and turns[1].time == 8.0
    updates = [(t.time, t.text) for t in turns[2:]]
    # nothing from before 8 s (the cat appearing at 3.5 s, its move at 6 s, its stop at 7.5 s)
    assert updates == [(10.5, "The rocket appears."), (15.0, "The cat leaves."), (22.5, "The rocket leaves.")]
    # the present question asked at 8 s answers the state then, updates when the scene changes
    turns = assemble_turns([(8.0, present)])
    assert turns[1].text == "I see a cat."
    assert [(t.time, t.text) for t in turns[2:]] == [
        (10.5, "Now I see a cat and a rocket."),
        (15.0, "Now I see a rocket."),
        (22.5, "Now nothing is on screen."),
    ]
    # a second question takes over: the first one's responses stop at its insertion
    turns = assemble_turns([(8.0, watch), (12.0, present)])
    assert [(t.time, t.role, t.kind) for t in turns] == [
        (8.0, "user", "future"),
        (8.0, "assistant", "answer"),
        (10.5, "assistant", "update"),
        (12.0, "user", "present"),
        (12.0, "assistant", "answer"),
        (15.0, "assistant", "update"),
        (22.5, "assistant", "update"),
    ]
    assert turns[4].text == "I see a cat and a rocket."


def test_reminder_answered_when_the_event_happens():
    ann = scene_annotation()
    plan = build_plan(ann, FPS, rng=1, per_category=3, must_remind=[("appears", "rocket")])
    remind = question(plan, "remind-appears", object="rocket")
    assert "rocket" in remind["text"] and remind["window"] == [0.0, 10.5]
    present = next(q for q in plan["questions"] if q["mode"] == "current")
    turns = assemble_turns([(2.0, remind), (5.0, present)])
    said = [(t.time, t.role, t.kind, t.text) for t in turns]
    assert said[0][:2] == (2.0, "user") and said[1][:3] == (2.0, "assistant", "answer")
    # the reminder survives the later question and fires at the first frame at or after 10.3 s
    at = [x for x in said if x[0] == 10.5]
    assert len(at) == 1 and at[0][2] == "reminder"
    assert "The rocket appears." in at[0][3] and "Now I see a cat and a rocket." in at[0][3]
    assert not any(x[1] == "assistant" and x[2] == "reminder" for x in said if x[0] != 10.5)
    # never offered after the event
    for seed in range(30):
        for turn in draw_turns(plan, seed):
            if turn.role == "user" and turn.text == remind["text"]:
                assert turn.time < 10.5


def test_forced_reminder_and_random_draw_invariants():
    ann = scene_annotation()
    plan = build_plan(ann, FPS, rng=3, must_remind=[("leaves", "cat")])
    qid = question(plan, "remind-leaves", object="cat")["id"]
    counts = set()
    for seed in range(60):
        turns = draw_turns(plan, seed, forced=[(4.2, qid)])
        users = [t for t in turns if t.role == "user"]
        counts.add(len(users))
        assert 1 <= len(users) <= 3
        assert users[0].time == 4.5 if users[0].text == plan["questions"][qid]["text"] else True
        for i, t in enumerate(turns):
            assert on_grid(t.time), t
            assert 0 <= t.time <= 30.0
            if t.role == "user":  # every question is answered at once
                assert turns[i + 1].role == "assistant" and turns[i + 1].time == t.time
        assert [t.time for t in turns] == sorted(t.time for t in turns)
        assert any(t.kind == "reminder" and t.time == 15.0 for t in turns)
        assert turns[0].role == "user"  # nothing is said before the first question
    assert counts == {1, 2, 3}


def test_coin_procedure_dialogue(tmp_path):
    path = tmp_path / "COIN.json"
    path.write_text(
        json.dumps(
            {
                "database": {
                    "v": {
                        "annotation": [
                            {"segment": [2.0, 8.2], "label": "jack up the car"},
                            {"segment": [12.0, 20.5], "label": "remove the old tire"},
                            {"segment": [21.0, 26.0], "label": "put on the new tire"},
                        ],
                        "class": "ChangeCarTire",
                        "subset": "training",
                        "duration": 30.0,
                    }
                }
            }
        )
    )
    ann = load_coin(path)[0]
    plan = build_plan(ann, FPS, rng=0, per_category=50, max_reminders=20)
    assert all(q["category"] != "reminder" or q["mode"] in ("remind-start", "remind-end") for q in plan["questions"])
    nxt = next(q for q in plan["questions"] if q["mode"] == "next")
    turns = assemble_turns([(10.0, nxt)])
    assert turns[1].text == "Next: remove the old tire."
    assert [(t.time, t.text) for t in turns[2:]] == [
        (20.5, "Next: put on the new tire."),
        (26.0, "That was the last step."),
    ]
    current = next(q for q in plan["questions"] if q["mode"] == "current")
    turns = assemble_turns([(5.0, current)])
    assert turns[1].text == "You are on the step: jack up the car."
    assert (8.5, "Done: jack up the car.") in [(t.time, t.text) for t in turns]  # 8.2 s -> the 8.5 s frame
    end = question(plan, "remind-end", object="remove the old tire")
    turns = assemble_turns([(3.0, end)])
    assert [(t.time, t.kind, t.text) for t in turns[2:]] == [
        (20.5, "reminder", "You have finished: remove the old tire.")
    ]
    summary = next(q for q in plan["questions"] if q["mode"] == "summary")
    assert _answer_at(summary, 22.0) == (
        "So far you have done: jack up the car and remove the old tire. Now you are on: put on the new tire."
    )


def test_standing_instruction_narrates_every_event_and_goes_on_after_an_answer():
    ann = scene_annotation()
    plan = build_plan(ann, FPS, rng=0, per_category=50, max_reminders=20)
    # the plan's narration: every event's own sentence at its grid time, from the first frame on
    expected: dict[float, list[str]] = {}
    for e in sorted(ann.events, key=lambda e: e.time):
        expected.setdefault(snap(e.time, FPS), []).append(e.text)
        if e.end is not None and e.end_text:
            expected.setdefault(snap(e.end, FPS), []).append(e.end_text)
    said = {t: text for t, text, _ in plan["narration"]}
    assert said == {t: " ".join(texts) for t, texts in expected.items() if t > 0}
    assert said[3.5] == "The cat appears." and said[10.5] == "The rocket appears." and said[15.0] == "The cat leaves."
    present = next(q for q in plan["questions"] if q["mode"] == "current")
    turns = assemble_turns([(8.0, present)], plan["narration"])
    # the answer on top; the question's own updates ("Now I see ...") give way to the narration
    assert [(t.time, t.role, t.kind, t.text) for t in turns if t.time <= 10.5] == [
        (3.5, "assistant", "narration", "The cat appears."),
        (6.0, "assistant", "narration", said[6.0]),
        (7.5, "assistant", "narration", said[7.5]),
        (8.0, "user", "present", present["text"]),
        (8.0, "assistant", "answer", "I see a cat."),
        (10.5, "assistant", "narration", "The rocket appears."),
    ]
    assert [t.time for t in turns if t.kind == "narration"] == sorted(said)
    # a reminder is said at its event in the narration's place (once, first)
    remind = next(q for q in plan["questions"] if q["mode"] == "remind-appears" and q["target"]["object"] == "rocket")
    turns = assemble_turns([(5.0, remind)], plan["narration"])
    at = [t for t in turns if t.time == 10.5]
    assert [(t.kind, t.text) for t in at] == [("reminder", "The rocket appears.")]
    # without the instruction: silent until the first question (the plan of before)
    assert draw_turns(plan, 1, narrate=False) == draw_turns(plan, 1)
    assert not any(t.kind == "narration" for t in draw_turns(plan, 1))
    assert [t.time for t in draw_turns(plan, 1, narrate=True) if t.kind in ("narration", "reminder")][:1] == [3.5]


def test_draw_instruction_shares():
    from live_ros.data.dialogue_plans import P_SILENT, draw_instruction
    from live_ros.data.dialogue_responders import templates
    from live_ros.model.format import DEFAULT_INSTRUCTION

    drawn = [draw_instruction(seed) for seed in range(1000)]
    assert set(drawn) <= set(templates()["narration"]) | {""}
    assert DEFAULT_INSTRUCTION in templates()["narration"]
    # 1,000 draws: the silent share's standard deviation is sqrt(0.2 * 0.8 / 1000) = 1.3 points
    # and the default's 1.6: 5 points either way is over 3 of them, whatever the CPU
    assert abs(drawn.count("") / 1000 - P_SILENT) < 0.05
    assert abs(drawn.count(DEFAULT_INSTRUCTION) / 1000 - (1 - P_SILENT) / 2) < 0.05
