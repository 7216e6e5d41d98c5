"""Record, replay and score through the real graph (one graph for this module, started
with use_sim_time and a reliable camera QoS as replay-eval starts it; replays attach to it).

A generated 16 s clip with three known events becomes a camera bag (bag-from-video);
- with theta = 1 the model speaks at every frame, so the expected matches are known: the
  graph is recorded while the bag plays, the recording reads back with mcap-ros2-support
  with rosidl's type hashes, and replay-eval of the recorded bag gives the expected matches;
- lockstep replay makes the same decisions, frame for frame, as the core engine alone on
  the same frames (same preprocessing and encoder), with a question asked at a bag time,
  and the report shows the offline TimeDiff of live-ros evaluate beside the online one;
- real-time mode reports drops and latency.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from live_ros.bags import bagio

pytestmark = [pytest.mark.ros, pytest.mark.slow]

QUESTION = {"time": 1.0, "text": "Tell me when the cat leaves.", "expected": "The cat leaves."}
THETA = 0.85  # the committed checkpoint speaks a few times on this clip at this theta
MAX_NEW_TOKENS = 16


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from live_ros.bags.videobag import bag_from_video
    from live_ros.data.world import render_video
    from live_ros.data.world_objects import Look
    from live_ros.data.world_scene import DEFAULT_SIZE, Scene

    folder = tmp_path_factory.mktemp("replay_clip")
    W, H = DEFAULT_SIZE
    scene = Scene("clip", duration=16.0, background="gradient", background_seed=7, split="demo")
    cat = scene.add("cat", Look(crop=0, size=130), rest=(W * 0.25, H * 0.52))
    cup = scene.add("coffee cup", Look(crop=0, size=110), rest=(W * 0.7, H * 0.55))
    scene.act(cat, "enter", 2.0, 1.0, "left")
    scene.act(cup, "enter", 7.0, 0.0, "pop")
    scene.act(cat, "leave", 11.0, 1.0, "left")
    ann = render_video(scene, folder / "clip.mp4", folder / "clip.json")
    bag_from_video(folder / "clip.mp4", folder / "bag", annotations=folder / "clip.json", start_stamp=1000.0)
    (folder / "questions.json").write_text(json.dumps([QUESTION]))
    return {
        "folder": folder,
        "bag": folder / "bag",
        "annotation": folder / "clip.json",
        "events": ann.events,
        "questions": folder / "questions.json",
    }


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    from live_ros.ros.graph import OwnGraph
    from live_ros.ros.replay_eval import load_system

    log = tmp_path_factory.mktemp("replay_graph") / "graph.log"
    g = OwnGraph(camera_topic="/camera/image_raw", fps=2.0, camera_qos="reliable", log=log)
    g.start()
    yield g
    g.stop()
    load_system.cache_clear()


def replay(bag, out, **kw):
    from live_ros.ros.replay_eval import ReplayOptions, run

    opts = ReplayOptions(bag=Path(bag), out=Path(out), attach=True, progress=False, timeout=240.0, **kw)
    return run(opts)


def expected_times(events, fps=2.0, window=(-0.5, 3.0)):
    """With a response at every frame: each event's nearest frame (later one on a tie)."""
    out = []
    for e in events:
        frames = [k / fps for k in range(int(17 * fps)) if window[0] <= k / fps - e.time <= window[1]]
        out.append(min(frames, key=lambda t: (abs(t - e.time), -t)))
    return out


def test_record_then_replay_eval_gives_the_expected_matches(clip, graph, tmp_path, processes):
    from test_bags_record import read_mcap, rosidl_hash, schema_hash

    rec_dir = tmp_path / "recorded"
    rec = processes.start(
        Path(sys.executable).parent / "live-ros", "record", rec_dir, "--duration", "300", "--camera-qos", "reliable"
    )
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(rec.stdout.readline, "")), daemon=True).start()
    deadline = time.monotonic() + 30
    while not any(line.startswith("publishers:") for line in lines):
        assert time.monotonic() < deadline and rec.poll() is None, lines
        time.sleep(0.1)
    sets = [("live_llm", "theta", "1.0"), ("live_llm", "max_new_tokens", "3")]
    first = replay(clip["bag"], tmp_path / "eval_bag", sets=sets, prefer_object=False, offline=False)
    rec.send_signal(signal.SIGINT)
    assert rec.wait(timeout=30) == 0, "".join(lines)

    # the recording: raw CDR, readable by mcap-ros2-support, rosidl's hashes
    decoded, hashes, schemas = read_mcap(rec_dir)
    counts: dict[str, int] = {}
    for topic, _, _ in decoded:
        counts[topic] = counts.get(topic, 0) + 1
    acked = first["frames"]["acked"]
    assert acked == 33 and first["frames"]["decisions"] == 33 and first["frames"]["spoke"] == 33
    assert counts["/camera/image_raw"] >= 161 and counts["/live/frame_tokens"] >= acked
    assert counts["/live/decision"] >= acked and counts["/live/response"] >= acked
    for topic, msgtype in (
        ("/camera/image_raw", "sensor_msgs/msg/Image"),
        ("/live/frame_tokens", "live_ros/msg/FrameTokens"),
        ("/live/decision", "live_ros/msg/Decision"),
        ("/live/response", "live_ros/msg/Response"),
    ):
        assert hashes[topic] == rosidl_hash(msgtype) == schema_hash(msgtype, schemas[msgtype])

    # replay-eval of the recorded bag: the warm-up images are left out, the matches are known
    second = replay(
        rec_dir, tmp_path / "eval_recorded", annotations=clip["annotation"], prefer_object=False, offline=False
    )
    assert second["stamps"]["skipped_warmup"] >= 1 and second["frames"]["images"] == 161
    want = expected_times(clip["events"])
    for report in (first, second):
        rows = report["score"]["events"]
        assert [r["response_time"] for r in rows] == pytest.approx(want, abs=1e-6), rows
        assert [r["time_diff"] for r in rows] == pytest.approx(
            [w - e.time for w, e in zip(want, clip["events"])], abs=1e-6
        )
        on = report["score"]["online"]
        assert (on["matched"], on["missed"], on["spurious"]) == (3, 0, 33 - 3)
    assert Path(second["outputs"]["png"]).is_file()


