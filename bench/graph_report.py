"""The report of the graph bench (bench/bench_graph.py): the tables of each phase, the CPU
per node, the transport share of the per-frame time, the largest camera rate without
dropped frames, the nodes' problems from their log and Status, and every target (the
graph's real-time goals) with the measured value, its ratio and PASS / MISS."""

from __future__ import annotations

import os
from pathlib import Path

from graph_figures import ms, say
from graph_probe import NODES, Probe
from graph_transport import HOPS

TARGETS = {
    "minutes": 10.0,
    "camera_fps": 30.0,
    "first_partial_p50": 0.300,
    "final_p50": 1.0,
    "transport_share": 0.05,
    "max_new_tokens": 12,
}


def phase_rows(r: dict) -> None:
    cam, pf, pfs = r["camera"], r["per_frame_s"], r["per_frame_silent_s"]
    drops = ", ".join(f"{n} {v}" for n, v in r["node_drops"].items())
    say(
        f"| camera images published (achieved rate) | {cam['published']} in {cam['seconds']:.0f} s "
        f"({cam['achieved_fps']:.1f} fps of {cam['fps']:g}; {cam['skipped_slots']} slots skipped by the bench) |"
    )
    say(f"| ... received by camera_subscriber (lost in transport) | {r['camera_received']} ({r['camera_lost']}) |")
    say(f"| sampled by the 2 fps rule (from the published stamps) | {r['sampled']} |")
    say(
        f"| taken (live/decision with the sampled stamp) | {r['taken']} (frame_encoder in "
        f"{r['through'].get('frame_encoder', '-')}, live_llm in {r['through'].get('live_llm', '-')}) |"
    )
    say(f"| **dropped** = sampled - taken + nodes' frames_dropped | **{r['dropped']}** ({r['not_taken']} + {drops}) |")
    say(
        f"| decisions at stamps the rule did not sample (the tick's image was lost, a later one taken) | "
        f"{r['decisions_at_other_stamps']} |"
    )
    say(
        f"| ticks of the 2 fps grid with no model frame at all (dropped, less the replaced ones) | "
        f"{r['ticks_without_frame']} |"
    )
    say(f"| frames taken in a batch (model behind) / spoke | {r['batched']} / {r['spoke']} |")
    say(
        f"| per-frame time, stamp -> Decision received, p50 / p95 / max ms | {ms(pf['p50'])} / {ms(pf['p95'])} / "
        f"{ms(pf['max'])} (silent frames: {ms(pfs['p50'])} / {ms(pfs['p95'])}) |"
    )
    say(f"| live_llm lag (max of Status.lag) | {r['max_llm_lag_s']:.2f} s |")


def cpu_table(usage: dict) -> None:
    say("| process | pid | % of one core | share of the graph |")
    say("|---|---|---|---|")
    for n in NODES:
        say(
            f"| {n} | {usage['pids'][n]} | {usage['percent_of_core'][n]:.1f} | "
            f"{usage['share_of_graph'][n] * 100:.0f} % |"
        )
    say(f"| graph (3 nodes) | | {usage['graph_percent']:.1f} | 100 % |")
    say(f"| bench (camera + receivers) | {os.getpid()} | {usage['percent_of_core']['bench']:.1f} | |")
    other = usage["percent_of_core"]["machine"] - usage["graph_percent"] - usage["percent_of_core"]["bench"]
    say(
        f"| machine, all processes ({usage['cores']} cores) | | {usage['percent_of_core']['machine']:.1f} | "
        f"(other work: {other:.0f} %) |"
    )


def verdict(ok: bool, conclusive: bool = True, note: str = "") -> str:
    text = "PASS" if ok else "MISS"
    return text + (f" ({note})" if note else "") if conclusive else f"{text}, not conclusive ({note})"


