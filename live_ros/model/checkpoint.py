"""Loading and saving LIVE checkpoints: the base LLM, LoRA (peft) and the connector.

A live_ros checkpoint folder holds ``adapter_config.json`` + ``adapter_model.safetensors``
(peft's layout: LoRA weights and the connector as a module to save, fp16) and
``live_config.json`` (the live settings, the encoder and the base LLM it expects).

The release's ``videollm-online-8b-v1plus`` folder has the same adapter layout but no live
settings: :func:`load_release_checkpoint` supplies them (1+3x3 tokens, ",", 2 fps, 384 px,
SigLIP-large). Every failure names the file and the fix.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict
from safetensors.torch import load_file

from live_ros.model.format import FormatSpec, StreamTokenizer, add_frame_token
from live_ros.model.live_model import LiveLlamaConfig, LiveLlamaForCausalLM

LIVE_CONFIG = "live_config.json"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
LORA_TARGETS = r"model.*(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"


class CheckpointError(RuntimeError):
    """A checkpoint or model folder that cannot be used, with what to do about it."""


@dataclass
class LoraSettings:
    """LoRA on every linear layer of the LLM (section 3.3); the connector is trained fully
    (``modules_to_save``). The release: r=128, alpha=256, lm_head included."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: str = LORA_TARGETS
    modules_to_save: list[str] = field(default_factory=lambda: ["connector"])

    def peft_config(self) -> LoraConfig:
        return LoraConfig(r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout,
                          target_modules=self.target_modules, modules_to_save=list(self.modules_to_save),
                          task_type="CAUSAL_LM")


RELEASE_LORA = LoraSettings(r=128, alpha=256, dropout=0.05, target_modules=LORA_TARGETS + r"|lm_head$")


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
    return {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
            "float16": torch.float16, "fp16": torch.float16, None: torch.float32}[dtype]


def load_tokenizer(folder: Path, frame_token: str = "<v>", add: bool = True):
    """The tokenizer of ``folder`` with the frame placeholder (added when ``add``)."""
    from transformers import AutoTokenizer

    folder = Path(folder)
    _require(folder, "tokenizer folder", "pass the folder that holds tokenizer.json / tokenizer_config.json")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as err:
        raise CheckpointError(f"no usable tokenizer in {folder} ({err}): pass the LLM's folder or a checkpoint "
                              f"folder with tokenizer files") from err
    if add:
        add_frame_token(tokenizer, frame_token)
    elif frame_token not in tokenizer.get_vocab():
        raise CheckpointError(f"the tokenizer in {folder} has no frame placeholder '{frame_token}': use the "
                              f"tokenizer saved with the checkpoint, or load the base LLM's tokenizer with the "
                              f"placeholder added (load_tokenizer(..., add=True))")
    return tokenizer


def load_base(llm_dir: Path, tokenizer, vision_hidden_size: int, frame_num_tokens: int, *, encoder_id: str = "",
              frame_fps: float = 2.0, frame_resolution: int = 224, spec: FormatSpec | None = None,
              stream_loss_weight: float = 1.0, device: str = "cpu", dtype=None, connector_seed: int = 0):
    """A LiveLlamaForCausalLM from a local Llama-family folder, with a fresh connector."""
    llm_dir = Path(llm_dir)
    _require(llm_dir / "config.json", "the LLM's config", "pass a local Hugging Face model folder (config.json + "
             "*.safetensors); for the embedded preset run scripts/setup.sh to fill the cache")
    spec = spec or FormatSpec(frame_num_tokens=frame_num_tokens)
    with quiet_transformers():  # a base LLM has no connector and is of type llama, by design
        config = LiveLlamaConfig.from_pretrained(
            str(llm_dir), local_files_only=True, vision_hidden_size=vision_hidden_size,
            frame_num_tokens=frame_num_tokens, frame_token=spec.frame_token,
            v_placeholder_id=tokenizer.convert_tokens_to_ids(spec.frame_token),
            stream_loss_weight=stream_loss_weight, frame_fps=frame_fps, frame_resolution=frame_resolution,
            encoder_id=encoder_id, live_format=spec.to_dict())
        config.model_type = "live_llama"
        model = LiveLlamaForCausalLM.from_pretrained(str(llm_dir), config=config, dtype=_dtype(dtype),
                                                     local_files_only=True)
    model.reset_connector(connector_seed)
    model.to(device)
    model.generation_config.pad_token_id = tokenizer.pad_token_id or tokenizer.eos_token_id
    return model


