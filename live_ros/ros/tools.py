"""Command-line tools for users without a ROS install: ``live-ros ask``, ``watch`` and
``param``. Each creates one short-lived node in its own context."""

from __future__ import annotations

import contextlib
import json
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
    return {"response_id": msg.response_id, "query_id": msg.query_id, "kind": msg.kind, "text": msg.text,
            "final": msg.final, "video_time": msg.video_time, "latency": msg.latency,
            "stamp": msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9}


def spin_for(executor, seconds: float, until=lambda: False) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)
        if until():
            return True
    return until()


def ask(args) -> int:
    """Send a question to live/query and print its answer(s) as they stream."""
    from live_ros.msg import Response
    from live_ros.srv import Query

    with tool_node("ask") as (node, executor):
        client = node.create_client(Query, _topic(args.namespace, "query"))
        if not spin_for(executor, args.timeout, client.service_is_ready):
            print(f"live-ros ask: no service {_topic(args.namespace, 'query')} within {args.timeout:g} s: is live_llm "
                  f"running (live-ros status), with the same ROS_DOMAIN_ID and namespace?", file=sys.stderr)
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


def watch(args) -> int:
    """Print responses as they stream (the last 20 first: the topic is transient local)."""
    from live_ros.msg import Response

    count = [0]

    def on_response(msg) -> None:
        if not (msg.final or args.partial):
            return
        count[0] += 1
        print(json.dumps(response_dict(msg)) if args.json else format_response(msg, args.partial), flush=True)

    with tool_node("watch") as (node, executor):
        node.create_subscription(Response, _topic(args.namespace, "response"), on_response, qos.responses())
        try:
            spin_for(executor, args.duration if args.duration > 0 else float("inf"),
                     lambda: args.count > 0 and count[0] >= args.count)
        except KeyboardInterrupt:
            pass
    return 0


def _parameter_value(value) -> object:
    from rcl_interfaces.msg import ParameterType

    return {ParameterType.PARAMETER_BOOL: lambda: value.bool_value,
            ParameterType.PARAMETER_INTEGER: lambda: value.integer_value,
            ParameterType.PARAMETER_DOUBLE: lambda: value.double_value,
            ParameterType.PARAMETER_STRING: lambda: value.string_value}.get(value.type, lambda: None)()


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
            spin_for(executor, args.timeout, future.done)
            return future.result()

        try:
            if args.action == "list":
                names = sorted(call(ListParameters, "list_parameters", ListParameters.Request()).result.names)
                descriptors = call(DescribeParameters, "describe_parameters",
                                   DescribeParameters.Request(names=names)).descriptors
                values = call(GetParameters, "get_parameters", GetParameters.Request(names=names)).values
                for name, desc, value in zip(names, descriptors, values):
                    rw = "" if desc.read_only else " (dynamic)"
                    print(f"{name} = {_parameter_value(value)!r}{rw}: {desc.description}")
                return 0
            if args.action == "get":
                value = call(GetParameters, "get_parameters", GetParameters.Request(names=[args.name])).values
                if not value or value[0].type == ParameterType.PARAMETER_NOT_SET:
                    print(f"live-ros param: {base} has no parameter '{args.name}'", file=sys.stderr)
                    return 1
                print(_parameter_value(value[0]))
                return 0
            raw = yaml.safe_load(args.value) if args.value.strip() else ""
            pv = parameter_value(raw if isinstance(raw, (bool, int, float)) else str(args.value))
            result = call(SetParameters, "set_parameters",
                          SetParameters.Request(parameters=[Parameter(name=args.name, value=pv)])).results[0]
            if not result.successful:
                print(f"live-ros param: {base} refused {args.name}={args.value}: {result.reason}", file=sys.stderr)
                return 1
            print(f"{base}: {args.name} = {raw!r}")
            return 0
        except TimeoutError as err:
            print(f"live-ros param: {err}: is it running (live-ros status)?", file=sys.stderr)
            return 1
