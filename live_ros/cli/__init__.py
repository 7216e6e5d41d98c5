"""``live-ros``: one command, one verb per job.

The verbs come from the group modules in ``GROUPS``, in the order ``--help`` lists them;
each group module has ``add(sub)``, which adds its verbs to the subparsers and sets
``run=<callable(args) -> int>``. Heavy imports (rclpy, torch) happen inside each verb's
run function, so ``--help`` stays instant.

| module | verbs |
|---|---|
| ``cli/demo.py`` | demo, launch |
| ``cli/tools.py`` | ask, watch, param, status |
| ``cli/model.py`` | check-model |
| ``cli/data.py`` | generate, extract |
| ``cli/train.py`` | train |
| ``cli/evaluate.py`` | evaluate, evaluate-online, replay-eval |
| ``cli/score.py`` | score |
| ``cli/bags.py`` | record, bag-from-video |
"""

from __future__ import annotations

import argparse
import sys

from live_ros import runtime
from live_ros.cli import bags, data, demo, evaluate, model, score, tools, train

GROUPS = (demo, tools, model, data, train, evaluate, score, bags)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="live-ros", description="live_ros: an always-on video assistant (VideoLLM-online's LIVE) for ROS 2."
    )
    parser.add_argument(
        "--info",
        action="store_true",
        help="print where this installation's pieces are (package, interfaces, "
        "share folder, cache, torch build) and exit",
    )
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for group in GROUPS:
        group.add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    runtime.prepare()
    if args.info:
        from live_ros.cli.info import main as info_main

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
