"""Test isolation: every pytest run gets its own ROS domain, localhost-only discovery and a
ROS_HOME inside the build tree, so parallel runs and the user's own graph never mix.

``live_ros.runtime.prepare()`` runs first, as in every entry point: the torchvision fix is in
place before any test imports transformers, timm or open_clip.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from live_ros import runtime

runtime.prepare()

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build"

# Domains 1-100 are valid on Linux with the default port mapping; 0 is the usual user default.
os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ["ROS_HOME"] = str(BUILD / "test_ros_home")
os.environ.setdefault("PYTHONUNBUFFERED", "1")
Path(os.environ["ROS_HOME"]).mkdir(parents=True, exist_ok=True)


class Processes:
    """Real child processes of a test, always stopped at its end."""

    def __init__(self):
        self.procs: list[subprocess.Popen] = []

    def start(self, *args, env=None, **kwargs) -> subprocess.Popen:
        proc = subprocess.Popen(
            [str(a) for a in args],
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            **kwargs,
        )
        self.procs.append(proc)
        return proc

    def python(self, script: Path, *args, **kwargs) -> subprocess.Popen:
        return self.start(sys.executable, script, *args, **kwargs)

    def stop_all(self, timeout: float = 10.0) -> None:
        """Terminate, then kill what is still running after ``timeout`` seconds (a launcher
        needs longer than its own stop sequence, 5 s per signal, or its nodes outlive it)."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def processes():
    procs = Processes()
    yield procs
    procs.stop_all()


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


PEERS = Path(__file__).resolve().parent / "peers"
