"""Bags in and out with rosbags (rosbag2, MCAP storage), no rclpy.

- :func:`scan_camera`: open a bag, pick its camera topic (``sensor_msgs/msg/Image`` or
  ``CompressedImage``), read every image's log time and header stamp, and report gaps,
  reordered and repeated stamps. :func:`iter_camera` then streams the raw CDR bytes in
  the same order, for a player that publishes them as they are.
- Writing camera bags (``live-ros bag-from-video``) is :mod:`live_ros.bags.videobag`.

Every failure raises :class:`BagError` naming the bag, the topic and what to do.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
CAMERA_TYPES = (IMAGE, COMPRESSED)
DEFAULT_TOPIC = "/camera/image_raw"
ANNOTATION_KEY = "live_ros.annotation"
# frame_id of the images replay-eval publishes before a replay to connect the graph (their
# stamps lie after the bag's): a bag recorded during a replay holds them; readers skip them.
WARMUP_FRAME_ID = "live_ros/replay_warmup"
GAP_FACTOR = 1.5  # a step between stamps longer than this x the median step is a gap


class BagError(ValueError):
    """A bag that cannot be used; the text names the bag, the topic and the fix."""


@dataclass
class CameraImage:
    order: int  # position among the topic's messages (bag order = log time order)
    log_ns: int  # the bag's log (receive) time
    sec: int  # header stamp
    nanosec: int
    frame_id: str

    @property
    def stamp(self) -> float:
        """Seconds, computed as the nodes compute it (live_ros.ros.convert.stamp_to_seconds)."""
        return float(self.sec) + float(self.nanosec) * 1e-9


@dataclass
class StampReport:
    """What the header stamps of a camera topic look like (replayed as they are)."""

    images: int = 0
    skipped_warmup: int = 0
    first: float | None = None
    last: float | None = None
    median_step: float | None = None
    gaps: list = field(default_factory=list)  # [order, from stamp, to stamp, step]
    reordered: list = field(default_factory=list)  # [order, stamp, previous stamp]
    repeated: list = field(default_factory=list)  # [order, stamp]

    def to_dict(self) -> dict:
        return asdict(self)

    def lines(self, limit: int = 5) -> list[str]:
        out = []
        if self.skipped_warmup:
            out.append(f"{self.skipped_warmup} warm-up images of an earlier replay ({WARMUP_FRAME_ID}) left out")
        for key, what in (("gaps", "gap"), ("reordered", "stamp going backwards"), ("repeated", "repeated stamp")):
            items = getattr(self, key)
            if not items:
                continue
            shown = "; ".join(_describe(key, item) for item in items[:limit])
            more = f" (and {len(items) - limit} more)" if len(items) > limit else ""
            out.append(f"{len(items)} x {what}: {shown}{more}")
        return out


def _describe(key: str, item: list) -> str:
    if key == "gaps":
        return f"image {item[0]}: {item[3]:.3f} s after {item[1]:.3f}"
    if key == "reordered":
        return f"image {item[0]}: {item[1]:.3f} after {item[2]:.3f}"
    return f"image {item[0]}: {item[1]:.3f}"


@dataclass
class CameraScan:
    bag: Path
    topic: str
    msgtype: str
    images: list[CameraImage]
    report: StampReport
    topics: dict[str, str]  # every topic of the bag -> type
    annotation: dict | None = None  # custom_data[live_ros.annotation], parsed
    notes: list[str] = field(default_factory=list)

    @property
    def compressed(self) -> bool:
        return self.msgtype == COMPRESSED


# -- reading ------------------------------------------------------------------------------
def _listed_topics(path: Path) -> dict[str, str]:
    """Topics a bag folder's metadata.yaml lists (readable even when its data file is not)."""
    try:
        import yaml

        info = yaml.safe_load((path / "metadata.yaml").read_text())
        info = info.get("rosbag2_bagfile_information", info)
        return {t["topic_metadata"]["name"]: t["topic_metadata"]["type"] for t in info["topics_with_message_count"]}
    except Exception:  # noqa: BLE001 - no metadata: nothing to name
        return {}


