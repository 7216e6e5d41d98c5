#!/usr/bin/env python3
"""Benchmark of the whole ROS 2 graph, on the embedded default unless told
otherwise: camera_subscriber -> frame_encoder -> live_llm from the package's launch file, as
child processes (live_ros.launcher.Supervisor), with this process as the camera.

The camera: an rclpy publisher on /camera/image_raw with sensor-data QoS (as a camera driver;
--camera-qos reliable makes it and camera_subscriber reliable),
publishing the real frames of media/demo.mp4 (decoded once with PyAV; the frame shown at a
moment is the video's frame at that moment, looping) at the requested rate, each stamped with
the node clock's now at publish (truncated to 10 us, so stamps survive live_llm's float
seconds exactly).

Measures, in one run:
  1. sustained: a --camera-fps camera (default 30) for --minutes (default 10), the live_llm
     parameters as configured (embedded default): images published, sampled (the frames the
     2 fps rule must produce, from the published stamps with the core's FrameSampler),
     taken (live/decision messages with those stamps), dropped = sampled - taken + the
     nodes' Status.frames_dropped (the target's figure); beside it the camera images lost on
     the way to camera_subscriber (best effort) and the ticks of the 2 fps grid that got no
     frame at all (a lost image at a tick is replaced by the next one: dropped counts it, this
     does not); per-frame time = camera stamp -> live/decision received;
  2. rate sweep (--sweep, default 30,60,120,240 fps, --sweep-seconds each): the same counts
     per rate and the largest camera rate with zero dropped model frames (at it and at every
     lower rate);
  3. ROS transport: one-way latency of each hop's message (the camera Image, the letterboxed
     live/frames Image, the FrameTokens, and the Decision back to us), as ping-pong / 2 with
     an echo process on the same QoS, serialization included, measured while the graph runs
     at --camera-fps; transport share = the 3 hops into live_llm / per-frame time (p50);
  4. latency (live_llm set to speak: theta, max_new_tokens, min_response_interval below):
     frame stamp -> first partial / final Response of proactive responses, tokens per
     response; then (mute) questions on live/query: call -> first partial / final answer;
  5. CPU per node: utime + stime of each node process (all threads and child processes)
     over each measured window, as % of one core and share of the graph, beside this
     process and the whole machine (a shared machine: the rest is other work).

Ends with a table of every target (the graph's real-time goals) with the measured value, the ratio to the
target and PASS / MISS. Discovery is warmed up until an image makes it all the way to a
Decision before anything is measured. ROS_DOMAIN_ID defaults to 42 and discovery to
LOCALHOST (set them to override), so the run does not mix with other graphs.

    .venv/bin/python bench/bench_graph.py               # the full run: about 18 minutes
    .venv/bin/python bench/bench_graph.py --quick       # smoke run, about 2-3 minutes
    .venv/bin/python bench/bench_graph.py --minutes 2 --sweep 30,240 --json out.json
    .venv/bin/python bench/bench_graph.py --phases latency,transport     # some phases only
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NODES = ("camera_subscriber", "frame_encoder", "live_llm")
PHASES = ("sustained", "sweep", "transport", "latency")
ECHO_READY = "BENCH_ECHO_READY"
# the hops of one model frame into live_llm, and the Decision back to the bench
HOPS = (("camera", "camera -> camera_subscriber"), ("frames", "live/frames -> frame_encoder"),
        ("tokens", "live/frame_tokens -> live_llm"), ("decision", "live/decision -> bench (not in the 3 hops)"))
TARGETS = {"minutes": 10.0, "camera_fps": 30.0, "first_partial_p50": 0.300, "final_p50": 1.0,
           "transport_share": 0.05, "max_new_tokens": 12}


def set_ros_env() -> None:
    """Our own domain and localhost discovery unless the caller chose (before rclpy starts)."""
    os.environ.setdefault("ROS_DOMAIN_ID", "42")
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")


# -- figures ---------------------------------------------------------------------------------
def pct(values, q) -> float:
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, int(round(q / 100 * (len(v) - 1))))]


def stats(values) -> dict:
    return {"p50": pct(values, 50), "p95": pct(values, 95), "max": max(values) if values else float("nan"),
            "mean": sum(values) / len(values) if values else float("nan"), "n": len(values)}


def ms(x) -> str:
    return "-" if x is None or x != x else f"{x * 1000:.1f}"


def say(text: str = "") -> None:
    print(text, flush=True)


# -- CPU from /proc --------------------------------------------------------------------------
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    kids = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids += [int(k) for k in f.read().split()]
    except OSError:
        pass
    return kids


def process_ticks(pid: int, descendants: bool = True) -> int:
    """utime + stime of a process (all its threads), plus its descendants' if asked."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])   # fields 14 and 15 of proc(5)
        except (OSError, IndexError, ValueError):
            continue
        if descendants:
            todo += _children(p)
    return total


