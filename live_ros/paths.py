"""Where live_ros finds its files: the package share folder and the weights cache.

No rclpy here; ``ament_index_python`` is used when present (both install routes have it).
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE = "live_ros"


def checkout_root() -> Path | None:
    """The source checkout this module lives in (through the set-up's symlinks), if any."""
    root = Path(__file__).resolve().parent.parent
    return root if (root / "package.xml").is_file() and (root / "live_ros").is_dir() else None


def share_dir() -> Path:
    """The package's share folder (launch/, config/, resource/): through the ament index
    when live_ros is installed, else the source checkout."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        try:
            return Path(get_package_share_directory(PACKAGE))
        except PackageNotFoundError:
            pass
    except ImportError:
        pass
    root = checkout_root()
    if root is None:
        raise FileNotFoundError(
            "live_ros share folder not found: the package is neither in the ament index "
            "(AMENT_PREFIX_PATH) nor run from a source checkout. Run scripts/setup.sh, or "
            "source your workspace's install/setup.bash."
        )
    return root


def cache_dir() -> Path:
    """Converted weights and extracted features: $LIVE_ROS_CACHE, else .cache/ in a
    checkout, else ~/.cache/live_ros."""
    env = os.environ.get("LIVE_ROS_CACHE")
    if env:
        return Path(env).expanduser()
    root = checkout_root()
    if root is not None:
        return root / ".cache"
    return Path.home() / ".cache" / "live_ros"
