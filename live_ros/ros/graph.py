"""The graph a replay plays into: started from the package's launch file (the way
``live-ros launch`` runs it, with ``use_sim_time``), or an already running one; and
reading / setting its nodes' parameters through their parameter services."""

from __future__ import annotations

import collections
import threading
import time
from pathlib import Path

from live_ros.launcher import LaunchError, Supervisor, parse, resolve_launch_file

MODEL_NODES = ("camera_subscriber", "frame_encoder", "live_llm")


class GraphError(RuntimeError):
    """The graph could not be started, reached or configured; the text says why."""


class _Log:
    """Supervisor output: to a file (if any) and the last lines in memory (for errors)."""

    def __init__(self, path: Path | None):
        self.file = open(path, "w") if path else None  # noqa: SIM115 - closed in close()
        self.tail: collections.deque[str] = collections.deque(maxlen=60)

    def write(self, text: str) -> None:
        self.tail.extend(line for line in text.splitlines() if line.strip())
        if self.file:
            self.file.write(text)

    def flush(self) -> None:
        if self.file:
            self.file.flush()

    def close(self) -> None:
        if self.file:
            self.file.close()


class OwnGraph:
    """camera_subscriber, frame_encoder and live_llm from a launch file, as child processes,
    with ``use_sim_time`` and the camera settings a replay needs. ``sets``: (node, name,
    value) parameter overrides, as ``<param>`` of that node."""

    def __init__(
        self,
        *,
        launch_file: str = "live_ros.launch.xml",
        namespace: str = "live",
        preset: str = "embedded",
        camera_topic: str = "/camera/image_raw",
        compressed: bool = False,
        fps: float | None = None,
        camera_qos: str = "reliable",
        params_file: str | None = None,
        sets=(),
        log: Path | None = None,
    ):
        overrides = {
            "use_sim_time": "true",
            "use_video": "false",
            "camera_topic": camera_topic,
            "preset": preset,
            "namespace": namespace,
        }
        if params_file:
            overrides["params_file"] = str(params_file)
        try:
            nodes, _ = parse(resolve_launch_file(launch_file), overrides)
        except LaunchError as err:
            raise GraphError(str(err)) from err
        by_name = {n.name: n for n in nodes}
        missing = [n for n in MODEL_NODES if n not in by_name]
        if missing:
            raise GraphError(
                f"{launch_file} does not start {', '.join(missing)}: replay-eval needs {', '.join(MODEL_NODES)}"
            )
        by_name["camera_subscriber"].params += [
            ("qos", camera_qos),
            ("qos_depth", "100"),
            ("compressed", "true" if compressed else "false"),
        ]
        if fps:  # else the checkpoint's
            by_name["camera_subscriber"].params.append(("fps", repr(float(fps))))
        for node, name, value in sets:
            if node not in by_name:
                raise GraphError(
                    f"--set {node}.{name}: no node '{node}' in {launch_file} (nodes: {', '.join(by_name)})"
                )
            by_name[node].params.append((name, value))
        self.nodes = [n for n in nodes if n.name in MODEL_NODES]
        self.log = _Log(log)
        self.supervisor = Supervisor(self.nodes, out=self.log)

    def start(self) -> None:
        self.supervisor.start()

    def tail(self, n: int = 25) -> str:
        return "\n".join(list(self.log.tail)[-n:])

    def stop(self, keep_clock=None) -> None:
        """Stop every node. ``keep_clock()`` is called every 50 ms meanwhile: nodes on sim
        time only notice a signal when something wakes them, and /clock does."""
        done = threading.Event()
        own = None
        if keep_clock is None:
            own = _ClockKicker()
            keep_clock = own.kick
        if keep_clock is not None:

            def tick():
                while not done.is_set():
                    try:
                        keep_clock()
                    except Exception:  # noqa: BLE001 - the context may be shutting down
                        return
                    time.sleep(0.05)

            threading.Thread(target=tick, daemon=True).start()
        try:
            self.supervisor.stop()
        finally:
            done.set()
            self.log.close()
            if own is not None:
                own.close()


class _ClockKicker:
    """A /clock publisher in a context of its own (for stopping nodes on sim time)."""

    def __init__(self):
        import rclpy
        from rosgraph_msgs.msg import Clock

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(f"live_ros_clock_{id(self)}", context=self.context)
        self.pub = self.node.create_publisher(Clock, "/clock", 10)
        self.Clock = Clock
        self.t = time.time_ns()

    def kick(self) -> None:
        from builtin_interfaces.msg import Time

        self.t += 50_000_000
        self.pub.publish(self.Clock(clock=Time(sec=self.t // 1_000_000_000, nanosec=self.t % 1_000_000_000)))

    def close(self) -> None:
        import rclpy

        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


def _value(pv):
    from live_ros.ros.tools import _parameter_value

    return _parameter_value(pv)


def _call(node, executor, srv_type, name: str, request, timeout: float):
    from live_ros.ros.tools import spin_for

    client = node.create_client(srv_type, name)
    try:
        if not spin_for(executor, timeout, client.service_is_ready):
            raise GraphError(
                f"no service {name} within {timeout:g} s: is the graph running (live-ros status), with "
                f"the same ROS_DOMAIN_ID and namespace?"
            )
        future = client.call_async(request)
        if not spin_for(executor, timeout, future.done):
            raise GraphError(f"{name} did not reply within {timeout:g} s")
        return future.result()
    finally:
        node.destroy_client(client)


def get_params(node, executor, target: str, names: list[str], timeout: float = 10.0) -> dict:
    """{name: value} of node ``target`` (full name, e.g. /live/live_llm)."""
    from rcl_interfaces.srv import GetParameters

    reply = _call(
        node, executor, GetParameters, f"{target}/get_parameters", GetParameters.Request(names=names), timeout
    )
    return {n: _value(v) for n, v in zip(names, reply.values)}


def set_param(node, executor, target: str, name: str, text: str, timeout: float = 10.0) -> None:
    """Set one parameter of a running node from YAML text ("0.8", "true", "words")."""
    import yaml
    from rcl_interfaces.msg import Parameter
    from rcl_interfaces.srv import SetParameters

    from live_ros.ros.tools import parameter_value

    raw = yaml.safe_load(text) if text.strip() else ""
    current = get_params(node, executor, target, [name], timeout).get(name)
    if isinstance(current, float) and isinstance(raw, int) and not isinstance(raw, bool):
        raw = float(raw)  # "1" for a double parameter
    pv = parameter_value(raw if isinstance(raw, (bool, int, float)) else str(text))
    reply = _call(
        node,
        executor,
        SetParameters,
        f"{target}/set_parameters",
        SetParameters.Request(parameters=[Parameter(name=name, value=pv)]),
        timeout,
    )
    if not reply.results[0].successful:
        raise GraphError(f"{target} refused {name}={text}: {reply.results[0].reason}")