def machine_busy_ticks() -> int:
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v[:8]) - v[3] - v[4]   # all but idle and iowait (guest is inside user)


class CpuWindow:
    """CPU of each node process, of this process and of the machine over one window."""

    def __init__(self, pids: dict[str, int]):
        self.pids = dict(pids)
        self.t0 = time.monotonic()
        self.start = self._sample()

    def _sample(self) -> dict:
        out = {name: process_ticks(pid) for name, pid in self.pids.items()}
        out["bench"] = process_ticks(os.getpid(), descendants=False)
        out["machine"] = machine_busy_ticks()
        return out

    def stop(self) -> dict:
        wall = time.monotonic() - self.t0
        end = self._sample()
        pct_core = {k: (end[k] - self.start[k]) / CLK_TCK / wall * 100 for k in end}
        graph = sum(pct_core[n] for n in self.pids)
        return {"seconds": wall, "percent_of_core": pct_core, "graph_percent": graph,
                "share_of_graph": {n: pct_core[n] / graph if graph else float("nan") for n in self.pids},
                "cores": os.cpu_count(), "pids": self.pids}


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
        self.published: list[tuple[int, str, bool, int]] = []   # (key, phase, sampled, stamp ns)
        self.expected: dict[int, str] = {}                      # key of each sampled stamp -> phase
        self.decisions: dict[int, tuple[float, object]] = {}     # key -> (receive time, Decision)
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
        self.node.create_subscription(Status, f"{self.ns}/status", self._on_status,
                                      QoSProfile(history=st.history, depth=50, reliability=st.reliability))
        # one message of each inner hop, for the transport measurement (removed after warm-up)
        self.sample_subs = [
            self.node.create_subscription(Image, f"{self.ns}/frames", lambda m: self.samples.setdefault("frames", m),
                                          qos.frames()),
            self.node.create_subscription(FrameTokens, f"{self.ns}/frame_tokens",
                                          lambda m: self.samples.setdefault("tokens", m), qos.frames())]
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
        seconds = stamp_to_seconds(msg.header.stamp)   # the float camera_subscriber computes
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
        _, reply = self.call(SetParameters, f"{self.ns}/{node}/set_parameters", SetParameters.Request(parameters=params))
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

    nodes, _ = parse(resolve_launch_file("live_ros.launch.xml"),
                     {"preset": args.preset, "namespace": args.namespace})
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
        raise RuntimeError(f"no image made it through the graph to live/decision in {timeout:g} s; nodes: "
                           f"{states or 'no status'} (see the nodes' log)")
    while probe.clock.now().nanoseconds < stamp + 1_000_000_000:   # off the grid with a gap of 2 ticks
        time.sleep(0.005)
    return k


def run_in(probe: Probe, video: Video, args) -> None:
    """The camera at its rate for --warmup-seconds (the models' first forwards), not measured."""
    play(probe, video, args.camera_fps, args.warmup_seconds, "warmup")
    drain(probe, "warmup")
    probe.drop_sample_subscriptions()


# -- one measured phase ---------------------------------------------------------------------------
def play(probe: Probe, video: Video, fps: float, seconds: float, phase: str, stop: threading.Event | None = None):
    """The camera: images at `fps` for `seconds`. A slot missed by more than a period is
    skipped, as a camera would (counted)."""
    period = 1.0 / fps
    t0 = time.perf_counter()
    i = published = skipped = 0
    while not (stop is not None and stop.is_set()):
        target = t0 + i * period
        if target - t0 >= seconds:
            break
        now = time.perf_counter()
        if target > now:
            time.sleep(target - now)
        elif now - target > period:
            late = int((now - target) / period)
            skipped += late
            i += late
            continue
        probe.publish(video.now(), phase)
        published += 1
        i += 1
    wall = time.perf_counter() - t0
    return {"fps": fps, "seconds": wall, "published": published, "skipped_slots": skipped,
            "achieved_fps": published / wall if wall else 0.0}


