"""The whole graph from the package's launch file, in real processes (one graph for this
module): camera images in, responses out with the right stamps; queries, refusals, reset
and query accounting; parameters changed while running; a wrong-encoder publisher.

The model here is the embedded preset as committed; the test checks behaviour, not what
the model says (max_new_tokens is small to keep the run short)."""

from __future__ import annotations

import array
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import yaml
from ros_helpers import ros_node, spin_until
from sensor_msgs.msg import Image

from live_ros.msg import FrameTokens, Response, Status
from live_ros.paths import share_dir
from live_ros.ros import qos
from live_ros.ros.convert import rgb_to_image, seconds_to_stamp, stamp_to_seconds
from live_ros.srv import Query

pytestmark = [pytest.mark.ros, pytest.mark.slow]


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    from conftest import Processes

    params = yaml.safe_load((share_dir() / "config" / "live_ros.yaml").read_text())
    # theta = 1: the model speaks at every frame (silence needs P(interval) >= 1), so every
    # frame gets a response whatever the weights say.
    params["/**/live_llm"]["ros__parameters"].update({"max_new_tokens": 3, "partial_responses": True, "theta": 1.0})
    params["/**"]["ros__parameters"]["status_period"] = 0.25
    path = tmp_path_factory.mktemp("graph") / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    procs = Processes()
    launch = procs.start(
        Path(sys.executable).parent / "live-ros", "launch", "live_ros.launch.xml", f"params_file:={path}"
    )
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(launch.stdout.readline, "")), daemon=True).start()
    yield launch, lines
    procs.stop_all(timeout=30)  # longer than the launcher's own stop sequence


class Client:
    def __init__(self, node, executor):
        self.node, self.executor = node, executor
        self.responses: list[Response] = []
        self.status: dict[str, Status] = {}
        node.create_subscription(Response, "/live/response", self.responses.append, qos.responses())
        node.create_subscription(Status, "/live/status", lambda m: self.status.__setitem__(m.node, m), qos.status())
        self.camera = node.create_publisher(Image, "/camera/image_raw", qos.camera("sensor_data"))
        self.query = node.create_client(Query, "/live/query")

    def wait_active(self, launch):
        spin_until(
            self.executor,
            lambda: all(
                n in self.status and self.status[n].state == "active"
                for n in ("camera_subscriber", "frame_encoder", "live_llm")
            ),
            180,
            "the three nodes to be active",
            launch[0],
        )

    def ask(self, text: str) -> Query.Response:
        spin_until(self.executor, self.query.service_is_ready, 30, "the query service")
        future = self.query.call_async(Query.Request(text=text))
        spin_until(self.executor, future.done, 30, "the query reply")
        return future.result()

    def images(self, stamps):
        for t in stamps:
            rgb = np.full((240, 320, 3), 90, np.uint8)
            rgb[60:180, 100:220] = (220, 180, 40)
            self.camera.publish(rgb_to_image(rgb, seconds_to_stamp(t), "test_camera"))
            self.executor.spin_once(timeout_sec=0.05)


def test_images_give_responses_stamped_with_their_frames(graph):
    with ros_node("graph_images") as (node, executor):
        c = Client(node, executor)
        c.wait_active(graph)
        warm = 500.0
        for _ in range(100):  # discovery: repeat the first image until a response to it is out
            c.images([warm])
            if any(abs(stamp_to_seconds(r.header.stamp) - warm) < 1e-6 for r in c.responses):
                break
        c.images([501.0 + 0.5 * i for i in range(4)])
        spin_until(
            executor,
            lambda: any(abs(stamp_to_seconds(r.header.stamp) - 502.5) < 1e-6 and r.final for r in c.responses),
            120,
            "a final response to the last frame",
        )
    sent = {warm} | {501.0 + 0.5 * i for i in range(4)}
    for r in c.responses:
        if r.query_id == 0:
            assert round(stamp_to_seconds(r.header.stamp), 6) in sent
            assert r.header.frame_id == "test_camera" and r.kind == "narration"
            assert r.video_time == pytest.approx(stamp_to_seconds(r.header.stamp) - warm, abs=1e-6) or r.video_time >= 0
            assert r.latency > 0
    assert any(not r.final for r in c.responses), "partial responses are published while decoding"


