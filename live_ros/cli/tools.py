"""Verbs that talk to a running graph: ``ask``, ``watch``, ``param``, ``status``."""

from __future__ import annotations

import sys


def add(sub) -> None:
    _add_tools(sub)
    _add_status(sub)


def _tool(name: str):
    def run(args) -> int:
        from live_ros.ros import tools

        return getattr(tools, name)(args)

    return run


def _add_tools(sub) -> None:
    p = sub.add_parser(
        "ask",
        help="ask the running assistant a question and print its answer",
        description="Send a question to <namespace>/query; print the answer(s) from "
        "<namespace>/response. Exit 2 when the query is refused.",
    )
    p.add_argument("question")
    p.add_argument("--namespace", default="live")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the service and the answer")
    p.add_argument("--partial", action="store_true", help="also print partial text while it decodes")
    p.add_argument("--no-wait", action="store_true", help="return once the query is accepted")
    p.add_argument("--json", action="store_true", help="one JSON object per response")
    p.set_defaults(run=_tool("ask"))

    p = sub.add_parser(
        "watch",
        help="print the assistant's responses as they stream",
        description="Subscribe to <namespace>/response (the recent 20 arrive first) and print "
        "narrations and answers with their video time and latency.",
    )
    p.add_argument("--namespace", default="live")
    p.add_argument("--partial", action="store_true", help="also print partial text while it decodes")
    p.add_argument("--json", action="store_true", help="one JSON object per response")
    p.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0: Ctrl-C)")
    p.add_argument("--count", type=int, default=0, help="stop after this many responses (0: no limit)")
    p.set_defaults(run=_tool("watch"))

    p = sub.add_parser(
        "param",
        help="get, set, list the parameters of a running live_ros node",
        description="live-ros param list live_llm | get live_llm theta | set live_llm theta 0.8",
    )
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


def _add_status(sub) -> None:
    p = sub.add_parser(
        "status",
        help="show what every running live_ros node reports on live/status",
        description="Listen to <namespace>/status and print the latest report of "
        "every live_ros node (state, fps, lag, cache, frames, queries, "
        "last error), and any node publishing there that sent nothing. "
        "Exits 1 when no node reports.",
    )
    p.add_argument("--namespace", default="live", help="namespace of the graph (default: live)")
    p.add_argument(
        "--timeout",
        type=float,
        default=5.0,
        help="seconds to wait (default: 5): it listens until every node that publishes on the "
        "status topic has reported (at least 2 s after the first report), and names those "
        "that did not",
    )
    p.add_argument("--json", action="store_true", help="print the reports as JSON")
    p.set_defaults(run=_run_status)


def _run_status(args) -> int:
    from live_ros.ros.status_tool import main

    return main(args)
