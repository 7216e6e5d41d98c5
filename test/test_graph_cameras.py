"""Two cameras, one model: the package's launch file with cameras:=2, in real processes.
Camera 2's camera_subscriber and frame_encoder run in /live/cam2 and live_llm serves it as
its stream cam2 (live_ros/nodes/llm_stream.py). Responses, queries and resets stay in
their stream: camera 1's frames are answered on /live/response only, camera 2's on
/live/cam2/response only, a question to one stream is answered there, and a reset of one
stream leaves the other going on.

The model is the embedded preset as committed; theta = 1 makes it speak at every frame
(silence needs P(interval) >= 1), so every frame gets a response whatever the weights
say; the test checks where the words go, not what they are."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import yaml
from ros_helpers import ros_node, spin_until
from sensor_msgs.msg import Image
from std_srvs.srv import Trigger

from live_ros.msg import Response, Status
from live_ros.paths import share_dir
from live_ros.ros import qos
from live_ros.ros.convert import rgb_to_image, seconds_to_stamp, stamp_to_seconds
from live_ros.srv import Query

pytestmark = [pytest.mark.ros, pytest.mark.slow]

CAMERAS = {"": ("/camera/image_raw", 500.0), "cam2/": ("/camera2/image_raw", 800.0)}


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    from conftest import Processes

    params = yaml.safe_load((share_dir() / "config" / "live_ros.yaml").read_text())
    params["/**/live_llm"]["ros__parameters"].update({"max_new_tokens": 3, "partial_responses": False, "theta": 1.0})
    params["/**"]["ros__parameters"]["status_period"] = 0.25
    folder = tmp_path_factory.mktemp("cameras")
    params["/**/live_llm"]["ros__parameters"]["state_dir"] = str(folder / "state")
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    procs = Processes()
    launch = procs.start(
        Path(sys.executable).parent / "live-ros", "launch", "live_ros.launch.xml", f"params_file:={path}", "cameras:=2"
    )
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(launch.stdout.readline, "")), daemon=True).start()
    yield launch, lines
    procs.stop_all(timeout=30)  # the launcher stops five nodes: SIGINT, then SIGTERM, 5 s each


class Cameras:
    def __init__(self, node, executor):
        self.node, self.executor = node, executor
        self.responses: dict[str, list[Response]] = {p: [] for p in CAMERAS}
        self.status: dict[str, Status] = {}
        self.cameras = {}
        for prefix, (topic, _) in CAMERAS.items():
            node.create_subscription(
                Response, f"/live/{prefix}response", self.responses[prefix].append, qos.responses()
            )
            node.create_subscription(
                Status,
                f"/live/{prefix}status",
                lambda m, p=prefix: self.status.__setitem__(p + m.node, m),
                qos.status(),
            )
            self.cameras[prefix] = node.create_publisher(Image, topic, qos.camera("sensor_data"))

    def call(self, srv, name: str, request):
        client = self.node.create_client(srv, name)
        spin_until(self.executor, client.service_is_ready, 30, f"the service {name}")
        future = client.call_async(request)
        spin_until(self.executor, future.done, 60, f"the reply of {name}")
        return future.result()

    def image(self, prefix: str, stamp: float) -> None:
        rgb = np.full((240, 320, 3), 90 if prefix else 30, np.uint8)
        rgb[60:180, 100:220] = (220, 180, 40)
        self.cameras[prefix].publish(rgb_to_image(rgb, seconds_to_stamp(stamp), "camera2" if prefix else "camera1"))
        self.executor.spin_once(timeout_sec=0.05)

    def answered(self, prefix: str, stamp: float) -> bool:
        return any(abs(stamp_to_seconds(r.header.stamp) - stamp) < 1e-6 for r in self.responses[prefix])


def test_two_cameras_are_two_streams_of_one_model(graph):
    with ros_node("graph_cameras") as (node, executor):
        c = Cameras(node, executor)
        nodes = ["camera_subscriber", "frame_encoder", "live_llm", "cam2/camera_subscriber", "cam2/frame_encoder"]
        spin_until(
            executor,
            lambda: all(n in c.status and c.status[n].state == "active" for n in nodes),
            240,
            "both cameras' nodes and live_llm active",
            graph[0],
        )
        for prefix, (_, t0) in CAMERAS.items():  # discovery: repeat a first image until it is answered
            for _ in range(100):
                c.image(prefix, t0)
                if c.answered(prefix, t0):
                    break
            assert c.answered(prefix, t0), f"no response to camera {prefix or '1'}'s first image"
        for i in range(1, 4):  # both cameras at the same ticks: decided in joined forwards
            for prefix, (_, t0) in CAMERAS.items():
                c.image(prefix, t0 + 0.5 * i)
        for prefix, (_, t0) in CAMERAS.items():
            spin_until(executor, lambda p=prefix, t=t0: c.answered(p, t + 1.5), 120, f"{prefix or 'camera 1'}'s last")

        # responses never cross: each topic carries its own camera's stamps and frame ids
        for prefix, (_, t0) in CAMERAS.items():
            stamps = {round(stamp_to_seconds(r.header.stamp), 6) for r in c.responses[prefix] if r.query_id == 0}
            assert stamps and all(t0 <= s < t0 + 100 for s in stamps), (prefix, stamps)

        # a question to camera 2 is answered on camera 2's topic only
        reply = c.call(Query, "/live/cam2/query", Query.Request(text="What do you see?"))
        assert reply.accepted, reply.message
        spin_until(
            executor,
            lambda: any(r.query_id == reply.query_id and r.kind == "answer" for r in c.responses["cam2/"]),
            120,
            "camera 2's answer",
        )
        assert not any(r.query_id == reply.query_id and r.query_id for r in c.responses[""])

        # a reset of camera 2 restarts its stream only
        assert c.call(Trigger, "/live/cam2/reset", Trigger.Request()).success
        c.image("cam2/", 900.0)
        c.image("", 503.0)
        spin_until(executor, lambda: c.answered("cam2/", 900.0) and c.answered("", 503.0), 120, "after the reset")
        cam2 = next(r for r in c.responses["cam2/"] if abs(stamp_to_seconds(r.header.stamp) - 900.0) < 1e-6)
        cam1 = next(r for r in c.responses[""] if abs(stamp_to_seconds(r.header.stamp) - 503.0) < 1e-6)
        assert cam2.video_time == pytest.approx(0.0) and cam1.video_time == pytest.approx(3.0)
        assert cam2.header.frame_id == "camera2" and cam1.header.frame_id == "camera1"
