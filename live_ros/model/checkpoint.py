"""Loading and saving LIVE checkpoints: the base LLM, LoRA (peft), the connector and the
vision encoder, all from one :class:`~live_ros.model.config.LiveConfig`.

A live_ros checkpoint folder holds ``adapter_config.json`` + ``adapter_model.safetensors``
(peft's layout: LoRA weights and the connector as a module to save, fp16), the tokenizer
(with the frame placeholder) and ``live_config.json`` (:class:`LiveConfig`). The release's
``videollm-online-8b-v1plus`` folder has the same adapter layout but no live settings: its
preset supplies them (``presets.RELEASE_CONFIG``).

:func:`load_checkpoint` is the one loader: a preset name or a checkpoint folder in; the
encoder (optional), the model, its StreamTokenizer, the LiveConfig and the load notes out.
Every failure names the file and the fix.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict
from safetensors.torch import load_file

from live_ros.model import presets
from live_ros.model.config import (
    CONFIG_NAME,
    LORA_TARGETS,
    RELEASE_LORA,
    LiveConfig,
    LoraSettings,
)
from live_ros.model.format import StreamTokenizer, add_frame_token
from live_ros.model.live_model import LiveLlamaConfig, LiveLlamaForCausalLM

if TYPE_CHECKING:
    from live_ros.model.encoders import VisionEncoder

LIVE_CONFIG = CONFIG_NAME
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


class CheckpointError(RuntimeError):
    """A checkpoint or model folder that cannot be used, with what to do about it."""


@contextlib.contextmanager
def quiet_transformers():
    """Silence transformers' load reports and progress bars for expected differences."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def _require(path: Path, what: str, fix: str) -> Path:
    if not path.exists():
        raise CheckpointError(f"{path} is missing ({what}): {fix}")
    return path


def _dtype(dtype: str | torch.dtype | None) -> torch.dtype:
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


def load_tokenizer(folder: Path, frame_token: str = "<v>", add: bool = True):
    """The tokenizer of ``folder`` with the frame placeholder (added when ``add``)."""
    from transformers import AutoTokenizer

    folder = Path(folder)
    _require(folder, "tokenizer folder", "pass the folder that holds tokenizer.json / tokenizer_config.json")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as err:
        raise CheckpointError(
            f"no usable tokenizer in {folder} ({err}): pass the LLM's folder or a checkpoint "
            f"folder with tokenizer files"
        ) from err
    if add:
        add_frame_token(tokenizer, frame_token)
    elif frame_token not in tokenizer.get_vocab():
        raise CheckpointError(
            f"the tokenizer in {folder} has no frame placeholder '{frame_token}': use the "
            f"tokenizer saved with the checkpoint, or load the base LLM's tokenizer with the "
            f"placeholder added (load_tokenizer(..., add=True))"
        )
    return tokenizer


def build_base(
    llm_dir: Path, tokenizer, config: LiveConfig, *, device: str = "cpu", dtype=None, connector_seed: int = 0
) -> LiveLlamaForCausalLM:
    """A LiveLlamaForCausalLM of ``config`` over a local Llama-family folder, with a fresh
    connector (its model config: :meth:`LiveLlamaConfig.from_live`)."""
    from transformers import LlamaConfig

    llm_dir = Path(llm_dir)
    _require(
        llm_dir / "config.json",
        "the LLM's config",
        "pass a local Hugging Face model folder (config.json + "
        "*.safetensors); for the embedded preset run scripts/setup.sh to fill the cache",
    )
    with quiet_transformers():  # a base LLM has no connector and is of type llama, by design
        base = LlamaConfig.from_pretrained(str(llm_dir), local_files_only=True)
        model_config = LiveLlamaConfig.from_live(
            config, base, tokenizer.convert_tokens_to_ids(config.format.frame_token)
        )
        model = LiveLlamaForCausalLM.from_pretrained(
            str(llm_dir), config=model_config, dtype=_dtype(dtype), local_files_only=True
        )
    model.reset_connector(connector_seed)
    model.to(device)
    model.generation_config.pad_token_id = tokenizer.pad_token_id or tokenizer.eos_token_id
    return model


