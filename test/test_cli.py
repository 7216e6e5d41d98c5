"""The live-ros command in fresh processes, as a user runs it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PEERS
from ros_helpers import ros_node, spin_until

LIVE_ROS = shutil.which("live-ros", path=os.path.dirname(sys.executable)) or "live-ros"


def run(*args, timeout=60):
    return subprocess.run([LIVE_ROS, *args], capture_output=True, text=True, timeout=timeout, env=os.environ)


def test_help_lists_only_working_verbs():
    out = run("--help")
    assert out.returncode == 0, out.stderr
    for verb in (
        "demo",
        "launch",
        "ask",
        "watch",
        "status",
        "param",
        "check-model",
        "generate",
        "extract",
        "train",
        "evaluate",
        "record",
        "bag-from-video",
        "replay-eval",
    ):
        assert f"    {verb}" in out.stdout


def test_bag_verbs_help_is_instant_and_complete():
    for verb, words in (
        ("record", ("--no-tokens", "--duration")),
        ("bag-from-video", ("--compressed", "--start-stamp")),
        ("replay-eval", ("--realtime", "--speed", "--attach", "--questions", "--window")),
    ):
        out = run(verb, "--help", timeout=20)
        assert out.returncode == 0, out.stderr
        assert all(w in out.stdout for w in words), out.stdout


def test_unknown_verb_fails_with_usage():
    out = run("frobnicate")
    assert out.returncode == 2 and "invalid choice" in out.stderr


def test_info_names_the_installed_pieces():
    out = run("--info")
    assert out.returncode == 0, out.stderr
    fields = dict(line.split(None, 1) for line in out.stdout.splitlines() if line.strip())
    assert (Path(fields["share"]) / "package.xml").is_file()
    assert (Path(fields["interfaces"]) / "msg" / "__init__.py").is_file()
    assert "MISSING" not in out.stdout


@pytest.mark.ros
def test_status_shows_a_running_node(processes):
    peer = processes.python(PEERS / "status_peer.py", "frame_encoder")
    assert peer.stdout.readline().strip() == "READY"
    out = run("status", "--json", "--timeout", "20")
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads(out.stdout)["frame_encoder"]
    assert report["state"] == "active" and report["cache_tokens"] == 1234 and report["queries_answered"] == 2
    assert "bgr16" in report["last_error"]
    table = run("status", "--timeout", "20")
    assert table.returncode == 0 and "frame_encoder" in table.stdout and "last errors:" in table.stdout


@pytest.mark.ros
def test_status_without_nodes_says_why():
    out = run("status", "--timeout", "1", "--namespace", "nobody_here")
    assert out.returncode == 1
    assert "no live_ros node reported on /nobody_here/status" in out.stdout
    assert f"ROS_DOMAIN_ID={os.environ['ROS_DOMAIN_ID']}" in out.stdout


@pytest.mark.ros
def test_status_waits_for_every_publisher_and_names_the_silent_ones(processes):
    # frame_encoder reports at once; camera_subscriber only 4 s after the tool's subscription
    # matched (more than the 2 s a tool that stops soon after the first report would wait)
    peers = [
        processes.python(PEERS / "status_peer.py", "frame_encoder", "0.2"),
        processes.python(PEERS / "status_peer.py", "camera_subscriber", "0.2", "4"),
    ]
    for peer in peers:
        assert peer.stdout.readline().strip() == "READY"
    # 30 s: far above the 4 s the slow peer needs, so a loaded machine still passes
    out = run("status", "--json", "--timeout", "30")
    assert out.returncode == 0, out.stdout + out.stderr
    assert set(json.loads(out.stdout)) == {"frame_encoder", "camera_subscriber"}, out.stdout
    assert "no report" not in out.stderr, out.stderr
    # live_llm has a status publisher but never reports: named after the timeout
    silent = processes.python(PEERS / "status_peer.py", "live_llm", "0")
    assert silent.stdout.readline().strip() == "READY"
    with ros_node("test_status_discovery") as (node, executor):  # it is announced: discoverable
        spin_until(
            executor,
            lambda: any(
                i.node_name == "status_peer_live_llm" for i in node.get_publishers_info_by_topic("/live/status")
            ),
            30,
            "the silent peer's status publisher",
        )
    # A new tool process discovers the peers by DDS discovery, which on a loaded machine can
    # take seconds for one participant; the silent peer is only named once discovered, so
    # up to three runs (each must report the live peers; one must name the silent one).
    for _ in range(3):
        out = run("status", "--timeout", "10")
        assert out.returncode == 0, out.stdout + out.stderr
        assert "camera_subscriber" in out.stdout and "frame_encoder" in out.stdout
        if "no report" in out.stdout:
            break
    assert "no report within 10 s from /live/status_peer_live_llm" in out.stdout, out.stdout
    assert "/live/status_peer_camera_subscriber" not in out.stdout.split("no report")[1]


@pytest.mark.ros
def test_param_names_a_wrong_name_and_a_wrong_type(processes):
    lib = Path(sys.prefix) / "lib" / "live_ros"
    processes.start(lib / "camera_subscriber", "--ros-args", "-r", "__ns:=/paramtest")
    ns = ("--namespace", "paramtest", "--timeout", "60")  # 60 s: the node may still be starting
    out = run("param", "set", "camera_subscriber", "fpss", "3.0", *ns, timeout=120)
    assert out.returncode == 1
    assert "/paramtest/camera_subscriber has no parameter 'fpss'; did you mean fps?" in out.stderr, out.stderr
    assert "its parameters: fps, " in out.stderr and "qos_depth" in out.stderr, out.stderr
    out = run("param", "set", "camera_subscriber", "fps", "abc", *ns, timeout=120)
    assert out.returncode == 1
    assert "fps is a double; 'abc' is a string" in out.stderr, out.stderr
    out = run("param", "get", "camera_subscriber", "fsp", *ns, timeout=120)
    assert out.returncode == 1 and "did you mean fps?" in out.stderr, out.stderr
    out = run("param", "get", "camera_subscriber", "fps", *ns, timeout=120)
    assert out.returncode == 0 and float(out.stdout) == 0.0, out.stdout + out.stderr  # 0: the checkpoint's


@pytest.mark.ros
def test_ask_without_a_graph_says_how_to_start_one():
    # --timeout 120 is for an answer; with no live_llm in the graph at all the tool must not
    # wait for it (the subprocess limit, 90 s, is far above the few seconds of discovery)
    out = run("ask", "what do you see?", "--namespace", "nobody_asks", "--timeout", "120", timeout=90)
    assert out.returncode == 1
    assert "no service /nobody_asks/query: no live_llm node runs in namespace /nobody_asks" in out.stderr, out.stderr
    assert "live-ros launch" in out.stderr and "make demo" in out.stderr


@pytest.mark.ros
def test_watch_shows_the_final_responses_of_the_history():
    """The response topic keeps its last 20 messages for late joiners; partial texts of
    responses already finished are not shown, only the newest partial of the one being decoded."""
    from live_ros.msg import Response
    from live_ros.ros import qos

    with ros_node("test_watch_history") as (node, executor):
        pub = node.create_publisher(Response, "/watchtest/response", qos.responses())
        history = []
        for rid in (1, 2, 3, 4):
            for n in range(1, 5):
                history.append(Response(response_id=rid, kind="narration", text=f"r{rid} " + "w " * n, final=False))
            history.append(Response(response_id=rid, kind="narration", text=f"r{rid} done.", final=True))
        history += [Response(response_id=5, kind="narration", text="r5 " + "w " * n, final=False) for n in (1, 2)]
        for msg in history[-20:]:  # what the topic keeps (depth 20): mostly partial texts
            pub.publish(msg)
        executor.spin_once(timeout_sec=0.1)
        proc = subprocess.Popen(
            [LIVE_ROS, "watch", "--namespace", "watchtest", "--partial", "--json", "--duration", "8"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=os.environ,
        )
        # keep this node (the publisher of the history) alive while watch runs
        spin_until(executor, lambda: proc.poll() is not None, 60, "live-ros watch to end")
        out, err = proc.communicate()
    shown = [(r["response_id"], r["final"], r["text"]) for r in map(json.loads, out.splitlines())]
    finals_kept = [(m.response_id, True, m.text) for m in history[-20:] if m.final]
    assert shown == finals_kept + [(5, False, "r5 w w ")], (shown, err)


def test_replay_eval_with_wrong_inputs_leaves_no_output_folder(tmp_path):
    import numpy as np

    from live_ros.bags.videobag import write_camera_bag

    write_camera_bag(tmp_path / "bag", [(10**9 + i * 5 * 10**8, np.zeros((8, 8, 3), np.uint8)) for i in range(3)])
    (tmp_path / "questions.json").write_text('[{"text": "no time"}]')
    for args in (
        ("replay-eval", tmp_path / "missing"),
        ("replay-eval", tmp_path / "bag", "--questions", tmp_path / "questions.json"),
        ("replay-eval", tmp_path / "bag", "--set", "nosuchnode.theta=1"),
    ):
        out = run(*map(str, args), "--out", str(tmp_path / "out" / "eval"), timeout=120)
        assert out.returncode == 1 and "live-ros replay-eval: " in out.stderr, out.stderr
        assert not (tmp_path / "out").exists(), (args, out.stderr)
