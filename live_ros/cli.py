"""``live-ros``: one command, one verb per job.

Verbs appear here only once they work (shared/notes/contract.md lists the planned ones).
Heavy imports (rclpy, torch) happen inside each verb, so ``--help`` stays instant.
"""

from __future__ import annotations

import argparse
import sys


def _add_status(sub) -> None:
    p = sub.add_parser("status", help="show what every running live_ros node reports on live/status",
                       description="Listen to <namespace>/status and print the latest report of "
                                   "every live_ros node (state, fps, lag, cache, frames, queries, "
                                   "last error). Exits 1 when no node reports.")
    p.add_argument("--namespace", default="live", help="namespace of the graph (default: live)")
    p.add_argument("--timeout", type=float, default=3.0, help="seconds to listen (default: 3)")
    p.add_argument("--json", action="store_true", help="print the reports as JSON")
    p.set_defaults(run=lambda a: __import__("live_ros.ros.status_tool", fromlist=["main"]).main(a))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="live-ros",
        description="live_ros: an always-on video assistant (VideoLLM-online's LIVE) for ROS 2.")
    parser.add_argument("--info", action="store_true",
                        help="print where this installation's pieces are (package, interfaces, "
                             "share folder, cache, torch build) and exit")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for add in (_add_status,):
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


if __name__ == "__main__":
    sys.exit(main())
