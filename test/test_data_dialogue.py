"""Streaming dialogue generation (paper section 3.2): online narrations, offline plans,
question insertion, dropped responses, reminders, the fps grid."""

from __future__ import annotations

import json

import pytest

import live_ros  # noqa: F401
from live_ros.data import dialogue
from live_ros.data.annotations import Event, VideoAnnotation, load_coin, load_ego4d_narrations
from live_ros.data.dialogue import (Context, assemble_turns, build_plan, draw_turns,
                                    narration_stream, offline_stream, redraw, snap, templates)
from live_ros.data.streams import load_samples, save_samples

FPS = 2.0


def on_grid(t: float, fps: float = FPS) -> bool:
    return abs(t * fps - round(t * fps)) < 1e-6


def scene_annotation() -> VideoAnnotation:
    return VideoAnnotation("scene1", 30.0, events=[
        Event(3.2, "appears", "cat", "The cat appears."),
        Event(6.0, "moves", "cat", "The cat moves to the left.", end=7.3, end_text="The cat stops.",
              meta={"direction": "to the left"}),
        Event(10.3, "appears", "rocket", "The rocket appears."),
        Event(15.0, "leaves", "cat", "The cat leaves."),
        Event(22.1, "leaves", "rocket", "The rocket leaves."),
    ], source="world", domain="scene")


def question(plan: dict, mode: str, **match) -> dict:
    for q in plan["questions"]:
        if q["mode"] == mode and all(q.get("target", {}) and q["target"].get(k) == v for k, v in match.items()):
            return q
    raise AssertionError(f"no {mode} question {match} in the plan")


def test_template_library():
    lib = templates()
    for cat in ("past", "present", "future"):
        assert len(lib[cat]) == 50, cat
        assert len({e["q"] for e in lib[cat]}) == 50
    modes = {e["mode"] for e in lib["future"]}
    assert {"remind-appears", "remind-leaves", "remind-start", "remind-end", "watch", "next"} <= modes
    assert any(e["q"].startswith("Tell me when the {object}") for e in lib["future"])


def test_snap_grid():
    assert snap(0.0, 2) == 0.0 and snap(0.2, 2) == 0.5 and snap(0.5, 2) == 0.5 and snap(0.5000001, 2) == 0.5
    assert snap(10.3, 2) == 10.5 and snap(10.01, 2) == 10.5 and snap(3.0, 2) == 3.0


def test_ego4d_online_stream(tmp_path):
    path = tmp_path / "n.json"
    path.write_text(json.dumps({"videos": {"v": {"narration_pass_1": {"narrations": [
        {"timestamp_sec": 0.3, "narration_text": "#C C opens the fridge"},
        {"timestamp_sec": 2.0, "narration_text": "#C C takes a bottle"},
        {"timestamp_sec": 3.1, "narration_text": "#C C closes the fridge"},
        {"timestamp_sec": 3.4, "narration_text": "#C C looks around"},
        {"timestamp_sec": 9.9, "narration_text": "#C C sits"}]}}}}))
    ann = load_ego4d_narrations(path, durations={"v": 6.0})[0]
    s = narration_stream(ann, FPS, rng=0, instruction="Narrate what you see.")
    assert s.num_frames == 13
    assert [(t.role, t.time, t.text) for t in s.turns] == [
        ("user", 0.0, "Narrate what you see."),
        ("assistant", 0.5, "C opens the fridge."),
        ("assistant", 2.0, "C takes a bottle."),
        ("assistant", 3.5, "C closes the fridge. C looks around."),   # same frame: merged
    ]                                                                   # 9.9 s is past the video
    turns = s.to_turns()
    assert [(t.role, t.num_frames) for t in turns][:4] == [("stream", 1), ("user", 0), ("stream", 1), ("assistant", 0)]
    assert sum(t.num_frames for t in turns) == s.num_frames
    windows = dialogue.narration_windows(ann, FPS, window=3.0, rng=0)
    assert [w.meta.get("start", 0.0) for w in windows] == [0.0, 3.0]
    assert [t.time for t in windows[1].turns if t.role == "assistant"] == [0.5]  # 3.1 and 3.4 -> 3.5 - 3.0


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
        (10.5, "Now I see a cat and a rocket."), (15.0, "Now I see a rocket."), (22.5, "Now nothing is on screen.")]
    # a second question takes over: the first one's responses stop at its insertion
    turns = assemble_turns([(8.0, watch), (12.0, present)])
    assert [(t.time, t.role, t.kind) for t in turns] == [
        (8.0, "user", "future"), (8.0, "assistant", "answer"), (10.5, "assistant", "update"),
        (12.0, "user", "present"), (12.0, "assistant", "answer"), (15.0, "assistant", "update"),
        (22.5, "assistant", "update")]
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
            if t.role == "user":   # every question is answered at once
                assert turns[i + 1].role == "assistant" and turns[i + 1].time == t.time
        assert [t.time for t in turns] == sorted(t.time for t in turns)
        assert any(t.kind == "reminder" and t.time == 15.0 for t in turns)
        assert turns[0].role == "user"   # nothing is said before the first question
    assert counts == {1, 2, 3}


