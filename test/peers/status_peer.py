"""Publishes a Status on /live/status five times a second, as a live_ros node would.

``status_peer.py NAME [PERIOD [FIRST_DELAY]]``: reports as NAME (node status_peer_NAME when
PERIOD is given) every PERIOD seconds (0: never); with FIRST_DELAY, the first report goes
out FIRST_DELAY seconds after a subscriber has matched (a node slower than its peers)."""

import sys
import time

import rclpy
from rclpy.executors import ExternalShutdownException

from live_ros import runtime
from live_ros.msg import Status
from live_ros.ros import qos


def main() -> int:
    runtime.prepare_ros()
    rclpy.init()
    period = float(sys.argv[2]) if len(sys.argv) > 2 else 0.2
    first_delay = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
    node = rclpy.create_node("status_peer" if len(sys.argv) <= 2 else f"status_peer_{sys.argv[1]}", namespace="live")
    publisher = node.create_publisher(Status, "status", qos.status())
    count = [0]
    matched_at = [None]

    def tick() -> None:
        if period <= 0:
            return
        if first_delay:
            if matched_at[0] is None:
                if publisher.get_subscription_count() == 0:
                    return
                matched_at[0] = time.monotonic()
            if time.monotonic() - matched_at[0] < first_delay:
                return
        count[0] += 1
        msg = Status(
            node=sys.argv[1],
            state="active",
            fps=2.0,
            lag=0.125,
            cache_tokens=1234,
            frames_in=count[0],
            frames_dropped=0,
            queries_accepted=3,
            queries_answered=2,
            last_error="frame 7 refused: encoding 'bgr16' is not supported; publish rgb8",
        )
        msg.header.stamp = node.get_clock().now().to_msg()
        publisher.publish(msg)

    node.create_timer(period if period > 0 else 1.0, tick)
    print("READY", flush=True)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
