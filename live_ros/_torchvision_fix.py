"""Make a CUDA build of torchvision importable beside a CPU build of torch.

With `torch==2.13.0` pinned to the CPU build, `open_clip_torch` and `timm` pull
torchvision 0.28.0 from PyPI, which is a CUDA build. Its C++ extension cannot load, and
`import torchvision` (done by transformers, timm and open_clip) then fails with
``RuntimeError: operator torchvision::nms does not exist`` when its Python code
registers fake kernels for ``torchvision::nms`` and ``torchvision::qnms``.

The fix defines those two operator schemas before torchvision is first imported. It is
applied only where needed: torch is a CPU build, the installed torchvision is a CUDA build,
and the operators are missing. torchvision's Python parts then work; its C++ ops (nms,
roi_align) do not, and live_ros uses none of them.

`install()` is called by ``live_ros.runtime.prepare()`` (each entry point calls it): it puts a finder on ``sys.meta_path``
that applies the fix the moment anything imports torchvision, so importing live_ros stays
cheap (torch is imported only when torchvision is).
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import re
import sys
from pathlib import Path

_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_library = None  # keeps the torch.library.Library alive (its definitions die with it)
applied = False
_probing = False  # our own look-up of torchvision must not trigger the guard


def _torchvision_build() -> str | None:
    """The installed torchvision's version string (e.g. '0.28.0+cu130'), read from its
    version.py without importing it; None when torchvision is not installed."""
    global _probing
    _probing = True
    try:
        spec = importlib.util.find_spec("torchvision")
    finally:
        _probing = False
    if spec is None or not spec.origin:
        return None
    text = (Path(spec.origin).parent / "version.py").read_text(errors="replace")
    match = re.search(r"__version__\s*=\s*['\"]([^'\"]+)['\"]", text)
    return match.group(1) if match else None


def needed() -> bool:
    """True when torch is a CPU build, torchvision a CUDA build, and its ops are missing
    (or were missing: True once the fix is applied)."""
    import torch

    if applied:
        return True
    version = _torchvision_build()
    if version is None or torch.version.cuda is not None or "+cu" not in version:
        return False
    try:
        torch.ops.torchvision.nms  # noqa: B018 - raises when the operator does not exist
        return False
    except (AttributeError, RuntimeError):
        return True


def apply() -> bool:
    """Define the missing operator schemas when needed; returns whether it did."""
    global _library, applied
    if applied or "torchvision" in sys.modules or not needed():
        return applied
    import torch

    _library = torch.library.Library("torchvision", "DEF")
    for schema in _SCHEMAS:
        _library.define(schema)
    applied = True
    return True


class _Guard(importlib.abc.MetaPathFinder):
    """Applies the fix just before the first import of torchvision, then steps aside."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname == "torchvision" and not _probing and not _torch_initializing():
            uninstall()
            apply()
        return None  # the normal finders import the module


def _torch_initializing() -> bool:
    """torch itself looks torchvision up while it is being imported; act only after that."""
    torch = sys.modules.get("torch")
    return torch is not None and getattr(getattr(torch, "__spec__", None), "_initializing", False)


def install() -> None:
    if "torchvision" in sys.modules or any(isinstance(f, _Guard) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _Guard())


def uninstall() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _Guard)]
