"""ROS transport of the graph bench (bench/bench_graph.py): the one-way latency of each
hop's message (the camera Image, the letterboxed live/frames Image, the FrameTokens and the
Decision back), as ping-pong / 2 with an echo process (``bench_graph.py --job echo``) on
the same types, sizes and QoS, while the camera feeds the graph."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from graph_figures import stats
from graph_phases import drain, play
from graph_probe import Probe, Video

BENCH_GRAPH = Path(__file__).resolve().parent / "bench_graph.py"
ECHO_READY = "BENCH_ECHO_READY"
# the hops of one model frame into live_llm, and the Decision back to the bench
HOPS = (
    ("camera", "camera -> camera_subscriber"),
    ("frames", "live/frames -> frame_encoder"),
    ("tokens", "live/frame_tokens -> live_llm"),
    ("decision", "live/decision -> bench (not in the 3 hops)"),
)


def transport_messages(probe: Probe, video: Video, preset: str) -> dict:
    """One message per hop, of the graph's own types and sizes (captured from the graph when
    possible)."""
    import numpy as np

    from live_ros.model import presets
    from live_ros.msg import Decision
    from live_ros.ros.convert import rgb_to_image, tokens_to_msg

    size = presets.frame_size(preset)
    frames = probe.samples.get("frames") or rgb_to_image(np.zeros((size, size, 3), np.uint8))
    tokens = probe.samples.get("tokens")
    if tokens is None:
        from std_msgs.msg import Header

        tokens = tokens_to_msg(np.zeros((10, 2560), np.float32), Header(), 0, "synthetic")  # the embedded shape
    camera = copy.deepcopy(video.msgs[0])  # the camera thread stamps the originals meanwhile
    return {
        "camera": camera,
        "frames": frames,
        "tokens": tokens,
        "decision": probe.samples.get("decision") or Decision(),
    }


def describe(kind: str, msg) -> tuple[str, int]:
    """The message in words and its serialized size in bytes."""
    from rclpy.serialization import serialize_message

    size = len(serialize_message(msg))
    if kind in ("camera", "frames"):
        return f"Image {msg.width}x{msg.height} {msg.encoding}", size
    if kind == "tokens":
        return f"FrameTokens {msg.num_tokens}x{msg.dim} float32", size
    return "Decision", size


def qos_of(kind: str):
    from live_ros.ros import qos

    return {
        "camera": qos.camera("sensor_data"),
        "frames": qos.frames(),
        "tokens": qos.frames(),
        "decision": qos.decisions(),
    }[kind]


def type_of(kind: str):
    from sensor_msgs.msg import Image

    from live_ros.msg import Decision, FrameTokens

    return {"camera": Image, "frames": Image, "tokens": FrameTokens, "decision": Decision}[kind]


def run_echo() -> int:
    """The far side of the ping-pong: every /bench_graph/ping/<kind> straight back on .../pong/<kind>,
    from the executor the nodes use (live_ros.nodes.base.main: single-threaded)."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    rclpy.init()
    node = rclpy.create_node(f"live_ros_bench_echo_{os.getpid()}")
    for kind, _ in HOPS:
        pub = node.create_publisher(type_of(kind), f"/bench_graph/pong/{kind}", qos_of(kind))
        node.create_subscription(type_of(kind), f"/bench_graph/ping/{kind}", pub.publish, qos_of(kind))
    executor = SingleThreadedExecutor()
    executor.add_node(node)

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    print(ECHO_READY, flush=True)
    try:
        executor.spin()
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


def ping_pong(probe: Probe, kind: str, msg, n: int, gap: float = 0.02) -> dict:
    """RTT / 2 of one message type: one ping at a time (the first ones until a pong comes back
    are discovery, not counted); lost pings (best effort) time out after 1 s."""
    pong = threading.Event()
    got: list[float] = []

    def on_pong(_m) -> None:
        got.append(time.perf_counter())
        pong.set()

    pub = probe.node.create_publisher(type_of(kind), f"/bench_graph/ping/{kind}", qos_of(kind))
    sub = probe.node.create_subscription(type_of(kind), f"/bench_graph/pong/{kind}", on_pong, qos_of(kind))
    try:
        deadline = time.monotonic() + 30
        while not got and time.monotonic() < deadline:  # discovery, both ways
            pong.clear()
            pub.publish(msg)
            pong.wait(0.2)
        time.sleep(0.2)
        one_way, lost = [], 0
        for _ in range(n):
            pong.clear()
            got.clear()
            t0 = time.perf_counter()
            pub.publish(msg)
            if pong.wait(1.0) and got:
                one_way.append((got[0] - t0) / 2)
            else:
                lost += 1
            time.sleep(gap)
    finally:
        probe.node.destroy_subscription(sub)
        probe.node.destroy_publisher(pub)
    return {**stats(one_way), "lost": lost}


def transport(probe: Probe, video: Video, args) -> dict:
    """Each hop's one-way latency while the camera feeds the graph at --camera-fps."""
    msgs = transport_messages(probe, video, args.preset)
    echo = subprocess.Popen(
        [sys.executable, str(BENCH_GRAPH), "--job", "echo"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    stop = threading.Event()
    camera = threading.Thread(target=play, args=(probe, video, args.camera_fps, 1e9, "transport", stop), daemon=True)
    try:
        line = echo.stdout.readline()
        if ECHO_READY not in line:
            raise RuntimeError(f"the echo process did not start: {line}{echo.stdout.read()[-2000:]}")
        camera.start()
        hops = {}
        for kind, label in HOPS:
            what, nbytes = describe(kind, msgs[kind])
            hops[kind] = {
                "hop": label,
                "message": what,
                "bytes": nbytes,
                **ping_pong(probe, kind, msgs[kind], args.pings),
            }
    finally:
        stop.set()
        if camera.is_alive():
            camera.join()
        echo.terminate()
        try:
            echo.wait(5)
        except subprocess.TimeoutExpired:
            echo.kill()
            echo.wait()
    drain(probe, "transport")
    return hops
