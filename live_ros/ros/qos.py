"""QoS profiles of the public interface (README, "Reference: nodes, topics, services, parameters"), in one place.

- camera input: a parameter, sensor-data by default (best effort; depth camera_subscriber's qos_depth,
  30), or reliable;
- ``live/frames`` and ``live/frame_tokens``: reliable, keep last 30 (no frame is lost
  between our own nodes, and a burst of 15 s at 2 fps fits);
- ``live/response`` and ``live/response_json``: reliable, transient local, keep last 20 (a
  headset that joins late still gets the recent responses);
- ``live/decision``: reliable, keep last 100 (a replay in lockstep waits on every one);
- ``live/status``: reliable, keep last 1.
"""

from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

CAMERA_QOS_CHOICES = ("sensor_data", "reliable")


def camera(policy: str = "sensor_data", depth: int = 5) -> QoSProfile:
    if policy not in CAMERA_QOS_CHOICES:
        raise ValueError(f"camera QoS '{policy}' is not one of {', '.join(CAMERA_QOS_CHOICES)}")
    reliability = ReliabilityPolicy.BEST_EFFORT if policy == "sensor_data" else ReliabilityPolicy.RELIABLE
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=reliability, durability=DurabilityPolicy.VOLATILE
    )


def frames() -> QoSProfile:
    """``live/frames`` and ``live/frame_tokens``."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=30,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.VOLATILE,
    )


def responses() -> QoSProfile:
    """``live/response`` and ``live/response_json``."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=20,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL,
    )


def decisions() -> QoSProfile:
    """``live/decision``: one message per frame taken in by live_llm."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=100,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.VOLATILE,
    )


def status() -> QoSProfile:
    """``live/status`` (publishers). Subscribers that watch several nodes use a deeper queue."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=1,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.VOLATILE,
    )


def status_watch() -> QoSProfile:
    """``live/status`` for a subscriber that follows several nodes (their reports can arrive together):
    :func:`status` with a deeper queue."""
    profile = status()
    profile.depth = 20
    return profile
