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
    proc = processes.start(EXE, "--ros-args", "-p", f"source:={folder}", "-p", "folder_fps:=20.0", "-p",
                           "loop:=false", "-p", "status_period:=0.2", "-r", "__ns:=/vs_test",
                           "-r", "/camera/image_raw:=/vs_test/image")
    with ros_node("vs_test_probe") as (node, executor):
        statuses: list = []
        node.create_subscription(Status, "/vs_test/status", statuses.append, qos.status())
        spin_until(executor, lambda: any(s.state == "active" for s in statuses), 60, "video_source active", proc)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 1.5:
            executor.spin_once(timeout_sec=0.05)
        assert statuses[-1].state == "active" and all(s.frames_in == 0 for s in statuses), \
            "video_source played before anything subscribed"
        got: list = []
        node.create_subscription(Image, "/vs_test/image", got.append, qos.camera("reliable", 50))
        spin_until(executor, lambda: len(got) >= 12, 30, "the 12 frames", proc)
    assert [int(m.data[0]) for m in got] == [20 * i for i in range(12)]
    stamps = [m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 for m in got]
    assert all(b > a for a, b in zip(stamps, stamps[1:]))