def drain(probe: Probe, phase: str, quiet: float = 5.0, limit: float = 90.0) -> None:
    """Wait until every sampled image of the phase has its Decision, or none came for `quiet`
    seconds (the rest are lost), or `limit` seconds passed."""
    end = time.monotonic()
    while time.monotonic() - end < limit:
        with probe.lock:
            missing = [k for k, p in probe.expected.items() if p == phase and k not in probe.decisions]
            last = probe.last_decision
        if not missing:
            return
        if time.monotonic() - max(last, end) > quiet:
            return
        time.sleep(0.05)


def counts(probe: Probe, phase: str, before: dict, after: dict) -> dict:
    """Published, sampled, taken, dropped (and where), per-frame time for one phase."""
    with probe.lock:
        pub = [(k, s, ns) for k, p, s, ns in probe.published if p == phase]
        decisions = dict(probe.decisions)
    sampled = [k for k, s, _ in pub if s]
    taken = [k for k in sampled if k in decisions]
    other = {k for k, _, _ in pub if k in decisions} - set(sampled)
    node_drops = {n: int(after[n].frames_dropped - before[n].frames_dropped) for n in NODES
                  if n in before and n in after}
    received = int(after["camera_subscriber"].frames_in - before["camera_subscriber"].frames_in) \
        if "camera_subscriber" in before and "camera_subscriber" in after else -1
    per_frame = [decisions[k][0] - decisions[k][1].header.stamp.sec - decisions[k][1].header.stamp.nanosec * 1e-9
                 for k in taken]
    silent = [t for k, t in zip(taken, per_frame) if not decisions[k][1].spoke]
    through = {n: int(after[n].frames_in - before[n].frames_in) for n in ("frame_encoder", "live_llm")
               if n in before and n in after}
    return {"published": len(pub), "camera_received": received, "camera_lost": len(pub) - received,
            "sampled": len(sampled), "taken": len(taken), "not_taken": len(sampled) - len(taken),
            "node_drops": node_drops, "dropped": len(sampled) - len(taken) + sum(node_drops.values()),
            "decisions_at_other_stamps": len(other), "through": through,
            "ticks_without_frame": max(0, len(sampled) - len(taken) - len(other)) + sum(node_drops.values()),
            "batched": sum(1 for k in taken if decisions[k][1].batch > 1),
            "spoke": sum(1 for k in taken if decisions[k][1].spoke),
            "per_frame_s": stats(per_frame), "per_frame_silent_s": stats(silent)}


def measured(probe: Probe, supervisor, video: Video, fps: float, seconds: float, phase: str) -> dict:
    before = fresh_status(probe)
    cpu = CpuWindow(pids(supervisor))
    cam = play(probe, video, fps, seconds, phase)
    usage = cpu.stop()
    drain(probe, phase)
    after = fresh_status(probe)
    with probe.lock:
        lag = max((m.lag for t, m in probe.status_log if m.node == "live_llm" and cpu.t0 <= t), default=float("nan"))
    return {"camera": cam, **counts(probe, phase, before, after), "cpu": usage, "max_llm_lag_s": lag}


# -- latency ----------------------------------------------------------------------------------------
def response_groups(probe: Probe, pick) -> dict[int, list]:
    """Responses whose first message satisfies `pick`, grouped by response_id (receive order)."""
    with probe.lock:
        items = list(probe.responses)
    groups: dict[int, list] = {}
    for t, msg in items:
        groups.setdefault(msg.response_id, []).append((t, msg))
    return {rid: g for rid, g in groups.items() if pick(g[0][1])}


def latency_of(group) -> tuple[float, float | None, int]:
    """(receive of the first message, receive of the final one, tokens = partial messages)."""
    first = group[0][0]
    final = next((t for t, m in group if m.final), None)
    return first, final, sum(1 for _, m in group if not m.final)


def proactive_latency(probe: Probe, video: Video, args, supervisor) -> dict:
    from live_ros.ros.convert import stamp_to_seconds

    probe.set_params("live_llm", {"theta": args.theta, "max_new_tokens": args.max_new_tokens,
                                  "min_new_tokens": args.max_new_tokens,
                                  "min_response_interval": args.min_response_interval, "mute": False})
    result = measured(probe, supervisor, video, args.camera_fps, args.latency_seconds, "latency")
    keys = {k for k, p in probe.expected.items() if p == "latency"}
    groups = response_groups(probe, lambda m: m.query_id == 0 and stamp_key(stamp_to_seconds(m.header.stamp)) in keys)
    first, final, tokens, texts = [], [], [], []
    for g in groups.values():
        stamp = stamp_to_seconds(g[0][1].header.stamp)
        t_first, t_final, n = latency_of(g)
        first.append(t_first - stamp)
        if t_final is not None:
            final.append(t_final - stamp)
            tokens.append(n)
            texts.append(next(m.text for _, m in g if m.final))
    result.update({"responses": len(groups), "first_partial_s": stats(first), "final_s": stats(final),
                   "tokens": stats(tokens), "examples": texts[:3]})
    return result


