"""Small rclpy helpers for tests: a private context per test and spinning until a condition."""

from __future__ import annotations

import time

from live_ros.ros.tools import private_node


def ros_node(name: str):
    """A node in its own context, with an executor; shut down at the end."""
    return private_node(name)


def spin_until(executor, condition, timeout: float, what: str, proc=None, detail=None) -> None:
    """Spin until condition() holds; fail naming `what` (and the peer's output) otherwise."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            detail_text = ""
            if proc is not None and proc.poll() is not None:
                detail_text = f"\npeer exited with {proc.returncode}:\n{proc.stdout.read()}"
            extra = f" ({detail()})" if callable(detail) else ""
            raise AssertionError(f"timed out after {timeout} s waiting for {what}{extra}{detail_text}")
        executor.spin_once(timeout_sec=0.05)