def _open_reader(path: Path, topic: str | None):
    from rosbags.rosbag2 import Reader
    from rosbags.rosbag2.errors import ReaderError

    if not path.exists():
        raise BagError(f"bag {path} does not exist: give a rosbag2 folder (with metadata.yaml) or an .mcap file")
    try:
        reader = Reader(path)
        reader.open()
    except Exception as err:  # noqa: BLE001 - rosbags raises several kinds on damaged files
        listed = _listed_topics(path) if path.is_dir() else {}
        images = [t for t, m in listed.items() if m in CAMERA_TYPES]
        what = f"topic {topic}" if topic else (f"topic {', '.join(images)}" if images else "its camera topic")
        reason = str(err).rstrip(".")
        if isinstance(err, (ReaderError, FileNotFoundError)):
            raise BagError(
                f"bag {path}: cannot read {what}: {reason}. The bag is truncated or damaged (a recorder "
                f"killed before it closed the file leaves it so): record it again (live-ros record stops "
                f"cleanly on Ctrl-C) or rebuild a camera bag with live-ros bag-from-video"
            ) from err
        raise BagError(
            f"bag {path}: cannot read {what}: {type(err).__name__}: {reason}. The bag is damaged or not a rosbag2 bag"
        ) from err
    return reader


def _topic_list(types: dict[str, str]) -> str:
    return ", ".join(f"{t} ({m})" for t, m in sorted(types.items())) or "none"


def pick_camera_topic(bag: Path, types: dict[str, str], topic: str | None = None) -> str:
    """The camera topic: ``topic`` if given (checked), else the bag's only image topic
    (``/camera/image_raw`` when there are several)."""
    if topic:
        if topic not in types:
            raise BagError(
                f"bag {bag} has no topic {topic}; its topics: {_topic_list(types)}. Pass --topic "
                f"with one of its image topics"
            )
        if types[topic] not in CAMERA_TYPES:
            raise BagError(
                f"bag {bag}: topic {topic} has type {types[topic]}, which cannot be played as a camera: "
                f"replay needs {IMAGE} or {COMPRESSED}"
            )
        return topic
    images = sorted(t for t, m in types.items() if m in CAMERA_TYPES)
    if not images:
        raise BagError(
            f"bag {bag} has no image topic ({IMAGE} or {COMPRESSED}); its topics: {_topic_list(types)}. "
            f"Record the camera too (live-ros record), or make a camera bag from a video with "
            f"live-ros bag-from-video"
        )
    if len(images) == 1:
        return images[0]
    if DEFAULT_TOPIC in images:
        return DEFAULT_TOPIC
    raise BagError(f"bag {bag} has several image topics ({', '.join(images)}): choose one with --topic")


def _custom_data(reader, bag: Path) -> dict:
    """The bag's custom_data: from metadata.yaml (a bag folder) or from the rosbag2 metadata
    record inside a bare .mcap file."""
    meta = getattr(reader.storage, "metadata", None)
    custom = getattr(meta, "custom", None)
    if custom or bag.is_dir():
        return dict(custom or {})
    try:
        import yaml
        from mcap.reader import make_reader

        with bag.open("rb") as f:
            for record in make_reader(f).iter_metadata():
                if record.name == "rosbag2":
                    info = yaml.safe_load(record.metadata.get("serialized_metadata", "")) or {}
                    info = info.get("rosbag2_bagfile_information", info)
                    return dict(info.get("custom_data") or {})
    except Exception:  # noqa: BLE001 - no custom data then
        pass
    return {}


def _annotation(bag: Path, custom: dict | None) -> dict | None:
    text = (custom or {}).get(ANNOTATION_KEY)
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError as err:
        raise BagError(
            f"bag {bag}: custom_data {ANNOTATION_KEY} is not JSON ({err}); pass --annotations FILE instead"
        ) from err


