"""video_source: a video file, an image folder or a V4L2 device as a camera.

Publishes ``/camera/image_raw`` (``sensor_msgs/Image`` rgb8) paced by the video's own
timestamps (``rate`` times real time), stamped with the node's clock at publication
(real stamps; ``use_sim_time`` honoured). ``loop`` restarts at the end.

It plays only once the graph downstream is ready: the nodes named in ``wait_for_nodes``
say ``active`` on ``live/status`` (the launch file names camera_subscriber, frame_encoder
and live_llm, so no second of the video passes while the models load), then
``wait_for_subscribers`` subscriptions match the camera topic. The video's first frame is
then the first frame the LLM takes, and video time is the video's own.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
from sensor_msgs.msg import Image

from live_ros.nodes.base import LiveNode, Param, main as run_main
from live_ros.ros import qos
from live_ros.ros.convert import rgb_to_image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def _open_frames(source: str, folder_fps: float):
    """Yield (pts seconds, RGB array) from a video file, an image folder or a V4L2 device."""
    path = Path(source).expanduser()
    if path.is_dir():
        from PIL import Image as PILImage

        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise FileNotFoundError(f"{path} holds no {'/'.join(IMAGE_SUFFIXES)} images")
        for i, f in enumerate(files):
            with PILImage.open(f) as img:
                yield i / folder_fps, np.asarray(img.convert("RGB"))
        return
    import av

    if source.startswith("/dev/video"):
        container = av.open(source, format="v4l2")
    elif path.is_file():
        container = av.open(str(path))
    else:
        raise FileNotFoundError(
            f"video source '{source}' does not exist: give a video file, an image folder or "
            f"a V4L2 device such as /dev/video0"
        )
    with container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        start = None
        for frame in container.decode(stream):
            t = float(frame.pts * stream.time_base) if frame.pts is not None else 0.0
            start = t if start is None else start
            yield t - start, frame.to_ndarray(format="rgb24")


class VideoSource(LiveNode):
    PARAMS = (
        Param("source", "", "Video file, image folder, or V4L2 device (/dev/video0)."),
        Param("loop", False, "Start again at the end of a file or folder."),
        Param("rate", 1.0, "Playback speed (1 = real time).", (0.01, 100.0)),
        Param("folder_fps", 10.0, "Frame rate of an image folder.", (0.1, 240.0)),
        Param("frame_id", "camera", "frame_id of the published images."),
        Param("max_seconds", 0.0, "Stop after this many seconds of video (0: play it all).", (0.0, 1e9)),
        Param(
            "wait_for_nodes",
            "",
            "Comma-separated names of nodes (in this namespace, or /namespace/name for another one) whose "
            "status must say active before playing (the launch file: camera_subscriber,frame_encoder,live_llm; "
            "empty: do not wait).",
        ),
        Param(
            "wait_for_subscribers",
            1,
            "Start playing once this many subscriptions match the camera topic (0: at "
            "once), so that the video's first frames are not lost while discovery completes.",
            (0, 100),
        ),
    )

    def __init__(self, **kwargs):  # kwargs: rclpy Node's (context, parameter_overrides, ...)
        super().__init__("video_source", namespace="live", **kwargs)
        self.pub = None
        self.thread = None
        self.running = False
        self.published = 0
        self.finished = False

    @property
    def awaited(self) -> list[str]:
        return [n for n in (part.strip() for part in self.p("wait_for_nodes").replace(" ", ",").split(",")) if n]

    def configure(self) -> None:
        if not self.p("source"):
            raise ValueError("parameter source is empty: set it to a video file, an image folder or /dev/videoN")
        next(iter(_open_frames(self.p("source"), self.p("folder_fps"))))  # fail fast on a bad source
        self.pub = self.create_lifecycle_publisher(Image, "/camera/image_raw", qos.camera("reliable", 5))

    def activate(self) -> None:
        if self.awaited:  # "/ns/name": a node of another namespace (a camera's source waits for /live/live_llm)
            self.watch_peers(tuple({n.rsplit("/", 1)[0] for n in self.awaited if n.startswith("/")}))
        self.running = True
        self.thread = threading.Thread(target=self._play, name="video_source", daemon=True)
        self.thread.start()

    def deactivate(self) -> None:
        self.running = False
        if self.thread is not None:
            self.thread.join(timeout=5)

    def cleanup(self) -> None:
        if self.pub is not None:
            self.destroy_lifecycle_publisher(self.pub)
            self.pub = None

    def _wait_for_nodes(self) -> bool:
        """Block until every node of wait_for_nodes reports active (False when deactivated meanwhile)."""
        want = self.awaited
        if not want:
            return self.running
        t0, told = time.monotonic(), 0.0
        self.get_logger().info(
            f"waiting for {', '.join(want)} to say active on live/status before playing "
            f"{self.p('source')} (set wait_for_nodes:='' to play at once)"
        )
        while self.running:
            missing = [n for n in want if self.peers.get(n, (0.0, ""))[1] != "active"]
            if not missing:
                self.get_logger().info(f"{', '.join(want)} active after {time.monotonic() - t0:.1f} s: playing")
                return True
            if time.monotonic() - t0 - told > 15.0:
                told = time.monotonic() - t0
                self.get_logger().info(
                    "still waiting before playing: "
                    + ", ".join(f"{n} {self.peers.get(n, (0.0, 'not seen on live/status'))[1]}" for n in missing)
                )
            time.sleep(0.05)
        return False

    def _wait_for_subscribers(self) -> bool:
        """Block until enough subscriptions match (False when deactivated meanwhile)."""
        want, t0, told = self.p("wait_for_subscribers"), time.monotonic(), False
        while self.running and self.pub.get_subscription_count() < want:
            if not told and time.monotonic() - t0 > 5.0:
                told = True
                self.get_logger().info(
                    f"waiting for {want} subscriber(s) on {self.pub.topic_name} before playing "
                    f"(is camera_subscriber running with a matching QoS? set "
                    f"wait_for_subscribers:=0 to play at once)"
                )
            time.sleep(0.02)
        return self.running

    def _play(self) -> None:
        if not self._wait_for_nodes() or not self._wait_for_subscribers():
            return
        while self.running:
            t0 = time.monotonic()
            try:
                for pts, rgb in _open_frames(self.p("source"), self.p("folder_fps")):
                    if not self.running:
                        return
                    if self.p("max_seconds") and pts > self.p("max_seconds"):
                        break
                    delay = t0 + pts / self.p("rate") - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    self.pub.publish(rgb_to_image(rgb, self.get_clock().now().to_msg(), self.p("frame_id")))
                    self.published += 1
                    if self.published == 1:
                        self._publish_status()  # playing: tools time their questions from here
            except Exception as err:  # a broken file must not kill the node silently
                self.report_error(f"video_source: reading {self.p('source')} failed: {err}")
                return
            if not self.p("loop"):
                self.finished = True
                self.state = "finished"
                self.get_logger().info(f"end of {self.p('source')} ({self.published} frames)")
                return

    def status_fields(self) -> dict:
        return {"frames_in": self.published}


def main(argv=None) -> int:
    return run_main(VideoSource, argv)
