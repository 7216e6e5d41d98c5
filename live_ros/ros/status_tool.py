"""``live-ros status``: what every live_ros node reports on ``live/status``."""

from __future__ import annotations

import json
import os
import time

import rclpy
from rclpy.qos import QoSProfile

from live_ros.ros import qos

_COLUMNS = ("node", "state", "fps", "lag", "cache_tokens", "frames_in", "frames_dropped",
            "queries_accepted", "queries_answered")


def status_to_dict(msg) -> dict:
    d = {c: getattr(msg, c) for c in _COLUMNS}
    d["fps"] = round(float(d["fps"]), 2)
    d["lag"] = round(float(d["lag"]), 3)
    d["stamp"] = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
    d["last_error"] = msg.last_error
    return d


def collect(namespace: str = "live", timeout: float = 5.0, settle: float = 2.0) -> dict[str, dict]:
    """Listen to ``/<namespace>/status``: the latest report per node. Stops `settle` seconds
    after the first report (nodes report about once a second), or after `timeout`."""
    from live_ros.msg import Status

    topic = f"/{namespace.strip('/')}/status" if namespace.strip("/") else "/status"
    seen: dict[str, dict] = {}
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = rclpy.create_node(f"live_ros_status_{os.getpid()}", context=context)
        profile = qos.status()
        # Several nodes publish here: keep more than one message per take.
        node.create_subscription(Status, topic, lambda m: seen.__setitem__(m.node, status_to_dict(m)),
                                 QoSProfile(history=profile.history, depth=50, reliability=profile.reliability))
        executor = rclpy.executors.SingleThreadedExecutor(context=context)
        executor.add_node(node)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            executor.spin_once(timeout_sec=min(0.1, max(0.0, deadline - time.monotonic())))
            if seen and deadline - time.monotonic() > settle:
                deadline = time.monotonic() + settle
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
    return seen


def format_table(reports: dict[str, dict]) -> str:
    headers = ("node", "state", "fps", "lag s", "cache", "frames", "dropped", "queries", "answered")
    rows = [(r["node"], r["state"], f"{r['fps']:.2f}", f"{r['lag']:.2f}", str(r["cache_tokens"]),
             str(r["frames_in"]), str(r["frames_dropped"]), str(r["queries_accepted"]),
             str(r["queries_answered"])) for r in sorted(reports.values(), key=lambda r: r["node"])]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in rows]
    errors = [f"  {r['node']}: {r['last_error']}" for r in sorted(reports.values(), key=lambda r: r["node"])
              if r["last_error"]]
    if errors:
        lines += ["", "last errors:", *errors]
    return "\n".join(lines)


def no_report_hint(namespace: str, timeout: float) -> str:
    domain = os.environ.get("ROS_DOMAIN_ID", "0")
    scope = os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "SUBNET")
    return (f"no live_ros node reported on /{namespace.strip('/')}/status within {timeout:g} s "
            f"(ROS_DOMAIN_ID={domain}, discovery range {scope}). Start the live_ros nodes, "
            f"or use the same ROS_DOMAIN_ID and "
            f"--namespace as the running nodes.")


def main(args) -> int:
    reports = collect(args.namespace, args.timeout)
    if args.json:
        print(json.dumps(reports, indent=1, sort_keys=True))
    elif reports:
        print(format_table(reports))
    else:
        print(no_report_hint(args.namespace, args.timeout))
    return 0 if reports else 1
