"""What every live_ros node shares: declared parameters (one table per node, each with a
description and a range), lifecycle with autostart, ``live/status`` about once a second,
``last_error`` for every refusal, ``num_threads``, and a ``main`` that runs the node
until Ctrl-C / SIGTERM.

Style after ros2/demos lifecycle_py, with the heavy part apart: ``load`` reads the model
(plain Python / torch, no ROS entities), ``configure`` creates the publishers, activate
starts processing, deactivate stops it, cleanup frees the model. With autostart, ``load``
runs in a thread of its own while the executor keeps serving (parameter services, status
with state ``loading``, ``live/query``'s refusals), so every service answers at once at
every moment of the node's life; when it is done the executor thread configures and
activates. A failed load leaves the node up, ``unconfigured``, with last_error saying why.
A manual ``configure`` (autostart false) loads on the executor thread, as a lifecycle
transition does, and publishes ``loading`` first.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import rclpy
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType, SetParametersResult
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.subscription import Subscription

from live_ros import runtime
from live_ros.msg import Status
from live_ros.ros import qos

_TYPES = {
    bool: ParameterType.PARAMETER_BOOL,
    int: ParameterType.PARAMETER_INTEGER,
    float: ParameterType.PARAMETER_DOUBLE,
    str: ParameterType.PARAMETER_STRING,
}


@dataclass(frozen=True)
class Param:
    """One declared parameter: the README's reference table is checked against these."""

    name: str
    default: Any
    description: str
    range: tuple | None = None  # (low, high) for numbers
    choices: tuple | None = None  # allowed strings
    dynamic: bool = False  # may change while running

    def descriptor(self) -> ParameterDescriptor:
        text = self.description
        if self.choices:
            text += f" One of: {', '.join(self.choices)}."
        d = ParameterDescriptor(
            name=self.name, type=_TYPES[type(self.default)], description=text, read_only=not self.dynamic
        )
        if self.range and isinstance(self.default, float):
            d.floating_point_range = [
                FloatingPointRange(from_value=float(self.range[0]), to_value=float(self.range[1]), step=0.0)
            ]
        elif self.range and isinstance(self.default, int) and not isinstance(self.default, bool):
            d.integer_range = [IntegerRange(from_value=int(self.range[0]), to_value=int(self.range[1]), step=1)]
        return d

    def check(self, value) -> str | None:
        """Why `value` is refused, or None."""
        if self.choices and value not in self.choices:
            return f"{self.name}={value!r} is not one of {', '.join(self.choices)}"
        if self.range and not isinstance(value, (bool, str)) and not (self.range[0] <= value <= self.range[1]):
            return f"{self.name}={value} is outside [{self.range[0]}, {self.range[1]}]"
        return None


COMMON = (
    Param("num_threads", 1, "torch / decoding threads of this node (the whole graph fits 2 cores).", (1, 64)),
    Param("autostart", True, "Configure and activate at start (false: wait for lifecycle transitions)."),
    Param("status_period", 1.0, "Seconds between live/status reports.", (0.1, 60.0)),
)


# Declared by every node that takes stamped frames (camera_subscriber, live_llm): one rule,
# live_ros.model.frames.stamp_ahead_error.
MAX_STAMP_AHEAD = Param(
    "max_stamp_ahead",
    1.0,
    "Refuse frames stamped more than this many seconds after this node's "
    "clock (sim time on replays), so one bad stamp cannot restart sampling or block the real "
    "frames after it; past stamps are fine (0: no check).",
    (0.0, 1_000_000.0),
)


