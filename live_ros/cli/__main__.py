"""``python -m live_ros.cli``: the same as the ``live-ros`` command."""

import sys

from live_ros.cli import main

sys.exit(main())