def scan_camera(path: str | Path, topic: str | None = None) -> CameraScan:
    """Open ``path``, pick its camera topic and read every image's stamps (no pixels)."""
    from rosbags.rosbag2.errors import ReaderError

    from live_ros.bag_types import typestore

    bag = Path(path)
    store = typestore()
    reader = _open_reader(bag, topic)
    try:
        types = {t: info.msgtype or "?" for t, info in reader.topics.items()}
        topic = pick_camera_topic(bag, types, topic)
        msgtype = types[topic]
        conns = [c for c in reader.connections if c.topic == topic]
        expected = sum(c.msgcount for c in conns)
        notes = [
            f"topic {t} ({m}) is not known to live_ros's type store: ignored"
            for t, m in sorted(types.items())
            if m not in store.types
        ]
        annotation = _annotation(bag, _custom_data(reader, bag))
        images: list[CameraImage] = []
        report = StampReport()
        n = 0
        try:
            for _, log_ns, raw in reader.messages(connections=conns):
                n += 1
                msg = _decode(store, raw, msgtype, bag, topic, n)
                if msg.header.frame_id == WARMUP_FRAME_ID:
                    report.skipped_warmup += 1
                    continue
                images.append(
                    CameraImage(
                        len(images),
                        int(log_ns),
                        int(msg.header.stamp.sec),
                        int(msg.header.stamp.nanosec),
                        str(msg.header.frame_id),
                    )
                )
        except BagError:
            raise
        except (ReaderError, Exception) as err:  # noqa: BLE001 - damaged chunks raise various errors
            raise BagError(
                f"bag {bag}: topic {topic}: reading failed after {n} of {expected} messages "
                f"({type(err).__name__}: {err}): the bag is truncated or damaged; record it again"
            ) from err
    finally:
        reader.close()
    if expected and n < expected:
        raise BagError(
            f"bag {bag}: topic {topic}: {n} of the {expected} messages its index lists could be read: "
            f"the bag is truncated; record it again"
        )
    if not images:
        raise BagError(f"bag {bag}: topic {topic} holds no images; record the camera, or pick another --topic")
    _fill_report(report, images)
    return CameraScan(bag, topic, msgtype, images, report, types, annotation, notes)


def _decode(store, raw, msgtype: str, bag: Path, topic: str, n: int):
    try:
        return store.deserialize_cdr(raw, msgtype)
    except Exception as err:  # noqa: BLE001 - any decoding failure means a damaged message
        raise BagError(
            f"bag {bag}: topic {topic}: message {n} cannot be decoded as {msgtype} ({err}): the bag is "
            f"damaged, or the topic's type is not what its metadata says"
        ) from err


def _fill_report(report: StampReport, images: list[CameraImage]) -> None:
    stamps = [im.stamp for im in images]
    report.images = len(images)
    report.first, report.last = stamps[0], max(stamps)
    steps = [b - a for a, b in zip(stamps, stamps[1:]) if b > a]
    report.median_step = float(np.median(steps)) if steps else None
    previous = frontier = -math.inf  # the previous stamp; the newest stamp so far
    for im in images:
        s = im.stamp
        if s < previous:
            report.reordered.append([im.order, s, previous])
        elif s == previous:
            report.repeated.append([im.order, s])
        elif report.median_step and frontier > -math.inf and s - frontier > GAP_FACTOR * report.median_step:
            report.gaps.append([im.order, frontier, s, s - frontier])
        previous, frontier = s, max(frontier, s)


def iter_camera(scan: CameraScan) -> Iterator[tuple[CameraImage, bytes]]:
    """The images of ``scan`` again, in the same order, with their raw CDR bytes."""
    from live_ros.bag_types import typestore

    store = typestore()
    reader = _open_reader(scan.bag, scan.topic)
    try:
        conns = [c for c in reader.connections if c.topic == scan.topic]
        k = 0
        n = 0
        for _, _, raw in reader.messages(connections=conns):
            n += 1
            if k >= len(scan.images):
                break
            msg = _decode(store, raw, scan.msgtype, scan.bag, scan.topic, n)
            if msg.header.frame_id == WARMUP_FRAME_ID:
                continue
            yield scan.images[k], bytes(raw)
            k += 1
    except BagError:
        raise
    except Exception as err:  # noqa: BLE001
        raise BagError(
            f"bag {scan.bag}: topic {scan.topic}: reading failed at message {n} ({err}): the bag changed or is damaged"
        ) from err
    finally:
        reader.close()


def decode_rgb(raw: bytes, msgtype: str, where: str = "image") -> np.ndarray:
    """Raw CDR of an Image / CompressedImage -> HxWx3 uint8 RGB (the nodes' conversions)."""
    from live_ros.bag_types import typestore
    from live_ros.bags.images import compressed_to_rgb, image_to_rgb

    msg = typestore().deserialize_cdr(raw, msgtype)
    return (compressed_to_rgb if msgtype == COMPRESSED else image_to_rgb)(msg, 0, where)


def restamp(raw: bytes, msgtype: str, stamp_ns: int, frame_id: str) -> bytes:
    """The same image with another header stamp and frame_id (raw CDR in and out)."""
    from live_ros.bag_types import typestore

    store = typestore()
    msg = store.deserialize_cdr(raw, msgtype)
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(stamp_ns), 1_000_000_000)
    msg.header.frame_id = frame_id
    return bytes(store.serialize_cdr(msg, msgtype))
