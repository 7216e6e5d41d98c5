"""The live-ros command in fresh processes, as a user runs it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PEERS

LIVE_ROS = shutil.which("live-ros", path=os.path.dirname(sys.executable)) or "live-ros"


def run(*args, timeout=60):
    return subprocess.run([LIVE_ROS, *args], capture_output=True, text=True, timeout=timeout, env=os.environ)


def test_help_lists_only_working_verbs():
    out = run("--help")
    assert out.returncode == 0, out.stderr
    for verb in ("demo", "launch", "ask", "watch", "status", "param", "check-model", "generate", "extract", "train",
                 "evaluate", "record", "bag-from-video", "replay-eval"):
        assert f"    {verb}" in out.stdout


def test_bag_verbs_help_is_instant_and_complete():
    for verb, words in (("record", ("--no-tokens", "--duration")), ("bag-from-video", ("--compressed", "--start-stamp")),
                        ("replay-eval", ("--realtime", "--speed", "--attach", "--questions", "--window"))):
        out = run(verb, "--help", timeout=20)
        assert out.returncode == 0, out.stderr
        assert all(w in out.stdout for w in words), out.stdout


def test_unknown_verb_fails_with_usage():
    out = run("frobnicate")
    assert out.returncode == 2 and "invalid choice" in out.stderr


def test_info_names_the_installed_pieces():
    out = run("--info")
    assert out.returncode == 0, out.stderr
    fields = dict(line.split(None, 1) for line in out.stdout.splitlines() if line.strip())
    assert (Path(fields["share"]) / "package.xml").is_file()
    assert (Path(fields["interfaces"]) / "msg" / "__init__.py").is_file()
    assert "MISSING" not in out.stdout


@pytest.mark.ros
def test_status_shows_a_running_node(processes):
    peer = processes.python(PEERS / "status_peer.py", "frame_encoder")
    assert peer.stdout.readline().strip() == "READY"
    out = run("status", "--json", "--timeout", "20")
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads(out.stdout)["frame_encoder"]
    assert report["state"] == "active" and report["cache_tokens"] == 1234 and report["queries_answered"] == 2
    assert "bgr16" in report["last_error"]
    table = run("status", "--timeout", "20")
    assert table.returncode == 0 and "frame_encoder" in table.stdout and "last errors:" in table.stdout


@pytest.mark.ros
def test_status_without_nodes_says_why():
    out = run("status", "--timeout", "1", "--namespace", "nobody_here")
    assert out.returncode == 1
    assert "no live_ros node reported on /nobody_here/status" in out.stdout
    assert f"ROS_DOMAIN_ID={os.environ['ROS_DOMAIN_ID']}" in out.stdout
