"""Command-line tools for users without a ROS install: ``live-ros ask``, ``watch`` and
``param``. Each creates one short-lived node in its own context."""

from __future__ import annotations

import contextlib
import difflib
import json
import math
import os
import sys
import time

import rclpy
from rclpy.executors import SingleThreadedExecutor

from live_ros.ros import qos


@contextlib.contextmanager
def private_node(name: str):
    """A node in a context of its own, with an executor; everything shut down at the end."""
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node(name, context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    try:
        yield node, executor
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=context)


def tool_node(kind: str):
    return private_node(f"live_ros_{kind}_{os.getpid()}")


def _topic(namespace: str, name: str) -> str:
    ns = namespace.strip("/")
    return f"/{ns}/{name}" if ns else f"/{name}"


def format_response(msg, partial: bool = False) -> str:
    who = msg.kind if not msg.query_id else f"{msg.kind} to query {msg.query_id}"
    mark = "..." if partial and not msg.final else ""
    return f"[{msg.video_time:7.1f} s] {who}: {msg.text}{mark}  ({msg.latency:.2f} s)"


def response_dict(msg) -> dict:
    return {
        "response_id": msg.response_id,
        "query_id": msg.query_id,
        "kind": msg.kind,
        "text": msg.text,
        "final": msg.final,
        "video_time": msg.video_time,
        "latency": msg.latency,
        "stamp": msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9,
    }


def spin_for(executor, seconds: float, until=lambda: False) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)
        if until():
            return True
    return until()


DISCOVERY_S = 5.0  # a running graph on this host is discovered well within this (typically < 1 s)


def wait_for_query_service(node, executor, client, namespace: str, timeout: float) -> str:
    """Wait for the query service: up to DISCOVERY_S when no live_llm node is in the graph
    (nothing to wait for), up to ``timeout`` while one is (it is still loading). Returns
    what is wrong, or "" once the service is there."""
    service = _topic(namespace, "query")
    ns = "/" + namespace.strip("/")

    def llm_in_graph() -> bool:
        return any(
            name == "live_llm" and (space.rstrip("/") or "/") == (ns.rstrip("/") or "/")
            for name, space in node.get_node_names_and_namespaces()
        )

    if spin_for(executor, min(timeout, DISCOVERY_S), client.service_is_ready):
        return ""
    if llm_in_graph() and spin_for(executor, max(0.0, timeout - DISCOVERY_S), client.service_is_ready):
        return ""
    domain = os.environ.get("ROS_DOMAIN_ID", "0")
    if llm_in_graph():
        return (
            f"live_llm runs in {ns} but offers no {service} within {timeout:g} s: it is still loading or "
            f"stuck (live-ros status shows its state); try again, or with a longer --timeout"
        )
    return (
        f"no service {service}: no live_llm node runs in namespace {ns} (ROS_DOMAIN_ID={domain}). Start the "
        f"graph (live-ros launch, or make demo for the bundled video) and ask again, or give the graph's "
        f"--namespace and ROS_DOMAIN_ID"
    )


def ask(args) -> int:
    """Send a question to live/query and print its answer(s) as they stream."""
    from live_ros.msg import Response
    from live_ros.srv import Query

    with tool_node("ask") as (node, executor):
        client = node.create_client(Query, _topic(args.namespace, "query"))
        problem = wait_for_query_service(node, executor, client, args.namespace, args.timeout)
        if problem:
            print(f"live-ros ask: {problem}", file=sys.stderr)
            return 1
        answers: list = []
        node.create_subscription(Response, _topic(args.namespace, "response"), answers.append, qos.responses())
        spin_for(executor, 0.3)  # let the late-joiner history arrive before asking
        answers.clear()
        future = client.call_async(Query.Request(text=args.question))
        spin_for(executor, args.timeout, future.done)
        if not future.done():
            print("live-ros ask: the query service did not reply", file=sys.stderr)
            return 1
        reply = future.result()
        if not reply.accepted:
            print(f"live-ros ask: refused: {reply.message}", file=sys.stderr)
            return 2
        if not args.json:
            print(f"query {reply.query_id} accepted")
        if args.no_wait:
            return 0
        done = lambda: any(a.query_id == reply.query_id and a.final for a in answers)  # noqa: E731
        shown = 0
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline and not done():
            executor.spin_once(timeout_sec=0.05)
        for msg in answers:
            if msg.query_id == reply.query_id and (msg.final or args.partial):
                print(json.dumps(response_dict(msg)) if args.json else format_response(msg, args.partial))
                shown += 1
        if not shown:
            print(f"live-ros ask: no answer within {args.timeout:g} s", file=sys.stderr)
            return 1
        return 0