def test_lockstep_decisions_equal_the_engine_alone(clip, graph, tmp_path):
    import torch

    from live_ros.engine import EngineConfig
    from live_ros.evaluation.bag_streams import encode_frames, engine_decisions
    from live_ros.evaluation.score import format_report
    from live_ros.model.format import DEFAULT_INSTRUCTION
    from live_ros.ros.replay_eval import load_system

    sets = [("live_llm", "theta", str(THETA)), ("live_llm", "max_new_tokens", str(MAX_NEW_TOKENS))]
    report = replay(clip["bag"], tmp_path / "eval", questions=clip["questions"], sets=sets)
    graph_decisions = report["decisions"]
    assert report["settings"]["instruction"] == DEFAULT_INSTRUCTION
    assert report["mode"] == "lockstep" and report["frames"]["dropped"] == 0 and len(graph_decisions) == 33

    # the engine alone on the same frames: the bag's sampled images, preprocessed and encoded alike
    scan = bagio.scan_camera(clip["bag"])
    keep = {p["order"] for p in report["plan"] if p["acked"]}
    frames, stamps = [], []
    for img, raw in bagio.iter_camera(scan):
        if img.order in keep:
            frames.append(bagio.decode_rgb(raw, scan.msgtype))
            stamps.append(img.stamp)
    system = load_system("embedded", None, None, None)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the nodes (num_threads 1)
    try:
        tokens = encode_frames(system.encoder, frames)
        asked_after = sum(1 for s in stamps if s - stamps[0] <= QUESTION["time"])
        alone, answers = engine_decisions(
            system.model,
            system.tokens,
            tokens,
            stamps,
            # the graph's standing instruction (live_llm's default), as replay-eval read it
            EngineConfig(
                theta=THETA,
                max_new_tokens=MAX_NEW_TOKENS,
                cache_budget=1280,
                instruction=report["settings"]["instruction"],
            ),
            [(asked_after, QUESTION["text"])],
        )
    finally:
        torch.set_num_threads(threads)
    assert [d["stamp"] for d in graph_decisions] == pytest.approx(stamps, abs=1e-6)
    assert [d["spoke"] for d in graph_decisions] == [d["spoke"] for d in alone]
    assert [d["p_interval"] for d in graph_decisions] == pytest.approx([d["p_interval"] for d in alone], abs=2e-3)
    assert sum(d["spoke"] for d in alone) >= 1, "the model never spoke at this theta: the comparison is weak"
    said = [r["text"] for r in report["responses"] if r["proactive"]]
    assert said == [d["response"] for d in alone if d["spoke"]]

    # the question was asked at its bag time: after the frame at 1.0 s, answered from there
    (row,) = report["score"]["answers"]
    assert row["answer"] == answers[0] and row["fuzzy"] is not None
    answer = next(r for r in report["responses"] if r["query_id"] and not r["proactive"])
    assert answer["time"] == pytest.approx(1.0, abs=1e-6)

    # the offline column: live-ros evaluate on the same stream
    off = report["offline"]
    assert off is not None and off["timed_turns"] == 3 and off["theta"] == pytest.approx(THETA)
    assert off["time_diff"] is not None and off["time_diff_theta"] is not None
    table = format_report(report)
    assert f"TimeDiff@{THETA:g}" in table and "offline (live-ros evaluate)" in table
    assert (tmp_path / "eval" / "timeline.png").is_file() and (tmp_path / "eval" / "report.json").is_file()


def test_realtime_mode_reports_drops_and_latency(clip, graph, tmp_path):
    report = replay(
        clip["bag"],
        tmp_path / "eval_rt",
        realtime=True,
        speed=4.0,
        offline=False,
        sets=[("live_llm", "theta", str(THETA)), ("live_llm", "max_new_tokens", str(MAX_NEW_TOKENS))],
    )
    assert report["mode"] == "realtime" and report["settings"]["speed"] == 4.0
    fr = report["frames"]
    assert fr["acked"] == 33 and fr["decisions"] + fr["dropped"] >= 33 - fr["unexpected"]
    lat = report["score"]["latency"]
    assert lat["decision"]["count"] == fr["decisions"] > 0 and lat["decision"]["p50"] > 0