def targets(args, res: dict) -> list[dict]:
    rows = []
    sus = res.get("sustained")
    if sus:
        minutes = sus["camera"]["seconds"] / 60
        full = minutes >= TARGETS["minutes"] - 0.05 and args.camera_fps >= TARGETS["camera_fps"]
        rows.append(
            {
                "target": f"{TARGETS['camera_fps']:g} fps camera sampled to 2 fps for {TARGETS['minutes']:g} min: "
                f"zero dropped model frames",
                "measured": f"{sus['dropped']} dropped of "
                f"{sus['sampled']} ({sus['ticks_without_frame']} ticks with no frame; {args.camera_fps:g} fps, "
                f"{minutes:.1f} min)",
                "ratio": "-",
                "met": sus["dropped"] == 0,
                "conclusive": full,
                "note": "" if full else f"run was {minutes:.1f} min at {args.camera_fps:g} fps",
            }
        )
    lat = res.get("latency")
    if lat:
        for key, label, limit in (
            ("first_partial_s", "first partial response p50", TARGETS["first_partial_p50"]),
            ("final_s", f"final (<= {TARGETS['max_new_tokens']} tokens) p50", TARGETS["final_p50"]),
        ):
            v = lat[key]["p50"]
            rows.append(
                {
                    "target": f"{label} <= {limit * 1000:g} ms",
                    "measured": f"{ms(v)} ms (n={lat[key]['n']})",
                    "ratio": f"{v / limit:.2f}x" if v == v else "-",
                    "met": v <= limit,
                    "conclusive": lat[key]["n"] >= 5 and args.max_new_tokens <= TARGETS["max_new_tokens"],
                    "note": "" if lat[key]["n"] >= 5 else "fewer than 5 responses",
                }
            )
    share = res.get("transport_share")
    if share:
        v = share["share"]
        rows.append(
            {
                "target": f"ROS transport <= {TARGETS['transport_share'] * 100:g} % of per-frame time",
                "measured": f"{v * 100:.2f} % ({ms(share['hops_s'])} of {ms(share['per_frame_s'])} ms)",
                "ratio": f"{v / TARGETS['transport_share']:.2f}x" if v == v else "-",
                "met": v <= TARGETS["transport_share"],
                "conclusive": share["pings"] >= 20,
                "note": "" if share["pings"] >= 20 else f"{share['pings']} pings per hop",
            }
        )
    return rows


