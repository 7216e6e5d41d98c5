"""``live-ros launch <file>``: run a ROS launch XML file without ROS's launch package.

`launch`/`launch_ros` cannot be installed from PyPI here, so this reads the subset of the
XML frontend that live_ros's own launch file uses and runs each node as a supervised
process, the way ``ros2 launch`` would:

- ``<arg name default description/>`` (overridden by ``name:=value`` on the command line),
  ``<let name value/>``;
- ``<node pkg exec name namespace respawn respawn_delay if unless>`` with ``<param
  name value/>``, ``<param from="file.yaml"/>`` and ``<remap from to/>`` children;
- substitutions ``$(var x)``, ``$(env X [default])``, ``$(find-pkg-share pkg)``,
  ``$(find-pkg-prefix pkg)``, ``$(eval expr)`` (numbers, strings, comparisons, and/or/not,
  + - *: what ``if="$(eval '$(var cameras) >= 2')"`` needs).

Anything else is refused with the element's name. Each node's output is prefixed with its
name. Every node is supervised: its exit is reported with its code (or the signal that
killed it). A node declared ``respawn="true"`` is restarted ``respawn_delay`` seconds after
an abnormal exit (a non-zero code, or killed by a signal such as ``kill -9``); one that
exits with code 0 ended its job (or was stopped on purpose, SIGTERM / Ctrl-C) and is not
restarted. The launcher says at start which nodes it respawns. Ctrl-C (or SIGTERM) stops
every node (SIGINT, then SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import ast
import os
import re
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path


class LaunchError(ValueError):
    """A launch file this launcher cannot run; the text names the file and element."""


@dataclass
class NodeSpec:
    package: str
    executable: str
    name: str
    namespace: str = ""
    respawn: bool = False
    respawn_delay: float = 1.0
    params: list[tuple[str, str]] = field(default_factory=list)  # (name, value)
    param_files: list[str] = field(default_factory=list)
    remaps: list[tuple[str, str]] = field(default_factory=list)

    @property
    def full_name(self) -> str:
        ns = self.namespace.strip("/")
        return f"/{ns}/{self.name}" if ns else f"/{self.name}"

    def command(self, scratch: Path | None = None) -> list[str]:
        """The node's command line. ``<param name value>`` values go into a parameter file
        of their own (in ``scratch``), under the node's full name, after the node's other
        files: as with ros2 launch, they win over the files' node and ``/**`` sections
        (a ``-p`` override would not: it counts as ``/**``)."""
        exe = executable_path(self.package, self.executable)
        cmd = [str(exe), "--ros-args", "-r", f"__node:={self.name}"]
        if self.namespace:
            cmd += ["-r", f"__ns:=/{self.namespace.strip('/')}"]
        for path in self.param_files:
            cmd += ["--params-file", path]
        if self.params:
            import tempfile

            import yaml

            values = {}
            for name, text in self.params:
                value = yaml.safe_load(text) if text.strip() else ""
                values[name] = text if value is None or isinstance(value, (dict, list)) else value
            folder = Path(scratch or tempfile.mkdtemp(prefix="live_ros_launch_"))
            path = folder / f"{self.full_name.strip('/').replace('/', '__')}.yaml"
            path.write_text(yaml.safe_dump({self.full_name: {"ros__parameters": values}}))
            cmd += ["--params-file", str(path)]
        for src, dst in self.remaps:
            cmd += ["-r", f"{src}:={dst}"]
        return cmd


def package_prefix(package: str) -> Path:
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix

    try:
        return Path(get_package_prefix(package))
    except (PackageNotFoundError, OSError) as err:
        raise LaunchError(
            f"package '{package}' not found in the ament index (AMENT_PREFIX_PATH): "
            f"run scripts/setup.sh, or source your workspace"
        ) from err


def executable_path(package: str, executable: str) -> Path:
    path = package_prefix(package) / "lib" / package / executable
    if not os.access(path, os.X_OK):
        raise LaunchError(f"executable '{executable}' of package '{package}' not found at {path}")
    return path


# innermost first: the arguments of a match hold no "$(" (so $(eval '$(var n) >= 2') resolves
# $(var n) before the eval)
_SUBST = re.compile(r"\$\((\S+)((?:\s+(?:(?!\$\()[^)])*)?)\)")

_EVAL_NODES = (
    ast.Expression,
    ast.Constant,
    ast.Compare,
    ast.BoolOp,
    ast.UnaryOp,
    ast.BinOp,
    ast.And,
    ast.Or,
    ast.Not,
    ast.USub,
    ast.Add,
    ast.Sub,
    ast.Mult,
    ast.Eq,
    ast.NotEq,
    ast.Lt,
    ast.LtE,
    ast.Gt,
    ast.GtE,
)


def evaluate(expression: str, where: str) -> str:
    """``$(eval expr)`` for the expressions a launch file needs: numbers, strings,
    comparisons, ``and``/``or``/``not`` and + - *; the result as ``ros2 launch`` writes it
    (``True``/``False``, numbers)."""
    text = expression.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1]
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as err:
        raise LaunchError(f"{where}: $(eval {expression}) is not an expression ({err.msg})") from None
    bad = [type(n).__name__ for n in ast.walk(tree) if not isinstance(n, _EVAL_NODES + (ast.expr_context,))]
    if bad:
        raise LaunchError(
            f"{where}: $(eval {expression}) uses {', '.join(sorted(set(bad)))}: live-ros launch evaluates numbers, "
            f"strings, comparisons, and/or/not and + - * only"
        )
    return str(eval(compile(tree, "<launch eval>", "eval"), {"__builtins__": {}}, {}))  # noqa: S307 - checked above


def substitute(text: str, args: dict[str, str], where: str) -> str:
    def one(match: re.Match) -> str:
        kind, rest = match.group(1), match.group(2).split()
        if kind == "var":
            if not rest or rest[0] not in args:
                raise LaunchError(f"{where}: $(var {' '.join(rest)}) is not a declared arg")
            return args[rest[0]]
        if kind == "env":
            return os.environ.get(rest[0], " ".join(rest[1:]) if len(rest) > 1 else "")
        if kind == "find-pkg-share":
            from live_ros.paths import share_dir

            return str(share_dir()) if rest[0] == "live_ros" else str(package_prefix(rest[0]) / "share" / rest[0])
        if kind == "find-pkg-prefix":
            return str(package_prefix(rest[0]))
        if kind == "eval":
            return evaluate(match.group(2), where)
        raise LaunchError(f"{where}: substitution $({kind} ...) is not supported by live-ros launch")

    previous = None
    while previous != text:  # substitutions may produce substitutions
        previous, text = text, _SUBST.sub(one, text)
    return text


def _truthy(value: str) -> bool:
    return value.strip().lower() in ("true", "1", "yes", "on")


def parse(path: Path, overrides: dict[str, str] | None = None) -> tuple[list[NodeSpec], dict[str, str]]:
    """The nodes of a launch file and its resolved args."""
    path = Path(path)
    if not path.is_file():
        raise LaunchError(f"launch file {path} does not exist")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        raise LaunchError(f"{path}: not valid XML ({err})") from err
    if root.tag != "launch":
        raise LaunchError(f"{path}: the root element must be <launch>, not <{root.tag}>")
    overrides = dict(overrides or {})
    args: dict[str, str] = {}
    nodes: list[NodeSpec] = []
    for el in root:
        where = f"{path.name}:<{el.tag}>"
        if el.tag == "arg":
            name = el.get("name")
            if name in overrides:
                args[name] = overrides.pop(name)
            elif el.get("default") is not None:
                args[name] = substitute(el.get("default"), args, where)
            else:
                raise LaunchError(f"{path}: arg '{name}' has no default: pass {name}:=VALUE")
        elif el.tag == "let":
            args[el.get("name")] = substitute(el.get("value", ""), args, where)
        elif el.tag == "node":
            sub = lambda v: substitute(v, args, f"{path.name}:<node {el.get('name') or el.get('exec')}>")  # noqa: E731
            if el.get("if") is not None and not _truthy(sub(el.get("if"))):
                continue
            if el.get("unless") is not None and _truthy(sub(el.get("unless"))):
                continue
            spec = NodeSpec(
                sub(el.get("pkg")),
                sub(el.get("exec")),
                sub(el.get("name") or el.get("exec")),
                sub(el.get("namespace", "")),
                _truthy(sub(el.get("respawn", "false"))),
                float(sub(el.get("respawn_delay", "1.0"))),
            )
            for child in el:
                if child.tag == "param" and child.get("from") is not None:
                    spec.param_files.append(sub(child.get("from")))
                elif child.tag == "param":
                    spec.params.append((sub(child.get("name")), sub(child.get("value", ""))))
                elif child.tag == "remap":
                    spec.remaps.append((sub(child.get("from")), sub(child.get("to"))))
                else:
                    raise LaunchError(f"{path}: <{child.tag}> inside <node> is not supported by live-ros launch")
            nodes.append(spec)
        else:
            raise LaunchError(
                f"{path}: <{el.tag}> is not supported by live-ros launch (supported: arg, let, node with param/remap)"
            )
    if overrides:
        raise LaunchError(f"{path}: no arg named {', '.join(overrides)} (declared: {', '.join(args)})")
    return nodes, args


class Supervisor:
    """Runs the nodes as child processes, respawns as declared, stops them all."""

    def __init__(self, nodes: list[NodeSpec], out=sys.stdout, env: dict | None = None):
        self.nodes = nodes
        self.out = out
        self.env = env
        # a node's label: its name, or its full name where several share the name (one node set
        # per camera in its own namespace)
        names = [n.name for n in nodes]
        self.labels = {id(n): n.name if names.count(n.name) == 1 else n.full_name.strip("/") for n in nodes}
        self.procs: dict[str, subprocess.Popen] = {}
        self.respawns: dict[str, int] = {self.labels[id(n)]: 0 for n in nodes}
        self.supervising = 0  # nodes running or waiting to be respawned (one per _pump thread)
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        import tempfile

        self.scratch = Path(tempfile.mkdtemp(prefix="live_ros_launch_"))

    def _say(self, text: str) -> None:
        with self.lock:
            self.out.write(text + "\n")
            self.out.flush()

    def _start(self, spec: NodeSpec) -> None:
        proc = subprocess.Popen(
            spec.command(self.scratch),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=self.env,
            start_new_session=True,
        )
        self.procs[self.labels[id(spec)]] = proc
        with self.lock:
            self.supervising += 1
        policy = (
            f"respawned {spec.respawn_delay:g} s after an abnormal exit"
            if spec.respawn
            else "not respawned (respawn is false)"
        )
        self._say(f"[live-ros launch] started {self.labels[id(spec)]} (pid {proc.pid}), {policy}")
        threading.Thread(target=self._pump, args=(spec, proc), daemon=True).start()

    def _pump(self, spec: NodeSpec, proc: subprocess.Popen) -> None:
        try:
            self._supervise(spec, proc)
        finally:
            with self.lock:
                self.supervising -= 1

    def _supervise(self, spec: NodeSpec, proc: subprocess.Popen) -> None:
        """Relay the node's output; when it exits, say how, and respawn it if it should be."""
        for line in proc.stdout:
            self._say(f"[{self.labels[id(spec)]}] {line.rstrip()}")
        code = proc.wait()
        if self.stopping.is_set():
            return
        if code < 0:
            try:
                how = f"killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"killed by signal {-code}"
        else:
            how = f"exited with code {code}"
        if code == 0:
            self._say(f"[live-ros launch] {self.labels[id(spec)]} {how} (ended normally): not respawned")
            return
        if not spec.respawn:
            self._say(
                f"[live-ros launch] {self.labels[id(spec)]} {how}: not respawned (respawn is false in the launch file)"
            )
            return
        self._say(f"[live-ros launch] {self.labels[id(spec)]} {how}: respawning in {spec.respawn_delay:g} s")
        if self.stopping.wait(spec.respawn_delay) or self.stopping.is_set():
            return
        self.respawns[self.labels[id(spec)]] += 1
        self._say(
            f"[live-ros launch] respawning {self.labels[id(spec)]} (respawn {self.respawns[self.labels[id(spec)]]})"
        )
        self._start(spec)

    def start(self) -> None:
        for spec in self.nodes:
            self._start(spec)

    def alive(self) -> bool:
        """A node still runs, or one waits to be respawned."""
        with self.lock:
            return self.supervising > 0

    def stop(self, timeout: float = 5.0) -> None:
        self.stopping.set()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
            running = [p for p in self.procs.values() if p.poll() is None]
            for proc in running:
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and any(p.poll() is None for p in running):
                time.sleep(0.05)
            if not any(p.poll() is None for p in running):
                break
        import shutil

        shutil.rmtree(self.scratch, ignore_errors=True)
        self._say("[live-ros launch] all nodes stopped")


def resolve_launch_file(name: str) -> Path:
    """A path, or a file name in the package's share/launch folder."""
    path = Path(name)
    if path.is_file():
        return path
    from live_ros.paths import share_dir

    candidate = share_dir() / "launch" / name
    if candidate.is_file():
        return candidate
    raise LaunchError(f"launch file '{name}' not found (neither a path nor in {share_dir() / 'launch'})")


def run(launch_file: str, arg_pairs: list[str]) -> int:
    overrides = {}
    for pair in arg_pairs:
        if ":=" not in pair:
            raise LaunchError(f"'{pair}' is not an argument: use name:=value")
        key, value = pair.split(":=", 1)
        overrides[key] = value
    nodes, _ = parse(resolve_launch_file(launch_file), overrides)
    supervisor = Supervisor(nodes)

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    # Both explicitly: a process started in the background by a shell (CI, nohup, cron)
    # inherits SIGINT ignored, and Python then installs no handler of its own.
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    supervisor.start()
    try:
        while supervisor.alive():
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        supervisor.stop()
    return 0


def main(args) -> int:
    try:
        return run(args.file, args.args)
    except LaunchError as err:
        print(f"live-ros launch: {err}", file=sys.stderr)
        return 1
