"""video_source (live_ros/nodes/video_source.py) as a real process: it plays only once a
subscription matches the camera topic, so the video's first frames reach the graph and the
stream's video time is the video's own."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from ros_helpers import ros_node, spin_until

pytestmark = pytest.mark.ros

EXE = Path(sys.executable).parent.parent / "lib" / "live_ros" / "video_source"


def test_plays_from_the_first_frame_once_a_subscriber_matches(processes, tmp_path):
    from sensor_msgs.msg import Image

    from live_ros.msg import Status
    from live_ros.ros import qos

    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(12):
        PILImage.fromarray(np.full((24, 32, 3), 20 * i, dtype=np.uint8)).save(folder / f"{i:03d}.png")
    proc = processes.start(
        EXE,
        "--ros-args",
        "-p",
        f"source:={folder}",
        "-p",
        "folder_fps:=20.0",
        "-p",
        "loop:=false",
        "-p",
        "status_period:=0.2",
        "-r",
        "__ns:=/vs_test",
        "-r",
        "/camera/image_raw:=/vs_test/image",
    )
    with ros_node("vs_test_probe") as (node, executor):
        statuses: list = []
        node.create_subscription(Status, "/vs_test/status", statuses.append, qos.status())
        spin_until(executor, lambda: any(s.state == "active" for s in statuses), 60, "video_source active", proc)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 1.5:
            executor.spin_once(timeout_sec=0.05)
        assert statuses[-1].state == "active" and all(s.frames_in == 0 for s in statuses), (
            "video_source played before anything subscribed"
        )
        got: list = []
        node.create_subscription(Image, "/vs_test/image", got.append, qos.camera("reliable", 50))
        spin_until(executor, lambda: len(got) >= 12, 30, "the 12 frames", proc)
    assert [int(m.data[0]) for m in got] == [20 * i for i in range(12)]
    stamps = [m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 for m in got]
    assert all(b > a for a, b in zip(stamps, stamps[1:]))


@pytest.mark.slow
def test_launched_video_waits_for_the_models_so_the_llm_takes_its_first_frame(processes, tmp_path):
    """``live-ros launch use_video:=true``: video_source waits until camera_subscriber,
    frame_encoder and live_llm say active (the launch file's wait_for_nodes), so no part of
    the video passes while the models load: the LLM's first frame is the video's first, and
    every frame sampled from the video reaches it (one live/decision each)."""
    import threading

    import yaml
    from sensor_msgs.msg import Image

    from live_ros.model.frames import FrameSampler
    from live_ros.msg import Decision, Status
    from live_ros.paths import share_dir
    from live_ros.ros import qos

    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(30):  # 3 s at 10 fps: 6 or 7 frames sampled at 2 fps
        rgb = np.full((120, 160, 3), 40, dtype=np.uint8)
        rgb[:, 5 * i : 5 * i + 20] = (200, 120, 30)
        PILImage.fromarray(rgb).save(folder / f"{i:03d}.png")
    params = yaml.safe_load((share_dir() / "config" / "live_ros.yaml").read_text())
    params["/**/live_llm"]["ros__parameters"].update({"mute": True, "max_new_tokens": 3})
    # camera_subscriber and this probe: the probe sees every image video_source publishes
    params["/**/video_source"]["ros__parameters"]["wait_for_subscribers"] = 2
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    launch = processes.start(
        Path(sys.executable).parent / "live-ros",
        "launch",
        "live_ros.launch.xml",
        "use_video:=true",
        f"video:={folder}",
        f"params_file:={path}",
        "namespace:=vs_launch",
    )
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(launch.stdout.readline, "")), daemon=True).start()
    with ros_node("vs_launch_probe") as (node, executor):
        images: list = []
        decisions: list = []
        status: dict = {}
        node.create_subscription(Image, "/camera/image_raw", images.append, qos.camera("reliable", 100))
        node.create_subscription(Decision, "/vs_launch/decision", decisions.append, qos.decisions())
        profile = qos.status()
        profile.depth = 20
        node.create_subscription(Status, "/vs_launch/status", lambda m: status.__setitem__(m.node, m), profile)

        def seconds(msg) -> float:
            return msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9

        def sampled() -> list[float]:
            sampler = FrameSampler(2.0)  # camera_subscriber's fps in the parameter file
            return [seconds(m) for m in images if sampler.accept(seconds(m))]

        spin_until(
            executor,
            lambda: "video_source" in status and status["video_source"].state == "finished",
            300,
            "the video to play to its end",
            launch,
            detail=lambda: "".join(lines[-20:]),
        )
        spin_until(
            executor,
            lambda: len(decisions) >= len(sampled()),
            120,
            "a decision for every sampled frame",
            launch,
            detail=lambda: f"{len(decisions)} decisions, {len(sampled())} sampled",
        )
    assert len(images) == 30
    assert any("waiting for camera_subscriber, frame_encoder, live_llm to say active" in line for line in lines), (
        "".join(lines[-30:])
    )
    # the stamps go through float seconds in the LLM: equal to well under a microsecond
    first = seconds(decisions[0])
    assert abs(first - seconds(images[0])) < 1e-6, (
        f"the LLM's first frame is {first - seconds(images[0]):.2f} s into the video, not its first frame"
    )
    assert decisions[0].video_time == 0.0
    assert [round(seconds(d), 6) for d in decisions] == [round(t, 6) for t in sampled()]