def add_lora(model: LiveLlamaForCausalLM, settings: LoraSettings, untie_embeddings: bool = False) -> PeftModel:
    """Wrap with LoRA. With tied embeddings (SmolLM2), LoRA on lm_head would also change the
    input embeddings' twin: refuse unless ``untie_embeddings`` (which copies the matrix)."""
    if re.search(r"lm_head", settings.target_modules) and model.config.tie_word_embeddings:
        if not untie_embeddings:
            raise CheckpointError("LoRA on lm_head with tied input/output embeddings: keep lm_head out of "
                                  "target_modules, or pass untie_embeddings=True to untie them knowingly")
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
    cfg_path = _require(folder / ADAPTER_CONFIG, "the adapter settings",
                        "pass the checkpoint folder that holds adapter_config.json and adapter_model.safetensors")
    weights = _require(folder / ADAPTER_WEIGHTS, "the adapter weights",
                       f"copy adapter_model.safetensors into {folder} (it ships with the checkpoint)")
    raw = json.loads(cfg_path.read_text())
    known = set(LoraConfig.__dataclass_fields__)
    lora = LoraConfig(**{k: v for k, v in raw.items() if k in known and k not in ("base_model_name_or_path",
                                                                                   "revision", "peft_type")})
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
        raise CheckpointError(f"{weights} does not fit this model: {len(missing)} missing keys "
                              f"(e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]}). "
                              f"Check that the base LLM and the adapter belong together")
    try:
        set_peft_model_state_dict(peft_model, state)
    except RuntimeError as err:  # shape mismatches
        raise CheckpointError(f"{weights} does not fit this model ({err}): check that the base LLM "
                              f"and the adapter belong together") from err
    return peft_model, report