def report(args, res: dict) -> None:
    if "sustained" in res:
        r = res["sustained"]
        say("")
        say(
            f"## 1. Sustained: {args.camera_fps:g} fps camera, {r['camera']['seconds'] / 60:.1f} min, "
            f"live_llm as configured"
        )
        say("| figure | value |")
        say("|---|---|")
        phase_rows(r)
    if "sweep" in res:
        say("")
        say(f"## 2. Camera rate sweep ({args.sweep_seconds:g} s per rate, model at {args.model_fps:g} fps)")
        say(
            "| camera fps | achieved | published | lost camera images | sampled | taken | dropped | ticks with "
            "no frame | per-frame p50 ms | camera_subscriber % core | graph % core |"
        )
        say("|---|---|---|---|---|---|---|---|---|---|---|")
        for r in res["sweep"]:
            c = r["camera"]
            say(
                f"| {c['fps']:g} | {c['achieved_fps']:.1f} | {c['published']} | {r['camera_lost']} | {r['sampled']} | "
                f"{r['taken']} | {r['dropped']} | {r['ticks_without_frame']} | {ms(r['per_frame_s']['p50'])} | "
                f"{r['cpu']['percent_of_core']['camera_subscriber']:.1f} | {r['cpu']['graph_percent']:.1f} |"
            )
        best = res.get("largest_rate_without_drops")
        say(
            f"largest camera rate with zero dropped model frames (at it and every lower rate): "
            f"**{f'{best:g} fps' if best else 'none'}**"
        )
    if "transport" in res:
        say("")
        say(
            f"## 3. ROS transport, one way (ping-pong / 2 with an echo process, same types, sizes and QoS; "
            f"{args.pings} pings per message, while the camera runs at {args.camera_fps:g} fps)"
        )
        say("| hop | message | serialized bytes | p50 ms | p95 ms | max ms | lost |")
        say("|---|---|---|---|---|---|---|")
        for kind, _ in HOPS:
            h = res["transport"][kind]
            say(
                f"| {h['hop']} | {h['message']} | {h['bytes']:,} | {ms(h['p50'])} | {ms(h['p95'])} | "
                f"{ms(h['max'])} | {h['lost']} |"
            )
        s = res.get("transport_share")
        if s:
            say(
                f"3 hops into live_llm: {ms(s['hops_s'])} ms (p50s summed); per-frame time (camera stamp -> "
                f"Decision received, {s['source']} run, silent frames, p50): {ms(s['per_frame_s'])} ms; "
                f"**transport share {s['share'] * 100:.2f} %** (with the Decision hop back: "
                f"{s['share_with_decision'] * 100:.2f} %)"
            )
    if "latency" in res:
        lat, q = res["latency"], res.get("queries")
        say("")
        say(
            f"## 4. Latency (live_llm theta={args.theta:g}, max_new_tokens={args.max_new_tokens}, "
            f"min_response_interval={args.min_response_interval:g} s; {args.camera_fps:g} fps camera, "
            f"{lat['camera']['seconds']:.0f} s)"
        )
        say("| from -> to | p50 ms | p95 ms | max ms | n |")
        say("|---|---|---|---|---|")
        rows = [
            ("frame stamp -> first partial Response (proactive)", lat["first_partial_s"]),
            ("frame stamp -> final Response (proactive)", lat["final_s"]),
        ]
        if q:
            rows += [
                ("query call -> first partial answer", q["first_partial_s"]),
                ("query call -> final answer", q["final_s"]),
            ]
        for label, v in rows:
            say(f"| {label} | {ms(v['p50'])} | {ms(v['p95'])} | {ms(v['max'])} | {v['n']} |")
        say(
            f"tokens per proactive response: mean {lat['tokens']['mean']:.1f}, max {lat['tokens']['max']} "
            f"({lat['responses']} responses); dropped model frames in this phase: {lat['dropped']} of "
            f"{lat['sampled']}"
        )
        if q:
            say(
                f"queries: {q['asked']} asked, {q['accepted']} accepted, ended as {q['kinds']}; tokens per answer: "
                f"mean {q['tokens']['mean']:.1f}"
            )
        for text in lat.get("examples", []):
            say(f'  e.g. "{text}"')
    cpu = (res.get("sustained") or (res.get("sweep") or [None])[0] or res.get("latency") or {}).get("cpu")
    if cpu:
        say("")
        say(
            f"## 5. CPU per node ({'sustained' if 'sustained' in res else 'first measured'} window, "
            f"{cpu['seconds']:.0f} s; utime + stime from /proc, all threads and child processes)"
        )
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
    return {
        "log": log_path,
        "warnings": len(warnings),
        "first_warnings": list(dict.fromkeys(warnings))[:8],
        "last_error": errors,
        "respawns": {n: c for n, c in supervisor.respawns.items() if c},
    }


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
    return {
        "hops_s": hops,
        "per_frame_s": per_frame,
        "share": hops / per_frame,
        "pings": min(res["transport"][k]["n"] for k in ("camera", "frames", "tokens")),
        "share_with_decision": (hops + back) / per_frame,
        "source": "sustained" if "sustained" in res else "first measured",
    }


def largest_clean_rate(sweep: list[dict]) -> float | None:
    """The largest rate such that it and every lower rate swept had zero dropped model frames."""
    best = None
    for r in sorted(sweep, key=lambda r: r["camera"]["fps"]):
        if r["dropped"]:
            break
        best = r["camera"]["fps"]
    return best