HISTORY_S = 0.5  # the topic's history (transient local) arrives within this of the first message


def recent_responses(history: list, partial: bool) -> list:
    """The history a late joiner receives, as it is shown: the final responses, and (with
    ``partial``) the newest partial text of a response still being decoded (one with no
    final yet); the partial texts of finished responses are left out."""
    finished = {m.response_id for m in history if m.final}
    newest: dict[int, object] = {}
    for m in history:
        if not m.final and m.response_id not in finished:
            newest[m.response_id] = m
    return [m for m in history if m.final or (partial and newest.get(m.response_id) is m)]


def watch(args) -> int:
    """Print responses as they stream. The topic's history (its last 20 messages, transient
    local) comes first, shown as :func:`recent_responses`; then every final response (and
    with --partial every partial text) as it arrives."""
    from live_ros.msg import Response

    count = [0]
    history: list = []
    first = [None]

    def show(msg) -> None:
        count[0] += 1
        print(json.dumps(response_dict(msg)) if args.json else format_response(msg, args.partial), flush=True)

    def on_response(msg) -> None:
        if first[0] is None:
            first[0] = time.monotonic()
        if history is not None and time.monotonic() - first[0] < HISTORY_S:
            history.append(msg)
            return
        flush_history()
        if msg.final or args.partial:
            show(msg)

    def flush_history() -> None:
        nonlocal history
        if history is not None and first[0] is not None and time.monotonic() - first[0] >= HISTORY_S:
            for msg in recent_responses(history, args.partial):
                if not (args.count > 0 and count[0] >= args.count):
                    show(msg)
            history = None

    def done() -> bool:
        flush_history()
        return args.count > 0 and count[0] >= args.count

    with tool_node("watch") as (node, executor):
        node.create_subscription(Response, _topic(args.namespace, "response"), on_response, qos.responses())
        try:
            spin_for(executor, args.duration if args.duration > 0 else float("inf"), done)
        except KeyboardInterrupt:
            pass
        if history:
            first[0] = -math.inf
            flush_history()
    return 0


def _parameter_value(value) -> object:
    from rcl_interfaces.msg import ParameterType

    return {
        ParameterType.PARAMETER_BOOL: lambda: value.bool_value,
        ParameterType.PARAMETER_INTEGER: lambda: value.integer_value,
        ParameterType.PARAMETER_DOUBLE: lambda: value.double_value,
        ParameterType.PARAMETER_STRING: lambda: value.string_value,
    }.get(value.type, lambda: None)()


def parameter_value(value):
    """A ParameterValue of a bool, int, float or (anything else) its text."""
    from rcl_interfaces.msg import ParameterType, ParameterValue

    pv = ParameterValue()
    if isinstance(value, bool):
        pv.type, pv.bool_value = ParameterType.PARAMETER_BOOL, value
    elif isinstance(value, int):
        pv.type, pv.integer_value = ParameterType.PARAMETER_INTEGER, value
    elif isinstance(value, float):
        pv.type, pv.double_value = ParameterType.PARAMETER_DOUBLE, value
    else:
        pv.type, pv.string_value = ParameterType.PARAMETER_STRING, str(value)
    return pv


TYPE_NAMES = {
    1: "bool",
    2: "integer",
    3: "double",
    4: "string",
    5: "byte array",
    6: "bool array",
    7: "integer array",
    8: "double array",
    9: "string array",
}  # rcl_interfaces/msg/ParameterType


def unknown_parameter(base: str, name: str, names: list[str], node: str) -> str:
    """A parameter name the node does not have: the close matches first, then all the others."""
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    rest = [n for n in names if n not in close]
    guess = f"did you mean {' or '.join(close)}? " if close else ""
    return (
        f"{base} has no parameter '{name}'; {guess}its parameters: {', '.join(close + rest) or 'none'} "
        f"(live-ros param list {node} shows their values and descriptions)"
    )