def query_latency(probe: Probe, video: Video, args) -> dict:
    """Questions while the camera runs and live_llm is muted: call -> first partial / final."""
    from live_ros.srv import Query

    probe.set_params("live_llm", {"mute": True})
    stop = threading.Event()
    camera = threading.Thread(target=play, args=(probe, video, args.camera_fps, 1e9, "queries", stop), daemon=True)
    camera.start()
    asked: list[tuple[float, int, bool, str]] = []
    try:
        for i in range(args.queries):
            time.sleep(args.query_every if i else 1.0)
            t, reply = probe.call(Query, f"{probe.ns}/query", Query.Request(text=args.question))
            asked.append((t, reply.query_id, reply.accepted, reply.message))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            done = response_groups(probe, lambda m: m.query_id in {q for _, q, ok, _ in asked if ok})
            if sum(1 for g in done.values() if any(m.final for _, m in g)) >= sum(ok for *_, ok, _ in asked):
                break
            time.sleep(0.1)
    finally:
        stop.set()
        camera.join()
    drain(probe, "queries")
    first, final, tokens, kinds = [], [], [], {}
    for t_ask, qid, ok, _ in asked:
        groups = response_groups(probe, lambda m: m.query_id == qid)
        if not ok or not groups:
            continue
        g = groups[min(groups)]   # the answer at once (later ones would be re-answers)
        t_first, t_final, n = latency_of(g)
        kinds[g[0][1].kind] = kinds.get(g[0][1].kind, 0) + 1
        first.append(t_first - t_ask)
        if t_final is not None:
            final.append(t_final - t_ask)
            tokens.append(n)
    return {"asked": len(asked), "accepted": sum(ok for *_, ok, _ in asked), "kinds": kinds,
            "refused": [m for *_, ok, m in asked if not ok], "first_partial_s": stats(first),
            "final_s": stats(final), "tokens": stats(tokens)}


# -- transport: ping-pong with an echo process ------------------------------------------------------
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
    camera = copy.deepcopy(video.msgs[0])   # the camera thread stamps the originals meanwhile
    return {"camera": camera, "frames": frames, "tokens": tokens,
            "decision": probe.samples.get("decision") or Decision()}


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

    return {"camera": qos.camera("sensor_data"), "frames": qos.frames(), "tokens": qos.frames(),
            "decision": qos.decisions()}[kind]


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
        while not got and time.monotonic() < deadline:   # discovery, both ways
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
    echo = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--job", "echo"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
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
            hops[kind] = {"hop": label, "message": what, "bytes": nbytes, **ping_pong(probe, kind, msgs[kind],
                                                                                      args.pings)}
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


# -- report -----------------------------------------------------------------------------------------
def phase_rows(r: dict) -> None:
    cam, pf, pfs = r["camera"], r["per_frame_s"], r["per_frame_silent_s"]
    drops = ", ".join(f"{n} {v}" for n, v in r["node_drops"].items())
    say(f"| camera images published (achieved rate) | {cam['published']} in {cam['seconds']:.0f} s "
        f"({cam['achieved_fps']:.1f} fps of {cam['fps']:g}; {cam['skipped_slots']} slots skipped by the bench) |")
    say(f"| ... received by camera_subscriber (lost in transport) | {r['camera_received']} ({r['camera_lost']}) |")
    say(f"| sampled by the 2 fps rule (from the published stamps) | {r['sampled']} |")
    say(f"| taken (live/decision with the sampled stamp) | {r['taken']} (frame_encoder in "
        f"{r['through'].get('frame_encoder', '-')}, live_llm in {r['through'].get('live_llm', '-')}) |")
    say(f"| **dropped** = sampled - taken + nodes' frames_dropped | **{r['dropped']}** ({r['not_taken']} + "
        f"{drops}) |")
    say(f"| decisions at stamps the rule did not sample (the tick's image was lost, a later one taken) | "
        f"{r['decisions_at_other_stamps']} |")
    say(f"| ticks of the 2 fps grid with no model frame at all (dropped, less the replaced ones) | "
        f"{r['ticks_without_frame']} |")
    say(f"| frames taken in a batch (model behind) / spoke | {r['batched']} / {r['spoke']} |")
    say(f"| per-frame time, stamp -> Decision received, p50 / p95 / max ms | {ms(pf['p50'])} / {ms(pf['p95'])} / "
        f"{ms(pf['max'])} (silent frames: {ms(pfs['p50'])} / {ms(pfs['p95'])}) |")
    say(f"| live_llm lag (max of Status.lag) | {r['max_llm_lag_s']:.2f} s |")


