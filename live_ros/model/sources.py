"""Where a model's files come from, without torch or transformers: a preset name or a
checkpoint folder -> its :class:`~live_ros.model.config.LiveConfig` and local folders, and
the vision encoder alone (:func:`load_encoder`, all frame_encoder needs: its model load
imports no LLM library). :func:`live_ros.model.checkpoint.load_checkpoint` builds on it.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from live_ros.model import presets
from live_ros.model.config import CONFIG_NAME, LiveConfig

if TYPE_CHECKING:
    import torch

LIVE_CONFIG = CONFIG_NAME


class CheckpointError(RuntimeError):
    """A checkpoint or model folder that cannot be used, with what to do about it."""


def _require(path: Path, what: str, fix: str) -> Path:
    if not path.exists():
        raise CheckpointError(f"{path} is missing ({what}): {fix}")
    return path


def _dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    return {
        "float32": torch.float32,
        "fp32": torch.float32,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
        "float16": torch.float16,
        "fp16": torch.float16,
        None: torch.float32,
    }[dtype]


def _resolve(source: str | Path, preset: str | None) -> tuple[presets.Preset | None, Path | None, LiveConfig]:
    """(the preset, the checkpoint folder or None, its config) of a preset name or a folder."""
    source = str(source)
    if source in presets.PRESETS:
        found = presets.get(source)
        folder = found.checkpoint if presets._has_adapter(found.checkpoint) else None
        if found.release:
            folder = Path(os.environ[found.env["adapter"]]) if os.environ.get(found.env["adapter"]) else None
        return found, folder, presets.live_config(source, folder if folder and not found.release else None)
    folder = Path(source).expanduser()
    if not folder.is_dir():
        raise CheckpointError(f"'{source}' is neither a preset ({', '.join(presets.PRESETS)}) nor a checkpoint folder")
    named = presets.get(preset) if preset else None
    if not (folder / LIVE_CONFIG).exists():
        if named is not None and named.release:
            return named, folder, named.config
        _require(
            folder / LIVE_CONFIG,
            "the live settings of a live_ros checkpoint",
            "pass a folder written by live-ros train (a videollm-online-8b-v1plus folder loads through its "
            "preset: --adapter with that preset, or $LIVE_ROS_VIDEOLLM_ONLINE)",
        )
    try:
        config = LiveConfig.from_pretrained(folder)
    except ValueError as err:
        raise CheckpointError(str(err)) from err
    return named or presets.preset_for(config, "llm"), folder, config


def _llm_dir(config: LiveConfig, preset: presets.Preset | None, llm: str | None) -> Path:
    if llm:
        return Path(llm).expanduser()
    if Path(config.base_llm).expanduser().is_dir():
        return Path(config.base_llm).expanduser()
    owner = preset if preset and preset.config.base_llm == config.base_llm else presets.preset_for(config, "llm")
    if owner is None:
        raise CheckpointError(
            f"the checkpoint was trained on '{config.base_llm}', which no preset provides: pass "
            f"its local folder (--llm, llm_path)"
        )
    return _preset_path(owner, "llm")


def _preset_path(preset: presets.Preset, key: str) -> Path:
    """One of a preset's files (``llm`` or ``vision``) without requiring the others."""
    if preset.name == "embedded":
        from live_ros.assets import efficientnet_lite0_weights, smollm2_dir, smollm2_ready

        if key == "vision":
            return Path(efficientnet_lite0_weights())
        if not smollm2_ready():
            raise presets.PresetError(
                f"SmolLM2 is not converted yet ({smollm2_dir()}): run scripts/setup.sh "
                f"(or python -m live_ros.assets prepare)"
            )
        return Path(smollm2_dir())
    var = preset.env[key]
    if not os.environ.get(var):
        what = {"llm": "Meta-Llama-3-8B-Instruct", "vision": "google/siglip-large-patch16-384"}[key]
        raise presets.PresetError(
            f"preset '{preset.name}' needs local folders: --{key} (or ${var}). {key} = {what} "
            f"(download it once on a machine with network; live_ros never downloads)"
        )
    path = Path(os.environ[var]).expanduser()
    if not path.exists():
        raise presets.PresetError(f"preset '{preset.name}': {key} folder {path} does not exist")
    return path


def _vision_path(config: LiveConfig, preset: presets.Preset | None, vision: str | None) -> Path:
    owner = (
        preset
        if preset
        and (preset.config.encoder.backend, preset.config.encoder.model_name)
        == (config.encoder.backend, config.encoder.model_name)
        else presets.preset_for(config, "vision")
    )
    if vision or owner is None:
        if not vision:
            raise CheckpointError(
                f"no preset has the encoder {config.encoder.backend}/{config.encoder.model_name}: "
                f"pass its local weights (--vision, vision_path)"
            )
        return Path(vision).expanduser()
    return _preset_path(owner, "vision")


def _check_device(preset: presets.Preset | None, device: str, force: bool) -> None:
    if preset is not None and preset.size == "8b" and not str(device).startswith("cuda") and not force:
        raise presets.PresetError(
            f"preset '{preset.name}' is an 8B model: on a CPU it needs about 32 GB and "
            f"several seconds per frame. Use --device cuda, or --force to run it anyway"
        )
    import torch

    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise presets.PresetError("--device cuda asked for, but torch sees no GPU (or is a CPU build)")


def _encoder_config(config: LiveConfig, preset: presets.Preset | None, vision: str | None):
    """The EncoderConfig of ``config`` with its local weights, and ``config`` with the
    weights tag filled in (the release names no weights: its local copy's tag)."""
    from live_ros.model.encoders import weights_tag

    enc_config = config.encoder.encoder_config(_vision_path(config, preset, vision))
    tag = weights_tag(enc_config)
    if config.encoder.weights_tag and config.encoder.weights_tag != tag:
        raise CheckpointError(
            f"the checkpoint expects frame tokens from '{config.encoder_id}' but the weights at "
            f"{enc_config.weights} are '{tag}': use the encoder weights the checkpoint was trained with"
        )
    return enc_config, replace(config, encoder=config.encoder.with_weights_tag(tag))


def load_encoder(
    source: str | Path, *, vision: str | None = None, device: str = "cpu", dtype=None, preset: str | None = None
):
    """Only the vision encoder of a preset or checkpoint folder, built from its config
    (frame_encoder needs no LLM)."""
    from live_ros.model.encoders import build_encoder

    found, _, config = _resolve(source, preset)
    enc_config, _ = _encoder_config(config, found, vision)
    encoder = build_encoder(enc_config).to(device)
    if dtype and str(device).startswith("cuda"):
        encoder.to(_dtype(dtype))
    return encoder