def add_lora(model: LiveLlamaForCausalLM, settings: LoraSettings, untie_embeddings: bool = False) -> PeftModel:
    """Wrap with LoRA. With tied embeddings (SmolLM2), LoRA on lm_head would also change the
    input embeddings' twin: refuse unless ``untie_embeddings`` (which copies the matrix)."""
    if re.search(r"lm_head", settings.target_modules) and model.config.tie_word_embeddings:
        if not untie_embeddings:
            raise CheckpointError(
                "LoRA on lm_head with tied input/output embeddings: keep lm_head out of "
                "target_modules, or pass untie_embeddings=True to untie them knowingly"
            )
        model.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.detach().clone())
        model.config.tie_word_embeddings = False
    return get_peft_model(model, settings.peft_config())


@dataclass
class AdapterReport:
    """What loading an adapter file did: keys it lacked and keys nothing expected."""

    path: Path
    loaded: int
    missing: list[str]
    unexpected: list[str]


def load_adapter(model: LiveLlamaForCausalLM, folder: Path, *, strict: bool = True) -> tuple[PeftModel, AdapterReport]:
    """Apply ``adapter_config.json`` + ``adapter_model.safetensors`` from ``folder``."""
    folder = Path(folder)
    cfg_path = _require(
        folder / ADAPTER_CONFIG,
        "the adapter settings",
        "pass the checkpoint folder that holds adapter_config.json and adapter_model.safetensors",
    )
    weights = _require(
        folder / ADAPTER_WEIGHTS,
        "the adapter weights",
        f"copy adapter_model.safetensors into {folder} (it ships with the checkpoint)",
    )
    raw = json.loads(cfg_path.read_text())
    known = set(LoraConfig.__dataclass_fields__)
    lora = LoraConfig(
        **{k: v for k, v in raw.items() if k in known and k not in ("base_model_name_or_path", "revision", "peft_type")}
    )
    if "lm_head" in str(lora.target_modules) and model.config.tie_word_embeddings:
        model.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.detach().clone())
        model.config.tie_word_embeddings = False
    peft_model = get_peft_model(model, lora)
    state = load_file(str(weights))
    expected = set(get_peft_model_state_dict(peft_model, save_embedding_layers=False).keys())
    missing = sorted(expected - set(state))
    unexpected = sorted(set(state) - expected)
    report = AdapterReport(weights, len(set(state) & expected), missing, unexpected)
    if strict and (missing or unexpected):
        raise CheckpointError(
            f"{weights} does not fit this model: {len(missing)} missing keys "
            f"(e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]}). "
            f"Check that the base LLM and the adapter belong together"
        )
    try:
        set_peft_model_state_dict(peft_model, state)
    except RuntimeError as err:  # shape mismatches
        raise CheckpointError(
            f"{weights} does not fit this model ({err}): check that the base LLM and the adapter belong together"
        ) from err
    return peft_model, report


