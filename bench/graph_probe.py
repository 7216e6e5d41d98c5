"""The bench's side of the ROS 2 graph (bench/bench_graph.py, bench/bench_faults.py): the
camera frames of a video as prepared Image messages (:class:`Video`), the bench's rclpy
node (:class:`Probe`: the camera publisher, the receivers of decisions, responses and
status, the parameter and query clients), and starting the nodes from the package's launch
file, waiting until they are active and until an image makes it through the graph."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NODES = ("camera_subscriber", "frame_encoder", "live_llm")


def set_ros_env() -> None:
    """Our own domain and localhost discovery unless the caller chose (before rclpy starts)."""
    os.environ.setdefault("ROS_DOMAIN_ID", "42")
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")


# -- the camera frames -------------------------------------------------------------------------
def load_video(path: Path, size: str):
    """(list of rgb8 bytes, width, height, fps) of every frame of the video, resized if asked."""
    import av

    width = height = None
    if size:
        width, height = (int(x) for x in size.lower().split("x"))
    frames = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or 10)
        for frame in container.decode(stream):
            if width:
                frame = frame.reformat(width=width, height=height)
            arr = frame.to_ndarray(format="rgb24")
            frames.append(arr.tobytes())
    return frames, arr.shape[1], arr.shape[0], fps


class Video:
    """Prepared Image messages (one per video frame); the frame shown at a moment is the
    video's frame at that moment (looping), whatever the camera rate."""

    def __init__(self, path: Path, size: str):
        from sensor_msgs.msg import Image

        data, self.width, self.height, self.fps = load_video(path, size)
        self.msgs = []
        while data:
            msg = Image(height=self.height, width=self.width, encoding="rgb8", is_bigendian=0, step=self.width * 3)
            msg.data = data.pop(0)
            msg.header.frame_id = "bench_camera"
            self.msgs.append(msg)
        self.t0 = time.monotonic()

    @property
    def nbytes(self) -> int:
        return self.width * self.height * 3

    def now(self):
        return self.msgs[int((time.monotonic() - self.t0) * self.fps) % len(self.msgs)]


# -- the bench's node: camera, receivers, parameter and query clients -----------------------------
def stamp_key(seconds: float) -> int:
    """Stamps are multiples of 10 us: the key survives the float round trip in live_llm."""
    return int(round(seconds * 1e5))


class Probe:
    def __init__(self, namespace: str, model_fps: float, camera_qos: str = "sensor_data"):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile
        from sensor_msgs.msg import Image

        from live_ros.model.frames import FrameSampler
        from live_ros.msg import Decision, FrameTokens, Response, Status
        from live_ros.ros import qos

        self.ns = "/" + namespace.strip("/") if namespace.strip("/") else ""
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(f"live_ros_bench_graph_{os.getpid()}", context=self.context)
        self.clock = self.node.get_clock()
        self.lock = threading.Lock()
        self.sampler = FrameSampler(model_fps)
        self.published: list[tuple[int, str, bool, int]] = []  # (key, phase, sampled, stamp ns)
        self.expected: dict[int, str] = {}  # key of each sampled stamp -> phase
        self.decisions: dict[int, tuple[float, object]] = {}  # key -> (receive time, Decision)
        self.last_decision = 0.0
        self.responses: list[tuple[float, object]] = []
        self.status: dict[str, tuple[float, object]] = {}
        self.status_log: list[tuple[float, object]] = []
        self.samples: dict[str, object] = {}
        self.clients: dict[str, object] = {}
        self.camera = self.node.create_publisher(Image, "/camera/image_raw", qos.camera(camera_qos))
        st = qos.status()
        self.node.create_subscription(Decision, f"{self.ns}/decision", self._on_decision, qos.decisions())
        self.node.create_subscription(Response, f"{self.ns}/response", self._on_response, qos.responses())
        self.node.create_subscription(
            Status,
            f"{self.ns}/status",
            self._on_status,
            QoSProfile(history=st.history, depth=50, reliability=st.reliability),
        )
        # one message of each inner hop, for the transport measurement (removed after warm-up)
        self.sample_subs = [
            self.node.create_subscription(
                Image, f"{self.ns}/frames", lambda m: self.samples.setdefault("frames", m), qos.frames()
            ),
            self.node.create_subscription(
                FrameTokens, f"{self.ns}/frame_tokens", lambda m: self.samples.setdefault("tokens", m), qos.frames()
            ),
        ]
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except Exception:  # shutdown while spinning
            pass

    def now(self) -> float:
        return self.clock.now().nanoseconds * 1e-9

    # receivers (executor thread)
    def _on_decision(self, msg) -> None:
        from live_ros.ros.convert import stamp_to_seconds

        t = self.now()
        with self.lock:
            self.decisions[stamp_key(stamp_to_seconds(msg.header.stamp))] = (t, msg)
            self.last_decision = time.monotonic()
        if "decision" not in self.samples:
            self.samples["decision"] = msg

    def _on_response(self, msg) -> None:
        t = self.now()
        with self.lock:
            self.responses.append((t, msg))

    def _on_status(self, msg) -> None:
        t = time.monotonic()
        with self.lock:
            self.status[msg.node] = (t, msg)
            self.status_log.append((t, msg))

    def drop_sample_subscriptions(self) -> None:
        for sub in self.sample_subs:
            self.node.destroy_subscription(sub)
        self.sample_subs = []

    # the camera
    def publish(self, msg, phase: str, stamp_ns: int | None = None) -> None:
        """Stamp (now, or the given one) and publish one image; run the sampling rule on it."""
        from builtin_interfaces.msg import Time

        from live_ros.ros.convert import stamp_to_seconds

        ns = (self.clock.now().nanoseconds if stamp_ns is None else stamp_ns) // 10_000 * 10_000
        msg.header.stamp = Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)
        seconds = stamp_to_seconds(msg.header.stamp)  # the float camera_subscriber computes
        key = stamp_key(seconds)
        sampled = self.sampler.accept(seconds)
        with self.lock:
            self.published.append((key, phase, sampled, ns))
            if sampled:
                self.expected[key] = phase
        self.camera.publish(msg)

    # parameters and queries
    def call(self, srv_type, name: str, request, timeout: float = 20.0):
        """(the clock when the request was sent, the reply); the client is made (and its
        service found) once, so the time sent is the request's own."""
        client = self.clients.get(name) or self.clients.setdefault(name, self.node.create_client(srv_type, name))
        deadline = time.monotonic() + timeout
        while not client.service_is_ready():
            if time.monotonic() > deadline:
                raise TimeoutError(f"no service {name} within {timeout:g} s")
            time.sleep(0.05)
        sent = self.now()
        future = client.call_async(request)
        while not future.done():
            if time.monotonic() > deadline:
                raise TimeoutError(f"service {name} did not reply within {timeout:g} s")
            time.sleep(0.005)
        return sent, future.result()

    def set_params(self, node: str, values: dict) -> None:
        from rcl_interfaces.msg import Parameter
        from rcl_interfaces.srv import SetParameters

        from live_ros.ros.tools import parameter_value

        params = []
        for name, value in values.items():
            pv = parameter_value(value if isinstance(value, (bool, int)) else float(value))
            params.append(Parameter(name=name, value=pv))
        _, reply = self.call(
            SetParameters, f"{self.ns}/{node}/set_parameters", SetParameters.Request(parameters=params)
        )
        refused = [f"{p.name}: {r.reason}" for p, r in zip(params, reply.results) if not r.successful]
        if refused:
            raise RuntimeError(f"{node} refused parameters: {'; '.join(refused)}")

    def shutdown(self) -> None:
        import rclpy

        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)
        self.thread.join(timeout=2.0)


