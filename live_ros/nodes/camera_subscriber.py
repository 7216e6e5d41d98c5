"""camera_subscriber: any camera topic in, letterboxed rgb8 frames at the model fps out.

Subscribes ``/camera/image_raw`` (remap it, or set ``compressed`` for
``/camera/image_raw/compressed``) with the QoS of the ``qos`` parameter, samples with the
core's one sampling rule (first frame at or after each fps tick) and letterboxes with the
core's one function, then publishes ``live/frames`` (reliable, keep last 30) with the
camera's stamp and frame_id. Images arrive serialized: the stamp is read from the bytes
and only sampled frames are deserialized and converted, so a 240 fps camera costs little
more than a 30 fps one.

When nothing arrives it says once why that may be: no publisher on the topic, or a
publisher whose QoS does not match (the most frequent "no output" of ML nodes in ROS).
When images stop after they have flowed (``input_timeout``), status shows fps 0 and a
``last_error`` naming the topic and what became of its publisher.

Nothing is lost silently: an image over ``max_image_pixels`` is refused from its CDR
bytes (width x height read before deserializing, so it costs no copy); images DDS lost in
transport (the subscription's message-lost event; best effort loses images larger than
Fast DDS's shared-memory segment, about 0.5 MB) and frames published to ``live/frames``
while no frame_encoder takes them (none subscribed, or its ``live/status`` is not active:
loading, or silent after a kill) are counted in ``frames_dropped`` with the reason in
``last_error``.
"""

from __future__ import annotations

import collections
import time

from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.qos import ReliabilityPolicy
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import CompressedImage, Image

from live_ros.model import frames as core_frames
from live_ros.model import presets
from live_ros.model.config import override_note
from live_ros.nodes.base import MAX_STAMP_AHEAD, LiveNode, Param, main as run_main
from live_ros.ros import qos
from live_ros.ros.convert import (
    ConversionError,
    cdr_header_stamp,
    cdr_image_size,
    compressed_to_rgb,
    image_to_rgb,
    rgb_to_image,
)

CAMERA_TOPIC = "/camera/image_raw"
# A subscriber of live/frames whose latest live/status is older than this (seconds) is
# taken to be gone: 2.5 reports at the default status_period of 1 s. Once it is, the
# frames published more than DOWNSTREAM_DUE after its last report (when its next report
# was due and never came: it had died) are counted as dropped too.
DOWNSTREAM_SILENCE = 2.5
DOWNSTREAM_DUE = 1.2


