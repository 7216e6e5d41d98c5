"""The ROS shell's shared pieces: QoS profiles, message conversions, small clients.

Only this package, ``live_ros.nodes``, the launcher and the CLI import rclpy.
"""
