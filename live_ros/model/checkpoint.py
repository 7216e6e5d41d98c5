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

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict
from safetensors.torch import load_file

from live_ros.model import presets
from live_ros.runtime import quiet_transformers
from live_ros.model.config import (
    CONFIG_NAME,
    LORA_TARGETS,
    RELEASE_LORA,
    LiveConfig,
    LoraSettings,
)
from live_ros.model.format import StreamTokenizer, add_frame_token
from live_ros.model.live_model import LiveLlamaConfig, LiveLlamaForCausalLM
from live_ros.model.sources import (
    CheckpointError,
    _check_device,
    _dtype,
    _encoder_config,
    _llm_dir,
    _require,
    _resolve,
    load_encoder,
)

if TYPE_CHECKING:
    from live_ros.model.encoders import VisionEncoder

LIVE_CONFIG = CONFIG_NAME
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


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
    if model.evidence is not None:  # the class names start as the LLM's word embeddings
        model.evidence.init_names(tokenizer, model.get_input_embeddings())
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
