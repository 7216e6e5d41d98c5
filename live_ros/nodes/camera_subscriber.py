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
"""

from __future__ import annotations

import time

from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.qos import ReliabilityPolicy
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import CompressedImage, Image

from live_ros.model import frames as core_frames
from live_ros.model import presets
from live_ros.nodes.base import LiveNode, Param, main as run_main
from live_ros.ros import qos
from live_ros.ros.convert import ConversionError, cdr_header_stamp, compressed_to_rgb, image_to_rgb, rgb_to_image

CAMERA_TOPIC = "/camera/image_raw"


class CameraSubscriber(LiveNode):
    PARAMS = (
        Param("preset", "embedded", "Model preset; sets the letterbox size of the published frames.",
              choices=tuple(presets.PRESETS)),
        Param("image_size", 0, "Letterbox size in pixels (0: the preset's encoder size).", (0, 4096)),
        Param("fps", 2.0, "Model frame rate: frames are sampled on this grid from the camera stamps.",
              (0.1, 60.0)),
        Param("compressed", False, "Subscribe to <camera topic>/compressed (CompressedImage, jpeg/png)."),
        Param("qos", "sensor_data", "Camera QoS: sensor_data (best effort) or reliable.",
              choices=qos.CAMERA_QOS_CHOICES),
        Param("qos_depth", 30, "Camera subscription queue depth (keep last N; not part of QoS matching): "
              "30 holds 1 s of a 30 fps camera through scheduling stalls of this process.", (1, 100)),
        Param("max_image_pixels", 8_294_400, "Refuse camera images larger than this (width x height).",
              (1, 100_000_000)),
        Param("no_input_warning", 5.0, "Seconds without any image before saying why that may be.", (0.5, 600.0)),
    )

    def __init__(self):
        super().__init__("camera_subscriber", namespace="live")
        self.sub = None
        self.pub = None
        self.sampler = None
        self.received = 0
        self.published = 0
        self.refused = 0
        self.fps_window: list[float] = []
        self._activated_at = 0.0

    @property
    def topic(self) -> str:
        return CAMERA_TOPIC + ("/compressed" if self.p("compressed") else "")

    def configure(self) -> None:
        self.size = self.p("image_size") or presets.frame_size(self.p("preset"))
        self.sampler = core_frames.FrameSampler(self.p("fps"))
        self.pub = self.create_lifecycle_publisher(Image, "frames", qos.frames())
        self.get_logger().info(f"letterbox {self.size} px at {self.p('fps')} fps from {self.topic} "
                               f"(QoS {self.p('qos')})")

    def activate(self) -> None:
        self.msg_type = CompressedImage if self.p("compressed") else Image
        events = SubscriptionEventCallbacks(incompatible_qos=self._on_incompatible_qos)
        self.sub = self.create_subscription(self.msg_type, self.topic, self.on_image,
                                            qos.camera(self.p("qos"), self.p("qos_depth")),
                                            event_callbacks=events, raw=True)
        self._activated_at = time.monotonic()
        self._watchdog = self.create_timer(1.0, self._check_input)

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
        if not self.active:
            return
        where = f"camera_subscriber: image {self.received} on {self.sub.topic_name}"
        try:
            stamp = cdr_header_stamp(data, where)
        except ConversionError as err:
            self.refused += 1
            self.report_error(str(err))
            return
        next_tick = self.sampler.next_tick
        if self.sampler.last is not None and stamp < self.sampler.last:
            self.report_error(f"{where}: stamp {stamp:.3f} s went backwards from {self.sampler.last:.3f} s; "
                              f"sampling restarted (a looping bag or a clock reset?)")
            self.sampler.reset()
            next_tick = None
        if next_tick is not None and stamp < next_tick - core_frames.EPSILON:
            self.sampler.accept(stamp)  # not due: keep the sampler's notion of the last stamp
            return
        try:
            msg = deserialize_message(data, self.msg_type)
        except Exception as err:  # the bytes are not a valid message of this type
            self.refused += 1
            self.report_error(f"{where}: not a valid {self.msg_type.__name__} message ({err}); is the publisher's "
                              f"type the same?")
            return
        try:
            rgb = (compressed_to_rgb if self.msg_type is CompressedImage else image_to_rgb)(
                msg, self.p("max_image_pixels"), where)
            frame = core_frames.letterbox(rgb, self.size)
        except (ConversionError, ValueError) as err:
            self.refused += 1
            self.report_error(str(err))
            return
        self.sampler.accept(stamp)
        self.pub.publish(rgb_to_image(frame, msg.header.stamp, msg.header.frame_id))
        self.published += 1
        now = time.monotonic()
        self.fps_window = [t for t in self.fps_window if now - t < 5.0] + [now]

    def _on_incompatible_qos(self, event) -> None:
        self.report_error(f"camera_subscriber: a publisher on {self.topic} has incompatible QoS (policy "
                          f"{event.last_policy_kind}); this node asks {self.p('qos')}. Set the parameter "
                          f"qos to match the camera (sensor_data for best effort)")

    def _check_input(self) -> None:
        """While nothing arrives, say why that may be (each distinct reason logged once;
        re-checked every second, as publishers come and go)."""
        if self.received or time.monotonic() - self._activated_at < self.p("no_input_warning"):
            return
        topic = self.sub.topic_name
        pubs = self.get_publishers_info_by_topic(topic)
        if not pubs:
            self.report_error(f"camera_subscriber: no image on {topic} after {self.p('no_input_warning'):g} s and "
                              f"no publisher on it: check the camera topic (remap {CAMERA_TOPIC}, or "
                              f"camera_topic:=... in the launch file)")
            return
        ours = qos.camera(self.p("qos"), self.p("qos_depth"))
        for info in pubs:
            if ours.reliability == ReliabilityPolicy.RELIABLE and \
                    info.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT:
                self.report_error(f"camera_subscriber: QoS mismatch, no image on {topic}: its publisher {info.node_name} is best "
                                  f"effort but this node asks reliable (qos:=reliable); set qos:=sensor_data")
                return
        self.report_error(f"camera_subscriber: {len(pubs)} publisher(s) on {topic} but no image after "
                          f"{self.p('no_input_warning'):g} s: is the camera streaming? (QoS: ours {self.p('qos')})")

    def status_fields(self) -> dict:
        rate = len(self.fps_window) / 5.0 if self.fps_window else 0.0
        return {"fps": rate, "frames_in": self.received, "frames_dropped": self.refused}


def main(argv=None) -> int:
    return run_main(CameraSubscriber, argv)