def cpu_table(usage: dict) -> None:
    say("| process | pid | % of one core | share of the graph |")
    say("|---|---|---|---|")
    for n in NODES:
        say(f"| {n} | {usage['pids'][n]} | {usage['percent_of_core'][n]:.1f} | "
            f"{usage['share_of_graph'][n] * 100:.0f} % |")
    say(f"| graph (3 nodes) | | {usage['graph_percent']:.1f} | 100 % |")
    say(f"| bench (camera + receivers) | {os.getpid()} | {usage['percent_of_core']['bench']:.1f} | |")
    other = usage["percent_of_core"]["machine"] - usage["graph_percent"] - usage["percent_of_core"]["bench"]
    say(f"| machine, all processes ({usage['cores']} cores) | | {usage['percent_of_core']['machine']:.1f} | "
        f"(other work: {other:.0f} %) |")


def verdict(ok: bool, conclusive: bool = True, note: str = "") -> str:
    text = "PASS" if ok else "MISS"
    return text + (f" ({note})" if note else "") if conclusive else f"{text}, not conclusive ({note})"


def targets(args, res: dict) -> list[dict]:
    rows = []
    sus = res.get("sustained")
    if sus:
        minutes = sus["camera"]["seconds"] / 60
        full = minutes >= TARGETS["minutes"] - 0.05 and args.camera_fps >= TARGETS["camera_fps"]
        rows.append({"target": f"{TARGETS['camera_fps']:g} fps camera sampled to 2 fps for {TARGETS['minutes']:g} min: "
                               f"zero dropped model frames", "measured": f"{sus['dropped']} dropped of "
                     f"{sus['sampled']} ({sus['ticks_without_frame']} ticks with no frame; {args.camera_fps:g} fps, "
                     f"{minutes:.1f} min)", "ratio": "-",
                     "met": sus["dropped"] == 0, "conclusive": full,
                     "note": "" if full else f"run was {minutes:.1f} min at {args.camera_fps:g} fps"})
    lat = res.get("latency")
    if lat:
        for key, label, limit in (("first_partial_s", "first partial response p50", TARGETS["first_partial_p50"]),
                                  ("final_s", f"final (<= {TARGETS['max_new_tokens']} tokens) p50",
                                   TARGETS["final_p50"])):
            v = lat[key]["p50"]
            rows.append({"target": f"{label} <= {limit * 1000:g} ms", "measured": f"{ms(v)} ms (n={lat[key]['n']})",
                         "ratio": f"{v / limit:.2f}x" if v == v else "-", "met": v <= limit,
                         "conclusive": lat[key]["n"] >= 5 and args.max_new_tokens <= TARGETS["max_new_tokens"],
                         "note": "" if lat[key]["n"] >= 5 else "fewer than 5 responses"})
    share = res.get("transport_share")
    if share:
        v = share["share"]
        rows.append({"target": f"ROS transport <= {TARGETS['transport_share'] * 100:g} % of per-frame time",
                     "measured": f"{v * 100:.2f} % ({ms(share['hops_s'])} of {ms(share['per_frame_s'])} ms)",
                     "ratio": f"{v / TARGETS['transport_share']:.2f}x" if v == v else "-",
                     "met": v <= TARGETS["transport_share"], "conclusive": share["pings"] >= 20,
                     "note": "" if share["pings"] >= 20 else f"{share['pings']} pings per hop"})
    return rows


