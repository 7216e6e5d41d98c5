"""The main job and the graph: ``demo`` (the whole graph on the bundled video) and
``launch`` (a launch file's nodes as supervised processes)."""

from __future__ import annotations


def add(sub) -> None:
    _add_demo(sub)
    _add_launch(sub)


def _add_demo(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="the main job: the full graph on the bundled video, narrated live",
        description="Start the whole graph from the package's launch file on the committed demo "
        "video with the embedded model, which narrates unasked (live_llm's standing instruction), "
        "ask a question partway, print narration and answers as they arrive, and a summary "
        "(frames, fps, responses by kind, latency, and for the bundled video the words scored "
        "against its annotation).",
    )
    p.add_argument("--video", help="another video file (default: the bundled media/demo.mp4)")
    p.add_argument("--short", action="store_const", const=30.0, dest="seconds", help="play only the first 30 s")
    p.add_argument("--seconds", type=float, default=0.0, help="play only this many seconds")
    p.add_argument(
        "--instruction",
        default=None,
        help="live_llm's standing instruction (default: the node's, a narration request; '' for none: "
        "silent until asked)",
    )
    p.add_argument("--question", default="What do you see?", help="the question asked partway")
    p.add_argument(
        "--ask-at",
        type=float,
        default=None,
        help="video second of the question, as the LLM takes the video (default: 1/3)",
    )
    p.add_argument(
        "--cameras",
        type=int,
        default=1,
        choices=(1, 2, 3, 4),
        help="cameras served by the one model, each playing the video (camera k > 1: live/cam<k>/...; default 1)",
    )
    p.add_argument("--preset", default="embedded")
    p.add_argument("--namespace", default="live")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the models to load")
    p.add_argument("--log", help="write the nodes' output to this file")
    p.add_argument("--json", help="write the responses and the summary as JSON")
    p.add_argument("--require-responses", action="store_true", help="exit 1 when nothing was said")
    p.set_defaults(run=_run_demo)


def _run_demo(args) -> int:
    from live_ros.demo import run

    return run(args)


def _add_launch(sub) -> None:
    p = sub.add_parser(
        "launch",
        help="run a launch file's nodes as supervised processes (no ROS install needed)",
        description="Read a ROS 2 launch XML file (the subset live_ros uses: arg, let, node with "
        "param/remap, respawn, if/unless) and run its nodes; Ctrl-C stops them all.",
    )
    p.add_argument(
        "file",
        nargs="?",
        default="live_ros.launch.xml",
        help="a launch file path, or a name in the package's launch folder (default: live_ros.launch.xml)",
    )
    p.add_argument("args", nargs="*", metavar="name:=value", help="launch arguments")
    p.set_defaults(run=_run_launch)


def _run_launch(args) -> int:
    from live_ros.launcher import main

    return main(args)
