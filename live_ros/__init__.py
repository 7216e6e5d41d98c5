"""live_ros: the LIVE framework of VideoLLM-online (CVPR 2024) as ROS 2 nodes.

The functional core (model, engine, data, training, metrics) is plain Python/torch;
``live_ros.ros``, ``live_ros.nodes``, the launcher and the CLI form the ROS shell.
``live_ros.msg`` and ``live_ros.srv`` are generated from the package's msg/ and srv/.
"""

import os
import pkgutil
import sys

# The generated interfaces (live_ros.msg, live_ros.srv) live in the installed copy of the
# package; when this file is imported from a source checkout (the checkout's folder first
# on sys.path), look there too.
__path__ = pkgutil.extend_path(__path__, __name__)

from live_ros import _torchvision_fix  # noqa: E402

# Every entry point (executables, CLI verbs, tests) imports live_ros before transformers,
# timm or open_clip: this makes their import of torchvision work with a CPU torch.
_torchvision_fix.install()

# In the venv route (ROS 2 from PyPI wheels) nothing sources a setup script: the venv is
# the ROS prefix, so let the ament index find it as a sourced install would.
if not os.environ.get("AMENT_PREFIX_PATH") and os.path.isdir(
        os.path.join(sys.prefix, "share", "ament_index", "resource_index", "packages")):
    os.environ["AMENT_PREFIX_PATH"] = sys.prefix
