"""Both install routes: the venv set-up (route a) and `colcon build` in a ROS workspace
with the venv as underlay (route b). Every entry point starts in a fresh interpreter."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import BUILD, ROOT

VENV_PREFIX = Path(sys.prefix)


def executables() -> list[str]:
    lines = (ROOT / "resource" / "executables").read_text().splitlines()
    return [line.split()[0] for line in lines if line.strip() and not line.startswith("#")]


def fresh(code: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=BUILD, **kwargs
    )


@pytest.mark.parametrize("name", executables())
def test_venv_route_executables_start(name):
    for folder in (VENV_PREFIX / "lib" / "live_ros", VENV_PREFIX / "bin"):
        out = subprocess.run([str(folder / name), "--help"], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, f"{folder / name}: {out.stderr}"


def test_model_libraries_import_in_a_fresh_interpreter():
    out = fresh(
        "from live_ros import runtime, _torchvision_fix\n"
        "runtime.prepare()\n"
        "import transformers, timm, open_clip, torchvision\n"
        "from transformers import LlamaForCausalLM\n"
        "print(_torchvision_fix.applied)"
    )
    assert out.returncode == 0, out.stderr


def test_importing_the_package_has_no_side_effects():
    out = fresh(
        "import os, sys\n"
        "before = (dict(os.environ), list(sys.meta_path))\n"
        "import live_ros, live_ros.cli, live_ros.engine, live_ros.model.format\n"
        "print(dict(os.environ) == before[0], list(sys.meta_path) == before[1])"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True"], "importing live_ros changed the environment or sys.meta_path"


def test_torchvision_fix_applies_only_where_needed():
    probe = fresh("import live_ros._torchvision_fix as f; print(f.needed())")
    assert probe.returncode == 0, probe.stderr
    needed = probe.stdout.strip() == "True"
    bare = fresh("import torchvision")  # without live_ros first
    assert (bare.returncode != 0) == needed, bare.stderr
    if needed:
        assert "torchvision::nms does not exist" in bare.stderr
    fixed = fresh(
        "from live_ros import _torchvision_fix, runtime\nruntime.prepare_torch()\n"
        "import torchvision\nprint(_torchvision_fix.applied)"
    )
    assert fixed.returncode == 0 and fixed.stdout.strip() == str(needed)


@pytest.mark.slow
def test_colcon_route_builds_and_runs_an_installed_executable(tmp_path_factory):
    colcon = shutil.which("colcon", path=os.path.dirname(sys.executable))
    assert colcon, "colcon is missing from the venv: run scripts/setup.sh"
    ws = BUILD / "colcon_ws"
    shutil.rmtree(ws, ignore_errors=True)
    (ws / "src").mkdir(parents=True)
    # The workspace holds the package's sources as a ROS developer's checkout would.
    pkg = ws / "src" / "live_ros"
    shutil.copytree(
        ROOT,
        pkg,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "install", "log", ".cache", "__pycache__", "*.pyc", ".pytest_cache"
        ),
    )
    env = {
        **os.environ,
        "VIRTUAL_ENV": sys.prefix,
        "PATH": f"{VENV_PREFIX / 'bin'}:{os.environ['PATH']}",
        "AMENT_PREFIX_PATH": sys.prefix,
        "CMAKE_PREFIX_PATH": sys.prefix,
    }
    env.pop("PYTHONPATH", None)
    build = subprocess.run(
        [
            colcon,
            "build",
            "--event-handlers",
            "console_cohesion-",
            "--cmake-args",
            "-DBUILD_TESTING=OFF",
            "-G",
            "Ninja",
        ],
        cwd=ws,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]

    install = ws / "install"
    exe = install / "live_ros" / "lib" / "live_ros" / "live-ros"
    assert exe.is_file() and os.access(exe, os.X_OK)
    for folder in ("launch", "config"):
        if (ROOT / folder).is_dir():
            assert (install / "live_ros" / "share" / "live_ros" / folder).is_dir()
    # As a ROS user would: source the workspace, run the installed executable.
    run = subprocess.run(
        ["bash", "-c", f"source {install}/setup.bash && {exe} --info"],
        cwd=tmp_path_factory.mktemp("elsewhere"),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    fields = dict(line.split(None, 1) for line in run.stdout.splitlines() if line.strip())
    assert fields["share"] == str(install / "live_ros" / "share" / "live_ros"), run.stdout
    assert fields["interfaces"].startswith(str(install / "live_ros")), run.stdout
    assert fields["live_ros"].startswith(str(install / "live_ros")), run.stdout
    assert fields["torchvision_fix"] in ("applied", "needed", "not needed")
    check = subprocess.run(
        [
            "bash",
            "-c",
            f"source {install}/setup.bash && python -c 'from live_ros import runtime; runtime.prepare(); "
            "import live_ros.msg, live_ros.srv, transformers, timm; print(live_ros.msg.FrameTokens.__module__)'",
        ],
        cwd=tmp_path_factory.mktemp("elsewhere2"),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0 and "live_ros.msg._frame_tokens" in check.stdout, check.stderr