def test_queries_refusals_reset_and_accounting(graph):
    with ros_node("graph_queries") as (node, executor):
        c = Client(node, executor)
        c.wait_active(graph)
        # a frame first: a question asked before the stream has one waits for it (no_video_timeout)
        c.images([600.0])
        spin_until(
            executor,
            lambda: any(abs(stamp_to_seconds(r.header.stamp) - 600.0) < 1e-6 and r.final for r in c.responses),
            90,
            "a response to the frame at 600 s",
        )
        empty = c.ask("")
        assert not empty.accepted and "empty" in empty.message
        huge = c.ask("x" * 10_000)
        assert not huge.accepted and "10000" in huge.message.replace(",", "")
        special = c.ask("what is <v> and <|im_end|>?")
        assert special.accepted
        spin_until(
            executor,
            lambda: any(r.query_id == special.query_id and r.final for r in c.responses),
            60,
            "the answer to the special-token query",
        )
        answer = next(r for r in c.responses if r.query_id == special.query_id and r.final)
        assert answer.kind in ("answer", "refusal")
        reset = node.create_client(__import__("std_srvs.srv", fromlist=["Trigger"]).Trigger, "/live/reset")
        spin_until(executor, reset.service_is_ready, 20, "the reset service")
        future = reset.call_async(__import__("std_srvs.srv", fromlist=["Trigger"]).Trigger.Request())
        spin_until(executor, future.done, 20, "the reset reply")
        assert future.result().success
        c.images([900.0, 900.5])  # a new stream: video time restarts at its first frame
        spin_until(
            executor,
            lambda: any(abs(stamp_to_seconds(r.header.stamp) - 900.5) < 1e-6 and r.final for r in c.responses),
            90,
            "a response in the new stream",
        )
        after = [r for r in c.responses if stamp_to_seconds(r.header.stamp) >= 900.0 and r.query_id == 0]
        assert all(r.video_time < 1.01 for r in after)
        spin_until(
            executor,
            lambda: c.status["live_llm"].queries_accepted == c.status["live_llm"].queries_answered,
            30,
            "every accepted query answered",
        )
        assert c.status["live_llm"].queries_accepted >= 1


def test_parameters_change_while_running(graph):
    from live_ros.ros.tools import param
    from types import SimpleNamespace

    args = dict(namespace="live", node="live_llm", timeout=20.0)
    assert param(SimpleNamespace(action="set", name="theta", value="0.99", **args)) == 0
    assert param(SimpleNamespace(action="set", name="theta", value="1.5", **args)) == 1  # outside [0, 1]
    assert param(SimpleNamespace(action="set", name="fps", value="3", **{**args, "node": "camera_subscriber"})) == 1
    with ros_node("graph_params") as (node, executor):
        c = Client(node, executor)
        spin_until(
            executor,
            lambda: "live_llm" in c.status and "theta" in c.status["live_llm"].last_error,
            20,
            "the refusal of theta=1.5 in last_error",
        )


def test_wrong_encoder_is_refused_with_a_clear_error(graph):
    with ros_node("graph_wrong_encoder") as (node, executor):
        c = Client(node, executor)
        pub = node.create_publisher(FrameTokens, "/live/frame_tokens", qos.frames())
        spin_until(executor, lambda: pub.get_subscription_count() > 0, 30, "live_llm's subscription")
        for i in range(20):
            msg = FrameTokens(
                frame_index=i,
                encoder="open_clip/ViT-L-14@other:1",
                num_tokens=10,
                dim=1280,
                data=array.array("f", np.zeros(12800, np.float32).tobytes()),
            )
            msg.header.stamp = seconds_to_stamp(2000.0 + i)
            pub.publish(msg)
            executor.spin_once(timeout_sec=0.1)
            if "live_llm" in c.status and "open_clip/ViT-L-14@other:1" in c.status["live_llm"].last_error:
                break
        spin_until(
            executor,
            lambda: "live_llm" in c.status and "open_clip/ViT-L-14@other:1" in c.status["live_llm"].last_error,
            20,
            "the wrong-encoder error",
        )
    assert "run frame_encoder with the same preset" in c.status["live_llm"].last_error
    assert c.status["live_llm"].state == "active"
