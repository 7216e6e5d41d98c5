"""``live-ros record``: a running graph's camera images, frame tokens, decisions and
responses into a rosbag2 MCAP bag, through rosbags (no rosbag2_py needed).

Subscriptions are raw (``raw=True``): the CDR bytes are written as they arrive, under the
standard type names with the type hashes rosidl generates (live_ros.bag_types). The log
time is the recorder's receive time (system time, or /clock with ``--use-sim-time``).
Ctrl-C, SIGTERM or ``--duration`` stop it and close the bag properly (an MCAP that is not
closed has no summary and cannot be read back).
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
import time
from pathlib import Path

from live_ros.bags.bagio import COMPRESSED, IMAGE, BagError


def ros_class(msgtype: str):
    """``pkg/msg/Name`` -> the generated rclpy message class."""
    pkg, _, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{pkg}.msg"), name)


def topics_for(namespace: str, camera_topic: str | None, camera_type: str, tokens: bool, status: bool) -> list:
    ns = "/" + namespace.strip("/")
    out = []
    if camera_topic:
        out.append((camera_topic, camera_type))
    if tokens:
        out.append((f"{ns}/frame_tokens", "live_ros/msg/FrameTokens"))
    out += [(f"{ns}/decision", "live_ros/msg/Decision"), (f"{ns}/response", "live_ros/msg/Response")]
    if status:
        out.append((f"{ns}/status", "live_ros/msg/Status"))
    return out


class Recorder:
    """Raw subscriptions on ``topics`` [(name, type)] written to a new MCAP bag at ``out``."""

    def __init__(self, node, out: Path, topics: list, camera_qos: str = "sensor_data", use_sim_time: bool = False):
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
        from rosbags.rosbag2 import StoragePlugin, Writer

        from live_ros.bag_types import typestore
        from live_ros.ros import qos

        out = Path(out)
        if out.exists():
            raise BagError(f"bag {out} already exists: choose another output, or remove it first")
        self.node, self.out = node, out
        self.use_sim_time = use_sim_time
        store = typestore()
        for name, msgtype in topics:
            if msgtype not in store.types:
                raise BagError(f"bag {out}: topic {name} has type {msgtype}, unknown to live_ros's type store")
        self.writer = Writer(out, version=9, storage_plugin=StoragePlugin.MCAP)
        self.writer.open()
        self.counts: dict[str, int] = {}
        self.subs = []
        reliable = QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=200,
            reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.VOLATILE,
        )  # volatile: no old responses at start
        for name, msgtype in topics:
            conn = self.writer.add_connection(name, msgtype, typestore=store)
            self.counts[name] = 0
            profile = qos.camera(camera_qos, 100) if msgtype in (IMAGE, COMPRESSED) else reliable
            self.subs.append(
                node.create_subscription(ros_class(msgtype), name, self._writer_for(name, conn), profile, raw=True)
            )
        self.closed = False

    def _writer_for(self, name: str, conn):
        def write(data: bytes) -> None:
            if self.closed:
                return
            now = self.node.get_clock().now().nanoseconds if self.use_sim_time else time.time_ns()
            self.writer.write(conn, now, data)
            self.counts[name] += 1

        return write

    def publishers(self) -> dict[str, int]:
        return {s.topic_name: self.node.count_publishers(s.topic_name) for s in self.subs}

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.writer.close()


def camera_type_of(node, executor, topic: str, wait: float = 2.0) -> str | None:
    """The type published on ``topic`` in the running graph, if any (waits for discovery)."""
    from live_ros.ros.tools import spin_for

    found: list[str] = []

    def look() -> bool:
        for name, types in node.get_topic_names_and_types():
            if name == topic and types:
                found.append(types[0])
                return True
        return False

    spin_for(executor, wait, look)
    return found[0] if found else None


def main(args) -> int:
    from live_ros.ros.tools import private_node, spin_for

    stop = {"now": False}

    def on_signal(signum, frame):
        stop["now"] = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    out = Path(args.out)
    try:
        with private_node(f"live_ros_record_{os.getpid()}") as (node, executor):
            if args.use_sim_time:
                from rclpy.parameter import Parameter

                node.set_parameters([Parameter("use_sim_time", Parameter.Type.BOOL, True)])
            camera = None if args.no_camera else args.camera_topic
            ctype = COMPRESSED if args.compressed or (camera or "").endswith("/compressed") else None
            if camera and ctype is None:
                seen = camera_type_of(node, executor, camera)
                ctype = seen if seen in (IMAGE, COMPRESSED) else IMAGE
            topics = topics_for(args.namespace, camera, ctype or IMAGE, not args.no_tokens, args.status)
            rec = Recorder(node, out, topics, camera_qos=args.camera_qos, use_sim_time=args.use_sim_time)
            try:
                print(
                    f"recording {len(topics)} topics to {out}: " + ", ".join(f"{n} ({t})" for n, t in topics),
                    flush=True,
                )
                spin_for(executor, 1.0, lambda: stop["now"])
                print("publishers: " + ", ".join(f"{t} {n}" for t, n in rec.publishers().items()), flush=True)
                t0 = time.monotonic()
                while not stop["now"] and not (args.duration and time.monotonic() - t0 >= args.duration):
                    executor.spin_once(timeout_sec=0.1)
            finally:
                rec.close()
    except BagError as err:
        print(f"live-ros record: {err}", file=sys.stderr)
        return 1
    print(f"wrote {out}: " + ", ".join(f"{n} {c}" for n, c in rec.counts.items()), flush=True)
    return 0
