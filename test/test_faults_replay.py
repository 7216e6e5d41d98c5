"""replay-eval with a graph it starts itself, through the command line (real processes):
a bag whose stamps start at 0 played in real time (/clock must never be negative), the
responses of a bag without annotations, warm-up images that never make a stamp go
backwards, and a node that dies during the replay named with its last output."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

pytestmark = [pytest.mark.ros, pytest.mark.slow]

LIVE_ROS = shutil.which("live-ros", path=os.path.dirname(sys.executable)) or "live-ros"


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    from live_ros.data.world import render_video
    from live_ros.data.world_objects import Look
    from live_ros.data.world_scene import DEFAULT_SIZE, Scene

    folder = tmp_path_factory.mktemp("faults_clip")
    W, H = DEFAULT_SIZE
    scene = Scene("faults", duration=5.0, background="gradient", background_seed=5, split="demo")
    cat = scene.add("cat", Look(crop=0, size=130), rest=(W * 0.4, H * 0.5))
    scene.act(cat, "enter", 1.0, 1.0, "left")
    render_video(scene, folder / "clip.mp4", folder / "clip.json")
    return folder / "clip.mp4"


def test_realtime_replay_of_a_bag_stamped_from_0_lists_what_the_model_said(video, tmp_path):
    from live_ros.bags.videobag import bag_from_video

    bag_from_video(video, tmp_path / "bag", start_stamp=0.0)  # a video whose creation time is 1970
    out = subprocess.run(
        [
            LIVE_ROS,
            "replay-eval",
            str(tmp_path / "bag"),
            "--realtime",
            "--out",
            str(tmp_path / "eval"),
            "--set",
            "live_llm.theta=1.0",
            "--set",
            "live_llm.max_new_tokens=3",
            "--no-offline",
            "--no-png",
            "--timeout",
            "400",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env=os.environ,
    )
    log = (tmp_path / "eval" / "graph.log").read_text()
    assert out.returncode == 0, out.stderr[-3000:]
    assert "must not be negative" not in log and "exited with code" not in log, log[-3000:]
    # no annotation: what the model said is listed (theta 1: it speaks at every frame taken), not "spurious"
    assert "spurious" not in out.stdout and "no annotated events" in out.stdout, out.stdout
    said = re.findall(r"^\s+\[\s*[\d.]+ s\] narration: .+$", out.stdout, re.M)
    assert said, out.stdout


def test_lockstep_warm_up_never_goes_backwards_and_a_dead_node_is_named(video, tmp_path):
    from live_ros.bags.videobag import bag_from_video

    bag_from_video(video, tmp_path / "bag")  # the default start stamp: room for warm-up images before it
    proc = subprocess.Popen(
        [
            LIVE_ROS,
            "replay-eval",
            str(tmp_path / "bag"),
            "--out",
            str(tmp_path / "eval"),
            "--set",
            "live_llm.theta=1.0",
            "--set",
            "live_llm.max_new_tokens=16",
            "--no-offline",
            "--no-png",
            "--timeout",
            "400",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ,
    )
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.extend(iter(proc.stderr.readline, "")), daemon=True)
    reader.start()
    log = tmp_path / "eval" / "graph.log"
    deadline = time.monotonic() + 600  # model loading on a loaded 2-core machine
    while not any("graph ready" in line for line in err):
        assert proc.poll() is None and time.monotonic() < deadline, "".join(err)
        time.sleep(0.2)
    # the bag's first image is published right after "graph ready"; theta 1 and 16 new tokens
    # make each of the 11 lockstep frames take a while, so the kill lands mid-replay
    time.sleep(1.0)
    pid = int(re.search(r"started live_llm \(pid (\d+)\)", log.read_text()).group(1))
    os.kill(pid, signal.SIGKILL)
    proc.wait(timeout=600)
    reader.join(timeout=60)
    stderr = "".join(err)
    assert proc.returncode == 1, stderr[-3000:]
    assert "live_llm killed by SIGKILL during the replay; its last output:" in stderr, stderr[-3000:]
    assert "went backwards" not in log.read_text(), log.read_text()[-3000:]
