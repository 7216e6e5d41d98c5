"""The shape of the code: imports go one way, no package cycles, modules small enough to
read in one sitting, and the README's code map lists every module of the tree.

Layers, lowest first (a module may import its own layer's packages or lower ones):

| layer | packages / modules |
|---|---|
| base | ``__init__``, ``runtime``, ``_torchvision_fix``, ``paths``, ``assets`` |
| model | ``model`` |
| data, engine, bags | ``data``, ``engine``, ``bags``, ``bag_types`` |
| training, evaluation | ``training``, ``evaluation`` |
| ros | ``ros``, ``msg``, ``srv`` (generated interfaces), ``launcher`` (runs launch files; no rclpy) |
| nodes | ``nodes`` |
| shell | ``demo``, ``cli`` |

Every import counts, also the lazy ones inside functions: a lazy upward import is still an
upward dependency.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "live_ros"

LAYERS: list[set[str]] = [
    {"__init__", "runtime", "_torchvision_fix", "paths", "assets"},
    {"model"},
    {"data", "engine", "bags", "bag_types"},
    {"training", "evaluation"},
    {"ros", "msg", "srv", "launcher"},
    {"nodes"},
    {"demo", "cli"},
]
LAYER = {unit: i for i, units in enumerate(LAYERS) for unit in units}

MAX_LINES = 500
# Longer modules, each one concern read top to bottom (why, in a few words).
LONG_MODULES: dict[str, str] = {
    "live_ros/model/encoders.py": "one interface and its three backends (timm, open_clip, SigLIP), side by side",
}


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def unit_of(module: str) -> str:
    """``live_ros.model.format`` -> ``model``; ``live_ros`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every live_ros import in a file, lazy ones included."""
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "live_ros"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] != "live_ros":
                continue
            if node.module == "live_ros":  # from live_ros import runtime, paths
                found += [(node.lineno, f"live_ros.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, node.module))
    return found


def test_every_unit_has_a_layer():
    units = {unit_of(module_name(p)) for p in modules()}
    assert units <= set(LAYER), f"give these a layer in test/test_architecture.py: {sorted(units - set(LAYER))}"


def test_imports_never_go_up():
    upward = []
    for path in modules():
        source = unit_of(module_name(path))
        for line, target in imports(path):
            dest = unit_of(target)
            if dest in LAYER and LAYER[dest] > LAYER.get(source, -1):
                upward.append(f"{path.relative_to(ROOT)}:{line} ({source}) imports {target} ({dest})")
    assert not upward, "imports that go up a layer:\n" + "\n".join(upward)


def test_no_cycles_between_packages():
    graph: dict[str, set[str]] = {}
    for path in modules():
        source = unit_of(module_name(path))
        for _, target in imports(path):
            dest = unit_of(target)
            if dest != source and LAYER.get(dest) == LAYER.get(source):
                graph.setdefault(source, set()).add(dest)
    cycles = [f"{a} <-> {b}" for a in graph for b in graph[a] if a < b and a in graph.get(b, set())]
    assert not cycles, f"packages importing each other: {cycles}"


def test_bags_are_pure_bag_io():
    bad = [
        f"{p.relative_to(ROOT)}:{line} imports {target}"
        for p in (PACKAGE / "bags").rglob("*.py")
        for line, target in imports(p)
        if unit_of(target) in ("evaluation", "training", "ros", "nodes", "cli")
    ]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_are_small_enough_to_read(path):
    rel = str(path.relative_to(ROOT))
    lines = len(path.read_text().splitlines())
    if rel in LONG_MODULES:
        return
    assert lines <= MAX_LINES, (
        f"{rel} has {lines} lines (> {MAX_LINES}): split it by concern, or list it in "
        f"LONG_MODULES with why it reads as one concern"
    )


def test_long_module_exceptions_are_still_needed():
    stale = [
        rel
        for rel in LONG_MODULES
        if not (ROOT / rel).is_file() or len((ROOT / rel).read_text().splitlines()) <= MAX_LINES
    ]
    assert not stale, f"no longer long (or gone): remove from LONG_MODULES: {stale}"


def code_map() -> set[str]:
    """The paths the README's "Code map" section names (``live_ros/...``)."""
    text = (ROOT / "README.md").read_text()
    match = re.search(r"^## Code map\n(.*?)(?=^## )", text, flags=re.S | re.M)
    assert match, "README.md has no '## Code map' section"
    return set(re.findall(r"`(live_ros/[\w/]+(?:\.py)?/?)`", match.group(1)))


def test_readme_code_map_matches_the_tree():
    named = {p.rstrip("/") for p in code_map()}
    tree = set()
    for path in modules():
        rel = path.relative_to(ROOT)
        if rel.name == "__init__.py" and rel.parent != Path("live_ros"):
            tree.add(str(rel.parent))
        elif rel.name != "__main__.py":
            tree.add(str(rel))
    missing = sorted(tree - named)
    gone = sorted(named - tree)
    assert not missing and not gone, f"README code map lacks: {missing}; names what is not in the tree: {gone}"