def typed_value(name: str, declared: int, raw, text: str):
    """(value, problem): ``raw`` (parsed YAML) as the declared type of the parameter; an
    integer is taken for a double ("1" for 1.0), anything for a string (its text)."""
    kind = {bool: 1, int: 2, float: 3, str: 4}[type(raw)]
    if declared in (0, kind):  # 0: PARAMETER_NOT_SET, a parameter of any type
        return raw, ""
    if declared == 3 and kind == 2:
        return float(raw), ""
    if declared == 4:
        return str(text), ""
    want = TYPE_NAMES.get(declared, f"type {declared}")
    example = {1: "true", 2: "3", 3: "0.8"}.get(declared, "")
    return raw, (
        f"{name} is a{'n' if want[0] in 'aeiou' else ''} {want}; {text!r} is a{'n' if kind == 2 else ''} "
        f"{TYPE_NAMES[kind]}" + (f": give a {want} value, e.g. {example}" if example else "")
    )


def param(args) -> int:
    """get / set / list / describe the parameters of a running live_ros node."""
    import yaml
    from rcl_interfaces.msg import Parameter, ParameterType
    from rcl_interfaces.srv import DescribeParameters, GetParameters, ListParameters, SetParameters

    base = _topic(args.namespace, args.node)
    with tool_node("param") as (node, executor):

        def call(srv_type, name, request):
            client = node.create_client(srv_type, f"{base}/{name}")
            if not spin_for(executor, args.timeout, client.service_is_ready):
                raise TimeoutError(f"node {base} not found (no {base}/{name} service within {args.timeout:g} s)")
            future = client.call_async(request)
            if not spin_for(executor, args.timeout, future.done):
                raise TimeoutError(f"{base}/{name} did not reply within {args.timeout:g} s")
            return future.result()

        try:
            if args.action == "list":
                names = sorted(call(ListParameters, "list_parameters", ListParameters.Request()).result.names)
                descriptors = call(
                    DescribeParameters, "describe_parameters", DescribeParameters.Request(names=names)
                ).descriptors
                values = call(GetParameters, "get_parameters", GetParameters.Request(names=names)).values
                for name, desc, value in zip(names, descriptors, values):
                    rw = "" if desc.read_only else " (dynamic)"
                    print(f"{name} = {_parameter_value(value)!r}{rw}: {desc.description}")
                return 0
            names = sorted(call(ListParameters, "list_parameters", ListParameters.Request()).result.names)
            if args.name not in names:
                print(f"live-ros param: {unknown_parameter(base, args.name, names, args.node)}", file=sys.stderr)
                return 1
            if args.action == "get":
                value = call(GetParameters, "get_parameters", GetParameters.Request(names=[args.name])).values
                if not value or value[0].type == ParameterType.PARAMETER_NOT_SET:
                    print(f"live-ros param: {base}: parameter '{args.name}' has no value", file=sys.stderr)
                    return 1
                print(_parameter_value(value[0]))
                return 0
            declared = (
                call(DescribeParameters, "describe_parameters", DescribeParameters.Request(names=[args.name]))
                .descriptors[0]
                .type
            )
            raw = yaml.safe_load(args.value) if args.value.strip() else ""
            raw = raw if isinstance(raw, (bool, int, float)) else str(args.value)
            raw, problem = typed_value(args.name, declared, raw, args.value)
            if problem:
                print(f"live-ros param: {base} refused {args.name}={args.value}: {problem}", file=sys.stderr)
                return 1
            pv = parameter_value(raw)
            result = call(
                SetParameters, "set_parameters", SetParameters.Request(parameters=[Parameter(name=args.name, value=pv)])
            ).results[0]
            if not result.successful:
                print(f"live-ros param: {base} refused {args.name}={args.value}: {result.reason}", file=sys.stderr)
                return 1
            print(f"{base}: {args.name} = {raw!r}")
            return 0
        except TimeoutError as err:
            print(f"live-ros param: {err}: is it running (live-ros status)?", file=sys.stderr)
            return 1
