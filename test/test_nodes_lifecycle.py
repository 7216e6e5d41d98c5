"""Each node's lifecycle in the test process (live_ros/nodes/base.py: configure, activate,
deactivate, cleanup, the background ``load``): the node runs in a private rclpy context with a
real executor spun here, its transitions are driven through its API (``trigger_*``) and
through the lifecycle services, and each step is checked by what it makes observable: the
lifecycle state service, publishers and subscriptions in the graph, ``live/status`` reports,
messages out, services' answers. The embedded models are real. Beside the subprocess
end-to-end tests (test_nodes_*.py, test_graph.py), which run the installed executables.

The ROS domain and localhost-only discovery come from test/conftest.py.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest
import rclpy
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.executors import SingleThreadedExecutor
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image

from live_ros.model import presets
from live_ros.model.format import DEFAULT_INSTRUCTION
from live_ros.msg import FrameTokens, Response, Status
from live_ros.nodes.camera_subscriber import CameraSubscriber
from live_ros.nodes.frame_encoder import FrameEncoder
from live_ros.nodes.live_llm import LiveLLM
from live_ros.nodes.video_source import VideoSource
from live_ros.ros import qos
from live_ros.ros.convert import rgb_to_image, seconds_to_stamp, stamp_to_seconds
from live_ros.srv import Query

pytestmark = pytest.mark.ros

ROOT = Path(__file__).resolve().parent.parent
VIDEO = ROOT / "media" / "demo.mp4"
SUCCESS = TransitionCallbackReturn.SUCCESS
# Generous: a model load or a graph update on a loaded 2-core machine (other tests running
# beside) takes seconds to tens of seconds; these bound a wait, they are not measured.
LOAD_TIMEOUT = 90.0
GRAPH_TIMEOUT = 20.0


class Harness:
    """A private rclpy context, one executor spun by the test thread (so transitions called
    from the test never race the node's callbacks), and a probe node that watches."""

    def __init__(self):
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.probe = rclpy.create_node("lifecycle_probe", namespace="/lifecycle_test", context=self.context)
        self.executor.add_node(self.probe)
        self.status: dict[str, list[Status]] = {}
        self.probe.create_subscription(Status, "/live/status", self._on_status, qos.status_watch())
        self.nodes: list = []

    def _on_status(self, msg: Status) -> None:
        self.status.setdefault(msg.node, []).append(msg)

    def add(self, node_class, **params):
        node = node_class(
            context=self.context, parameter_overrides=[Parameter(name, value=value) for name, value in params.items()]
        )
        self.nodes.append(node)
        self.executor.add_node(node)
        return node

    def spin_until(self, condition, what: str, timeout: float = GRAPH_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            self.executor.spin_once(timeout_sec=0.05)

    def spin_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.05)

    def call(self, srv_type, name: str, request, timeout: float = GRAPH_TIMEOUT):
        client = self.probe.create_client(srv_type, name)
        try:
            self.spin_until(client.service_is_ready, f"service {name}")
            future = client.call_async(request)
            self.spin_until(future.done, f"an answer from {name}", timeout)
            return future.result()
        finally:
            self.probe.destroy_client(client)

    def lifecycle_state(self, node) -> str:
        """The node's state as its lifecycle service ``~/get_state`` reports it."""
        return self.call(
            GetState, f"{node.get_fully_qualified_name()}/get_state", GetState.Request()
        ).current_state.label

    def change_state(self, node, transition: int) -> bool:
        request = ChangeState.Request()
        request.transition.id = transition
        return self.call(ChangeState, f"{node.get_fully_qualified_name()}/change_state", request).success

    def reported(self, node, state: str, **fields) -> bool:
        """Whether live/status carried a report of ``node`` in ``state`` (with ``fields`` true of it)."""
        return any(
            m.state == state and all(check(getattr(m, k)) for k, check in fields.items())
            for m in self.status.get(node.get_name(), [])
        )

    def publishers(self, topic: str) -> int:
        return self.probe.count_publishers(topic)

    def subscribers(self, topic: str) -> int:
        return self.probe.count_subscribers(topic)

    def close(self) -> None:
        for node in self.nodes:
            node.on_shutdown(None)  # as live_ros.nodes.base.main does: stops workers, frees what load made
            self.executor.remove_node(node)
            node.destroy_node()
        self.executor.shutdown(timeout_sec=1.0)
        self.probe.destroy_node()
        rclpy.shutdown(context=self.context)


@pytest.fixture
def ros():
    harness = Harness()
    yield harness
    harness.close()


class Gated:
    """Mixin: ``load`` waits for ``release`` before the real load, so a test sees the node
    while it loads in the background for as long as it needs (the model itself is real)."""

    def __init__(self, **kwargs):
        self.release = threading.Event()
        super().__init__(**kwargs)

    def load(self) -> None:
        assert self.release.wait(LOAD_TIMEOUT), "the test never released the load"
        super().load()


class GatedFrameEncoder(Gated, FrameEncoder):
    pass


class GatedLiveLLM(Gated, LiveLLM):
    pass


def test_video_source_configure_activate_deactivate_cleanup(ros):
    node = ros.add(VideoSource, autostart=False, source=str(VIDEO), wait_for_subscribers=0, rate=1.0)
    frames: list[Image] = []
    ros.probe.create_subscription(Image, "/camera/image_raw", frames.append, qos.camera("reliable", 5))

    assert ros.lifecycle_state(node) == "unconfigured" and node.state == "unconfigured"
    ros.spin_until(lambda: ros.reported(node, "unconfigured"), "status unconfigured")
    assert ros.publishers("/camera/image_raw") == 0

    assert node.trigger_configure() == SUCCESS
    assert ros.lifecycle_state(node) == "inactive" and node.state == "inactive"
    ros.spin_until(lambda: ros.publishers("/camera/image_raw") == 1, "the camera publisher after configure")
    ros.spin_for(0.5)
    assert not frames, "an inactive video_source published"

    assert node.trigger_activate() == SUCCESS
    assert ros.lifecycle_state(node) == "active"
    ros.spin_until(lambda: len(frames) >= 3, "three frames of the video after activate")
    with av.open(str(VIDEO)) as video:
        stream = video.streams.video[0]
        assert (frames[0].width, frames[0].height, frames[0].encoding) == (stream.width, stream.height, "rgb8")
    ros.spin_until(lambda: ros.reported(node, "active", frames_in=lambda n: n >= 3), "status active with frames_in")

    assert node.trigger_deactivate() == SUCCESS
    assert ros.lifecycle_state(node) == "inactive"
    assert not node.thread.is_alive(), "deactivate left the playing thread running"
    ros.spin_for(0.3)  # what was in flight arrives
    seen = len(frames)
    ros.spin_for(1.0)  # the video has a frame every few tens of ms: an active source would add many here
    assert len(frames) == seen, "video_source kept publishing after deactivate"

    assert node.trigger_cleanup() == SUCCESS
    assert ros.lifecycle_state(node) == "unconfigured" and node.pub is None
    ros.spin_until(lambda: ros.publishers("/camera/image_raw") == 0, "no camera publisher after cleanup")


def test_video_source_with_a_missing_file_stays_up_unconfigured_and_says_why(ros, tmp_path):
    node = ros.add(VideoSource, autostart=False, source=str(tmp_path / "missing.mp4"), wait_for_subscribers=0)
    assert not ros.change_state(node, Transition.TRANSITION_CONFIGURE)  # through the lifecycle service
    assert ros.lifecycle_state(node) == "unconfigured"
    assert "does not exist" in node.last_error
    ros.spin_until(
        lambda: ros.reported(node, "unconfigured", last_error=lambda e: "does not exist" in e),
        "status unconfigured naming the missing file",
    )
    assert ros.publishers("/camera/image_raw") == 0


def test_camera_subscriber_lifecycle_through_the_lifecycle_services(ros):
    node = ros.add(CameraSubscriber, autostart=False, qos="reliable")
    size = presets.frame_size("embedded")
    camera = ros.probe.create_publisher(Image, "/camera/image_raw", qos.camera("reliable", 5))
    out: list[Image] = []
    ros.probe.create_subscription(Image, "/live/frames", out.append, qos.frames())

    def feed_until(condition, what: str) -> None:
        """Publish 64x48 camera images 1 s apart (every one on a new tick of any model fps >= 1)
        until ``condition``; their stamps lie in the past of the node's clock, as a camera's do."""
        t0 = node.get_clock().now().nanoseconds * 1e-9 - 1000.0
        rgb = np.zeros((48, 64, 3), np.uint8)
        for i in range(200):
            rgb[:, :, 0] = i
            camera.publish(rgb_to_image(rgb, seconds_to_stamp(t0 + i), "cam"))
            ros.spin_for(0.1)
            if condition():
                return
        raise AssertionError(f"no {what} after 200 camera images")

    assert ros.lifecycle_state(node) == "unconfigured"
    assert ros.publishers("/live/frames") == 0

    for cycle in range(2):  # cleanup undoes configure: a second cycle works the same
        assert ros.change_state(node, Transition.TRANSITION_CONFIGURE)
        assert ros.lifecycle_state(node) == "inactive"
        ros.spin_until(lambda: ros.publishers("/live/frames") == 1, "the live/frames publisher after configure")
        assert ros.subscribers("/camera/image_raw") == 0, "an inactive camera_subscriber subscribed the camera"

        assert ros.change_state(node, Transition.TRANSITION_ACTIVATE)
        assert ros.lifecycle_state(node) == "active"
        ros.spin_until(lambda: ros.subscribers("/camera/image_raw") == 1, "the camera subscription after activate")
        out.clear()
        feed_until(lambda: len(out) >= 2, "letterboxed frames on live/frames")
        frame = out[-1]
        assert (frame.width, frame.height, frame.encoding, frame.header.frame_id) == (size, size, "rgb8", "cam")
        ros.spin_until(lambda: ros.reported(node, "active", frames_in=lambda n: n >= 2), "status active, frames in")

        assert ros.change_state(node, Transition.TRANSITION_DEACTIVATE)
        assert ros.lifecycle_state(node) == "inactive"
        ros.spin_until(lambda: ros.subscribers("/camera/image_raw") == 0, "no camera subscription after deactivate")

        assert ros.change_state(node, Transition.TRANSITION_CLEANUP)
        assert ros.lifecycle_state(node) == "unconfigured"
        ros.spin_until(lambda: ros.publishers("/live/frames") == 0, f"no live/frames publisher after cleanup {cycle}")


def test_frame_encoder_loads_in_the_background_then_encodes(ros):
    node = ros.add(GatedFrameEncoder)  # autostart: load in a thread, then configure and activate
    size = presets.frame_size("embedded")
    frames = ros.probe.create_publisher(Image, "/live/frames", qos.frames())
    tokens: list[FrameTokens] = []
    ros.probe.create_subscription(FrameTokens, "/live/frame_tokens", tokens.append, qos.frames())

    # while it loads, the executor serves: status says loading, the lifecycle service answers,
    # and a manual configure is refused with the reason
    ros.spin_until(lambda: ros.reported(node, "loading"), "status loading")
    assert ros.lifecycle_state(node) == "unconfigured"
    assert node.trigger_configure() != SUCCESS and "still loading" in node.last_error
    assert ros.publishers("/live/frame_tokens") == 0

    node.release.set()
    ros.spin_until(lambda: node.state == "active", "frame_encoder active after its load", LOAD_TIMEOUT)
    assert ros.lifecycle_state(node) == "active"
    ros.spin_until(
        lambda: ros.subscribers("/live/frames") == 1 and ros.publishers("/live/frame_tokens") == 1,
        "frame_encoder's subscription and publisher",
    )

    rgb = np.full((size, size, 3), 90, np.uint8)
    stamp = node.get_clock().now().nanoseconds * 1e-9 - 10.0
    for i in range(2):
        frames.publish(rgb_to_image(rgb, seconds_to_stamp(stamp + i), "cam"))
    ros.spin_until(lambda: len(tokens) >= 2, "frame tokens of two frames", LOAD_TIMEOUT)
    assert tokens[0].encoder == node.encoder.encoder_id
    # the camera stamps go through: a stamp is exact to the nanosecond, float seconds near 1.7e9
    # to about 0.2 us, so 3 decimals leave a wide margin
    assert [round(stamp_to_seconds(t.header.stamp) - stamp, 3) for t in tokens[:2]] == [0.0, 1.0]

    assert node.trigger_deactivate() == SUCCESS
    assert not node.worker.is_alive() and node.sub is None
    assert node.trigger_cleanup() == SUCCESS
    assert node.encoder is None and ros.lifecycle_state(node) == "unconfigured"
    ros.spin_until(lambda: ros.publishers("/live/frame_tokens") == 0, "no frame_tokens publisher after cleanup")

    # a manual configure after cleanup loads again (on the executor thread, as a transition does)
    assert node.trigger_configure() == SUCCESS
    assert node.encoder is not None and ros.lifecycle_state(node) == "inactive"


def test_live_llm_refuses_while_loading_then_answers_and_stops_cleanly(ros, tmp_path):
    # no_video_timeout: a question with no video is refused after this long (its answer on
    # live/response shows the engine's worker running)
    node = ros.add(GatedLiveLLM, state_dir=str(tmp_path), no_video_timeout=0.5)
    responses: list[Response] = []
    ros.probe.create_subscription(Response, "/live/response", responses.append, qos.responses())

    def ask(text: str):
        request = Query.Request()
        request.text = text
        return ros.call(Query, "/live/query", request)

    ros.spin_until(lambda: ros.reported(node, "loading"), "status loading")
    answer = ask("what is on the table?")  # the service answers at once while the model loads
    assert not answer.accepted and "loading" in answer.message
    assert ros.lifecycle_state(node) == "unconfigured"

    node.release.set()
    ros.spin_until(lambda: node.state == "active", "live_llm active after its load", LOAD_TIMEOUT)
    assert ros.lifecycle_state(node) == "active"
    ros.spin_until(
        lambda: ros.publishers("/live/response") == 1 and ros.subscribers("/live/frame_tokens") == 1,
        "live_llm's publishers and subscription",
    )

    # the standing instruction (a narration request by default) opens the stream; a change of
    # the parameter reaches the engine, whose cache prefix is recomputed with it
    assert node.engine.engine.cfg.instruction == DEFAULT_INSTRUCTION
    node.set_parameters([Parameter("instruction", value="")])
    ros.spin_until(lambda: node.engine.engine.cfg.instruction == "", "the instruction cleared in the engine")
    node.set_parameters([Parameter("instruction", value=DEFAULT_INSTRUCTION)])
    ros.spin_until(
        lambda: node.engine.engine.cfg.instruction == DEFAULT_INSTRUCTION, "the instruction back in the engine"
    )

    answer = ask("what is on the table?")
    assert answer.accepted and answer.query_id > 0
    ros.spin_until(
        lambda: any(r.query_id == answer.query_id and r.final for r in responses),
        "the final response to the query",
        LOAD_TIMEOUT,
    )
    final = next(r for r in responses if r.query_id == answer.query_id and r.final)
    assert final.kind == "refusal" and final.text  # no video since the stream started: refused, saying why
    ros.spin_until(
        lambda: ros.reported(node, "active", queries_accepted=lambda n: n >= 1), "status active counting the query"
    )

    assert ros.change_state(node, Transition.TRANSITION_DEACTIVATE)
    assert node.engine is None and ros.lifecycle_state(node) == "inactive"
    answer = ask("and now?")
    assert not answer.accepted and "not active" in answer.message
    ros.spin_until(lambda: ros.subscribers("/live/frame_tokens") == 0, "no frame_tokens subscription")

    assert ros.change_state(node, Transition.TRANSITION_CLEANUP)
    assert node.core is None and ros.lifecycle_state(node) == "unconfigured"
    ros.spin_until(lambda: ros.publishers("/live/response") == 0, "no response publisher after cleanup")


def test_live_llm_offers_each_camera_stream_s_services_from_the_start(ros, tmp_path):
    node = ros.add(LiveLLM, autostart=False, cameras=3, stream_names="left,right", state_dir=str(tmp_path))
    assert [s.name for s in node.streams] == ["", "left", "right"]
    request = Query.Request()
    request.text = "what is there?"
    for prefix in ("", "left/", "right/"):  # offered at once, refusing, saying why, until active
        answer = ros.call(Query, f"/live/{prefix}query", request)
        assert not answer.accepted and "unconfigured" in answer.message
    with pytest.raises(ValueError, match="needs 1"):
        LiveLLM(
            context=ros.context,
            parameter_overrides=[Parameter("cameras", value=2), Parameter("stream_names", value="a,b")],
        )