def report(args, res: dict) -> None:
    if "sustained" in res:
        r = res["sustained"]
        say("")
        say(f"## 1. Sustained: {args.camera_fps:g} fps camera, {r['camera']['seconds'] / 60:.1f} min, "
            f"live_llm as configured")
        say("| figure | value |")
        say("|---|---|")
        phase_rows(r)
    if "sweep" in res:
        say("")
        say(f"## 2. Camera rate sweep ({args.sweep_seconds:g} s per rate, model at {args.model_fps:g} fps)")
        say("| camera fps | achieved | published | lost camera images | sampled | taken | dropped | ticks with "
            "no frame | per-frame p50 ms | camera_subscriber % core | graph % core |")
        say("|---|---|---|---|---|---|---|---|---|---|---|")
        for r in res["sweep"]:
            c = r["camera"]
            say(f"| {c['fps']:g} | {c['achieved_fps']:.1f} | {c['published']} | {r['camera_lost']} | {r['sampled']} | "
                f"{r['taken']} | {r['dropped']} | {r['ticks_without_frame']} | {ms(r['per_frame_s']['p50'])} | "
                f"{r['cpu']['percent_of_core']['camera_subscriber']:.1f} | {r['cpu']['graph_percent']:.1f} |")
        best = res.get("largest_rate_without_drops")
        say(f"largest camera rate with zero dropped model frames (at it and every lower rate): "
            f"**{f'{best:g} fps' if best else 'none'}**")
    if "transport" in res:
        say("")
        say(f"## 3. ROS transport, one way (ping-pong / 2 with an echo process, same types, sizes and QoS; "
            f"{args.pings} pings per message, while the camera runs at {args.camera_fps:g} fps)")
        say("| hop | message | serialized bytes | p50 ms | p95 ms | max ms | lost |")
        say("|---|---|---|---|---|---|---|")
        for kind, _ in HOPS:
            h = res["transport"][kind]
            say(f"| {h['hop']} | {h['message']} | {h['bytes']:,} | {ms(h['p50'])} | {ms(h['p95'])} | "
                f"{ms(h['max'])} | {h['lost']} |")
        s = res.get("transport_share")
        if s:
            say(f"3 hops into live_llm: {ms(s['hops_s'])} ms (p50s summed); per-frame time (camera stamp -> "
                f"Decision received, {s['source']} run, silent frames, p50): {ms(s['per_frame_s'])} ms; "
                f"**transport share {s['share'] * 100:.2f} %** (with the Decision hop back: "
                f"{s['share_with_decision'] * 100:.2f} %)")
    if "latency" in res:
        lat, q = res["latency"], res.get("queries")
        say("")
        say(f"## 4. Latency (live_llm theta={args.theta:g}, max_new_tokens={args.max_new_tokens}, "
            f"min_response_interval={args.min_response_interval:g} s; {args.camera_fps:g} fps camera, "
            f"{lat['camera']['seconds']:.0f} s)")
        say("| from -> to | p50 ms | p95 ms | max ms | n |")
        say("|---|---|---|---|---|")
        rows = [("frame stamp -> first partial Response (proactive)", lat["first_partial_s"]),
                ("frame stamp -> final Response (proactive)", lat["final_s"])]
        if q:
            rows += [("query call -> first partial answer", q["first_partial_s"]),
                     ("query call -> final answer", q["final_s"])]
        for label, v in rows:
            say(f"| {label} | {ms(v['p50'])} | {ms(v['p95'])} | {ms(v['max'])} | {v['n']} |")
        say(f"tokens per proactive response: mean {lat['tokens']['mean']:.1f}, max {lat['tokens']['max']} "
            f"({lat['responses']} responses); dropped model frames in this phase: {lat['dropped']} of "
            f"{lat['sampled']}")
        if q:
            say(f"queries: {q['asked']} asked, {q['accepted']} accepted, ended as {q['kinds']}; tokens per answer: "
                f"mean {q['tokens']['mean']:.1f}")
        for text in lat.get("examples", []):
            say(f"  e.g. \"{text}\"")
    cpu = (res.get("sustained") or (res.get("sweep") or [None])[0] or res.get("latency") or {}).get("cpu")
    if cpu:
        say("")
        say(f"## 5. CPU per node ({'sustained' if 'sustained' in res else 'first measured'} window, "
            f"{cpu['seconds']:.0f} s; utime + stime from /proc, all threads and child processes)")
        cpu_table(cpu)
    say("")
    say("## Targets (this 2-core machine, embedded default)")
    say("| target | measured | ratio to target | met |")
    say("|---|---|---|---|")
    for t in res["targets"]:
        say(f"| {t['target']} | {t['measured']} | {t['ratio']} | {verdict(t['met'], t['conclusive'], t['note'])} |")


def node_problems(log_path: str, probe: Probe, supervisor) -> dict:
    lines = Path(log_path).read_text(errors="replace").splitlines() if Path(log_path).is_file() else []
    warnings = [ln for ln in lines if "WARN" in ln or "ERROR" in ln or "Traceback" in ln]
    with probe.lock:
        errors = {n: m.last_error for n, (_, m) in probe.status.items() if m.last_error}
    return {"log": log_path, "warnings": len(warnings), "first_warnings": list(dict.fromkeys(warnings))[:8],
            "last_error": errors, "respawns": {n: c for n, c in supervisor.respawns.items() if c}}