class CameraSubscriber(LiveNode):
    PARAMS = (
        Param(
            "preset",
            "embedded",
            "Model preset; its checkpoint sets the fps and letterbox size of the published frames.",
            choices=tuple(presets.PRESETS),
        ),
        Param(
            "checkpoint",
            "",
            "Checkpoint folder whose live_config.json sets fps and letterbox size (empty: the preset's).",
        ),
        Param(
            "image_size",
            0,
            "Letterbox size in pixels (0: the checkpoint's input resolution; another value "
            "overrides it, and the log says so).",
            (0, 4096),
        ),
        Param(
            "fps",
            0.0,
            "Model frame rate: frames are sampled on this grid from the camera stamps (0: the "
            "checkpoint's, the rate it was trained at; another value overrides it, and the log says "
            "so).",
            (0.0, 60.0),
        ),
        Param("compressed", False, "Subscribe to <camera topic>/compressed (CompressedImage, jpeg/png)."),
        Param(
            "qos", "sensor_data", "Camera QoS: sensor_data (best effort) or reliable.", choices=qos.CAMERA_QOS_CHOICES
        ),
        Param(
            "qos_depth",
            30,
            "Camera subscription queue depth (keep last N; not part of QoS matching): "
            "30 holds 1 s of a 30 fps camera through scheduling stalls of this process.",
            (1, 100),
        ),
        Param(
            "max_image_pixels",
            8_294_400,
            "Refuse camera images larger than this (width x height), read from the serialized bytes before any copy.",
            (1, 100_000_000),
        ),
        Param("no_input_warning", 5.0, "Seconds without any image before saying why that may be.", (0.5, 600.0)),
        Param(
            "input_timeout",
            1.0,
            "Seconds without an image, once images have flowed, after which status "
            "reports the input as stopped (fps 0, last_error naming the topic and its publisher).",
            (0.1, 600.0),
        ),
        MAX_STAMP_AHEAD,
    )

    def __init__(self, **kwargs):  # kwargs: rclpy Node's (context, parameter_overrides, ...)
        super().__init__("camera_subscriber", namespace="live", **kwargs)
        self.sub = None
        self.pub = None
        self.sampler = None
        self.received = 0
        self.published = 0
        self.refused = 0
        self.fps_window: list[float] = []
        self._activated_at = 0.0
        self.last_image_at: float | None = None  # monotonic time of the latest image (any, sampled or not)
        self.outage = False  # input_timeout passed since the latest image
        self.publishers_seen: set[str] = set()  # the topic's publishers while images flowed
        self._graph_checked = 0.0
        self.lost_in_transport = 0  # DDS message-lost events on the camera topic
        self.to_nobody = 0  # frames published while no one subscribed live/frames
        self._to_nobody_run = 0  #   (or none of its subscribers was active: see _downstream_ready)
        self._recent: collections.deque[float] = collections.deque(maxlen=200)  # publish times, not yet judged
        self._last_report = 0.0  # newest active report of a live_ros subscriber of live/frames
        self.watch_peers()  # self.peers: is frame_encoder active? (_downstream_ready)

    @property
    def topic(self) -> str:
        return CAMERA_TOPIC + ("/compressed" if self.p("compressed") else "")

    def configure(self) -> None:
        self.size, self.fps = self._model_input()
        self.sampler = core_frames.FrameSampler(self.fps)
        # read-only parameters read per image: once here, not from the parameter store at camera rate
        self.max_pixels, self.max_ahead = self.p("max_image_pixels"), self.p("max_stamp_ahead")
        self.pub = self.create_lifecycle_publisher(Image, "frames", qos.frames())
        self.get_logger().info(f"letterbox {self.size} px at {self.fps:g} fps from {self.topic} (QoS {self.p('qos')})")

    def _model_input(self) -> tuple[int, float]:
        """(letterbox size, fps): the checkpoint's (its live_config.json; json only, no torch),
        each unless its parameter overrides it, which the log then says."""
        config = presets.live_config(self.p("preset"), self.p("checkpoint") or None)
        size, fps = config.frame_resolution, config.frame_fps
        if self.p("image_size") and self.p("image_size") != size:
            self.get_logger().warning(override_note("image_size", self.p("image_size"), size, " px"))
            size = self.p("image_size")
        if self.p("fps") and abs(self.p("fps") - fps) > 1e-9:
            self.get_logger().warning(override_note("fps", self.p("fps"), fps))
            fps = self.p("fps")
        return size, fps

    def activate(self) -> None:
        self.msg_type = CompressedImage if self.p("compressed") else Image
        events = SubscriptionEventCallbacks(
            incompatible_qos=self._on_incompatible_qos, message_lost=self._on_message_lost
        )
        self.sub = self.create_subscription(
            self.msg_type,
            self.topic,
            self.on_image,
            qos.camera(self.p("qos"), self.p("qos_depth")),
            event_callbacks=events,
            raw=True,
        )
        self._activated_at = time.monotonic()
        self.last_image_at, self.outage = None, False
        # every 0.2 s: an outage shows in status (published at once) input_timeout + 0.2 s after the last image
        self._watchdog = self.create_timer(0.2, self._check_input)

    def deactivate(self) -> None:
        if self.sub is not None:
            self.destroy_subscription(self.sub)
            self.sub = None
        self.destroy_timer(self._watchdog)

    def cleanup(self) -> None:
        if self.pub is not None:
            self.destroy_lifecycle_publisher(self.pub)
            self.pub = None

    def on_image(self, data: bytes) -> None:
        """A serialized camera image: sample on its stamp, convert only sampled ones."""
        self.received += 1
        self._note_arrival()
        if not self.active:
            return
        where = f"camera_subscriber: image {self.received} on {self.sub.topic_name}"
        if self._oversize(data, where):
            return
        try:
            stamp = cdr_header_stamp(data, where)
        except ConversionError as err:
            self.refused += 1
            self.report_error(str(err))
            return
        ahead = core_frames.stamp_ahead_error(stamp, self.get_clock().now().nanoseconds * 1e-9, self.max_ahead, where)
        if ahead:  # refused before sampling: the sampler's newest stamp stays that of the real video
            self.refused += 1
            self.report_error(ahead)
            return
        next_tick = self.sampler.next_tick
        if self.sampler.last is not None and stamp < self.sampler.last:
            self.report_error(
                f"{where}: stamp {stamp:.3f} s went backwards from {self.sampler.last:.3f} s; "
                f"sampling restarted (a looping bag or a clock reset?)"
            )
            self.sampler.reset()
            next_tick = None
        if next_tick is not None and stamp < next_tick - core_frames.EPSILON:
            self.sampler.accept(stamp)  # not due: keep the sampler's notion of the last stamp
            return
        try:
            msg = deserialize_message(data, self.msg_type)
        except Exception as err:  # the bytes are not a valid message of this type
            self.refused += 1
            self.report_error(
                f"{where}: not a valid {self.msg_type.__name__} message ({err}); is the publisher's type the same?"
            )
            return
        try:
            rgb = (compressed_to_rgb if self.msg_type is CompressedImage else image_to_rgb)(msg, self.max_pixels, where)
            frame = core_frames.letterbox(rgb, self.size)
        except (ConversionError, ValueError) as err:
            self.refused += 1
            self.report_error(str(err))
            return
        self.sampler.accept(stamp)
        self.pub.publish(rgb_to_image(frame, msg.header.stamp, msg.header.frame_id))
        self.published += 1
        self._count_unsubscribed()
        now = time.monotonic()
        self.fps_window = [t for t in self.fps_window if now - t < 5.0] + [now]

    def _on_incompatible_qos(self, event) -> None:
        self.report_error(
            f"camera_subscriber: a publisher on {self.topic} has incompatible QoS (policy "
            f"{event.last_policy_kind}); this node asks {self.p('qos')}. Set the parameter "
            f"qos to match the camera (sensor_data for best effort)"
        )

    def _on_message_lost(self, event) -> None:
        """DDS gave up on images of the camera topic before they reached this node."""
        change = event.total_count_change
        # Fast DDS reports a best-effort sample it could not reassemble from its fragments
        # with a change of 2**31 - 1, and counts the same sample again, as a gap, once the next
        # one arrives (measured with rmw_fastrtps_cpp): count only plausible changes.
        if 0 < change < 1_000_000:
            self.lost_in_transport += change
        best_effort = qos.camera(self.p("qos")).reliability == ReliabilityPolicy.BEST_EFFORT
        fix = (
            "best effort loses images larger than Fast DDS's shared-memory segment (about 0.5 MB: 640x480 rgb8 is "
            "0.9 MB): set qos:=reliable (the camera publisher must be reliable too) or lower the camera "
            "resolution"
            if best_effort
            else "is the machine or the network overloaded?"
        )
        topic = self.sub.topic_name if self.sub is not None else self.topic
        self.report_error(
            f"camera_subscriber: images on {topic} lost in transport before reaching this node "
            f"(DDS message lost, {self.lost_in_transport} counted in frames_dropped); {fix}"
        )

    def _oversize(self, data: bytes, where: str) -> bool:
        """Refuse a raw Image over max_image_pixels from its CDR bytes, before deserializing it
        (a CompressedImage is checked when decoded: its size is in the compressed data)."""
        if self.msg_type is not Image:
            return False
        try:
            width, height = cdr_image_size(data, where)
        except ConversionError:
            return False  # deserializing it says what is wrong
        limit = self.max_pixels
        if width * height <= limit:
            return False
        self.refused += 1
        self.report_error(
            f"{where}: image {width}x{height} ({width * height} pixels) exceeds max_image_pixels "
            f"{limit}: lower the camera resolution or raise max_image_pixels"
        )
        return True

    def _downstream_ready(self) -> bool:
        """Whether a subscriber of live/frames takes frames now. A subscriber that is a
        live_ros node (it reports on live/status) counts only while its latest report says
        active and is recent: after a kill -9 DDS keeps the dead reader matched until its
        lease ends, and a respawned frame_encoder reports ``loading`` while it loads. Any
        other subscriber (a recorder) counts as taking frames."""
        now = time.monotonic()
        for info in self.get_subscriptions_info_by_topic(self.pub.topic_name):
            seen = self.peers.get(info.node_name)
            if seen is not None and seen[1] == "active":
                self._last_report = max(self._last_report, seen[0])
            if seen is None or (seen[1] == "active" and now - seen[0] < DOWNSTREAM_SILENCE):
                return True
        return False

    def _count_unsubscribed(self) -> None:
        """A frame just published on live/frames: count it as dropped when no one takes it."""
        now = time.monotonic()
        self._recent.append(now)
        while self._recent and now - self._recent[0] > 2 * DOWNSTREAM_SILENCE:
            self._recent.popleft()
        if self.pub.get_subscription_count() > 0 and self._downstream_ready():
            if self._to_nobody_run:
                self.get_logger().info(
                    f"camera_subscriber: {self.pub.topic_name} has a subscriber again after "
                    f"{self._to_nobody_run} frame(s) published to nobody"
                )
                self._to_nobody_run = 0
            return
        if not self._to_nobody_run:  # the frames since its next report was due went to a dead reader too
            missed = sum(1 for t in list(self._recent)[:-1] if t > self._last_report + DOWNSTREAM_DUE)
            self.to_nobody += missed
            self._to_nobody_run += missed
        self._recent.clear()
        self.to_nobody += 1
        self._to_nobody_run += 1
        self.report_error(
            f"camera_subscriber: frame_encoder not active: {self.to_nobody} frames published on "
            f"{self.pub.topic_name} while no subscriber took them (frame_encoder gone, loading or "
            f"respawning; live-ros status shows it)",
            log=self._to_nobody_run == 1,
        )

    def _note_arrival(self) -> None:
        now = time.monotonic()
        if self.outage:
            self.outage = False
            # debug: a lockstep replay pauses the camera between frames as a matter of course
            self.get_logger().debug(
                f"camera_subscriber: images on {self.topic} again after {now - self.last_image_at:.1f} s without"
            )
        self.last_image_at = now

    def _publisher_names(self, topic: str) -> set[str]:
        """The topic's publishers' node names (those the graph already knows by name)."""
        return {
            f"{info.node_namespace.rstrip('/')}/{info.node_name}".lstrip("/")
            for info in self.get_publishers_info_by_topic(topic)
            if "_UNKNOWN_" not in info.node_name
        }

    def _check_input(self) -> None:
        """The watchdog (every 0.2 s): an input that stopped, or one that never started."""
        now = time.monotonic()
        if self.sub is None:
            return
        if self.last_image_at is not None:
            self._check_outage(now)
        elif now - self._activated_at >= self.p("no_input_warning") and now - self._graph_checked >= 1.0:
            self._graph_checked = now
            self._explain_no_input()

    def _check_outage(self, now: float) -> None:
        """Images flowed, then stopped for input_timeout: fps 0 and a last_error that says what
        became of the publisher (re-checked every second, as the graph learns of it)."""
        topic = self.sub.topic_name
        timeout = self.p("input_timeout")
        if now - self.last_image_at < timeout:
            if now - self._graph_checked >= 1.0:  # who publishes, to name them when they stop
                self._graph_checked = now
                self.publishers_seen = self._publisher_names(topic) or self.publishers_seen
            return
        if self.outage and now - self._graph_checked < 1.0:
            return
        self._graph_checked = now
        publishers = self._publisher_names(topic)
        gone = sorted(self.publishers_seen - publishers)
        if gone:
            why = f"its publisher {', '.join(gone)} is gone (stopped or crashed; a launch file's respawn restarts it)"
        elif publishers:
            why = (
                f"its publisher {', '.join(sorted(publishers))} is still in the graph but sends nothing: is it "
                f"stalled, paused or at the end of its video? (a killed process leaves the graph only when its "
                f"DDS lease ends)"
            )
        else:
            why = "no publisher is left on it: start the camera (or check the remap of the camera topic)"
        # the same text for every outage of the same kind: logged once, not at each pause of a replay
        self.report_error(f"camera_subscriber: no image on {topic} for {timeout:g} s; {why}")
        if not self.outage:
            self.outage = True
            self.fps_window.clear()
            self._publish_status()  # now, not at the next status period

    def _explain_no_input(self) -> None:
        """While nothing ever arrived, say why that may be."""
        topic = self.sub.topic_name
        pubs = self.get_publishers_info_by_topic(topic)
        if not pubs:
            self.report_error(
                f"camera_subscriber: no image on {topic} after {self.p('no_input_warning'):g} s and "
                f"no publisher on it: check the camera topic (remap {CAMERA_TOPIC}, or "
                f"camera_topic:=... in the launch file)"
            )
            return
        ours = qos.camera(self.p("qos"), self.p("qos_depth"))
        for info in pubs:
            if (
                ours.reliability == ReliabilityPolicy.RELIABLE
                and info.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT
            ):
                self.report_error(
                    f"camera_subscriber: QoS mismatch, no image on {topic}: its publisher {info.node_name} is best "
                    f"effort but this node asks reliable (qos:=reliable); set qos:=sensor_data"
                )
                return
        self.report_error(
            f"camera_subscriber: {len(pubs)} publisher(s) on {topic} but no image after "
            f"{self.p('no_input_warning'):g} s: is the camera streaming? (QoS: ours {self.p('qos')})"
        )

    def status_fields(self) -> dict:
        now = time.monotonic()
        stopped = self.last_image_at is not None and now - self.last_image_at >= self.p("input_timeout")
        recent = [t for t in self.fps_window if now - t < 5.0]
        rate = 0.0 if stopped else len(recent) / 5.0
        return {
            "fps": rate,
            "frames_in": self.received,
            "frames_dropped": self.refused + self.lost_in_transport + self.to_nobody,
        }


def main(argv=None) -> int:
    return run_main(CameraSubscriber, argv)
