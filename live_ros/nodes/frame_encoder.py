"""frame_encoder: letterboxed frames in, frame tokens out.

Subscribes ``live/frames`` (rgb8, already sampled and letterboxed by camera_subscriber),
encodes with the vision encoder of the preset's checkpoint (or of ``checkpoint``: its
``live_config.json`` names the encoder, resolution and tokens per frame) and publishes ``live/frame_tokens``
(``FrameTokens``: the camera stamp, ``num_tokens x dim`` floats, and the encoder id that the
LLM node checks). The callback only queues; a worker encodes, several frames in one batch
when it is behind. A frame-difference encoder (the embedded preset, ``+delta``) compares each
frame with the one before; it starts a new stream on activation and when the stamps go back
(a replayed bag or video starting over), so a difference never spans two streams.
"""

from __future__ import annotations

import collections
import threading
import time

import numpy as np
from sensor_msgs.msg import Image

from live_ros.model import presets
from live_ros.msg import FrameTokens
from live_ros.nodes.base import LiveNode, Param, main as run_main
from live_ros.ros import qos
from live_ros.ros.convert import ConversionError, image_to_rgb, stamp_to_seconds, tokens_to_msg


class FrameEncoder(LiveNode):
    PARAMS = (
        Param("preset", "embedded", "Model preset whose vision encoder runs here.", choices=tuple(presets.PRESETS)),
        Param(
            "checkpoint",
            "",
            "Checkpoint folder whose live_config.json names the encoder, its input resolution "
            "and tokens per frame (empty: the preset's).",
        ),
        Param(
            "vision_path",
            "",
            "Local vision weights (8B preset: the siglip-large-patch16-384 folder; "
            "empty: the preset's default or $LIVE_ROS_SIGLIP).",
        ),
        Param("device", "cpu", "cpu or cuda.", choices=("cpu", "cuda")),
        Param("dtype", "float32", "Encoder dtype on a GPU.", choices=("float32", "bfloat16", "float16")),
        Param("max_batch", 8, "Frames encoded in one batch when the encoder is behind.", (1, 256)),
        Param("queue_size", 64, "Frames waiting to be encoded before the oldest is dropped.", (1, 10_000)),
    )

    def __init__(self, **kwargs):  # kwargs: rclpy Node's (context, parameter_overrides, ...)
        super().__init__("frame_encoder", namespace="live", **kwargs)
        self.encoder = None
        self.pub = None
        self.sub = None
        self.queue: collections.deque = collections.deque()
        self.cond = threading.Condition()
        self.worker = None
        self.running = False
        self.frames_in = 0
        self.frames_out = 0
        self.dropped = 0
        self.lag = 0.0
        self.last_stamp: float | None = None
        self.times: collections.deque = collections.deque(maxlen=10)

    def load(self) -> None:
        from live_ros.model.sources import load_encoder  # no LLM library: only the encoder

        t0 = time.perf_counter()
        self.encoder = load_encoder(
            self.p("checkpoint") or self.p("preset"),
            preset=self.p("preset"),
            vision=self.p("vision_path") or None,
            device=self.p("device"),
            dtype=self.p("dtype"),
        )
        self.get_logger().info(
            f"encoder {self.encoder.encoder_id} ({self.encoder.num_tokens} tokens x "
            f"{self.encoder.dim}) loaded in {time.perf_counter() - t0:.1f} s"
        )

    def configure(self) -> None:
        self.pub = self.create_lifecycle_publisher(FrameTokens, "frame_tokens", qos.frames())

    def activate(self) -> None:
        self.encoder.reset()
        self.last_stamp = None
        self.sub = self.create_subscription(Image, "frames", self.on_frame, qos.frames())
        self.running = True
        self.worker = threading.Thread(target=self._work, name="frame_encoder", daemon=True)
        self.worker.start()

    def deactivate(self) -> None:
        with self.cond:
            self.running = False
            self.cond.notify_all()
        if self.worker is not None:
            self.worker.join(timeout=5)
        if self.sub is not None:
            self.destroy_subscription(self.sub)
            self.sub = None

    def cleanup(self) -> None:
        self.encoder = None
        if self.pub is not None:
            self.destroy_lifecycle_publisher(self.pub)
            self.pub = None

    def on_frame(self, msg: Image) -> None:
        with self.cond:
            self.frames_in += 1
            if len(self.queue) >= self.p("queue_size"):
                self.queue.popleft()
                self.dropped += 1
                self.report_error(
                    f"frame_encoder: queue full ({self.p('queue_size')} frames), oldest frame "
                    f"dropped; the encoder is too slow for the frame rate (lower fps, or use a GPU)",
                    log=self.dropped == 1,
                )
            self.queue.append(msg)
            self.cond.notify()

    def _work(self) -> None:
        while True:
            with self.cond:
                while self.running and not self.queue:
                    self.cond.wait(timeout=0.5)
                if not self.running:
                    return
                batch = [self.queue.popleft() for _ in range(min(len(self.queue), self.p("max_batch")))]
            self._encode(batch)

    def _encode(self, batch: list[Image]) -> None:
        images, headers = [], []
        for msg in batch:
            try:
                images.append(image_to_rgb(msg, where=f"frame_encoder: frame on {self.sub.topic_name}"))
                headers.append(msg.header)
            except ConversionError as err:
                self.report_error(str(err))
        if not images:
            return
        if self.last_stamp is not None and stamp_to_seconds(headers[0].stamp) <= self.last_stamp:
            self.encoder.reset()  # the stamps went back: a new stream
            self.get_logger().info("frame_encoder: frame stamps went back; starting a new stream")
        self.last_stamp = stamp_to_seconds(headers[-1].stamp)
        t0 = time.perf_counter()
        tokens = self.encoder.encode(images).float().cpu().numpy()
        if not np.isfinite(tokens).all():
            self.report_error(
                "frame_encoder: the encoder produced NaN/inf tokens; check its weights and dtype (float32 on a CPU)"
            )
            self.encoder.reset()  # no frame difference against them
            return
        self.times.append((time.perf_counter() - t0) / len(images))
        for header, frame_tokens in zip(headers, tokens):
            self.pub.publish(tokens_to_msg(frame_tokens, header, self.frames_out, self.encoder.encoder_id))
            self.frames_out += 1
        stamp = headers[-1].stamp
        self.lag = max(0.0, self.get_clock().now().nanoseconds * 1e-9 - (stamp.sec + stamp.nanosec * 1e-9))

    def status_fields(self) -> dict:
        per_frame = sum(self.times) / len(self.times) if self.times else 0.0
        return {
            "fps": 1.0 / per_frame if per_frame else 0.0,
            "lag": self.lag,
            "frames_in": self.frames_in,
            "frames_dropped": self.dropped,
        }


def main(argv=None) -> int:
    return run_main(FrameEncoder, argv)
