"""One measured phase of the graph bench (bench/bench_graph.py): the camera playing at a
rate, draining the graph, and the counts of published, sampled, taken and dropped model
frames with the per-frame time and CPU; the warm-up before measuring; and the latency of
proactive responses and of answers to questions."""

from __future__ import annotations

import threading
import time

from graph_figures import CpuWindow, stats
from graph_probe import NODES, Probe, Video, fresh_status, pids, stamp_key


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
    return {
        "fps": fps,
        "seconds": wall,
        "published": published,
        "skipped_slots": skipped,
        "achieved_fps": published / wall if wall else 0.0,
    }


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
    node_drops = {
        n: int(after[n].frames_dropped - before[n].frames_dropped) for n in NODES if n in before and n in after
    }
    received = (
        int(after["camera_subscriber"].frames_in - before["camera_subscriber"].frames_in)
        if "camera_subscriber" in before and "camera_subscriber" in after
        else -1
    )
    per_frame = [
        decisions[k][0] - decisions[k][1].header.stamp.sec - decisions[k][1].header.stamp.nanosec * 1e-9 for k in taken
    ]
    silent = [t for k, t in zip(taken, per_frame) if not decisions[k][1].spoke]
    through = {
        n: int(after[n].frames_in - before[n].frames_in)
        for n in ("frame_encoder", "live_llm")
        if n in before and n in after
    }
    return {
        "published": len(pub),
        "camera_received": received,
        "camera_lost": len(pub) - received,
        "sampled": len(sampled),
        "taken": len(taken),
        "not_taken": len(sampled) - len(taken),
        "node_drops": node_drops,
        "dropped": len(sampled) - len(taken) + sum(node_drops.values()),
        "decisions_at_other_stamps": len(other),
        "through": through,
        "ticks_without_frame": max(0, len(sampled) - len(taken) - len(other)) + sum(node_drops.values()),
        "batched": sum(1 for k in taken if decisions[k][1].batch > 1),
        "spoke": sum(1 for k in taken if decisions[k][1].spoke),
        "per_frame_s": stats(per_frame),
        "per_frame_silent_s": stats(silent),
    }


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

    probe.set_params(
        "live_llm",
        {
            "theta": args.theta,
            "max_new_tokens": args.max_new_tokens,
            "min_new_tokens": args.max_new_tokens,
            "min_response_interval": args.min_response_interval,
            "mute": False,
        },
    )
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
    result.update(
        {
            "responses": len(groups),
            "first_partial_s": stats(first),
            "final_s": stats(final),
            "tokens": stats(tokens),
            "examples": texts[:3],
        }
    )
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
        g = groups[min(groups)]  # the answer at once (later ones would be re-answers)
        t_first, t_final, n = latency_of(g)
        kinds[g[0][1].kind] = kinds.get(g[0][1].kind, 0) + 1
        first.append(t_first - t_ask)
        if t_final is not None:
            final.append(t_final - t_ask)
            tokens.append(n)
    return {
        "asked": len(asked),
        "accepted": sum(ok for *_, ok, _ in asked),
        "kinds": kinds,
        "refused": [m for *_, ok, m in asked if not ok],
        "first_partial_s": stats(first),
        "final_s": stats(final),
        "tokens": stats(tokens),
    }
