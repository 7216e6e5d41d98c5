"""``live-ros --info``: where this installation's pieces are, like a small ``ros2 doctor``."""

from __future__ import annotations

import importlib.util
import os
import sys


def collect() -> dict[str, str]:
    import live_ros
    from live_ros import _torchvision_fix, paths

    info: dict[str, str] = {"python": f"{sys.executable} ({sys.version.split()[0]})"}
    info["live_ros"] = os.path.dirname(live_ros.__file__)
    try:
        import live_ros.msg  # the generated interfaces

        info["interfaces"] = os.path.dirname(os.path.dirname(live_ros.msg.__file__))
    except ImportError as err:
        info["interfaces"] = f"MISSING ({err}): run scripts/setup.sh or colcon build"
    try:
        info["share"] = str(paths.share_dir())
    except FileNotFoundError as err:
        info["share"] = f"MISSING ({err})"
    info["ament_prefix_path"] = os.environ.get("AMENT_PREFIX_PATH", "")
    info["cache"] = str(paths.cache_dir())
    info["rmw"] = os.environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp (default)")
    info["ros_domain_id"] = os.environ.get("ROS_DOMAIN_ID", "0")
    spec = importlib.util.find_spec("torch")
    if spec is not None:
        import torch

        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU build"
        info["torch"] = f"{torch.__version__} ({build}, {torch.cuda.device_count()} GPU visible)"
        info["torchvision_fix"] = (
            "applied" if _torchvision_fix.applied else ("needed" if _torchvision_fix.needed() else "not needed")
        )
    else:
        info["torch"] = "not installed"
    return info


def main() -> int:
    for key, value in collect().items():
        print(f"{key:18s} {value}")
    return 0