class LiveNode(LifecycleNode):
    """Base of every live_ros node. Subclasses set PARAMS and override the on_* hooks
    (``configure``, ``activate``, ``deactivate``, ``cleanup``) and ``status_fields``."""

    PARAMS: tuple[Param, ...] = ()

    def __init__(self, name: str, **kwargs):
        super().__init__(name, **kwargs)
        self.params = {p.name: p for p in COMMON + self.PARAMS}
        for p in self.params.values():
            self.declare_parameter(p.name, p.default, p.descriptor())
        self.add_pre_set_parameters_callback(self._pre_set_parameters)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.state = "unconfigured"
        self.last_error = ""
        self._lock = threading.Lock()
        self._status_pub = self.create_publisher(Status, "status", qos.status())
        self._status_timer = self.create_timer(self.p("status_period"), self._publish_status)
        self.peers: dict[str, tuple[float, str]] = {}  # other nodes: (monotonic time of report, state)
        self._peers_sub: Subscription | None = None
        self._other_peer_subs: dict[str, Subscription] = {}
        self._loaded = False  # load() done (and not undone by cleanup)
        self._load_error = ""
        self._load_started = 0.0
        self._load_thread: threading.Thread | None = None
        self._load_done = self.create_guard_condition(self._on_load_done)
        if self.p("autostart"):
            self._autostart = self.create_timer(0.0, self._do_autostart)

    # -- parameters ---------------------------------------------------------------------
    def p(self, name: str):
        return self.get_parameter(name).value

    def _pre_set_parameters(self, params):
        """rclpy refuses out-of-range and read-only values before the on-set callback: record
        why in last_error here, where every attempt passes."""
        for param in params:
            spec = self.params.get(param.name)
            if spec is None:
                continue
            problem = spec.check(param.value) or (
                None
                if spec.dynamic
                else f"{param.name} cannot change while running (read-only); set it in the parameter file"
            )
            if problem:
                self.report_error(f"{self.get_name()}: parameter refused: {problem}", log=False)
        return params

    def _on_set_parameters(self, params) -> SetParametersResult:
        for param in params:
            spec = self.params.get(param.name)
            if spec is None:
                continue
            problem = spec.check(param.value)
            if problem:
                self.report_error(f"parameter refused: {problem}", log=False)
                return SetParametersResult(successful=False, reason=problem)
        for param in params:
            if param.name in self.params:
                self.on_parameter(param.name, param.value)
        return SetParametersResult(successful=True)

    def on_parameter(self, name: str, value) -> None:
        """A dynamic parameter changed (already validated)."""

    # -- errors and status ---------------------------------------------------------------
    def report_error(self, text: str, log: bool = True, once_key: str | None = None) -> None:
        """Record a refusal or anomaly for Status.last_error (what, where, how to fix)."""
        with self._lock:
            repeated = text == self.last_error
            self.last_error = text
        if log and not repeated:
            self.get_logger().warning(text)

    def status_fields(self) -> dict:
        """fps, lag, cache_tokens, frames_in, frames_dropped, queries_accepted, queries_answered."""
        return {}

    def watch_peers(self, namespaces: tuple[str, ...] = ()) -> None:
        """Follow the other nodes' ``live/status`` into ``self.peers`` (once; idempotent):
        this node's namespace under the peers' names, and each absolute namespace of
        ``namespaces`` (e.g. ``/live`` for a camera's nodes in ``/live/cam2``) under
        ``<namespace>/<name>``."""
        if self._peers_sub is None:
            self._peers_sub = self.create_subscription(Status, "status", self._on_peer_status, qos.status_watch())
        for ns in namespaces:
            ns = "/" + ns.strip("/")
            if ns not in self._other_peer_subs:
                self._other_peer_subs[ns] = self.create_subscription(
                    Status, f"{ns}/status", lambda msg, ns=ns: self._on_peer_status(msg, ns), qos.status_watch()
                )

    def _on_peer_status(self, msg: Status, namespace: str = "") -> None:
        if namespace:
            self.peers[f"{namespace}/{msg.node}"] = (time.monotonic(), msg.state)
        elif msg.node != self.get_name():
            self.peers[msg.node] = (time.monotonic(), msg.state)

    def _publish_status(self) -> None:
        msg = Status(node=self.get_name(), state=self.state, last_error=self.last_error)
        msg.header.stamp = self.get_clock().now().to_msg()
        for key, value in self.status_fields().items():
            setattr(msg, key, type(getattr(msg, key))(value))
        self._status_pub.publish(msg)

    # -- lifecycle -----------------------------------------------------------------------
    def _do_autostart(self) -> None:
        self._autostart.cancel()
        self.destroy_timer(self._autostart)
        if type(self).load is LiveNode.load:  # nothing heavy to load: configure and activate now
            self._loaded = True
            self._configure_and_activate()
            return
        self.state = "loading"
        self._load_started = time.monotonic()
        self._load_error = ""
        self._publish_status()  # "loading" from the first second, not after the model is in
        self._load_thread = threading.Thread(
            target=self._load_in_background, name=f"{self.get_name()}_load", daemon=True
        )
        self._load_thread.start()

    def _load_in_background(self) -> None:
        """The load thread: no ROS entity is created here; the executor thread is woken when done."""
        try:
            self._apply_threads()
            self.load()
            self._loaded = True
        except Exception as err:  # reported by _on_load_done, on the executor thread
            self._load_error = str(err) or type(err).__name__
        try:
            self._load_done.trigger()
        except Exception:  # the node was destroyed while loading (shut down): nothing to finish
            pass

    def _on_load_done(self) -> None:
        if self._load_thread is None:
            return
        self._load_thread = None
        if not self._loaded:
            self.state = "unconfigured"
            self.report_error(
                f"{self.get_name()}: loading failed: {self._load_error}. The node stays up, "
                f"unconfigured: fix that, then configure it again (ros2 lifecycle set "
                f"{self.get_fully_qualified_name()} configure) or restart it"
            )
            return
        self.get_logger().info(f"loaded in {time.monotonic() - self._load_started:.1f} s")
        self._configure_and_activate()

    def _configure_and_activate(self) -> None:
        if self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
            self.trigger_activate()

    @property
    def loading_seconds(self) -> float:
        """Seconds spent loading so far (0 when not loading)."""
        return time.monotonic() - self._load_started if self.state == "loading" else 0.0

    def _apply_threads(self) -> None:
        try:
            import torch

            torch.set_num_threads(self.p("num_threads"))
        except ImportError:
            pass

    def _transition(self, name: str, hook, new_state: str) -> TransitionCallbackReturn:
        try:
            hook()
        except Exception as err:  # a failed transition must say why and keep the node alive
            self.report_error(f"{name} failed: {err}")
            return TransitionCallbackReturn.FAILURE
        self.state = new_state
        self.get_logger().info(f"{name}: now {new_state}")
        return TransitionCallbackReturn.SUCCESS

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self._load_thread is not None:
            self.report_error(
                f"{self.get_name()}: configure refused: the node is still loading in the background "
                f"(autostart) and configures itself when done; watch live/status"
            )
            return TransitionCallbackReturn.FAILURE
        self._apply_threads()
        if not self._loaded:  # a manual configure, or one after cleanup or a failed load
            self.state = "loading"
            self._load_started = time.monotonic()
            self._load_error = ""
            self._publish_status()
            try:
                self.load()
            except Exception as err:  # a failed transition must say why and keep the node alive
                self._load_error = str(err) or type(err).__name__
                self.state = "unconfigured"
                self.report_error(f"configure failed: loading: {err}")
                return TransitionCallbackReturn.FAILURE
            self._loaded = True
        result = self._transition("configure", self.configure, "inactive")
        if result != TransitionCallbackReturn.SUCCESS:
            self.state = "unconfigured"
        return result

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = self._transition("activate", self.activate, "active")
        return super().on_activate(state) if result == TransitionCallbackReturn.SUCCESS else result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = self._transition("deactivate", self.deactivate, "inactive")
        return super().on_deactivate(state) if result == TransitionCallbackReturn.SUCCESS else result

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = self._transition("cleanup", self.cleanup, "unconfigured")
        if result == TransitionCallbackReturn.SUCCESS and type(self).load is not LiveNode.load:
            self._loaded = False  # cleanup freed what load read: a later configure loads again
        return result

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self.deactivate()
            self.cleanup()
        except Exception:  # shutting down anyway
            pass
        self.state = "finalized"
        return TransitionCallbackReturn.SUCCESS

    def load(self) -> None:
        """Read the heavy part (models, files) into attributes: plain Python / torch, no ROS
        entities (with autostart it runs in a thread of its own while the node serves)."""

    def configure(self) -> None:
        """Create the publishers (on the executor thread, after load)."""

    def activate(self) -> None:
        """Start processing."""

    def deactivate(self) -> None:
        """Stop processing (keep what load and configure made)."""

    def cleanup(self) -> None:
        """Free what load and configure made."""

    @property
    def active(self) -> bool:
        return self.state == "active"