# -- main -------------------------------------------------------------------------------------------
def transport_share(res: dict) -> dict | None:
    if "transport" not in res:
        return None
    base = res.get("sustained") or (res.get("sweep") or [None])[0] or res.get("latency")
    if not base:
        return None
    hops = sum(res["transport"][k]["p50"] for k in ("camera", "frames", "tokens"))
    per_frame = base["per_frame_silent_s"]["p50"]
    if per_frame != per_frame:
        per_frame = base["per_frame_s"]["p50"]
    back = res["transport"]["decision"]["p50"]
    return {"hops_s": hops, "per_frame_s": per_frame, "share": hops / per_frame,
            "pings": min(res["transport"][k]["n"] for k in ("camera", "frames", "tokens")),
            "share_with_decision": (hops + back) / per_frame,
            "source": "sustained" if "sustained" in res else "first measured"}


def largest_clean_rate(sweep: list[dict]) -> float | None:
    """The largest rate such that it and every lower rate swept had zero dropped model frames."""
    best = None
    for r in sorted(sweep, key=lambda r: r["camera"]["fps"]):
        if r["dropped"]:
            break
        best = r["camera"]["fps"]
    return best


def run(args) -> dict:
    import live_ros  # noqa: F401  (torchvision fix before anything imports it)
    from live_ros.paths import share_dir

    t_start = time.monotonic()
    log = lambda s: say(f"  [{time.monotonic() - t_start:6.1f} s] {s}")  # noqa: E731
    video = Video(Path(args.video) if args.video else share_dir() / "media" / "demo.mp4", args.camera_size)
    say(f"# bench_graph: preset {args.preset}, camera {video.width}x{video.height} rgb8 ({video.nbytes:,} B) at "
        f"{args.camera_fps:g} fps, camera QoS {args.camera_qos} (camera_subscriber depth "
        f"{args.camera_depth or 'from the params file'}) -> {args.model_fps:g} fps model; Fast DDS transports "
        f"{os.environ.get('FASTDDS_BUILTIN_TRANSPORTS', 'DEFAULT')}; ROS_DOMAIN_ID="
        f"{os.environ['ROS_DOMAIN_ID']} ({os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE']}); "
        f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} at start{' (--quick)' if args.quick else ''}")
    log_path = args.log or tempfile.mkstemp(prefix="bench_graph_nodes_", suffix=".log")[1]
    probe = Probe(args.namespace, args.model_fps, args.camera_qos)
    supervisor, log_file = start_graph(args, log_path)
    res: dict = {"args": {k: v for k, v in vars(args).items() if k != "job"}, "camera_size": [video.width,
                                                                                                 video.height]}
    try:
        res["discovery_images"] = discover(probe, video, args.timeout)
        wait_active(probe, supervisor, 10.0)
        log(f"graph active, data flows ({res['discovery_images']} images at 1 fps from the start): {pids(supervisor)}")
        run_in(probe, video, args)
        log(f"warmed up ({args.warmup_seconds:g} s at {args.camera_fps:g} fps)")
        if "sustained" in args.phases:
            res["sustained"] = measured(probe, supervisor, video, args.camera_fps, args.minutes * 60, "sustained")
            log(f"sustained: {res['sustained']['dropped']} dropped of {res['sustained']['sampled']}")
        if "sweep" in args.phases and args.sweep:
            res["sweep"] = []
            for fps in args.sweep:
                r = measured(probe, supervisor, video, fps, args.sweep_seconds, f"sweep{fps:g}")
                res["sweep"].append(r)
                log(f"sweep {fps:g} fps: {r['dropped']} dropped of {r['sampled']}, {r['camera_lost']} camera images "
                    f"lost, achieved {r['camera']['achieved_fps']:.1f} fps")
            res["largest_rate_without_drops"] = largest_clean_rate(res["sweep"])
        if "transport" in args.phases:
            res["transport"] = transport(probe, video, args)
            log("transport: " + ", ".join(f"{k} {ms(v['p50'])} ms" for k, v in res["transport"].items()))
        if "latency" in args.phases:
            res["latency"] = proactive_latency(probe, video, args, supervisor)
            log(f"latency: {res['latency']['responses']} proactive responses")
            if args.queries:
                res["queries"] = query_latency(probe, video, args)
                log(f"queries: {res['queries']['accepted']} answered")
        res["problems"] = node_problems(log_path, probe, supervisor)
    finally:
        supervisor.stop()
        log_file.close()
        probe.shutdown()
    res["transport_share"] = transport_share(res)
    res["targets"] = targets(args, res)
    report(args, res)
    p = res["problems"]
    say("")
    say(f"nodes: {p['warnings']} warning/error lines in {p['log']}; respawns {p['respawns'] or 'none'}; "
        f"last_error {p['last_error'] or 'none'}")
    for line in p["first_warnings"]:
        say(f"  {line[:240]}")
    say(f"total {time.monotonic() - t_start:.0f} s")
    return res


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a smoke run of about 2-3 minutes (short phases)")
    p.add_argument("--minutes", type=float, default=None, help="sustained run length (default 10; quick 0.33)")
    p.add_argument("--camera-fps", type=float, default=30.0, help="camera rate of the sustained, transport and "
                   "latency phases (default 30)")
    p.add_argument("--sweep", default=None, help="camera rates of the sweep, comma-separated (default "
                   "30,60,120,240; '' for none)")
    p.add_argument("--sweep-seconds", type=float, default=None, help="seconds per sweep rate (default 60; quick 10)")
    p.add_argument("--phases", default=",".join(PHASES), help=f"phases to run (default {','.join(PHASES)})")
    p.add_argument("--model-fps", type=float, default=2.0, help="camera_subscriber's fps (default 2)")
    p.add_argument("--camera-qos", default="sensor_data", choices=("sensor_data", "reliable"),
                   help="QoS of the bench's camera publisher and camera_subscriber's qos parameter (default "
                        "sensor_data: best effort, as camera drivers publish)")
    p.add_argument("--camera-depth", type=int, default=0, help="camera_subscriber's qos_depth (default: the "
                   "params file's, 30); the bench's camera publishes with the sensor-data depth, 5")
    p.add_argument("--camera-size", default="", help="resize the video's frames to WxH (default: as decoded, "
                   "320x240 for the demo video)")
    p.add_argument("--video", default="", help="video to publish (default: the package's media/demo.mp4)")
    p.add_argument("--preset", default="embedded", help="model preset of the nodes (default embedded)")
    p.add_argument("--namespace", default="live")
    p.add_argument("--warmup-seconds", type=float, default=None, help="camera at its rate before measuring, "
                   "after discovery (default 10; quick 3)")
    p.add_argument("--latency-seconds", type=float, default=None, help="proactive latency phase length "
                   "(default 120; quick 25)")
    p.add_argument("--theta", type=float, default=1.0, help="live_llm theta in the latency phase (default 1.0: "
                   "it wants to speak at every frame)")
    p.add_argument("--max-new-tokens", type=int, default=12, help="live_llm max_new_tokens in the latency phase "
                   "(default 12)")
    p.add_argument("--min-response-interval", type=float, default=2.0, help="live_llm min_response_interval in "
                   "the latency phase, seconds (default 2)")
    p.add_argument("--queries", type=int, default=None, help="questions asked after the proactive phase "
                   "(default 10; quick 3; 0: none)")
    p.add_argument("--query-every", type=float, default=4.0, help="seconds between questions (default 4)")
    p.add_argument("--question", default="What do you see?", help="the question asked")
    p.add_argument("--pings", type=int, default=None, help="ping-pongs per message type (default 200; quick 40)")
    p.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for the nodes and for discovery")
    p.add_argument("--log", default="", help="the nodes' output (default: a temporary file, named at the end)")
    p.add_argument("--json", default="", help="also write every figure to this file")
    p.add_argument("--job", choices=("echo",), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    q = args.quick
    pick = lambda value, full, quick: value if value is not None else (quick if q else full)  # noqa: E731
    args.minutes = pick(args.minutes, 10.0, 20 / 60)
    args.sweep_seconds = pick(args.sweep_seconds, 60.0, 10.0)
    args.warmup_seconds = pick(args.warmup_seconds, 10.0, 3.0)
    args.latency_seconds = pick(args.latency_seconds, 120.0, 25.0)
    args.queries = pick(args.queries, 10, 3)
    args.pings = pick(args.pings, 200, 40)
    sweep = pick(args.sweep, "30,60,120,240", "30,60,120,240")
    args.sweep = [float(x) for x in sweep.split(",") if x.strip()]
    args.phases = [x.strip() for x in args.phases.split(",") if x.strip()]
    unknown = set(args.phases) - set(PHASES)
    if unknown:
        p.error(f"unknown phase(s) {', '.join(sorted(unknown))}; choose from {', '.join(PHASES)}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    set_ros_env()
    if args.job == "echo":
        return run_echo()

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_signal)    # also when started with SIGINT ignored (background shells)
    signal.signal(signal.SIGTERM, on_signal)
    sys.path.insert(0, str(ROOT))
    res = run(args)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
