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
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

from graph_figures import ms, say
from graph_phases import measured, proactive_latency, query_latency, run_in
from graph_probe import ROOT, Probe, Video, discover, pids, set_ros_env, start_graph, wait_active
from graph_report import largest_clean_rate, node_problems, report, targets, transport_share
from graph_transport import run_echo, transport

PHASES = ("sustained", "sweep", "transport", "latency")


def run(args) -> dict:
    from live_ros import runtime

    runtime.prepare()  # the torchvision fix before transformers, the ament index before share_dir and rclpy
    from live_ros.paths import share_dir

    t_start = time.monotonic()
    log = lambda s: say(f"  [{time.monotonic() - t_start:6.1f} s] {s}")  # noqa: E731
    video = Video(Path(args.video) if args.video else share_dir() / "media" / "demo.mp4", args.camera_size)
    say(
        f"# bench_graph: preset {args.preset}, camera {video.width}x{video.height} rgb8 ({video.nbytes:,} B) at "
        f"{args.camera_fps:g} fps, camera QoS {args.camera_qos} (camera_subscriber depth "
        f"{args.camera_depth or 'from the params file'}) -> {args.model_fps:g} fps model; Fast DDS transports "
        f"{os.environ.get('FASTDDS_BUILTIN_TRANSPORTS', 'DEFAULT')}; ROS_DOMAIN_ID="
        f"{os.environ['ROS_DOMAIN_ID']} ({os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE']}); "
        f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} at start{' (--quick)' if args.quick else ''}"
    )
    log_path = args.log or tempfile.mkstemp(prefix="bench_graph_nodes_", suffix=".log")[1]
    probe = Probe(args.namespace, args.model_fps, args.camera_qos)
    supervisor, log_file = start_graph(args, log_path)
    res: dict = {
        "args": {k: v for k, v in vars(args).items() if k != "job"},
        "camera_size": [video.width, video.height],
    }
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
                log(
                    f"sweep {fps:g} fps: {r['dropped']} dropped of {r['sampled']}, {r['camera_lost']} camera images "
                    f"lost, achieved {r['camera']['achieved_fps']:.1f} fps"
                )
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
    say(
        f"nodes: {p['warnings']} warning/error lines in {p['log']}; respawns {p['respawns'] or 'none'}; "
        f"last_error {p['last_error'] or 'none'}"
    )
    for line in p["first_warnings"]:
        say(f"  {line[:240]}")
    say(f"total {time.monotonic() - t_start:.0f} s")
    return res


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a smoke run of about 2-3 minutes (short phases)")
    p.add_argument("--minutes", type=float, default=None, help="sustained run length (default 10; quick 0.33)")
    p.add_argument(
        "--camera-fps",
        type=float,
        default=30.0,
        help="camera rate of the sustained, transport and latency phases (default 30)",
    )
    p.add_argument(
        "--sweep", default=None, help="camera rates of the sweep, comma-separated (default 30,60,120,240; '' for none)"
    )
    p.add_argument("--sweep-seconds", type=float, default=None, help="seconds per sweep rate (default 60; quick 10)")
    p.add_argument("--phases", default=",".join(PHASES), help=f"phases to run (default {','.join(PHASES)})")
    p.add_argument("--model-fps", type=float, default=2.0, help="camera_subscriber's fps (default 2)")
    p.add_argument(
        "--camera-qos",
        default="sensor_data",
        choices=("sensor_data", "reliable"),
        help="QoS of the bench's camera publisher and camera_subscriber's qos parameter (default "
        "sensor_data: best effort, as camera drivers publish)",
    )
    p.add_argument(
        "--camera-depth",
        type=int,
        default=0,
        help="camera_subscriber's qos_depth (default: the "
        "params file's, 30); the bench's camera publishes with the sensor-data depth, 5",
    )
    p.add_argument(
        "--camera-size",
        default="",
        help="resize the video's frames to WxH (default: as decoded, 320x240 for the demo video)",
    )
    p.add_argument("--video", default="", help="video to publish (default: the package's media/demo.mp4)")
    p.add_argument("--preset", default="embedded", help="model preset of the nodes (default embedded)")
    p.add_argument("--namespace", default="live")
    p.add_argument(
        "--warmup-seconds",
        type=float,
        default=None,
        help="camera at its rate before measuring, after discovery (default 10; quick 3)",
    )
    p.add_argument(
        "--latency-seconds", type=float, default=None, help="proactive latency phase length (default 120; quick 25)"
    )
    p.add_argument(
        "--theta",
        type=float,
        default=1.0,
        help="live_llm theta in the latency phase (default 1.0: it wants to speak at every frame)",
    )
    p.add_argument(
        "--max-new-tokens", type=int, default=12, help="live_llm max_new_tokens in the latency phase (default 12)"
    )
    p.add_argument(
        "--min-response-interval",
        type=float,
        default=2.0,
        help="live_llm min_response_interval in the latency phase, seconds (default 2)",
    )
    p.add_argument(
        "--queries",
        type=int,
        default=None,
        help="questions asked after the proactive phase (default 10; quick 3; 0: none)",
    )
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

    signal.signal(signal.SIGINT, on_signal)  # also when started with SIGINT ignored (background shells)
    signal.signal(signal.SIGTERM, on_signal)
    sys.path.insert(0, str(ROOT))
    res = run(args)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
