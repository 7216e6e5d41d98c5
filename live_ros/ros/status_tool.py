"""``live-ros status``: what every live_ros node reports on ``live/status``."""

from __future__ import annotations

import json
import os
import sys
import time

import rclpy
from rclpy.qos import QoSProfile

from live_ros.ros import qos

_COLUMNS = (
    "node",
    "state",
    "fps",
    "lag",
    "cache_tokens",
    "frames_in",
    "frames_dropped",
    "queries_accepted",
    "queries_answered",
)


def status_to_dict(msg) -> dict:
    d = {c: getattr(msg, c) for c in _COLUMNS}
    d["fps"] = round(float(d["fps"]), 2)
    d["lag"] = round(float(d["lag"]), 3)
    d["stamp"] = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
    d["last_error"] = msg.last_error
    return d


def _gid(raw) -> bytes:
    """A publisher's gid as bytes (the discovery info gives a list, a message's info a dict),
    its first 16 bytes: the part every rmw fills."""
    data = raw.get("data", b"") if isinstance(raw, dict) else raw
    return bytes(data)[:16]


def survey(namespace: str = "live", timeout: float = 5.0, settle: float = 2.0) -> tuple[dict[str, dict], list[str]]:
    """Listen to ``/<namespace>/status`` until every node known to publish there (discovered
    through the graph) has reported, or ``timeout`` seconds. Returns the latest report per
    node and the full names of the discovered publishers that sent nothing. It listens at
    least ``settle`` seconds after the first report and after the last newly discovered
    publisher, so that publishers discovered late are waited for too."""
    from live_ros.msg import Status

    topic = f"/{namespace.strip('/')}/status" if namespace.strip("/") else "/status"
    seen: dict[str, dict] = {}
    reported: set[bytes] = set()
    known: dict[bytes, str] = {}

    def on_status(msg, info) -> None:
        seen[msg.node] = status_to_dict(msg)
        gid = (info or {}).get("publisher_gid")
        if gid:
            reported.add(_gid(gid))

    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = rclpy.create_node(f"live_ros_status_{os.getpid()}", context=context)
        profile = qos.status()
        # Several nodes publish here: keep more than one message per take.
        node.create_subscription(
            Status, topic, on_status, QoSProfile(history=profile.history, depth=50, reliability=profile.reliability)
        )
        executor = rclpy.executors.SingleThreadedExecutor(context=context)
        executor.add_node(node)

        def pending() -> list[str]:
            # a publisher counts as reported by its gid, or (an rmw without gids in message
            # infos) by its node name
            return sorted(
                name for gid, name in known.items() if gid not in reported and name.rsplit("/", 1)[-1] not in seen
            )

        start = time.monotonic()
        first = changed = None
        while time.monotonic() - start < timeout:
            executor.spin_once(timeout_sec=0.1)
            for info in node.get_publishers_info_by_topic(topic):
                name = "/".join(p for p in (info.node_namespace.strip("/"), info.node_name) if p)
                if _gid(info.endpoint_gid) not in known:
                    changed = time.monotonic()
                known[_gid(info.endpoint_gid)] = "/" + name
            if seen and first is None:
                first = time.monotonic()
            # done once every known publisher reported, `settle` s after the first report and
            # after the last publisher was discovered (discovery goes on while reports arrive)
            quiet = time.monotonic() - max(first or 0.0, changed or 0.0)
            if first is not None and quiet >= settle and not pending():
                break
        silent = pending()
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
    return seen, silent


def collect(namespace: str = "live", timeout: float = 5.0) -> dict[str, dict]:
    """The latest report per node on ``/<namespace>/status`` (see :func:`survey`)."""
    return survey(namespace, timeout)[0]


def format_table(reports: dict[str, dict]) -> str:
    headers = ("node", "state", "fps", "lag s", "cache", "frames", "dropped", "queries", "answered")
    rows = [
        (
            r["node"],
            r["state"],
            f"{r['fps']:.2f}",
            f"{r['lag']:.2f}",
            str(r["cache_tokens"]),
            str(r["frames_in"]),
            str(r["frames_dropped"]),
            str(r["queries_accepted"]),
            str(r["queries_answered"]),
        )
        for r in sorted(reports.values(), key=lambda r: r["node"])
    ]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in rows]
    errors = [
        f"  {r['node']}: {r['last_error']}"
        for r in sorted(reports.values(), key=lambda r: r["node"])
        if r["last_error"]
    ]
    if errors:
        lines += ["", "last errors:", *errors]
    return "\n".join(lines)


def no_report_hint(namespace: str, timeout: float) -> str:
    domain = os.environ.get("ROS_DOMAIN_ID", "0")
    scope = os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "SUBNET")
    return (
        f"no live_ros node reported on /{namespace.strip('/')}/status within {timeout:g} s "
        f"(ROS_DOMAIN_ID={domain}, discovery range {scope}). Start the live_ros nodes, "
        f"or use the same ROS_DOMAIN_ID and "
        f"--namespace as the running nodes."
    )


def silent_hint(silent: list[str], timeout: float) -> str:
    return (
        f"no report within {timeout:g} s from {', '.join(silent)} (they publish on the status topic but sent "
        f"nothing: still starting, or stuck; try --timeout with more seconds, or look at their log)"
    )


def main(args) -> int:
    reports, silent = survey(args.namespace, args.timeout)
    if args.json:
        print(json.dumps(reports, indent=1, sort_keys=True))
    elif reports:
        print(format_table(reports))
    else:
        print(no_report_hint(args.namespace, args.timeout))
    if silent:
        print(silent_hint(silent, args.timeout), file=sys.stderr if args.json else sys.stdout)
    return 0 if reports else 1
