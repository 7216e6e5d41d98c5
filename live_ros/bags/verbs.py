"""The ``record``, ``bag-from-video`` and ``replay-eval`` verbs (registered by live_ros/cli.py).

Heavy modules (rclpy, torch, PyAV, rosbags) are imported inside the callables, so
``--help`` stays instant.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _err(verb: str, msg: str) -> int:
    print(f"live-ros {verb}: {msg}", file=sys.stderr)
    return 1


def _positive(value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not x > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return x


def _window(value: str) -> tuple[float, float]:
    try:
        lo, hi = (float(x) for x in value.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"window must be 'BEFORE,AFTER' in seconds, e.g. -0.5,3; got {value!r}") from None
    if lo > 0 or hi < 0:
        raise argparse.ArgumentTypeError(f"window must contain 0 (before <= 0 <= after), got {value!r}")
    return lo, hi


def _set(value: str) -> tuple[str, str, str]:
    if "=" not in value or "." not in value.split("=", 1)[0]:
        raise argparse.ArgumentTypeError(f"--set takes NODE.PARAM=VALUE (e.g. live_llm.theta=0.8), got {value!r}")
    key, val = value.split("=", 1)
    node, name = key.split(".", 1)
    return node, name, val


# -- bag-from-video -----------------------------------------------------------------------
def _run_bag_from_video(args) -> int:
    from live_ros.bags.bagio import BagError
    from live_ros.bags.videobag import bag_from_video

    try:
        info = bag_from_video(args.video, args.out, annotations=args.annotations, topic=args.topic,
                              compressed=args.compressed, start_stamp=args.start_stamp, frame_id=args.frame_id)
    except BagError as err:
        return _err("bag-from-video", str(err))
    span = (info["last_stamp"] or 0) - (info["first_stamp"] or 0)
    print(f"wrote {info['bag']}: {info['images']} images on {info['topic']} ({info['type']}), stamps "
          f"{info['first_stamp']:.3f} .. {info['last_stamp']:.3f} ({span:.1f} s; first stamp from {info['start_from']})"
          + ("; annotation stored in custom_data" if info["annotation"] else ""))
    return 0


def add_bag_from_video(sub) -> None:
    p = sub.add_parser("bag-from-video", help="a video file (and its annotations) to a replayable camera bag",
                       description="Decode every frame of a video file (PyAV) into a rosbag2 MCAP bag with one camera "
                                   "topic (sensor_msgs/Image rgb8, or CompressedImage jpeg/png). Stamps = start stamp + "
                                   "each frame's presentation time (the clip's real timing). A live_ros.annotation/1 "
                                   "file given with --annotations is stored in the bag's custom_data, so "
                                   "replay-eval scores against it without further arguments.")
    p.add_argument("video", help="video file (mp4, mkv, webm, ...)")
    p.add_argument("--out", required=True, help="the bag folder to write (must not exist)")
    p.add_argument("--annotations", help="the video's annotation file (live_ros.annotation/1 JSON)")
    p.add_argument("--topic", default="/camera/image_raw",
                   help="camera topic (default /camera/image_raw; /compressed is appended with --compressed)")
    p.add_argument("--compressed", nargs="?", const="jpeg", choices=("jpeg", "png"), default=None,
                   help="write sensor_msgs/CompressedImage (jpeg unless png is named)")
    p.add_argument("--start-stamp", type=float, default=None,
                   help="stamp of the first frame in seconds (default: the video's creation_time, else "
                        "1000000000 = 2001-09-09T01:46:40Z, so that every run writes the same stamps)")
    p.add_argument("--frame-id", default="camera", help="frame_id of the images (default: camera)")
    p.set_defaults(run=_run_bag_from_video)


# -- record -------------------------------------------------------------------------------
def _run_record(args) -> int:
    from live_ros.ros.record import main

    return main(args)


def add_record(sub) -> None:
    p = sub.add_parser("record", help="record a running graph (camera, frame tokens, decisions, responses) to MCAP",
                       description="Record the camera images, frame tokens, decisions and responses of a running "
                                   "graph into a rosbag2 MCAP bag (rosbags), raw CDR as received, with standard type "
                                   "names and rosidl's type hashes. Stops on Ctrl-C / SIGTERM / --duration and closes "
                                   "the bag cleanly.")
    p.add_argument("out", help="the bag folder to write (must not exist)")
    p.add_argument("--namespace", default="live")
    p.add_argument("--camera-topic", default="/camera/image_raw", help="camera topic (default /camera/image_raw)")
    p.add_argument("--compressed", action="store_true", help="the camera topic is CompressedImage")
    p.add_argument("--camera-qos", choices=("sensor_data", "reliable"), default="sensor_data",
                   help="QoS of the camera subscription (default sensor_data: matches every publisher)")
    p.add_argument("--no-camera", action="store_true", help="leave the camera images out")
    p.add_argument("--no-tokens", action="store_true", help="leave the frame tokens out")
    p.add_argument("--status", action="store_true", help="also record live/status")
    p.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0: Ctrl-C)")
    p.add_argument("--use-sim-time", action="store_true", help="log times from /clock instead of the system clock")
    p.set_defaults(run=_run_record)


# -- replay-eval --------------------------------------------------------------------------
def _run_replay_eval(args) -> int:
    from live_ros.bags.bagio import BagError
    from live_ros.bags.schedule import QuestionsError
    from live_ros.bags.score import format_report
    from live_ros.ros.graph import GraphError
    from live_ros.ros.replay import ReplayError
    from live_ros.ros.replay_eval import ReplayOptions, run

    bag = Path(args.bag)
    out = Path(args.out) if args.out else Path(f"{bag.name.removesuffix('.mcap')}-eval")
    opts = ReplayOptions(bag=bag, out=out, topic=args.topic, annotations=args.annotations, questions=args.questions,
                         realtime=args.realtime, speed=args.speed, attach=args.attach, namespace=args.namespace,
                         preset=args.preset, launch_file=args.launch_file, params_file=args.params_file,
                         sets=list(args.set), fps=args.fps, camera_qos=args.camera_qos,
                         publish_topic=args.camera_topic, window=args.window, prefer_object=not args.any_text,
                         fuzzy_threshold=args.fuzzy_threshold, offline=not args.no_offline, png=not args.no_png,
                         timeout=args.timeout, frame_timeout=args.frame_timeout,
                         log=None if args.attach else Path(args.log) if args.log else out / "graph.log")
    try:
        report = run(opts)   # checks the inputs before it creates the output folder
    except (BagError, QuestionsError, GraphError, ReplayError, FileNotFoundError, ValueError) as err:
        return _err("replay-eval", str(err))
    print(format_report(report))
    print(f"\nwrote {', '.join(report['outputs'].values())}")
    return 0


def add_replay_eval(sub) -> None:
    from live_ros.bags.score import DEFAULT_WINDOW, FUZZY_THRESHOLD

    p = sub.add_parser("replay-eval", help="replay a camera bag into the graph and score it against ground truth",
                       description="Replay a bag's camera images into the graph (started from the launch file with "
                                   "use_sim_time, or --attach), publishing /clock. Lockstep by default: after each "
                                   "image the sampling rule picks, wait for live_llm's decision, so the scores do not "
                                   "depend on machine load; --realtime plays at bag speed (x --speed) and reports "
                                   "drops and latency. Questions are asked at their bag times. Prints online "
                                   "TimeDiff per annotated event (one-to-one matching within --window), missed "
                                   "events, spurious responses, answer correctness, and the offline TimeDiff of "
                                   "`live-ros evaluate` on the same stream; writes report.json, table.txt and "
                                   "timeline.png.")
    p.add_argument("bag", help="a rosbag2 bag folder (or .mcap file) with a camera topic")
    p.add_argument("--annotations", help="live_ros.annotation/1 file (default: the one stored in the bag, if any)")
    p.add_argument("--questions", help="JSON/YAML list of {time, text, expected?, expected_at?} (video seconds; "
                   "expected_at: when a reminder's answer is due)")
    p.add_argument("--out", help="output folder (default: ./<bag name>-eval)")
    p.add_argument("--topic", help="the bag's camera topic (default: its only image topic)")
    mode = p.add_argument_group("mode")
    mode.add_argument("--realtime", action="store_true", help="play at the bag's timing instead of lockstep")
    mode.add_argument("--speed", type=_positive, default=1.0, help="real time: k times faster (default 1)")
    graph = p.add_argument_group("graph")
    graph.add_argument("--attach", action="store_true",
                       help="replay into a running graph (use_sim_time:=true, camera qos reliable) instead of "
                            "starting one; --set then changes its dynamic parameters")
    graph.add_argument("--namespace", default="live")
    graph.add_argument("--preset", default="embedded", help="model preset of the graph started (default embedded)")
    graph.add_argument("--launch-file", default="live_ros.launch.xml")
    graph.add_argument("--params-file", help="parameter file for the graph started (default: the package's)")
    graph.add_argument("--set", type=_set, action="append", default=[], metavar="NODE.PARAM=VALUE",
                       help="a node parameter, e.g. --set live_llm.theta=0.8 (repeatable)")
    graph.add_argument("--fps", type=_positive, default=2.0, help="model fps of the graph started (default 2)")
    graph.add_argument("--camera-qos", choices=("sensor_data", "reliable"),
                       help="camera QoS (default: reliable in lockstep, sensor_data in real time)")
    graph.add_argument("--camera-topic", help="publish the images on this topic instead of the bag's")
    graph.add_argument("--timeout", type=_positive, default=300.0, help="seconds for the graph to come up")
    graph.add_argument("--frame-timeout", type=_positive, default=120.0,
                       help="lockstep: seconds to wait for one frame's decision or an answer")
    graph.add_argument("--log", help="the started graph's output (default: OUT/graph.log)")
    sc = p.add_argument_group("scoring")
    sc.add_argument("--window", type=_window, default=DEFAULT_WINDOW, metavar="BEFORE,AFTER",
                    help=f"a response matches an event within [event+BEFORE, event+AFTER] s "
                         f"(default {DEFAULT_WINDOW[0]:g},{DEFAULT_WINDOW[1]:g})")
    sc.add_argument("--any-text", action="store_true",
                    help="match by time only (default: prefer responses that name the event's object)")
    sc.add_argument("--fuzzy-threshold", type=float, default=FUZZY_THRESHOLD,
                    help=f"fuzzy answer ratio counted correct (default {FUZZY_THRESHOLD:g})")
    sc.add_argument("--no-offline", action="store_true", help="skip the offline evaluation column")
    sc.add_argument("--no-png", action="store_true", help="do not draw timeline.png")
    p.set_defaults(run=_run_replay_eval)
