"""``live-ros``: one command, one verb per job.

Verbs appear here only once they work.
Heavy imports (rclpy, torch) happen inside each verb, so ``--help`` stays instant.
"""

from __future__ import annotations

import argparse
import sys

from live_ros.bags.verbs import add_bag_from_video, add_record, add_replay_eval
from live_ros.data.verbs import add_extract, add_generate
from live_ros.demo import add_demo
from live_ros.evaluate import add_evaluate
from live_ros.online import add_evaluate_online
from live_ros.train import add_train


def _add_status(sub) -> None:
    p = sub.add_parser("status", help="show what every running live_ros node reports on live/status",
                       description="Listen to <namespace>/status and print the latest report of "
                                   "every live_ros node (state, fps, lag, cache, frames, queries, "
                                   "last error), and any node publishing there that sent nothing. "
                                   "Exits 1 when no node reports.")
    p.add_argument("--namespace", default="live", help="namespace of the graph (default: live)")
    p.add_argument("--timeout", type=float, default=5.0,
                   help="seconds to wait (default: 5): it listens until every node that publishes on the "
                        "status topic has reported (at least 2 s after the first report), and names those "
                        "that did not")
    p.add_argument("--json", action="store_true", help="print the reports as JSON")
    p.set_defaults(run=lambda a: __import__("live_ros.ros.status_tool", fromlist=["main"]).main(a))


def _add_check_model(sub) -> None:
    from live_ros.model.presets import PRESETS  # no torch import: the registry is plain data

    p = sub.add_parser("check-model", help="load a model preset, run one frame and one short answer",
                       description="Load a preset (encoder + LLM + adapter), run one real photo through it and "
                                   "answer one question; print parameter counts, load time, memory and "
                                   "one-frame time. Presets: " + "; ".join(
                                       f"{p.name}: {p.description}" for p in PRESETS.values()))
    p.add_argument("preset", choices=list(PRESETS), help="model preset")
    p.add_argument("--llm", help="local LLM folder (8B preset: Meta-Llama-3-8B-Instruct)")
    p.add_argument("--vision", help="local vision weights (8B preset: siglip-large-patch16-384 folder)")
    p.add_argument("--adapter", help="checkpoint folder (8B preset: videollm-online-8b-v1plus)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument("--dtype", default=None, help="float32, bfloat16 or float16 (default: float32)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    p.add_argument("--max-new-tokens", type=int, default=16, help="answer length limit (default: 16)")
    p.add_argument("--force", action="store_true", help="run an 8B preset on a CPU anyway")
    p.set_defaults(run=lambda a: __import__("live_ros.model.check", fromlist=["main"]).main(a))


def _add_launch(sub) -> None:
    p = sub.add_parser("launch", help="run a launch file's nodes as supervised processes (no ROS install needed)",
                       description="Read a ROS 2 launch XML file (the subset live_ros uses: arg, let, node with "
                                   "param/remap, respawn, if/unless) and run its nodes; Ctrl-C stops them all.")
    p.add_argument("file", nargs="?", default="live_ros.launch.xml",
                   help="a launch file path, or a name in the package's launch folder (default: live_ros.launch.xml)")
    p.add_argument("args", nargs="*", metavar="name:=value", help="launch arguments")
    p.set_defaults(run=lambda a: __import__("live_ros.launcher", fromlist=["main"]).main(a))


def _tool(name):
    return lambda a: getattr(__import__("live_ros.ros.tools", fromlist=[name]), name)(a)


def _add_tools(sub) -> None:
    p = sub.add_parser("ask", help="ask the running assistant a question and print its answer",
                       description="Send a question to <namespace>/query; print the answer(s) from "
                                   "<namespace>/response. Exit 2 when the query is refused.")
    p.add_argument("question")
    p.add_argument("--namespace", default="live")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the service and the answer")
    p.add_argument("--partial", action="store_true", help="also print partial text while it decodes")
    p.add_argument("--no-wait", action="store_true", help="return once the query is accepted")
    p.add_argument("--json", action="store_true", help="one JSON object per response")
    p.set_defaults(run=_tool("ask"))

    p = sub.add_parser("watch", help="print the assistant's responses as they stream",
                       description="Subscribe to <namespace>/response (the recent 20 arrive first) and print "
                                   "narrations and answers with their video time and latency.")
    p.add_argument("--namespace", default="live")
    p.add_argument("--partial", action="store_true", help="also print partial text while it decodes")
    p.add_argument("--json", action="store_true", help="one JSON object per response")
    p.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0: Ctrl-C)")
    p.add_argument("--count", type=int, default=0, help="stop after this many responses (0: no limit)")
    p.set_defaults(run=_tool("watch"))

    p = sub.add_parser("param", help="get, set, list the parameters of a running live_ros node",
                       description="live-ros param list live_llm | get live_llm theta | set live_llm theta 0.8")
    p.add_argument("action", choices=["get", "set", "list"])
    p.add_argument("node", help="node name, e.g. live_llm")
    p.add_argument("name", nargs="?", help="parameter name (get, set)")
    p.add_argument("value", nargs="?", help="new value (set), YAML-typed: 0.8, true, text")
    p.add_argument("--namespace", default="live")
    p.add_argument("--timeout", type=float, default=10.0)
    p.set_defaults(run=_checked_param)


def _checked_param(args) -> int:
    if args.action in ("get", "set") and not args.name:
        print(f"live-ros param {args.action}: name the parameter", file=sys.stderr)
        return 2
    if args.action == "set" and args.value is None:
        print("live-ros param set: give the new value", file=sys.stderr)
        return 2
    return _tool("param")(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="live-ros",
        description="live_ros: an always-on video assistant (VideoLLM-online's LIVE) for ROS 2.")
    parser.add_argument("--info", action="store_true",
                        help="print where this installation's pieces are (package, interfaces, "
                             "share folder, cache, torch build) and exit")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for add in (add_demo, _add_launch, _add_tools, _add_status, _add_check_model, add_generate, add_extract, add_train, add_evaluate,
                add_evaluate_online, add_record, add_bag_from_video, add_replay_eval):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.info:
        from live_ros.info import main as info_main

        return info_main()
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `live-ros watch | head`: the reader left
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
