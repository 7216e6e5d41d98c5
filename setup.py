"""Python packaging metadata of live_ros.

Both install routes build with CMakeLists.txt (it generates the interfaces, which pip
cannot): scripts/setup.sh into .venv, and `colcon build` in a ROS workspace. This file
serves a plain `pip install .` of the functional core and the command line on a machine
that only trains or evaluates (no ROS interfaces then). It reads the same list of
executables (resource/executables) and the version from package.xml.
"""

import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def executables():
    for line in (HERE / "resource" / "executables").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, entry = line.split()[:2]
            yield f"{name} = {entry}"


def requirements():
    lines = (HERE / "requirements" / "ml.txt").read_text().splitlines()
    return [line for line in lines if line.strip() and not line.startswith("#")]


setup(
    name="live_ros",
    version=re.search(r"<version>([^<]+)</version>", (HERE / "package.xml").read_text()).group(1),
    description="An always-on video assistant (VideoLLM-online's LIVE framework) for ROS 2",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["live_ros", "live_ros.*"]),
    package_data={"live_ros": ["data/assets/*.json", "checkpoints/*/*"]},
    install_requires=requirements(),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/live_ros"]),
        ("share/live_ros", ["package.xml"]),
        ("share/live_ros/resource", ["resource/executables"]),
        ("share/live_ros/config", [str(p.relative_to(HERE)) for p in sorted((HERE / "config").glob("*.yaml"))]),
        ("share/live_ros/launch", [str(p.relative_to(HERE)) for p in sorted((HERE / "launch").glob("*.xml"))]),
        ("share/live_ros/media", [str(p.relative_to(HERE)) for p in sorted((HERE / "media").glob("demo.*"))]),
    ],
    entry_points={"console_scripts": list(executables())},
)
