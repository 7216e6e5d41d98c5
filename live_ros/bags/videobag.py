"""Camera bags from frames or video files (``live-ros bag-from-video``), with rosbags.

A video's frames keep their real timing: stamp = start stamp + the frame's presentation
time from the first frame. Its ``live_ros.annotation/1`` file goes into the bag's
``custom_data`` (key ``live_ros.annotation``), so the bag alone is a replayable test.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from live_ros.bags.bagio import ANNOTATION_KEY, COMPRESSED, DEFAULT_TOPIC, IMAGE, BagError


def image_message(rgb: np.ndarray, stamp_ns: int, frame_id: str = "camera", compressed: str | None = None):
    """(msgtype, rosbags message) of one RGB frame: rgb8 Image, or CompressedImage jpeg/png."""
    from live_ros.bag_types import typestore

    store = typestore()
    Header = store.types["std_msgs/msg/Header"]
    Time = store.types["builtin_interfaces/msg/Time"]
    sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
    header = Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id=frame_id)
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    if compressed:
        from PIL import Image as PILImage

        buf = io.BytesIO()
        PILImage.fromarray(rgb).save(
            buf, format="JPEG" if compressed == "jpeg" else "PNG", **({"quality": 92} if compressed == "jpeg" else {})
        )
        msg = store.types[COMPRESSED](header=header, format=compressed, data=np.frombuffer(buf.getvalue(), np.uint8))
        return COMPRESSED, msg
    msg = store.types[IMAGE](
        header=header,
        height=rgb.shape[0],
        width=rgb.shape[1],
        encoding="rgb8",
        is_bigendian=0,
        step=rgb.shape[1] * 3,
        data=rgb.reshape(-1),
    )
    return IMAGE, msg


def write_camera_bag(
    out: str | Path,
    frames: Iterable[tuple[int, np.ndarray]],
    *,
    topic: str = DEFAULT_TOPIC,
    compressed: str | None = None,
    frame_id: str = "camera",
    annotation: dict | None = None,
) -> dict:
    """Write ``(stamp_ns, rgb)`` frames (or ``(stamp_ns, rgb, log_ns)``; default log time =
    stamp) as a camera topic of a new MCAP bag at ``out``. Returns a summary."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    from live_ros.bag_types import typestore

    out = Path(out)
    if compressed not in (None, "jpeg", "png"):
        raise BagError(f"bag {out}: compressed format {compressed!r} is not jpeg or png")
    if compressed and not topic.endswith("/compressed"):
        topic = topic.rstrip("/") + "/compressed"
    if out.exists():
        raise BagError(f"bag {out} already exists: choose another --out, or remove it first")
    store = typestore()
    count, first, last = 0, None, None
    writer = Writer(out, version=9, storage_plugin=StoragePlugin.MCAP)
    if annotation is not None:
        writer.set_custom_data(ANNOTATION_KEY, json.dumps(annotation))
    writer.open()
    try:
        conn = writer.add_connection(topic, COMPRESSED if compressed else IMAGE, typestore=store)
        for item in frames:
            stamp_ns, rgb = item[0], item[1]
            log_ns = item[2] if len(item) > 2 else stamp_ns
            msgtype, msg = image_message(rgb, stamp_ns, frame_id, compressed)
            writer.write(conn, int(log_ns), bytes(store.serialize_cdr(msg, msgtype)))
            count += 1
            first = stamp_ns if first is None else first
            last = stamp_ns
    finally:
        writer.close()
    return {
        "bag": str(out),
        "topic": topic,
        "type": COMPRESSED if compressed else IMAGE,
        "images": count,
        "first_stamp": None if first is None else first / 1e9,
        "last_stamp": None if last is None else last / 1e9,
        "annotation": annotation is not None,
    }


# The first stamp of a bag made from a video without a usable creation_time
# (2001-09-09T01:46:40Z): fixed, so every run writes the same stamps; far from 0, so /clock
# and the replay's warm-up images (stamped before the bag's first) stay positive.
DEFAULT_START_STAMP = 1_000_000_000.0


def video_start(container) -> tuple[float, str]:
    """(first stamp, where it comes from): the video's ``creation_time`` (seconds since the
    epoch) when it has one at or after DEFAULT_START_STAMP, else DEFAULT_START_STAMP (a
    creation time of 1970, or none, says nothing of when the video was shot)."""
    text = (container.metadata or {}).get("creation_time")
    if text:
        from datetime import datetime

        try:
            created = datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
        except ValueError:
            created = None
        if created is not None and created >= DEFAULT_START_STAMP:
            return created, f"the video's creation_time {text}"
        return DEFAULT_START_STAMP, f"the default start stamp (the video's creation_time {text} is not usable)"
    return DEFAULT_START_STAMP, "the default start stamp (the video has no creation_time)"


def video_start_time(container) -> float:
    """The first stamp :func:`video_start` chooses."""
    return video_start(container)[0]


def video_frames(
    video: str | Path, start_stamp: float | None = None
) -> tuple[float, Iterator[tuple[int, np.ndarray]], str]:
    """(start stamp, iterator of (stamp_ns, rgb)) of every decoded frame, and where the start
    stamp comes from: stamp = start + the frame's presentation time from the first frame
    (its real timing, gaps included)."""
    import av

    video = Path(video)
    if not video.is_file():
        raise BagError(f"video {video} does not exist")
    try:
        container = av.open(str(video))
    except av.error.FFmpegError as err:
        raise BagError(f"video {video} cannot be opened ({err})") from err
    if not container.streams.video:
        container.close()
        raise BagError(f"video {video} has no video stream")
    start, origin = video_start(container) if start_stamp is None else (float(start_stamp), "--start-stamp")
    if not (math.isfinite(start) and start >= 0):
        container.close()
        raise BagError(
            f"video {video}: start stamp {start!r} must be a finite number of seconds >= 0 (ROS times "
            f"are not negative); give --start-stamp"
        )
    whole = math.floor(start)
    start_ns = int(whole) * 1_000_000_000 + int(round((start - whole) * 1e9))  # exact for 1.7e9 s

    def gen():
        with container:
            stream = container.streams.video[0]
            rate = float(stream.average_rate or stream.guessed_rate or 25)
            first = None
            for index, frame in enumerate(container.decode(stream)):
                t = frame.time if frame.time is not None else index / rate
                first = t if first is None else first
                yield start_ns + int(round((t - first) * 1e9)), frame.to_ndarray(format="rgb24")

    return start, gen(), origin


def bag_from_video(
    video: str | Path,
    out: str | Path,
    *,
    annotations: str | Path | None = None,
    topic: str = DEFAULT_TOPIC,
    compressed: str | None = None,
    start_stamp: float | None = None,
    frame_id: str = "camera",
) -> dict:
    """A camera bag from a video file (every decoded frame, real timing) and, if given, its
    ``live_ros.annotation/1`` file stored in the bag's custom_data."""
    annotation = None
    if annotations is not None:
        from live_ros.data.annotations import load_annotation

        try:
            annotation = load_annotation(Path(annotations)).to_dict()
        except (OSError, ValueError) as err:
            raise BagError(f"annotations {annotations}: {err}") from err
    start, frames, origin = video_frames(video, start_stamp)
    summary = write_camera_bag(
        out, frames, topic=topic, compressed=compressed, frame_id=frame_id, annotation=annotation
    )
    summary.update(video=str(video), start_stamp=start, start_from=origin)
    if not summary["images"]:
        raise BagError(f"video {video}: no frame could be decoded, bag {out} is empty")
    return summary
