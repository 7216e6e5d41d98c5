#!/usr/bin/env python3
"""Fault soak of the whole graph: camera_subscriber -> frame_encoder -> live_llm from the
package's launch file (child processes under live_ros.launcher.Supervisor, respawn as the
launch file declares), with this process as the camera, a frame-token publisher and a
query client. Every probe reproduces one way a user or a broken peer has hurt the graph,
and the run ends with one table:

  probe | tried | handled | refused (clear error) | lost | nodes alive | note

- handled: inputs that did their job (a frame taken, a query answered);
- refused: inputs turned away with a message that says why (a refusal Response, a refused
  Query reply, a counted drop with last_error set);
- lost: tried - handled - refused, the silent losses (goal: 0);
- nodes alive: every node reports live/status after the probe ("respawned" where the probe
  kills one on purpose and the launcher brings it back).

The probes (about 6 minutes on 2 cores, model loading included):
  bad-images       malformed camera images (wrong encoding, short data, bad step, empty)
  bad-tokens       malformed FrameTokens (NaN, wrong shape, wrong encoder)
  bad-queries      empty and oversize questions
  future-tokens    one FrameTokens stamped in 2033, then real frames
  future-image     one camera image stamped 6 s ahead, then 5 s of real video
  huge-images      rgb8 images of 3000^2, 5000^2 and 8000^2 pixels
  query-flood      100 questions in 12 s while the camera streams
  kill-llm         kill -9 of live_llm with questions waiting; ids after the respawn
  kill-encoder     kill -9 of frame_encoder while the camera streams
  camera-outage    the camera stops: camera_subscriber's status within 2 s
  tools            live-ros status (3 runs), param set with a typo and a wrong type,
                   ask with no graph running

    .venv/bin/python bench/bench_faults.py
    .venv/bin/python bench/bench_faults.py --probes bad-images,query-flood --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import graph_probe as bg  # noqa: E402  (the graph bench's camera, probe node and graph start)
from graph_figures import say  # noqa: E402

ROOT = bg.ROOT
NODES = bg.NODES
LIVE_ROS = Path(sys.executable).parent / "live-ros"
PROBES = (
    "bad-images",
    "bad-tokens",
    "bad-queries",
    "future-tokens",
    "future-image",
    "huge-images",
    "query-flood",
    "kill-llm",
    "kill-encoder",
    "camera-outage",
    "tools",
)
MODEL_FPS = 2.0


def row(probe: str, tried: int, handled: int, refused: int, alive: str, note: str = "") -> dict:
    return {
        "probe": probe,
        "tried": tried,
        "handled": handled,
        "refused": refused,
        "lost": max(0, tried - handled - refused),
        "alive": alive,
        "note": note,
    }


class Faults:
    """The bench's node (graph_probe.Probe) plus what the probes need: a frame-token
    publisher, query bookkeeping and per-node counters."""

    def __init__(self, args, supervisor):
        from live_ros.msg import FrameTokens
        from live_ros.ros import qos

        self.args = args
        self.supervisor = supervisor
        self.probe = bg.Probe(args.namespace, MODEL_FPS)
        self.tokens_pub = self.probe.node.create_publisher(FrameTokens, f"{self.probe.ns}/frame_tokens", qos.frames())
        self.video = bg.Video(ROOT / "media" / "demo.mp4", "")
        self.pids = bg.pids(supervisor)

    # -- observation ---------------------------------------------------------------------
    def status(self, timeout: float = 6.0) -> dict:
        return bg.fresh_status(self.probe, timeout)

    def counter(self, node: str, field: str) -> int:
        st = self.status().get(node)
        return int(getattr(st, field)) if st is not None else 0

    def alive(self, expect_respawn: tuple[str, ...] = ()) -> str:
        """'yes' when every node reports after now with its pid unchanged (the killed ones:
        respawned and active again)."""
        deadline = time.monotonic() + 90
        while (
            expect_respawn
            and time.monotonic() < deadline
            and any(bg.pids(self.supervisor).get(n) == self.pids.get(n) for n in expect_respawn)
        ):
            time.sleep(0.2)  # the launcher has not started the new process yet
        respawned_at = time.monotonic()
        states: dict = {}
        while time.monotonic() < deadline:
            st = self.status(3.0)
            now = bg.pids(self.supervisor)
            with self.probe.lock:  # a respawned node counts once its new process reports
                fresh = {
                    n: self.probe.status[n][0] > respawned_at + 1.0 for n in expect_respawn if n in self.probe.status
                }
            states = {n: (st[n].state if n in st else "no status") for n in NODES}
            if all(s == "active" for s in states.values()) and all(fresh.get(n) for n in expect_respawn):
                restarted = [n for n in NODES if now.get(n) != self.pids.get(n)]
                unexpected = [n for n in restarted if n not in expect_respawn]
                self.pids = now
                if unexpected:
                    return f"crashed: {', '.join(unexpected)} (respawned)"
                return "respawned" if expect_respawn else "yes"
            time.sleep(0.5)
        return f"NO: {states}"

    def last_error(self, node: str) -> str:
        st = self.status().get(node)
        return st.last_error if st is not None else ""

    def errors_since(self, node: str, t0: float) -> list[str]:
        """The distinct last_error texts `node` reported since monotonic time t0, in order."""
        with self.probe.lock:
            texts = [m.last_error for t, m in self.probe.status_log if t >= t0 and m.node == node and m.last_error]
        return list(dict.fromkeys(texts))

    def decisions_for(self, keys) -> int:
        with self.probe.lock:
            return sum(1 for k in keys if k in self.probe.decisions)

    def wait_decisions(self, keys, timeout: float = 60.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.decisions_for(keys) < len(keys):
            time.sleep(0.1)
        return self.decisions_for(keys)

    # -- inputs --------------------------------------------------------------------------
    def stream(self, seconds: float, fps: float = 10.0, phase: str = "stream") -> list[int]:
        """Real video frames at `fps` for `seconds`; the stamp keys the 2 fps rule samples."""
        t0 = time.monotonic()
        k = 0
        while time.monotonic() - t0 < seconds:
            self.probe.publish(self.video.now(), phase)
            k += 1
            time.sleep(max(0.0, t0 + k / fps - time.monotonic()))
        with self.probe.lock:
            return [key for key, p in self.probe.expected.items() if p == phase]

    def ask(self, text: str, timeout: float = 20.0):
        from live_ros.srv import Query

        _, reply = self.probe.call(Query, f"{self.probe.ns}/query", Query.Request(text=text), timeout)
        return reply

    def outcome(self, ids, timeout: float = 120.0) -> tuple[int, int]:
        """(answered, refused) of these query ids, waiting for their final responses."""
        ids = set(ids)
        deadline = time.monotonic() + timeout
        while True:
            with self.probe.lock:
                final = {m.query_id: m.kind for _, m in self.probe.responses if m.final and m.query_id in ids}
            if len(final) == len(ids) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        kinds = list(final.values())
        return sum(k == "answer" for k in kinds), sum(k == "refusal" for k in kinds)

    def kill(self, node: str) -> None:
        os.kill(self.supervisor.procs[node].pid, signal.SIGKILL)

    def shutdown(self) -> None:
        self.probe.shutdown()


# -- the probes ----------------------------------------------------------------------------------
def bad_images(f: Faults) -> dict:
    from builtin_interfaces.msg import Time
    from sensor_msgs.msg import Image

    good = f.video.msgs[0]
    w, h = good.width, good.height
    cases = [
        ("yuv999", w, h, w * 3, bytes(good.data)),
        ("rgb8", w, h, w * 3, bytes(good.data)[: w * 3 * 10]),
        ("rgb8", w, h, w, bytes(good.data)),
        ("rgb8", 0, 0, 0, b""),
        ("bgr8", w, h, w * 3 - 1, bytes(good.data)),
        ("mono16", w, h, w, bytes(good.data)[: w * h]),
        ("rgb8", w, h, w * 3, b"\x00" * 17),
        ("16UC3", w, h, w * 6, bytes(good.data)),
        ("rgb8", 10**6, 10**6, 3 * 10**6, b"x"),
        ("", w, h, w * 3, b""),
    ]
    before = f.counter("camera_subscriber", "frames_dropped")
    t0 = time.monotonic()
    for enc, width, height, step, data in cases:
        msg = Image(height=height, width=width, encoding=enc, is_bigendian=0, step=step)
        msg.data = data
        ns = f.probe.clock.now().nanoseconds
        msg.header.stamp = Time(sec=ns // 10**9, nanosec=ns % 10**9)
        f.probe.camera.publish(msg)
        time.sleep(0.6)  # past the next 2 fps tick: every one of them is due, so each is converted
    time.sleep(1.5)
    refused = f.counter("camera_subscriber", "frames_dropped") - before
    errors = [e for e in f.errors_since("camera_subscriber", t0) if "no image on" not in e]
    return row(
        "bad-images",
        len(cases),
        0,
        refused,
        f.alive(),
        f"{len(errors)} distinct refusals reported, e.g. {errors[0][:100] if errors else '-'!r}",
    )


def _token_sample(f: Faults):
    """One real FrameTokens message of the graph (to copy its encoder id and shape)."""
    with f.probe.lock:
        return f.probe.samples.get("tokens")


def bad_tokens(f: Faults) -> dict:
    import copy

    sample = _token_sample(f)
    n, d = sample.num_tokens, sample.dim
    cases = []
    for what in ("nan", "inf", "short", "dims", "encoder", "empty"):
        msg = copy.deepcopy(sample)
        data = np.frombuffer(sample.data, dtype=np.float32).copy()
        if what == "nan":
            data[3] = np.nan
        elif what == "inf":
            data[0] = np.inf
        elif what == "short":
            data = data[:-5]
        elif what == "dims":
            msg.num_tokens, msg.dim = n + 1, d
        elif what == "encoder":
            msg.encoder = "not-our-encoder@0"
        elif what == "empty":
            data = data[:0]
            msg.num_tokens = msg.dim = 0
        msg.data = data.tolist()
        msg.header.stamp = f.probe.clock.now().to_msg()
        cases.append(msg)
    before = f.counter("live_llm", "frames_dropped")
    for msg in cases:
        f.tokens_pub.publish(msg)
        time.sleep(0.2)
    time.sleep(1.5)
    refused = f.counter("live_llm", "frames_dropped") - before
    return row("bad-tokens", len(cases), 0, refused, f.alive(), f.last_error("live_llm")[:90])


def bad_queries(f: Faults) -> dict:
    texts = ["", "   ", "x" * 2001, "y" * 100_000]
    refused = sum(1 for t in texts if (r := f.ask(t)) and not r.accepted and r.message.strip())
    return row("bad-queries", len(texts), 0, refused, f.alive(), "replies: accepted=false with a reason")


def future_tokens(f: Faults) -> dict:
    import copy

    from builtin_interfaces.msg import Time

    msg = copy.deepcopy(_token_sample(f))
    msg.header.stamp = Time(sec=int(time.mktime((2033, 1, 1, 0, 0, 0, 0, 0, 0))), nanosec=0)
    before = f.counter("live_llm", "frames_dropped")
    f.tokens_pub.publish(msg)
    time.sleep(0.5)
    keys = f.stream(5.0, phase="future-tokens")
    taken = f.wait_decisions(keys)
    refused = f.counter("live_llm", "frames_dropped") - before
    tried = 1 + len(keys)
    return row(
        "future-tokens",
        tried,
        taken,
        min(refused, tried - taken),
        f.alive(),
        f"real frames after it taken: {taken} of {len(keys)}",
    )


def future_image(f: Faults) -> dict:
    from builtin_interfaces.msg import Time

    msg = f.video.now()
    before = sum(f.counter(n, "frames_dropped") for n in ("camera_subscriber", "live_llm"))
    ns = f.probe.clock.now().nanoseconds + 6 * 10**9  # not through the bench's own sampler: it is ahead
    msg.header.stamp = Time(sec=ns // 10**9, nanosec=ns % 10**9)
    f.probe.camera.publish(msg)
    time.sleep(0.3)
    keys = f.stream(5.0, phase="future-image")
    taken = f.wait_decisions(keys)
    refused = sum(f.counter(n, "frames_dropped") for n in ("camera_subscriber", "live_llm")) - before
    tried = 1 + len(keys)
    return row(
        "future-image",
        tried,
        taken,
        min(refused, tried - taken),
        f.alive(),
        f"real frames after it taken: {taken} of {len(keys)}",
    )


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def huge_images(f: Faults) -> dict:
    from builtin_interfaces.msg import Time
    from sensor_msgs.msg import Image

    pid = f.supervisor.procs["camera_subscriber"].pid
    rss0 = _rss_mb(pid)
    t0 = time.monotonic()
    before = f.counter("camera_subscriber", "frames_dropped")
    sizes = (3000, 5000, 8000)
    for side in sizes:
        msg = Image(height=side, width=side, encoding="rgb8", is_bigendian=0, step=side * 3)
        msg.data = bytes(side * side * 3)
        ns = f.probe.clock.now().nanoseconds
        msg.header.stamp = Time(sec=ns // 10**9, nanosec=ns % 10**9)
        f.probe.camera.publish(msg)
        del msg
        time.sleep(1.5)
    # a best-effort image DDS lost is counted when the next image arrives (message-lost event)
    keys = f.stream(3.0, phase="after-huge")
    taken = f.wait_decisions(keys)
    refused = f.counter("camera_subscriber", "frames_dropped") - before
    rss1 = _rss_mb(pid)
    errors = [e for e in f.errors_since("camera_subscriber", t0) if "no image on" not in e]
    return row(
        "huge-images",
        len(sizes),
        0,
        refused,
        f.alive(),
        f"camera_subscriber RSS {rss0:.0f} -> {rss1:.0f} MB; frames after: {taken} of {len(keys)}; "
        f"e.g. {errors[-1][:110] if errors else '-'!r}",
    )


def query_flood(f: Faults) -> dict:
    import threading

    ids, refused_now, lags = [], 0, []
    stop = threading.Event()

    def camera():
        while not stop.is_set():
            f.stream(1.0, phase="flood")

    def watch_lag():
        while not stop.is_set():
            st = f.probe.status.get("live_llm")
            if st is not None:
                lags.append(float(st[1].lag))
            time.sleep(0.25)

    threads = [threading.Thread(target=camera, daemon=True), threading.Thread(target=watch_lag, daemon=True)]
    for t in threads:
        t.start()
    t0 = time.monotonic()
    try:
        for i in range(100):
            reply = f.ask(f"Question {i}: what do you see now?")
            if reply.accepted:
                ids.append(reply.query_id)
            else:
                refused_now += 1
            time.sleep(max(0.0, t0 + (i + 1) * 0.12 - time.monotonic()))
        answered, refused_later = f.outcome(ids, timeout=240)
    finally:
        stop.set()
        for t in threads:
            t.join()
    with f.probe.lock:
        keys = [k for k, p in f.probe.expected.items() if p == "flood"]
    taken = f.decisions_for(keys)
    return row(
        "query-flood",
        100,
        answered,
        refused_now + refused_later,
        f.alive(),
        f"accepted {len(ids)}; max lag {max(lags, default=0):.1f} s; frames taken {taken} of {len(keys)}",
    )


def kill_llm(f: Faults) -> dict:
    import threading

    stop = threading.Event()
    cam = threading.Thread(
        target=lambda: [f.stream(1.0, phase="kill-llm") for _ in iter(stop.is_set, True)], daemon=True
    )
    cam.start()
    ids = []
    try:
        for i in range(6):
            reply = f.ask(f"Pending question {i}: what is on screen?")
            if reply.accepted:
                ids.append(reply.query_id)
        f.kill("live_llm")
        alive = f.alive(expect_respawn=("live_llm",))
        f.probe.clients.pop(f"{f.probe.ns}/query", None)  # a new client for the new server
        after = f.ask("A question after the restart: what do you see?", timeout=60)
        answered, refused = f.outcome(ids, timeout=120)
    finally:
        stop.set()
        cam.join()
    unique = after.query_id not in ids if after.accepted else "refused"
    return row("kill-llm", len(ids), answered, refused, alive, f"query id after respawn unique: {unique}")


def kill_encoder(f: Faults) -> dict:
    import threading

    stop = threading.Event()
    fields = ("frames_dropped",)
    before = {n: f.counter(n, fields[0]) for n in NODES}
    cam = threading.Thread(
        target=lambda: [f.stream(1.0, phase="kill-enc") for _ in iter(stop.is_set, True)], daemon=True
    )
    cam.start()
    try:
        time.sleep(2.0)
        f.kill("frame_encoder")
        alive = f.alive(expect_respawn=("frame_encoder",))
        time.sleep(3.0)
    finally:
        stop.set()
        cam.join()
    with f.probe.lock:
        keys = [k for k, p in f.probe.expected.items() if p == "kill-enc"]
    taken = f.wait_decisions(keys, timeout=30)
    counted = sum(f.counter(n, "frames_dropped") - before[n] for n in NODES)
    return row(
        "kill-encoder",
        len(keys),
        taken,
        min(counted, len(keys) - taken),
        alive,
        f"frames counted as dropped by the nodes: {counted}",
    )


def camera_outage(f: Faults) -> dict:
    f.stream(3.0, phase="outage")
    stopped = time.monotonic()
    seen = None
    while time.monotonic() - stopped < 10.0:
        st = f.probe.status.get("camera_subscriber")
        if st is not None and st[0] > stopped and st[1].fps == 0.0 and st[1].last_error:
            seen = st[0] - stopped
            break
        time.sleep(0.1)
    note = f"fps 0 + last_error after {seen:.1f} s" if seen is not None else "no fps 0 / last_error within 10 s"
    return row("camera-outage", 1, 0, int(seen is not None and seen <= 2.5), f.alive(), note)


def _cli(*args, env=None, timeout=120) -> tuple[int, str, float]:
    t0 = time.monotonic()
    p = subprocess.run(
        [str(LIVE_ROS), *args], capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
    )
    return p.returncode, (p.stdout + p.stderr).strip(), time.monotonic() - t0


def tools(f: Faults) -> dict:
    tried = handled = refused = 0
    notes = []
    for _ in range(3):
        tried += 1
        _, out, _ = _cli("status", "--namespace", f.args.namespace)
        handled += all(n in out for n in NODES)
    notes.append(f"status listed all nodes {handled} of 3")
    for args, want in ((("thetaa", "0.8"), "theta"), (("theta", "abc"), "string")):
        tried += 1
        code, out, _ = _cli("param", "set", "live_llm", *args, "--namespace", f.args.namespace)
        clear = code != 0 and want in out and "[]" not in out and "expected '3'" not in out
        refused += clear
        notes.append(f"param set {' '.join(args)}: {out.splitlines()[-1][:70] if out else ''!r}")
    tried += 1
    code, out, took = _cli("ask", "hello?", env={"ROS_DOMAIN_ID": str((int(os.environ["ROS_DOMAIN_ID"]) + 50) % 100)})
    refused += code != 0 and took < 10
    notes.append(f"ask with no graph: {took:.1f} s")
    return row("tools", tried, handled, refused, f.alive(), "; ".join(notes))


RUNS = {
    "bad-images": bad_images,
    "bad-tokens": bad_tokens,
    "bad-queries": bad_queries,
    "future-tokens": future_tokens,
    "future-image": future_image,
    "huge-images": huge_images,
    "query-flood": query_flood,
    "kill-llm": kill_llm,
    "kill-encoder": kill_encoder,
    "camera-outage": camera_outage,
    "tools": tools,
}


def table(rows: list[dict]) -> str:
    head = f"| {'probe':<14} | tried | handled | refused (clear error) | lost | nodes alive | note |"
    lines = [head, "|" + "|".join("-" * (len(c) + 0) for c in head.split("|")[1:-1]) + "|"]
    for r in rows:
        lines.append(
            f"| {r['probe']:<14} | {r['tried']:>5} | {r['handled']:>7} | {r['refused']:>21} | "
            f"{r['lost']:>4} | {r['alive']:<11} | {r['note']} |"
        )
    return "\n".join(lines)


def run(args) -> list[dict]:
    bg.set_ros_env()
    os.environ.setdefault("ROS_HOME", tempfile.mkdtemp(prefix="live_ros_faults_"))
    graph_args = argparse.Namespace(
        preset="embedded", namespace=args.namespace, model_fps=MODEL_FPS, camera_qos="sensor_data", camera_depth=0
    )
    log_path = args.log or str(Path(tempfile.gettempdir()) / "bench_faults_nodes.log")
    supervisor, log = bg.start_graph(graph_args, log_path)
    f = None
    rows: list[dict] = []
    try:
        f = Faults(args, supervisor)
        bg.wait_active(f.probe, supervisor, 300)
        bg.discover(f.probe, f.video, 120)
        f.stream(3.0, phase="warmup")
        # one FrameTokens message is kept (bad-tokens copies it); a subscriber of live/frames
        # that is not a live_ros node would count as a consumer for camera_subscriber's drop count
        f.probe.drop_sample_subscriptions()
        f.pids = bg.pids(supervisor)
        for name in args.probes:
            t0 = time.monotonic()
            try:
                r = RUNS[name](f)
            except Exception as err:  # a probe that cannot finish is a row, not the end of the run
                r = row(name, 1, 0, 0, f.alive(), f"probe failed: {err!r}"[:160])
            r["seconds"] = round(time.monotonic() - t0, 1)
            rows.append(r)
            say(f"[{name}] {json.dumps(r)}")
    finally:
        if f is not None:
            f.shutdown()
        supervisor.stop()
        log.close()
    crashes = sum(1 for r in rows if r["alive"] not in ("yes", "respawned"))
    say("")
    say(table(rows))
    say("")
    say(
        f"crashes {crashes}, silent losses {sum(r['lost'] for r in rows)}, unanswered queries "
        f"{sum(r['lost'] for r in rows if r['probe'] in ('query-flood', 'kill-llm'))} (nodes' log: {log_path})"
    )
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--probes", default=",".join(PROBES), help=f"comma-separated subset of: {', '.join(PROBES)}")
    ap.add_argument("--namespace", default="live")
    ap.add_argument("--json", help="also write the rows to this file")
    ap.add_argument("--log", help="the nodes' output (default: a file in the temp folder)")
    args = ap.parse_args(argv)
    args.probes = [p.strip() for p in args.probes.split(",") if p.strip()]
    unknown = [p for p in args.probes if p not in RUNS]
    if unknown:
        ap.error(f"unknown probe(s) {', '.join(unknown)}; choose from {', '.join(PROBES)}")
    rows = run(args)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0 if all(r["lost"] == 0 and r["alive"] in ("yes", "respawned") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
