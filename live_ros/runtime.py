"""What a process sets up before it imports the heavy libraries, called explicitly by each
entry point (the ``live-ros`` CLI, every node's ``main``, the benchmarks, the tests'
conftest). Importing ``live_ros`` itself changes nothing.

- :func:`prepare_torch`: the torchvision fix (``live_ros/_torchvision_fix.py``), needed
  before transformers, timm or open_clip import torchvision with a CPU build of torch.
- :func:`quiet_transformers`: transformers' load reports and progress bars silenced where
  the differences they report are expected.
- :func:`prepare_ros`: in the venv route (ROS 2 from PyPI wheels) nothing sources a setup
  script; the venv is the ROS prefix, so the ament index is pointed at it as a sourced
  install would be.
"""

from __future__ import annotations

import contextlib
import os
import sys


def prepare_torch() -> None:
    from live_ros import _torchvision_fix

    _torchvision_fix.install()


def prepare_ros() -> None:
    if not os.environ.get("AMENT_PREFIX_PATH") and os.path.isdir(
        os.path.join(sys.prefix, "share", "ament_index", "resource_index", "packages")
    ):
        os.environ["AMENT_PREFIX_PATH"] = sys.prefix


def prepare() -> None:
    """Both: what every live_ros process needs before it imports torch-side libraries or rclpy."""
    prepare_torch()
    prepare_ros()


@contextlib.contextmanager
def quiet_transformers():
    """Silence transformers' load reports and progress bars for expected differences."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
