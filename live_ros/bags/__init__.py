"""Rosbag I/O and conversion: the pure core of record and replay (no rclpy, no evaluation).

- :mod:`live_ros.bags.bagio`: open and check bags (clear :class:`~live_ros.bags.bagio.BagError`
  naming the bag and the topic), scan camera topics (gaps, reordered stamps), stream and
  decode their images.
- :mod:`live_ros.bags.images`: camera images (``Image``, ``CompressedImage``) to RGB
  arrays, shared with the camera nodes.
- :mod:`live_ros.bags.videobag`: write camera bags from video files (``live-ros bag-from-video``).
- :mod:`live_ros.bags.schedule`: which images the graph will take (the core's sampling
  rule, as camera_subscriber applies it) and when questions are asked.

Scoring a replay is :mod:`live_ros.evaluation` (score, report, plots, bag_streams); the
ROS shell is :mod:`live_ros.ros.record` (the recorder), :mod:`live_ros.ros.replay` (the
player) and :mod:`live_ros.ros.replay_eval`; the verbs are in :mod:`live_ros.cli.bags`
and :mod:`live_ros.cli.evaluate`.
"""
