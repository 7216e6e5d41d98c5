"""Data: annotations in and out, streaming dialogue generation, the synthetic world,
feature extraction. Plain Python/torch, no rclpy."""
