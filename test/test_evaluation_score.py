"""Online scoring of replays (live_ros.evaluation.score, report, plots): pure, no ROS."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from live_ros.bags.schedule import FramePlan
from live_ros.evaluation.report import build_report, write_outputs
from live_ros.evaluation.score import (
    Asked,
    EventRef,
    Said,
    answer_scores,
    events_from_annotation,
    format_report,
    match_events,
    percentile,
    score,
)


def said(t, text="", proactive=True, rid=None, qid=0, kind="narration"):
    return Said(rid if rid is not None else int(t * 100), qid, kind, text, t, proactive)


def test_matching_is_one_to_one_within_the_window():
    events = [EventRef(2.0, "appears", "cat"), EventRef(2.4, "appears", "rocket"), EventRef(10.0, "leaves", "cat")]
    responses = [said(2.5), said(5.5), said(9.4), said(30.0)]
    m = match_events(events, responses, window=(-0.5, 3.0), prefer_object=False)
    # 2.4 takes 2.5 (0.1 s, the closest pair); 2.0 then has nothing left within [-0.5, 3];
    # 9.4 is 0.6 s before 10.0: outside the window.
    assert m == {1: 0}
    wide = match_events(events, responses, window=(-1.0, 4.0), prefer_object=False)
    assert wide == {1: 0, 0: 1, 2: 2}


def test_matching_prefers_the_response_that_names_the_object():
    events = [EventRef(5.0, "appears", "coffee cup")]
    responses = [said(5.0, "The cat moves."), said(6.0, "A coffee cup appears.")]
    assert match_events(events, responses, prefer_object=True) == {0: 1}
    assert match_events(events, responses, prefer_object=False) == {0: 0}


def test_only_proactive_responses_match():
    events = [EventRef(1.0, "appears", "cat")]
    assert match_events(events, [said(1.0, proactive=False)]) == {}


def test_score_time_diff_missed_spurious():
    events = [
        EventRef(2.3, "appears", "cat", "The cat appears."),
        EventRef(7.0, "appears", "cup"),
        EventRef(20.0, "leaves", "cat"),
    ]
    responses = [
        said(2.5, "The cat appears."),
        said(7.0, "cup"),
        said(12.0, "noise"),
        said(1.0, "answer", False, qid=1),
    ]
    sc = score(events, responses)
    on = sc.online
    assert (on["events"], on["matched"], on["missed"], on["spurious"], on["proactive_responses"]) == (3, 2, 1, 1, 3)
    assert on["time_diff"] == pytest.approx((0.2 + 0.0) / 2)
    assert on["mean_signed_diff"] == pytest.approx(0.1)
    assert [row["matched"] for row in sc.events] == [True, True, False]
    assert sc.events[0]["names_object"] is True
    assert on["spurious_responses"] == [{"time": 12.0, "text": "noise"}]
    assert sc.latency is None


def test_answers_exact_and_fuzzy():
    assert answer_scores("The cat leaves.", "the cat  leaves") == (True, 1.0)
    exact, ratio = answer_scores("The cat leaves.", "The cat left.")
    assert not exact and 0.7 < ratio < 1.0
    assert answer_scores("The cat leaves.", None) == (False, 0.0)
    asked = [
        Asked(1.0, "Tell me when the cat leaves.", "The cat leaves.", 1, "The cat leaves."),
        Asked(3.0, "What is it?", "A rocket.", 2, "Nothing at all."),
        Asked(4.0, "Hm?", None, 3, "Yes."),
    ]
    sc = score([], [], asked, fuzzy_threshold=0.7)
    s = sc.answer_summary
    assert (s["asked"], s["answered"], s["graded"], s["exact"], s["correct"]) == (3, 3, 2, 1, 1)
    assert sc.answers[2]["exact"] is None


def test_percentiles_and_latency():
    assert percentile([], 50) is None
    assert percentile([3, 1, 2], 50) == 2 and percentile(list(range(1, 101)), 90) == 90
    r = said(1.0, "x")
    r.latency, r.first_latency = 0.5, 0.1
    sc = score([], [r], decision_lags=[0.1, 0.2, 0.3])
    assert sc.latency["decision"]["p50"] == 0.2 and sc.latency["final"]["max"] == 0.5


def test_events_from_annotation_include_segment_ends():
    ann = {
        "events": [
            {
                "time": 58.1,
                "end": 59.5,
                "kind": "moves",
                "object": "cup",
                "text": "The cup moves down.",
                "end_text": "The cup stops.",
            },
            {"time": 4.4, "kind": "appears", "object": "cat"},
        ]
    }
    events = events_from_annotation(ann)
    assert [(e.time, e.kind) for e in events] == [(4.4, "appears"), (58.1, "moves"), (59.5, "moves-end")]
    assert len(events_from_annotation(ann, include_ends=False)) == 2


def _msg(stamp, **fields):
    sec = int(stamp)
    header = SimpleNamespace(stamp=SimpleNamespace(sec=sec, nanosec=int(round((stamp - sec) * 1e9))))
    return SimpleNamespace(header=header, **fields)


def test_report_table_json_and_timeline(tmp_path):
    """A replay's raw results -> report: proactive responses are those a decision names;
    the first final response to a query is its answer; JSON, table and PNG are written."""
    from live_ros.bags.bagio import CameraImage, CameraScan, StampReport
    from live_ros.ros.replay import PlayResult

    t0 = 1000.0
    images = [
        CameraImage(i, int((t0 + 0.5 * i) * 1e9), 1000 + i // 2, 500_000_000 * (i % 2), "camera") for i in range(6)
    ]
    scan = CameraScan(tmp_path / "bag", "/camera/image_raw", "sensor_msgs/msg/Image", images, StampReport(), {})
    play = PlayResult()
    play.plans = [FramePlan(i, im.stamp, im.stamp - t0, True, True) for i, im in enumerate(images)]
    for i, im in enumerate(images):
        spoke = i == 3
        play.decisions.append(
            (
                _msg(
                    im.stamp,
                    frame_index=i,
                    video_time=im.stamp - t0,
                    p_interval=0.2 if spoke else 0.95,
                    theta=0.85,
                    spoke=spoke,
                    suppressed="",
                    batch=1,
                    response_id=7 if spoke else 0,
                ),
                0.0,
            )
        )
    resp = dict(query_id=0, kind="narration", video_time=1.5, latency=0.0)
    play.responses.append((_msg(t0 + 1.5, response_id=7, text="The cat", final=False, **resp), 0.0))
    play.responses.append((_msg(t0 + 1.5, response_id=7, text="The cat appears.", final=True, **resp), 0.0))
    play.responses.append(
        (
            _msg(
                t0 + 0.5,
                response_id=5,
                query_id=1,
                kind="answer",
                text="Nothing yet.",
                final=True,
                video_time=0.5,
                latency=0.0,
            ),
            0.0,
        )
    )
    asked = [Asked(0.7, "What do you see?", "Nothing yet.", 1)]
    settings = {
        "fps": 2.0,
        "theta": None,
        "preset": "embedded",
        "speed": 1.0,
        "window": [-0.5, 3.0],
        "prefer_object": True,
        "fuzzy_threshold": 0.7,
    }
    report = build_report(
        scan=scan,
        play=play,
        mode="lockstep",
        settings=settings,
        events=[EventRef(1.2, "appears", "cat", "The cat appears.")],
        asked=asked,
        annotation_source="test",
    )
    assert report["settings"]["theta"] == 0.85  # from the decisions
    assert report["frames"] == {
        "images": 6,
        "sampled": 6,
        "acked": 6,
        "decisions": 6,
        "dropped": 0,
        "unexpected": 0,
        "spoke": 1,
    }
    on = report["score"]["online"]
    assert (on["matched"], on["missed"], on["spurious"]) == (1, 0, 0)
    assert on["time_diff"] == pytest.approx(0.3)
    assert report["score"]["answers"][0]["answer"] == "Nothing yet." and report["score"]["answers"][0]["exact"]
    text = format_report(report)
    assert "The cat appears." in text and "TimeDiff@0.85" in text and "+0.30" in text
    paths = write_outputs(report, tmp_path / "out")
    assert json.loads((tmp_path / "out" / "report.json").read_text())["format"] == "live_ros.replay-eval/1"
    png = (tmp_path / "out" / "timeline.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert set(paths) == {"json", "table", "png"}


def test_a_reminder_is_graded_on_the_response_at_its_event_not_the_acknowledgement():
    from live_ros.evaluation.report import resolve_answers
    from live_ros.bags.schedule import QuestionsError, parse_questions

    qs = parse_questions(
        [
            {"time": 5, "text": "Tell me when the cat appears.", "expected": "The cat appears.", "expected_at": 12.5},
            {"time": 1, "text": "What do you see?"},
        ]
    )
    assert [(q.time, q.expected_at) for q in qs] == [(1.0, None), (5.0, 12.5)]
    with pytest.raises(QuestionsError, match="expected_at"):
        parse_questions([{"time": 5, "text": "Tell me when the cat appears.", "expected_at": 4}])
    responses = [
        {"query_id": 7, "kind": "answer", "text": "Okay, I am watching.", "time": 5.0, "proactive": False},
        {"query_id": 7, "kind": "answer", "text": "Now I see a dog.", "time": 9.0, "proactive": True},
        {"query_id": 7, "kind": "answer", "text": "The cat appears.", "time": 12.5, "proactive": True},
        {"query_id": 8, "kind": "answer", "text": "I see a cat.", "time": 13.0, "proactive": False},
        {"query_id": 9, "kind": "answer", "text": "The cat appears.", "time": 20.0, "proactive": True},
    ]
    reminder = Asked(5.0, qs[1].text, qs[1].expected, 7, expected_at=12.5)
    plain = Asked(5.0, "What is there?", "I see a cat.", 7)
    late = Asked(5.0, qs[1].text, qs[1].expected, 9, expected_at=12.5)
    resolve_answers([reminder, plain, late], responses)
    assert late.answer is None  # 7.5 s after the event: outside the window (-0.5, 3)
    assert (reminder.answer, reminder.answer_time) == ("The cat appears.", 12.5)
    assert (plain.answer, plain.answer_time) == ("Okay, I am watching.", 5.0)
    rows = score([], [], [reminder, plain]).answers
    assert rows[0]["exact"] and rows[0]["expected_at"] == 12.5 and not rows[1]["exact"]


def test_without_annotations_the_responses_are_listed_not_called_spurious(tmp_path):
    from live_ros.bags.bagio import CameraImage, CameraScan, StampReport
    from live_ros.ros.replay import PlayResult

    t0 = 1000.0
    images = [
        CameraImage(i, int((t0 + 0.5 * i) * 1e9), 1000 + i // 2, 500_000_000 * (i % 2), "camera") for i in range(4)
    ]
    scan = CameraScan(tmp_path / "bag", "/camera/image_raw", "sensor_msgs/msg/Image", images, StampReport(), {})
    play = PlayResult()
    play.plans = [FramePlan(i, im.stamp, im.stamp - t0, True, True) for i, im in enumerate(images)]
    for i, im in enumerate(images):
        play.decisions.append(
            (
                _msg(
                    im.stamp,
                    frame_index=i,
                    video_time=im.stamp - t0,
                    p_interval=0.2,
                    theta=0.85,
                    spoke=True,
                    suppressed="",
                    batch=1,
                    response_id=10 + i,
                ),
                0.0,
            )
        )
        resp = dict(response_id=10 + i, query_id=0, kind="narration", video_time=im.stamp - t0, latency=0.0)
        play.responses.append((_msg(im.stamp, text="A ca", final=False, **resp), 0.0))
        play.responses.append((_msg(im.stamp, text=f"A cat, {i}.", final=True, **resp), 0.0))
    settings = {
        "fps": 2.0,
        "theta": None,
        "preset": "embedded",
        "speed": 1.0,
        "window": [-0.5, 3.0],
        "prefer_object": True,
        "fuzzy_threshold": 0.7,
    }
    report = build_report(
        scan=scan, play=play, mode="lockstep", settings=settings, events=[], asked=[], annotation_source=None
    )
    assert report["score"]["online"]["spurious"] is None and report["score"]["online"]["spurious_responses"] == []
    text = format_report(report)
    assert "spurious" not in text, text
    for i in range(4):
        assert f"[{0.5 * i:7.2f} s] narration: A cat, {i}." in text, text
    assert "A ca\n" not in text and "no annotated events" in text
