"""replay-eval's player: a bag's camera images into the running graph, with /clock.

- **Warm-up**: copies of the bag's first image, marked ``frame_id =
  live_ros/replay_warmup``, are published until a ``live/decision`` comes back (the whole
  chain is connected and active); then ``live/reset`` starts a new stream.
  Into a graph replay-eval started itself (``precede``), they are stamped *before* the
  bag's first image, on its sampling grid (whole ticks of 1/fps back from it, at most
  ``WARMUP_SLOTS`` of them, never below ``MIN_STAMP``): camera_subscriber's grid then
  runs on into the bag's exactly, and no stamp goes backwards. Into an attached graph
  (whose sampling grid is unknown), or when the slots run out or the bag starts too close
  to 0, they are stamped after the bag's last stamp: the bag's first image then goes
  backwards in time, so camera_subscriber restarts its grid exactly there (and says so).
- **/clock** is never 0 or negative (a bag whose times start near 0: rclpy refuses a
  negative time and every node would die on it): at least ``MIN_CLOCK_NS``.
- **Lockstep** (default): the images in bag order with their own stamps (gaps and
  reordered stamps as they are), /clock = the image's log time before each; after an image
  the sampling rule says live_llm will take, wait for its decision (published once the
  frame is fully handled, response included). The graph then makes the decisions it would
  make on an idle machine, whatever the load.
- **Real time**: at the bag's log timing divided by ``speed``, without waiting; /clock
  also ticks between images. What the graph could not take is counted as dropped.

Questions are asked before the first image whose video time is later than theirs; in
lockstep the player waits for the final answer before going on.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from live_ros.bags import bagio
from live_ros.bags.schedule import CameraModel, FramePlan, Question, question_slots
from live_ros.evaluation.score import Asked


class ReplayError(RuntimeError):
    """The replay could not go on; the text names the bag, the topic and what to check."""


WARMUP_SLOTS = 240  # warm-up images before the bag (one every 0.5 s: 2 minutes of waiting)
MIN_STAMP = 1.0  # seconds: the earliest warm-up stamp before a bag
MIN_CLOCK_NS = 1_000_000  # the smallest /clock published (1 ms; 0 means "no time yet" to ROS)


def warmup_stamps(first_ns: int, last_ns: int, fps: float, precede: bool):
    """Stamps (ns) of the warm-up images, in order: whole ticks before the bag's first
    image while there is room (``precede``), then after the bag's last stamp."""
    tick = int(round(1e9 / fps))
    room = max(0, (first_ns - int(MIN_STAMP * 1e9)) // tick) if precede else 0
    n = min(WARMUP_SLOTS, room)
    for k in range(n, 0, -1):
        yield first_ns - k * tick
    base = int(math.ceil(last_ns / 1e9 + 10.0)) * 1_000_000_000
    spacing = int(math.ceil(2e9 / fps))
    k = 0
    while True:
        yield base + k * spacing
        k += 1


def _key(stamp: float) -> int:
    return int(round(stamp * 1e5))  # 10 us: a stamp survives the nodes' float round trip


class StampMap:
    """stamp (seconds) -> value, found again within 10 us."""

    def __init__(self):
        self.items: dict[int, object] = {}

    def put(self, stamp: float, value) -> None:
        self.items.setdefault(_key(stamp), value)

    def get(self, stamp: float, default=None):
        k = _key(stamp)
        for kk in (k, k - 1, k + 1):
            if kk in self.items:
                return self.items[kk]
        return default


def stamp_of(header) -> float:
    return float(header.stamp.sec) + float(header.stamp.nanosec) * 1e-9


@dataclass
class PlayResult:
    plans: list[FramePlan] = field(default_factory=list)
    decisions: list = field(default_factory=list)  # (Decision, wall received)
    responses: list = field(default_factory=list)  # (Response, wall received)
    asked: list[Asked] = field(default_factory=list)
    published: StampMap = field(default_factory=StampMap)  # stamp -> wall published
    late: list[float] = field(default_factory=list)  # real time: publication behind schedule (s)


class Player:
    def __init__(
        self,
        node,
        executor,
        scan: bagio.CameraScan,
        *,
        namespace: str = "live",
        topic: str | None = None,
        camera_qos: str = "reliable",
    ):
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from rosgraph_msgs.msg import Clock
        from sensor_msgs.msg import CompressedImage, Image
        from std_srvs.srv import Trigger

        from live_ros.msg import Decision, Response
        from live_ros.ros import qos
        from live_ros.srv import Query

        self.node, self.executor, self.scan = node, executor, scan
        self.Clock, self.Query, self.Trigger = Clock, Query, Trigger
        ns = "/" + namespace.strip("/")
        self.topic = topic or scan.topic
        self.camera_qos = camera_qos
        deep = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
        self.clock_pub = node.create_publisher(
            Clock, "/clock", QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        )
        self.camera = node.create_publisher(
            CompressedImage if scan.compressed else Image, self.topic, qos.camera(camera_qos, 100)
        )
        self.phase = "idle"
        self.result = PlayResult()
        self.warm: list = []  # decisions during warm-up
        self.acked = StampMap()
        self.finals: dict[int, object] = {}  # query_id -> first final Response (replay)
        node.create_subscription(Decision, f"{ns}/decision", self._on_decision, deep)
        node.create_subscription(Response, f"{ns}/response", self._on_response, deep)
        self.query = node.create_client(Query, f"{ns}/query")
        self.reset = node.create_client(Trigger, f"{ns}/reset")
        self.where = f"bag {scan.bag}, topic {scan.topic} -> {self.topic}"
        self.check = None  # () -> str: what went wrong in the graph meanwhile ("" if nothing)

    # -- callbacks --------------------------------------------------------------------------
    def _on_decision(self, msg) -> None:
        if self.phase == "replay":
            self.result.decisions.append((msg, time.monotonic()))
            self.acked.put(stamp_of(msg.header), True)
        else:
            self.warm.append(msg)

    def _on_response(self, msg) -> None:
        if self.phase != "replay":
            return
        self.result.responses.append((msg, time.monotonic()))
        if msg.final and msg.query_id and msg.query_id not in self.finals:
            self.finals[msg.query_id] = msg

    # -- helpers ----------------------------------------------------------------------------
    def spin_until(self, condition, timeout: float, what: str, hint: str = "") -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            self.check_graph()
            if time.monotonic() > deadline:
                raise ReplayError(f"{self.where}: no {what} within {timeout:g} s" + (f"; {hint}" if hint else ""))
            self.executor.spin_once(timeout_sec=0.02)

    def check_graph(self) -> None:
        problem = self.check() if self.check is not None else ""
        if problem:
            raise ReplayError(f"{self.where}: {problem}")

    def clock(self, t_ns: int) -> None:
        from builtin_interfaces.msg import Time

        sec, nanosec = divmod(max(MIN_CLOCK_NS, int(t_ns)), 1_000_000_000)
        self.clock_pub.publish(self.Clock(clock=Time(sec=sec, nanosec=nanosec)))

    def publish(self, raw: bytes, log_ns: int, stamp: float | None = None) -> float:
        self.clock(log_ns)
        self.camera.publish(raw)
        wall = time.monotonic()
        if stamp is not None:
            self.result.published.put(stamp, wall)
        return wall

    def convertible(self, raw: bytes) -> bool:
        try:
            bagio.decode_rgb(raw, self.scan.msgtype)
            return True
        except Exception:  # noqa: BLE001 - camera_subscriber refuses such an image
            return False

    # -- phases -----------------------------------------------------------------------------
    def warm_up(self, fps: float, timeout: float, frame_timeout: float, on_wait=None, precede: bool = False) -> None:
        """Publish warm-up images until one comes back as a decision; then reset the stream.
        ``precede``: stamp them before the bag's first image (a graph that saw no stamps yet)."""
        first_raw = next(bagio.iter_camera(self.scan))[1]
        first = self.scan.images[0]
        last_ns = max(im.sec * 1_000_000_000 + im.nanosec for im in self.scan.images)
        stamps = warmup_stamps(first.sec * 1_000_000_000 + first.nanosec, last_ns, fps, precede)
        sent: list[float] = []
        self.phase = "warmup"
        t0 = time.monotonic()
        next_pub = t0

        def came_back(stamps) -> bool:
            keys = {_key(stamp_of(d.header)) for d in self.warm}
            return any(_key(s) + dk in keys for s in stamps for dk in (-1, 0, 1))

        while not (sent and came_back(sent)):
            self.check_graph()
            now = time.monotonic()
            if now - t0 > timeout:
                raise ReplayError(
                    f"{self.where}: the graph did not answer a warm-up image within {timeout:g} s (no "
                    f"live/decision): are camera_subscriber, frame_encoder and live_llm running and "
                    f"active (live-ros status), with use_sim_time, in this namespace, and does "
                    f"camera_subscriber's qos match the player's ({self.camera_qos})?"
                )
            if now >= next_pub:
                ns = next(stamps)
                self.publish(bagio.restamp(first_raw, self.scan.msgtype, ns, bagio.WARMUP_FRAME_ID), ns)
                sent.append(ns / 1e9)
                next_pub = now + 0.5
                if on_wait is not None:
                    on_wait(now - t0)
            self.executor.spin_once(timeout_sec=0.05)
        self.spin_until(lambda: came_back(sent[-1:]), frame_timeout, "decision for the last warm-up image")
        self.spin_until(self.reset.service_is_ready, 30.0, "live/reset service")
        future = self.reset.call_async(self.Trigger.Request())
        self.spin_until(future.done, 30.0, "reply from live/reset")
        if not future.result().success:
            raise ReplayError(f"{self.where}: live/reset refused: {future.result().message}")

    def _ask(self, q: Question):
        self.spin_until(self.query.service_is_ready, 30.0, "live/query service")
        return q, self.query.call_async(self.Query.Request(text=q.text))

    def _asked(self, q: Question, future) -> Asked:
        reply = future.result()
        return Asked(
            q.time,
            q.text,
            q.expected,
            reply.query_id if reply.accepted else 0,
            refused="" if reply.accepted else f"refused: {reply.message}",
            expected_at=q.expected_at,
        )

    def play(
        self,
        fps: float,
        questions: list[Question],
        *,
        realtime: bool = False,
        speed: float = 1.0,
        frame_timeout: float = 120.0,
        drain: float = 5.0,
    ) -> PlayResult:
        images = self.scan.images
        t0 = images[0].stamp
        slots = question_slots([im.stamp - t0 for im in images], questions)
        model = CameraModel(fps)
        res = self.result
        self.phase = "replay"
        pending: list = []
        qi = 0
        log0, wall0, last_clock = images[0].log_ns, time.monotonic() + 0.1, 0.0
        for img, raw in bagio.iter_camera(self.scan):
            if realtime:
                due = wall0 + (img.log_ns - log0) / 1e9 / speed
                while (now := time.monotonic()) < due:
                    if now - last_clock >= 0.05:  # not before the first image: log0 may be ~0
                        self.clock(log0 + max(0, int((now - wall0) * speed * 1e9)))
                        last_clock = now
                    self.executor.spin_once(timeout_sec=min(0.01, max(0.0, due - now)))
                res.late.append(time.monotonic() - due)
            while qi < len(questions) and slots[qi] <= img.order:
                self._ask_at(questions[qi], realtime, pending, frame_timeout)
                qi += 1
            self.check_graph()
            plan = model.step(img.stamp, lambda raw=raw: self.convertible(raw))
            res.plans.append(plan)
            self.publish(raw, img.log_ns, img.stamp)
            if plan.acked and not realtime:
                self.spin_until(
                    lambda s=img.stamp: self.acked.get(s),
                    frame_timeout,
                    f"live/decision for image {img.order} (stamp {img.stamp:.6f})",
                    "in lockstep every sampled image must reach live_llm: is camera_subscriber's qos "
                    "reliable (a best-effort camera subscription loses images), its fps the one planned "
                    f"({fps:g}), and its sampling grid restarted (stamps older than what it saw)?",
                )
            else:
                self.executor.spin_once(timeout_sec=0.0)
        while qi < len(questions):
            self._ask_at(questions[qi], realtime, pending, frame_timeout)
            qi += 1
        if realtime:
            self._drain(res, drain, frame_timeout)
            for q, future in pending:
                self.spin_until(future.done, 30.0, "reply from live/query")
                res.asked.append(self._asked(q, future))
            done = lambda: all(a.query_id == 0 or a.query_id in self.finals for a in res.asked)  # noqa: E731
            self.spin_until(done, frame_timeout, "final answers to the questions")
        # a decision may overtake its frame's final response (two topics): wait for the finals
        finals = lambda: {r.response_id for r, _ in res.responses if r.final}  # noqa: E731
        wanted = {d.response_id for d, _ in res.decisions if d.spoke}
        deadline = time.monotonic() + 10.0
        while not wanted <= finals() and time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.05)
        self.phase = "done"
        return res

    def _ask_at(self, question, realtime: bool, pending: list, timeout: float) -> None:
        """Ask now; in lockstep wait for the answer, in real time collect it later."""
        q, future = self._ask(question)
        if realtime:
            pending.append((q, future))
        else:
            self._wait_answer(q, future, timeout)

    def _wait_answer(self, q: Question, future, timeout: float) -> None:
        self.spin_until(future.done, 30.0, "reply from live/query")
        asked = self._asked(q, future)
        self.result.asked.append(asked)
        if asked.query_id:
            self.spin_until(
                lambda: asked.query_id in self.finals, timeout, f"final answer to query {asked.query_id} ({q.text!r})"
            )

    def _drain(self, res: PlayResult, quiet: float, limit: float) -> None:
        """Real time: wait until every image live_llm should take came back, or nothing
        came for ``quiet`` seconds (at most ``limit``)."""
        expected = [p.stamp for p in res.plans if p.acked]
        start = last_n = time.monotonic()
        seen = -1
        while time.monotonic() - start < limit:
            self.check_graph()
            if all(self.acked.get(s) for s in expected):
                break
            n = len(res.decisions) + len(res.responses)
            if n != seen:
                seen, last_n = n, time.monotonic()
            elif time.monotonic() - last_n > quiet:
                break
            self.executor.spin_once(timeout_sec=0.05)
        end = time.monotonic()
        while time.monotonic() - end < 0.5:  # the last partial/final responses
            self.executor.spin_once(timeout_sec=0.05)
