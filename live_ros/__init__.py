"""live_ros: the LIVE framework of VideoLLM-online (CVPR 2024) as ROS 2 nodes.

The functional core (model, engine, data, training, evaluation) is plain Python/torch;
``live_ros.ros``, ``live_ros.nodes``, the launcher and the CLI form the ROS shell.
``live_ros.msg`` and ``live_ros.srv`` are generated from the package's msg/ and srv/.

Importing the package has no side effects: entry points call ``live_ros.runtime.prepare()``
(the torchvision fix and the ROS environment) before the heavy imports.
"""

import pkgutil

# The generated interfaces (live_ros.msg, live_ros.srv) live in the installed copy of the
# package; when this file is imported from a source checkout (the checkout's folder first
# on sys.path), look there too.
__path__ = pkgutil.extend_path(__path__, __name__)