def save_checkpoint(model: PeftModel, tokenizer, folder: Path, live: dict, dtype=torch.float16) -> Path:
    """Save adapter (LoRA + connector, stored in ``dtype``), tokenizer and live settings."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", dtype) for k, v in get_peft_model_state_dict(model, save_embedding_layers=False).items()}
    from safetensors.torch import save_file

    save_file(state, str(folder / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    model.peft_config["default"].save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    (folder / LIVE_CONFIG).write_text(json.dumps(live, indent=1, sort_keys=True))
    return folder


def read_live_config(folder: Path) -> dict:
    path = _require(Path(folder) / LIVE_CONFIG, "the live settings of a live_ros checkpoint",
                    "pass a folder written by live-ros train (or load a release folder with the "
                    "videollm-online-8b-v1plus preset, which supplies these settings)")
    return json.loads(path.read_text())


@dataclass
class Loaded:
    """A model ready for streaming: LLM (+connector, LoRA merged unless asked otherwise),
    its stream tokenizer, and the load timings."""

    model: torch.nn.Module
    tokens: StreamTokenizer
    load_seconds: float
    adapter: AdapterReport | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def config(self) -> LiveLlamaConfig:
        base = self.model.get_base_model() if isinstance(self.model, PeftModel) else self.model
        return base.config


def load_live(llm_dir: Path, adapter_dir: Path | None, *, vision_hidden_size: int, encoder_id: str,
              frame_num_tokens: int = 10, frame_fps: float = 2.0, frame_resolution: int = 224,
              spec: FormatSpec | None = None, tokenizer_dir: Path | None = None, device: str = "cpu", dtype=None,
              merge: bool = True, expect_encoder: str | None = None) -> Loaded:
    """Base LLM + optional adapter, merged for inference (section 3.4: LoRA merged into the
    weights costs nothing per token)."""
    t0 = time.perf_counter()
    notes = []
    _require(Path(llm_dir) / "config.json", "the LLM's config", "pass a local Hugging Face model folder "
             "(config.json + *.safetensors); for the embedded preset run scripts/setup.sh to fill the cache")
    tokenizer = load_tokenizer(tokenizer_dir or llm_dir, (spec or FormatSpec()).frame_token,
                               add=tokenizer_dir is None)
    model = load_base(llm_dir, tokenizer, vision_hidden_size, frame_num_tokens, encoder_id=encoder_id,
                      frame_fps=frame_fps, frame_resolution=frame_resolution, spec=spec, device="cpu", dtype=dtype)
    report = None
    if adapter_dir is not None:
        model, report = load_adapter(model, adapter_dir)
        if merge:
            model = model.merge_and_unload()
    else:
        notes.append("no adapter: connector freshly initialised (untrained)")
    if expect_encoder and encoder_id and expect_encoder != encoder_id:
        raise CheckpointError(f"the checkpoint expects frame tokens from '{encoder_id}' but the encoder is "
                              f"'{expect_encoder}': use the encoder the checkpoint was trained with")
    model.to(device).eval()
    return Loaded(model, StreamTokenizer(tokenizer, spec or FormatSpec(frame_num_tokens=frame_num_tokens)),
                  time.perf_counter() - t0, report, notes)


# The release's live settings (reference notes): not stored in its checkpoint.
RELEASE_SPEC = FormatSpec(frame_token="<v>", frame_num_tokens=10, interval=",", stream_open="[",
                          stream_close="]\n", turn_separator="\n", user_prefix="User:",
                          assistant_prefix="Assistant:")


def load_release_checkpoint(adapter_dir: Path, llm_dir: Path, *, encoder_id: str, vision_hidden_size: int = 1024,
                            device: str = "cpu", dtype=None, merge: bool = True) -> Loaded:
    """``videollm-online-8b-v1plus`` over a local Llama-3-8B-Instruct: the tokenizer saved
    with the adapter (it has ``<v>``), the release's LoRA and connector, and the settings
    the release does not store (1+3x3 tokens, ",", 2 fps, 384 px, SigLIP-large 1024-d)."""
    adapter_dir = Path(adapter_dir)
    tokenizer_dir = adapter_dir if (adapter_dir / "tokenizer_config.json").exists() else None
    return load_live(llm_dir, adapter_dir, vision_hidden_size=vision_hidden_size, encoder_id=encoder_id,
                     frame_num_tokens=10, frame_fps=2.0, frame_resolution=384, spec=RELEASE_SPEC,
                     tokenizer_dir=tokenizer_dir, device=device, dtype=dtype, merge=merge)


def live_settings(model_config: LiveLlamaConfig, encoder: dict, base_llm: str, **extra) -> dict:
    """The ``live_config.json`` content of a checkpoint trained on ``model_config``."""
    return {"format_version": 1, "base_llm": base_llm, "encoder": encoder,
            "vision_hidden_size": model_config.vision_hidden_size,
            "frame_num_tokens": model_config.frame_num_tokens, "frame_fps": model_config.frame_fps,
            "frame_resolution": model_config.frame_resolution, "encoder_id": model_config.encoder_id,
            "live_format": model_config.live_format, **extra}


__all__ = ["CheckpointError", "LoraSettings", "RELEASE_LORA", "RELEASE_SPEC", "Loaded", "AdapterReport",
           "load_tokenizer", "load_base", "add_lora", "load_adapter", "save_checkpoint", "read_live_config",
           "load_live", "load_release_checkpoint", "live_settings"]