def test_offline_stream_redraw_and_jsonl(tmp_path):
    ann = scene_annotation()
    train = offline_stream(ann, FPS, rng=7)
    assert "plan" in train.meta and not train.meta["fixed"]
    draws = {tuple((t.time, t.text) for t in redraw(train, s).turns) for s in range(12)}
    assert len(draws) > 3                                   # fresh insertions per draw
    again = offline_stream(ann, FPS, rng=7)
    assert [(t.time, t.text) for t in again.turns] == [(t.time, t.text) for t in train.turns]
    fixed = offline_stream(ann, FPS, rng=7, fixed=True)
    assert redraw(fixed, 99) is fixed
    path = save_samples([train, fixed], tmp_path / "s.jsonl")
    back = load_samples(path)
    assert back[0].meta["plan"] == json.loads(json.dumps(train.meta["plan"]))
    assert [(t.time, t.text) for t in redraw(back[0], 5).turns] == [(t.time, t.text) for t in redraw(train, 5).turns]


def test_coin_procedure_dialogue(tmp_path):
    path = tmp_path / "COIN.json"
    path.write_text(json.dumps({"database": {"v": {"annotation": [
        {"segment": [2.0, 8.2], "label": "jack up the car"},
        {"segment": [12.0, 20.5], "label": "remove the old tire"},
        {"segment": [21.0, 26.0], "label": "put on the new tire"}],
        "class": "ChangeCarTire", "subset": "training", "duration": 30.0}}}))
    ann = load_coin(path)[0]
    plan = build_plan(ann, FPS, rng=0, per_category=50, max_reminders=20)
    assert all(q["category"] != "reminder" or q["mode"] in ("remind-start", "remind-end") for q in plan["questions"])
    nxt = next(q for q in plan["questions"] if q["mode"] == "next")
    turns = assemble_turns([(10.0, nxt)])
    assert turns[1].text == "Next: remove the old tire."
    assert [(t.time, t.text) for t in turns[2:]] == [(20.5, "Next: put on the new tire."),
                                                     (26.0, "That was the last step.")]
    current = next(q for q in plan["questions"] if q["mode"] == "current")
    turns = assemble_turns([(5.0, current)])
    assert turns[1].text == "You are on the step: jack up the car."
    assert (8.5, "Done: jack up the car.") in [(t.time, t.text) for t in turns]   # 8.2 s -> the 8.5 s frame
    end = question(plan, "remind-end", object="remove the old tire")
    turns = assemble_turns([(3.0, end)])
    assert [(t.time, t.kind, t.text) for t in turns[2:]] == [(20.5, "reminder", "You have finished: remove the old tire.")]
    summary = next(q for q in plan["questions"] if q["mode"] == "summary")
    assert dialogue._answer_at(summary, 22.0) == ("So far you have done: jack up the car and remove the old tire. "
                                                  "Now you are on: put on the new tire.")


def test_streams_from_annotations_dispatch(tmp_path):
    online = VideoAnnotation("o", 5.0, events=[Event(1.2, "narration", "", "C waves.")], source="ego4d",
                             domain="narration", online=True)
    samples = dialogue.streams_from_annotations([online, scene_annotation()], FPS, seed=3)
    assert samples[0].meta["kind"] == "narration" and samples[1].meta["kind"] == "dialogue"
    again = dialogue.streams_from_annotations([online, scene_annotation()], FPS, seed=3)
    assert [s.to_dict() for s in samples] == [s.to_dict() for s in again]
    text = dialogue.format_dialogue(samples[1])
    assert text.startswith("# scene1") and "User" in text


@pytest.fixture
def one_thread():
    """One torch thread: on a shared 2-core machine two threads are several times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_llm_responder_smollm2(one_thread):
    from live_ros.assets import smollm2_dir, smollm2_ready

    if not smollm2_ready():
        pytest.skip("SmolLM2 is not converted (run scripts/setup.sh)")
    responder = dialogue.LLMResponder(smollm2_dir(), max_new_tokens=8)
    ann = VideoAnnotation("tiny", 6.0, events=[Event(2.0, "appears", "cat", "The cat appears.")], domain="scene")
    q = {"text": "What do you see now?", "mode": "current", "category": "present"}
    past = [(ann.events[0], "start")]
    text = responder.respond(Context(ann, q, 3.0, "ask", past, [], None))
    assert isinstance(text, str) and len(text) >= 2
    # when to speak stays the template's decision: no update for a count question on a move
    assert responder.respond(Context(ann, {**q, "mode": "count"}, 3.0, "update", past,
                                     [(Event(3.0, "turns", "cat", "The cat turns around."), "start")], None)) is None


def test_generate_verbs_from_files(tmp_path):
    import argparse

    from live_ros.data import verbs
    from live_ros.data.annotations import save_annotation

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="verb")
    verbs.add_generate(sub)
    (tmp_path / "n.json").write_text(json.dumps({"videos": {"v": {"narration_pass_1": {"narrations": [
        {"timestamp_sec": 1.2, "narration_text": "#C C waves"}]}}}}))
    (tmp_path / "c.json").write_text(json.dumps({"database": {"c": {"annotation": [
        {"segment": [1.0, 3.0], "label": "pour water"}], "class": "Tea", "subset": "testing", "duration": 6.0}}}))
    save_annotation(scene_annotation(), tmp_path / "ann" / "scene1.json")
    for argv, kind in ((["ego4d", str(tmp_path / "n.json")], "narration"),
                       (["coin", str(tmp_path / "c.json"), "--fixed"], "dialogue"),
                       (["annotations", str(tmp_path / "ann")], "dialogue")):
        out = tmp_path / argv[0]
        args = parser.parse_args(["generate", *argv, "--out", str(out)])
        assert args.run(args) == 0
        samples = load_samples(out / "streams.jsonl")
        assert len(samples) == 1 and samples[0].meta["kind"] == kind
        assert all(on_grid(t.time) for t in samples[0].turns)
    args = parser.parse_args(["generate", "coin", str(tmp_path / "missing.json"), "--out", str(tmp_path / "x")])
    assert args.run(args) == 1
