"""mypy over the paths listed in the repository's mypy.ini (its ``files``, the one list of
checked modules): no type errors in the core (the CI runs this with the rest of the suite)."""

from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def checked_paths() -> list[str]:
    config = configparser.ConfigParser()
    config.read(ROOT / "mypy.ini")
    return [p.strip() for p in config["mypy"]["files"].split(",") if p.strip()]


def test_every_checked_path_exists():
    missing = [p for p in checked_paths() if not (ROOT / p).exists()]
    assert not missing, f"mypy.ini lists paths that do not exist (moved? update its `files`): {missing}"


def test_mypy_finds_nothing():
    mypy = Path(sys.executable).parent / "mypy"
    # no paths on the command line: mypy reads them from mypy.ini
    result = subprocess.run([str(mypy)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
