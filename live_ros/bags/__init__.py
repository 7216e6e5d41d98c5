"""Rosbag record, replay and online evaluation: the pure core (no rclpy here).

- :mod:`live_ros.bags.bagio`: open and check bags (clear :class:`~live_ros.bags.bagio.BagError`
  naming the bag and the topic), scan camera topics (gaps, reordered stamps), write camera
  bags (``live-ros bag-from-video``).
- :mod:`live_ros.bags.schedule`: which images the graph will take (the core's sampling
  rule, as camera_subscriber applies it) and when questions are asked.
- :mod:`live_ros.bags.score`: online TimeDiff (one-to-one matching of responses to
  annotated events), missed and spurious responses, answer correctness, latency; the table.
- :mod:`live_ros.bags.timeline`: the timeline PNG.
- :mod:`live_ros.bags.offline`: the offline side (``live-ros evaluate`` on the same stream).
- :mod:`live_ros.bags.verbs`: the ``record``, ``bag-from-video`` and ``replay-eval`` verbs.

The ROS shell is :mod:`live_ros.ros.record` (the recorder) and :mod:`live_ros.ros.replay`
(the player).
"""
