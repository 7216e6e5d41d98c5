"""The nodes' common shell (live_ros/nodes/base.py): a node on sim time with no /clock yet
still stops at once on SIGTERM and SIGINT (nothing but signals can wake it then)."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.ros

EXE = Path(sys.executable).parent.parent / "lib" / "live_ros" / "camera_subscriber"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_node_on_sim_time_without_clock_stops_on_signal(processes, signum):
    proc = processes.start(EXE, "--ros-args", "-p", "use_sim_time:=true", "-r", "__ns:=/base_test")
    lines: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any("letterbox" in line for line in lines):
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
    assert any("letterbox" in line for line in lines), "".join(lines)
    time.sleep(1.0)
    t0 = time.monotonic()
    proc.send_signal(signum)
    assert proc.wait(timeout=10) == 0
    assert time.monotonic() - t0 < 5
