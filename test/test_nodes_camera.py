"""camera_subscriber and frame_encoder as real processes: sampling on camera stamps,
letterbox, frame tokens with the camera stamp, refusals in Status.last_error while the
node keeps going, and the QoS-mismatch / wrong-topic hints."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from rclpy.qos import QoSProfile
from ros_helpers import ros_node, spin_until
from sensor_msgs.msg import Image

from live_ros.msg import FrameTokens, Status
from live_ros.ros import qos
from live_ros.ros.convert import rgb_to_image, seconds_to_stamp, stamp_to_seconds

pytestmark = pytest.mark.ros
LIB = Path(sys.prefix) / "lib" / "live_ros"


def _image(t: float, w=320, h=240, value=120):
    rgb = np.full((h, w, 3), value, np.uint8)
    rgb[: h // 2] = (200, 30, 30)
    return rgb_to_image(rgb, seconds_to_stamp(t), "camera")


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    from conftest import Processes

    procs = Processes()
    # Reliable camera QoS here: the sampling checks must not depend on best-effort losses
    # on a loaded machine (best effort itself is covered by the QoS test below).
    procs.start(
        LIB / "camera_subscriber",
        "--ros-args",
        "-p",
        "qos:=reliable",
        "-p",
        "max_image_pixels:=1000000",
        "-p",
        "no_input_warning:=1.0",
        "-p",
        "status_period:=0.2",
    )
    procs.start(LIB / "frame_encoder", "--ros-args", "-p", "status_period:=0.2")
    yield procs
    procs.stop_all()


def _spin_for(executor, condition, seconds: float) -> bool:
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not condition():
        executor.spin_once(timeout_sec=0.05)
    return condition()


def warm_up(executor, pub, probe, stamp: float) -> None:
    """Discovery is not symmetric: repeat one image until the node has taken it, so the
    images that follow are not lost to a half-matched connection."""
    for _ in range(200):
        pub.publish(_image(stamp))
        executor.spin_once(timeout_sec=0.1)
        if any(abs(stamp_to_seconds(f.header.stamp) - stamp) < 1e-6 for f in probe.frames):
            return
    raise AssertionError("camera_subscriber never took the warm-up image")


class Probe:
    def __init__(self, node):
        self.frames, self.tokens, self.status = [], [], {}
        node.create_subscription(Image, "/live/frames", self.frames.append, qos.frames())
        node.create_subscription(FrameTokens, "/live/frame_tokens", self.tokens.append, qos.frames())
        node.create_subscription(Status, "/live/status", lambda m: self.status.__setitem__(m.node, m), qos.status())


def camera_publisher(node, executor, probe):
    """A reliable camera publisher, once camera_subscriber matches it and frame_encoder is active."""
    pub = node.create_publisher(Image, "/camera/image_raw", qos.camera("reliable"))
    spin_until(
        executor,
        lambda: (
            pub.get_subscription_count() > 0
            and probe.status.get("frame_encoder")
            and probe.status["frame_encoder"].state == "active"
        ),
        60,
        "camera_subscriber and an active frame_encoder",
    )
    return pub


def test_frames_are_sampled_letterboxed_and_encoded_with_camera_stamps(graph):
    with ros_node("camera_test") as (node, executor):
        probe = Probe(node)
        pub = camera_publisher(node, executor, probe)
        # Discovery: new grid ticks (90.0, 90.5, ...) until a frame token comes back, so the
        # frames and tokens that follow are not lost to a half-matched connection.
        for k in range(100):
            pub.publish(_image(90.0 + 0.5 * k))
            if _spin_for(executor, lambda: probe.tokens, 0.3):
                break
        stamps = [100.0 + 0.25 * i for i in range(10)]
        for t in stamps:
            pub.publish(_image(t))
            executor.spin_once(timeout_sec=0.05)
        spin_until(
            executor,
            lambda: any(stamp_to_seconds(t.header.stamp) == 102.0 for t in probe.tokens),
            30,
            "6 frame tokens",
            detail=lambda: (
                f"frames {[stamp_to_seconds(f.header.stamp) for f in probe.frames]}, "
                f"tokens {[stamp_to_seconds(t.header.stamp) for t in probe.tokens]}, status "
                f"{ {k: (v.state, v.last_error) for k, v in probe.status.items()} }"
            ),
        )
    later = [m for m in probe.frames if stamp_to_seconds(m.header.stamp) >= 100.0]
    assert [stamp_to_seconds(m.header.stamp) for m in later] == [100.0, 100.5, 101.0, 101.5, 102.0]
    frame = later[0]
    assert (frame.width, frame.height, frame.encoding, frame.header.frame_id) == (224, 224, "rgb8", "camera")
    pixels = np.frombuffer(frame.data, np.uint8).reshape(224, 224, 3)
    assert pixels[:27].max() == 0 and pixels[-27:].max() == 0  # 320x240 -> 224x168: black bands
    assert tuple(pixels[60, 112]) == (200, 30, 30) and tuple(pixels[150, 112]) == (120, 120, 120)
    tokens = [m for m in probe.tokens if stamp_to_seconds(m.header.stamp) >= 100.0]
    assert [stamp_to_seconds(m.header.stamp) for m in tokens] == [100.0, 100.5, 101.0, 101.5, 102.0]
    assert all(m.num_tokens == 10 and m.dim == 2560 and "tf_efficientnet_lite0" in m.encoder for m in tokens)
    assert [m.frame_index for m in tokens] == list(range(tokens[0].frame_index, tokens[0].frame_index + 5))


@pytest.mark.parametrize(
    "make, expected",
    [
        (
            lambda t: Image(header=_image(t).header, height=4, width=4, encoding="bgr16", step=32, data=bytes(128)),
            "encoding 'bgr16' is not supported",
        ),
        (lambda t: Image(header=_image(t).header, height=0, width=0, encoding="rgb8", step=0), "empty image"),
        (
            lambda t: _image(t, w=1200, h=1000),
            "image 1200x1000 (1200000 pixels) exceeds max_image_pixels 1000000: "
            "lower the camera resolution or raise max_image_pixels",
        ),
        (
            lambda t: Image(header=_image(t).header, height=4, width=4, encoding="rgb8", step=8, data=bytes(32)),
            "step 8 is smaller than width x bytes per pixel = 12",
        ),
        (
            lambda t: Image(header=_image(t).header, height=4, width=4, encoding="rgb8", step=12, data=bytes(20)),
            "image is truncated",
        ),
    ],
)
def test_bad_images_are_refused_and_the_node_goes_on(graph, make, expected):
    with ros_node("bad_image_test") as (node, executor):
        probe = Probe(node)
        pub = node.create_publisher(Image, "/camera/image_raw", qos.camera("reliable"))
        spin_until(executor, lambda: pub.get_subscription_count() > 0, 30, "camera_subscriber")
        spin_until(executor, lambda: "camera_subscriber" in probe.status, 10, "a status report")
        base = 1000.0 + 10 * len(expected)  # a new grid: stamps restart from here (the node says so)
        warm_up(executor, pub, probe, base - 1.0)
        refused = lambda: expected in probe.status["camera_subscriber"].last_error  # noqa: E731
        for k in range(50):  # best effort: a big message may be lost in transport, send again
            pub.publish(make(base + 0.001 * k))
            if _spin_for(executor, refused, 0.4):
                break
        assert refused(), f"last_error never said '{expected}': {probe.status['camera_subscriber'].last_error}"
        pub.publish(_image(base + 1.0))  # a good image right after is still taken
        spin_until(
            executor,
            lambda: any(abs(stamp_to_seconds(f.header.stamp) - base - 1.0) < 1e-6 for f in probe.frames),
            20,
            "the next good frame",
        )
    assert probe.status["camera_subscriber"].state == "active"


def test_frame_difference_restarts_when_the_stamps_go_back(graph):
    """The embedded encoder's tokens carry the difference from the previous frame: non-zero
    after a change, zero again once the stamps go back (a new stream: a looping bag)."""
    with ros_node("delta_test") as (node, executor):
        probe = Probe(node)
        pub = camera_publisher(node, executor, probe)
        warm_up(executor, pub, probe, 4999.0)
        sent = [(5000.0, 30), (5000.5, 220), (4000.0, 30)]
        for t, value in sent:
            pub.publish(_image(t, value=value))
            spin_until(
                executor,
                lambda: any(abs(stamp_to_seconds(m.header.stamp) - t) < 1e-6 for m in probe.tokens),
                30,
                f"the frame tokens of {t} s",
            )
    by_stamp = {
        round(stamp_to_seconds(m.header.stamp), 3): np.asarray(m.data).reshape(m.num_tokens, m.dim)
        for m in probe.tokens
    }
    change = {t: float(np.abs(by_stamp[t][:, 1280:]).max()) for t, _ in sent}
    assert change[5000.5] > 0.1, change  # the lower half changed
    assert change[4000.0] == 0.0, change  # back in time: a new stream


def test_qos_mismatch_and_missing_publisher_are_explained(processes):
    processes.start(
        LIB / "camera_subscriber",
        "--ros-args",
        "-r",
        "__ns:=/strict",
        "-p",
        "qos:=reliable",
        "-p",
        "no_input_warning:=1.0",
        "-p",
        "status_period:=0.2",
        "-r",
        "/camera/image_raw:=/strict_cam/image_raw",
    )
    processes.start(
        LIB / "camera_subscriber",
        "--ros-args",
        "-r",
        "__ns:=/lonely",
        "-p",
        "no_input_warning:=1.0",
        "-p",
        "status_period:=0.2",
        "-r",
        "/camera/image_raw:=/nobody/image_raw",
    )
    status: dict[str, Status] = {}
    with ros_node("qos_test") as (node, executor):
        node.create_subscription(Status, "/strict/status", lambda m: status.__setitem__("strict", m), qos.status())
        node.create_subscription(Status, "/lonely/status", lambda m: status.__setitem__("lonely", m), qos.status())
        pub = node.create_publisher(Image, "/strict_cam/image_raw", qos.camera("sensor_data"))  # best effort
        spin_until(executor, lambda: "strict" in status and "lonely" in status, 60, "both nodes' status")
        for i in range(3):
            pub.publish(_image(float(i)))
        spin_until(
            executor,
            lambda: "QoS" in status["strict"].last_error,
            30,
            f"the QoS hint (last: {status['strict'].last_error!r})",
        )
        spin_until(executor, lambda: "no publisher" in status["lonely"].last_error, 30, "the topic hint")
    assert "sensor_data" in status["strict"].last_error
    assert "/nobody/image_raw" in status["lonely"].last_error and "camera_topic" in status["lonely"].last_error


PEERS = Path(__file__).resolve().parent / "peers"


def _watch_status(node, namespace: str) -> dict:
    status: dict[str, Status] = {}
    node.create_subscription(Status, f"/{namespace}/status", lambda m: status.__setitem__("last", m), qos.status())
    return status


def test_an_input_outage_shows_in_status(processes):
    """Images flow from a camera process, which is then killed (-9): status says fps 0 and
    what stopped, within a few seconds (input_timeout 1 s; generous polling bounds)."""
    processes.start(
        LIB / "camera_subscriber",
        "--ros-args",
        "-r",
        "__ns:=/outage",
        "-p",
        "qos:=reliable",
        "-p",
        "status_period:=0.2",
        "-p",
        "input_timeout:=1.0",
        "-r",
        "/camera/image_raw:=/outage_cam/image_raw",
    )
    camera = processes.python(PEERS / "camera_peer.py", "/outage_cam/image_raw", "10")
    with ros_node("outage_test") as (node, executor):
        status = _watch_status(node, "outage")
        # 2 s of images (20 at 10 Hz): the graph has learnt the camera's node name by then
        spin_until(
            executor,
            lambda: "last" in status and status["last"].fps > 0 and status["last"].frames_in >= 20,
            60,
            "frames from the camera",
            camera,
            detail=lambda: status.get("last"),
        )
        camera.kill()  # kill -9: no goodbye to the graph
        camera.wait()
        spin_until(
            executor,
            lambda: status["last"].fps == 0.0 and "no image on /outage_cam/image_raw" in status["last"].last_error,
            20,
            "fps 0 and the outage in last_error",
            detail=lambda: status.get("last"),
        )
    assert "camera_peer" in status["last"].last_error, status["last"].last_error  # names its publisher


def test_frames_published_to_nobody_are_counted(processes):
    """No frame_encoder: every frame camera_subscriber publishes goes to nobody, and says so."""
    processes.start(
        LIB / "camera_subscriber",
        "--ros-args",
        "-r",
        "__ns:=/alone",
        "-p",
        "qos:=reliable",
        "-p",
        "status_period:=0.2",
        "-r",
        "/camera/image_raw:=/alone_cam/image_raw",
    )
    camera = processes.python(PEERS / "camera_peer.py", "/alone_cam/image_raw", "10")
    with ros_node("nobody_test") as (node, executor):
        status = _watch_status(node, "alone")
        spin_until(
            executor,
            lambda: "last" in status and status["last"].frames_dropped >= 2,
            60,
            "frames counted as dropped",
            camera,
            detail=lambda: status.get("last"),
        )
    last = status["last"]
    assert "frame_encoder not active" in last.last_error and "while no subscriber took them" in last.last_error, last
    assert last.frames_dropped <= last.frames_in, last


def test_frames_published_while_the_encoder_is_killed_are_counted(processes):
    """A real frame_encoder takes the frames, then is killed with -9: DDS keeps its dead reader
    matched for a while, but its live/status stops, so camera_subscriber counts the frames it
    publishes from then on as dropped and says why."""
    processes.start(
        LIB / "camera_subscriber",
        "--ros-args",
        "-r",
        "__ns:=/down",
        "-p",
        "qos:=reliable",
        "-r",
        "/camera/image_raw:=/down_cam/image_raw",
    )
    encoder = processes.start(LIB / "frame_encoder", "--ros-args", "-r", "__ns:=/down")
    camera = processes.python(PEERS / "camera_peer.py", "/down_cam/image_raw", "10")
    status: dict[str, Status] = {}
    with ros_node("encoder_down_test") as (node, executor):
        node.create_subscription(
            Status,
            "/down/status",
            lambda m: status.__setitem__(m.node, m),
            QoSProfile(depth=20, reliability=qos.status().reliability),
        )
        spin_until(
            executor,
            lambda: (
                "frame_encoder" in status
                and status["frame_encoder"].state == "active"
                and status["frame_encoder"].frames_in >= 2
            ),
            120,
            "frame_encoder taking frames",
            camera,
            detail=lambda: {k: (v.state, v.frames_in) for k, v in status.items()},
        )
        before = status["camera_subscriber"].frames_dropped
        encoder.kill()
        spin_until(
            executor,
            lambda: status["camera_subscriber"].frames_dropped >= before + 3,
            60,
            "frames counted after the kill",
            camera,
            detail=lambda: status.get("camera_subscriber"),
        )
    last = status["camera_subscriber"]
    assert "frame_encoder not active" in last.last_error, last


def test_huge_images_are_refused_or_counted_as_lost(processes):
    """rgb8 images of 3000x3000 (27 MB, over the default max_image_pixels) sent best effort, as a
    camera driver does: each is refused from its size (if it arrives) or counted as lost in
    transport (best effort drops samples over Fast DDS's shared-memory segment); never silent."""
    processes.start(
        LIB / "camera_subscriber",
        "--ros-args",
        "-r",
        "__ns:=/huge",
        "-p",
        "status_period:=0.2",
        "-r",
        "/camera/image_raw:=/huge_cam/image_raw",
    )
    with ros_node("huge_test") as (node, executor):
        status = _watch_status(node, "huge")
        pub = node.create_publisher(Image, "/huge_cam/image_raw", qos.camera("sensor_data"))
        spin_until(
            executor,
            lambda: pub.get_subscription_count() > 0 and "last" in status and status["last"].state == "active",
            60,
            "camera_subscriber",
        )
        huge = _image(10.0, w=3000, h=3000)
        small = _image(11.0)
        for _ in range(3):
            pub.publish(huge)
            _spin_for(executor, lambda: False, 0.5)
            pub.publish(small)  # a lost sample may be noticed only as the gap before the next one
            _spin_for(executor, lambda: False, 0.5)
        spin_until(
            executor,
            lambda: status["last"].frames_dropped >= 1,
            30,
            "the huge images counted",
            detail=lambda: status.get("last"),
        )
    last = status["last"].last_error
    assert (
        "image 3000x3000 (9000000 pixels) exceeds max_image_pixels 8294400" in last
        or "images on /huge_cam/image_raw lost in transport" in last
        and "qos:=reliable" in last
    ), last


def test_an_image_stamped_ahead_of_the_clock_is_refused_and_the_video_goes_on(graph):
    """max_stamp_ahead (default 1 s): an image stamped 6 s ahead of the node's clock is
    refused before sampling, so it neither reaches live/frames nor restarts the grid; the
    real images after it are taken."""
    import time

    with ros_node("ahead_test") as (node, executor):
        probe = Probe(node)
        pub = camera_publisher(node, executor, probe)
        now = time.time()
        warm_up(executor, pub, probe, now - 3.0)
        ahead = now + 6.0
        spin_until(executor, lambda: "camera_subscriber" in probe.status, 10, "a status report")
        refused = lambda: "ahead of this node's clock" in probe.status["camera_subscriber"].last_error  # noqa: E731
        pub.publish(_image(ahead))
        spin_until(executor, refused, 30, "the refusal of the image stamped ahead")
        assert "max_stamp_ahead=1" in probe.status["camera_subscriber"].last_error
        pub.publish(_image(now - 1.0))
        spin_until(
            executor,
            lambda: any(abs(stamp_to_seconds(f.header.stamp) - (now - 1.0)) < 1e-6 for f in probe.frames),
            30,
            "the next real frame",
        )
    assert not any(abs(stamp_to_seconds(f.header.stamp) - ahead) < 1e-6 for f in probe.frames)
    assert "went backwards" not in probe.status["camera_subscriber"].last_error


def test_fps_and_size_come_from_the_checkpoint_unless_overridden(processes, tmp_path):
    """A checkpoint trained at 4 fps on 96 px frames: camera_subscriber samples at 4 fps and
    letterboxes to 96 px with no parameter set; a node with fps:=3.0 over the embedded
    preset (2 fps) uses 3 fps and says in its log that it overrides the checkpoint."""
    from dataclasses import replace

    from live_ros.model import presets

    config = presets.EMBEDDED_CONFIG
    replace(config, frame_fps=4.0, encoder=replace(config.encoder, image_size=96)).save_pretrained(tmp_path)
    ckpt = processes.start(
        LIB / "camera_subscriber",
        "--ros-args",
        "-r",
        "__ns:=/ckpt",
        "-p",
        "qos:=reliable",
        "-p",
        f"checkpoint:={tmp_path}",
        "-r",
        "/camera/image_raw:=/ckpt_cam/image_raw",
    )
    over = processes.start(
        LIB / "camera_subscriber",
        "--ros-args",
        "-r",
        "__ns:=/over",
        "-p",
        "qos:=reliable",
        "-p",
        "fps:=3.0",
        "-r",
        "/camera/image_raw:=/over_cam/image_raw",
    )
    frames: list[Image] = []
    with ros_node("checkpoint_fps_test") as (node, executor):
        node.create_subscription(Image, "/ckpt/frames", frames.append, qos.frames())
        pub = node.create_publisher(Image, "/ckpt_cam/image_raw", qos.camera("reliable"))
        spin_until(executor, lambda: pub.get_subscription_count() > 0, 60, "camera_subscriber's subscription", ckpt)
        # 20 Hz camera stamps; sampling keeps the first image at or after each 0.25 s tick
        for k in range(400):
            pub.publish(_image(10.0 + 0.05 * k))
            executor.spin_once(timeout_sec=0.02)
            if len(frames) >= 6:
                break
        spin_until(executor, lambda: len(frames) >= 6, 30, "6 sampled frames", ckpt)
    stamps = [stamp_to_seconds(f.header.stamp) for f in frames]
    # the frames' stamps are the camera's (exact to the nanosecond): 0.25 s apart up to rounding
    assert all(abs(b - a - 0.25) < 1e-6 for a, b in zip(stamps, stamps[1:])), stamps
    assert {(f.width, f.height) for f in frames} == {(96, 96)}
    processes.stop_all()
    ckpt_log, over_log = ckpt.stdout.read(), over.stdout.read()
    assert "letterbox 96 px at 4 fps" in ckpt_log and "overrides" not in ckpt_log, ckpt_log
    assert "fps 3.0 overrides the checkpoint's 2.0: the model was trained at 2.0" in over_log, over_log
    assert "letterbox 224 px at 3 fps" in over_log, over_log
