"""A camera: publishes rgb8 images stamped with the clock on a topic until it is stopped.

``camera_peer.py TOPIC [RATE [QOS]]``: RATE images a second (default 10), 160x120 pixels,
with the camera QoS QOS (``sensor_data`` or ``reliable``, default reliable). Node name
``camera_peer``, so a subscriber can name its publisher."""

import sys

import numpy as np
import rclpy
from rclpy.executors import ExternalShutdownException
from sensor_msgs.msg import Image

from live_ros import runtime
from live_ros.ros import qos
from live_ros.ros.convert import rgb_to_image


def main() -> int:
    runtime.prepare_ros()
    rclpy.init()
    topic = sys.argv[1]
    rate = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
    policy = sys.argv[3] if len(sys.argv) > 3 else "reliable"
    node = rclpy.create_node("camera_peer")
    publisher = node.create_publisher(Image, topic, qos.camera(policy))
    rgb = np.full((120, 160, 3), 90, np.uint8)

    def tick() -> None:
        publisher.publish(rgb_to_image(rgb, node.get_clock().now().to_msg(), "camera"))

    node.create_timer(1.0 / rate, tick)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
