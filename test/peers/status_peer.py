"""Publishes a Status on /live/status five times a second, as a live_ros node would."""

import sys

import rclpy
from rclpy.executors import ExternalShutdownException

import live_ros  # noqa: F401
from live_ros.msg import Status
from live_ros.ros import qos


def main() -> int:
    rclpy.init()
    node = rclpy.create_node("status_peer", namespace="live")
    publisher = node.create_publisher(Status, "status", qos.status())
    count = [0]

    def tick() -> None:
        count[0] += 1
        msg = Status(node=sys.argv[1], state="active", fps=2.0, lag=0.125, cache_tokens=1234,
                     frames_in=count[0], frames_dropped=0, queries_accepted=3, queries_answered=2,
                     last_error="frame 7 refused: encoding 'bgr16' is not supported; publish rgb8")
        msg.header.stamp = node.get_clock().now().to_msg()
        publisher.publish(msg)

    node.create_timer(0.2, tick)
    print("READY", flush=True)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