def node_help(node_class) -> str:
    """What ``<node> --help`` prints: the node's purpose and its parameters."""
    doc = (sys.modules[node_class.__module__].__doc__ or "").strip()
    lines = [doc, "", "usage: <node> [--ros-args -p name:=value ... --params-file FILE -r from:=to]", "", "parameters:"]
    for p in node_class.PARAMS + COMMON:
        extra = f" [{'/'.join(p.choices)}]" if p.choices else (f" [{p.range[0]} .. {p.range[1]}]" if p.range else "")
        lines.append(f"  {p.name} (default {p.default!r}{extra}{', dynamic' if p.dynamic else ''}): {p.description}")
    return "\n".join(lines)


def main(node_class, argv: list[str] | None = None) -> int:
    """Run one node until Ctrl-C or SIGTERM (both end it cleanly)."""
    args = sys.argv if argv is None else argv
    own = args[1 : args.index("--ros-args")] if "--ros-args" in args else args[1:]
    if "-h" in own or "--help" in own:
        print(node_help(node_class))
        return 0
    runtime.prepare()
    rclpy.init(args=args)
    node = node_class()
    # one thread: callbacks only enqueue or convert (the model runs in its own thread); with rclpy's
    # MultiThreadedExecutor camera_subscriber spent 40-70 % of a core at 30 fps in the executor's
    # task bookkeeping (py-spy) and overflowed its queue
    executor = SingleThreadedExecutor()
    executor.add_node(node)

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)  # also when started with SIGINT ignored (a background shell)
    try:
        # spin_once with a timeout, not spin(): Python runs signal handlers only between
        # bytecodes, and on sim time with no /clock yet nothing would ever wake spin() up.
        while rclpy.ok():
            executor.spin_once(timeout_sec=0.5)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        executor.shutdown(timeout_sec=1.0)
        try:
            node.on_shutdown(None)
        except Exception:
            pass
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0
