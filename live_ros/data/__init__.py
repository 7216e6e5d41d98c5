"""Data: annotations in and out, streaming dialogue generation, the synthetic world,
feature extraction. Plain Python/torch, no rclpy."""

# The synthetic world's splits (live_ros/data/world_splits.py), here so that the CLI names
# them without importing the renderer.
SPLITS = ("train", "eval", "eval-timing", "long")