def save_checkpoint(model: PeftModel, tokenizer, folder: Path, live: LiveConfig | dict, dtype=torch.float16) -> Path:
    """Save adapter (LoRA + connector, stored in ``dtype``), tokenizer and live settings."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {
        k: v.detach().to("cpu", dtype) for k, v in get_peft_model_state_dict(model, save_embedding_layers=False).items()
    }
    from safetensors.torch import save_file

    save_file(state, str(folder / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    model.peft_config["default"].save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    (live if isinstance(live, LiveConfig) else LiveConfig.from_dict(live)).save_pretrained(folder)
    return folder


def load_llm(
    llm_dir: Path, adapter_dir: Path | None, config: LiveConfig, *, device: str = "cpu", dtype=None, merge: bool = True
) -> tuple[torch.nn.Module, StreamTokenizer, AdapterReport | None, list[str]]:
    """Base LLM + optional adapter, merged for inference (section 3.4: LoRA merged into the
    weights costs nothing per token). The tokenizer saved with the adapter when it has one."""
    notes = []
    _require(
        Path(llm_dir) / "config.json",
        "the LLM's config",
        "pass a local Hugging Face model folder "
        "(config.json + *.safetensors); for the embedded preset run scripts/setup.sh to fill the cache",
    )
    saved = adapter_dir if adapter_dir is not None and (Path(adapter_dir) / "tokenizer_config.json").exists() else None
    tokenizer = load_tokenizer(saved or llm_dir, config.format.frame_token, add=saved is None)
    model = build_base(llm_dir, tokenizer, config, device="cpu", dtype=dtype)
    report = None
    if adapter_dir is not None:
        model, report = load_adapter(model, adapter_dir)
        if merge:
            model = model.merge_and_unload()
    else:
        notes.append("no adapter: connector freshly initialised (untrained)")
    model.to(device).eval()
    return model, StreamTokenizer(tokenizer, config.format), report, notes


@dataclass
class LoadedCheckpoint:
    """What :func:`load_checkpoint` gives: the vision encoder (None without it), the model
    (LoRA merged unless asked otherwise), its stream tokenizer, the checkpoint's settings,
    the load notes (e.g. an untrained connector) and where it came from."""

    encoder: VisionEncoder | None
    model: torch.nn.Module
    tokens: StreamTokenizer
    config: LiveConfig
    notes: list[str] = field(default_factory=list)
    adapter: AdapterReport | None = None
    preset: presets.Preset | None = None
    folder: Path | None = None
    encoder_seconds: float = 0.0
    load_seconds: float = 0.0  # all of it, the encoder's included

    @property
    def model_config(self) -> LiveLlamaConfig:
        base = self.model.get_base_model() if isinstance(self.model, PeftModel) else self.model
        return base.config


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


def load_checkpoint(
    source: str | Path,
    *,
    llm: str | None = None,
    vision: str | None = None,
    device: str = "cpu",
    dtype=None,
    merge: bool = True,
    force: bool = False,
    with_encoder: bool = True,
    preset: str | None = None,
) -> LoadedCheckpoint:
    """A preset name or checkpoint folder -> encoder (unless ``with_encoder=False``), model,
    StreamTokenizer, LiveConfig and notes. ``llm`` / ``vision`` replace the local folders the
    preset would use; ``preset`` names the preset a folder belongs to (needed only for a
    release folder, which has no live_config.json)."""
    t0 = time.perf_counter()
    found, folder, config = _resolve(source, preset)
    _check_device(found, device, force)
    llm_dir = _llm_dir(config, found, llm)
    encoder, encoder_seconds = None, 0.0
    if config.encoder.backend and (with_encoder or not config.encoder.weights_tag):
        try:
            enc_config, config = _encoder_config(config, found, vision)
        except presets.PresetError:
            if with_encoder:
                raise
            enc_config = None  # only the weights tag was wanted: tokens of any local copy are accepted
        if with_encoder:
            from live_ros.model.encoders import build_encoder

            t1 = time.perf_counter()
            encoder = build_encoder(enc_config).to(device)
            if dtype and str(device).startswith("cuda"):
                encoder.to(_dtype(dtype))
            encoder_seconds = time.perf_counter() - t1
            if not config.encoder.accepts(encoder.encoder_id):
                raise CheckpointError(
                    f"the checkpoint expects frame tokens from '{config.encoder_id}' but the "
                    f"encoder is '{encoder.encoder_id}': use the encoder it was trained with"
                )
    model, tokens, report, notes = load_llm(llm_dir, folder, config, device=device, dtype=dtype, merge=merge)
    return LoadedCheckpoint(
        encoder, model, tokens, config, notes, report, found, folder, encoder_seconds, time.perf_counter() - t0
    )


__all__ = [
    "CheckpointError",
    "LoraSettings",
    "RELEASE_LORA",
    "LORA_TARGETS",
    "LoadedCheckpoint",
    "AdapterReport",
    "load_checkpoint",
    "load_encoder",
    "load_tokenizer",
    "build_base",
    "load_llm",
    "add_lora",
    "load_adapter",
    "save_checkpoint",
]