# -- the graph ----------------------------------------------------------------------------------
def start_graph(args, log_path: str):
    from live_ros.launcher import Supervisor, parse, resolve_launch_file

    nodes, _ = parse(resolve_launch_file("live_ros.launch.xml"), {"preset": args.preset, "namespace": args.namespace})
    nodes = [n for n in nodes if n.name in NODES]
    for spec in nodes:
        if spec.name == "camera_subscriber":
            spec.params.append(("fps", str(args.model_fps)))
            spec.params.append(("qos", args.camera_qos))
            if args.camera_depth:
                spec.params.append(("qos_depth", str(args.camera_depth)))
    log = open(log_path, "w")  # noqa: SIM115 - closed in run()
    supervisor = Supervisor(nodes, out=log)
    supervisor.start()
    return supervisor, log


def pids(supervisor) -> dict[str, int]:
    return {name: proc.pid for name, proc in supervisor.procs.items()}


def wait_active(probe: Probe, supervisor, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with probe.lock:
            states = {n: probe.status[n][1].state for n in NODES if n in probe.status}
        if all(states.get(n) == "active" for n in NODES):
            return
        dead = [n for n, p in supervisor.procs.items() if p.poll() is not None]
        if dead and not any(s.respawn for s in supervisor.nodes):
            raise RuntimeError(f"nodes exited: {dead}")
        time.sleep(0.2)
    raise RuntimeError(f"the nodes did not become active within {timeout:g} s: {states}")


def fresh_status(probe: Probe, timeout: float = 5.0) -> dict:
    """Wait until every node has reported after now; the latest Status of each."""
    mark = time.monotonic()
    deadline = mark + timeout
    while time.monotonic() < deadline:
        with probe.lock:
            if all(n in probe.status and probe.status[n][0] > mark for n in NODES):
                break
        time.sleep(0.05)
    with probe.lock:
        return {n: probe.status[n][1] for n in NODES if n in probe.status}


def discover(probe: Probe, video: Video, timeout: float) -> int:
    """From the graph's start (a camera streams while the models load): one image a second on
    an exact 1 s grid of stamps until one comes back as a Decision, which proves discovery in
    every direction. Every image that arrives is sampled (1 s apart), and the sampling grid's
    phase is this grid's whichever image arrived first, so the bench's FrameSampler (which saw
    them all) and camera_subscriber's agree from here on."""
    base = probe.clock.now().nanoseconds // 10_000 * 10_000 + 200_000_000
    deadline = time.monotonic() + timeout
    k = 0
    while time.monotonic() < deadline:
        stamp = base + k * 1_000_000_000
        while probe.clock.now().nanoseconds < stamp:
            time.sleep(0.002)
        probe.publish(video.now(), "warmup", stamp)
        k += 1
        with probe.lock:
            if any(probe.expected.get(key) == "warmup" for key in probe.decisions):
                break
    else:
        with probe.lock:
            states = {n: (m.state, m.last_error) for n, (_, m) in probe.status.items()}
        raise RuntimeError(
            f"no image made it through the graph to live/decision in {timeout:g} s; nodes: "
            f"{states or 'no status'} (see the nodes' log)"
        )
    while probe.clock.now().nanoseconds < stamp + 1_000_000_000:  # off the grid with a gap of 2 ticks
        time.sleep(0.005)
    return k
