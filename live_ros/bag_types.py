"""rosbags type store with the live_ros interfaces, for writing and reading bags without
rclpy (record, bag-from-video, replay-eval and tests).

The types are registered from the package's own ``.msg`` files (the share folder when
installed, else the checkout), so bags carry standard type names (``live_ros/msg/...``)
and the same RIHS01 type hashes that rosidl generates.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from live_ros.paths import share_dir

MESSAGES = ("Decision", "FrameTokens", "Response", "Status")


def msg_dir() -> Path:
    folder = share_dir() / "msg"
    if not (folder / "FrameTokens.msg").is_file():
        raise FileNotFoundError(f"{folder}/FrameTokens.msg is missing: reinstall live_ros (scripts/setup.sh)")
    return folder


@lru_cache(maxsize=1)
def typestore():
    """The ROS 2 Kilted type store plus live_ros/msg/{Decision,FrameTokens,Response,Status}."""
    store = get_typestore(Stores.ROS2_KILTED)
    types = {}
    for name in MESSAGES:
        types.update(get_types_from_msg((msg_dir() / f"{name}.msg").read_text(), f"live_ros/msg/{name}"))
    store.register(types)
    return store
