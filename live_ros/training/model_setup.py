"""The model a run trains: the base LLM and encoder resolved from the config (a preset
fills what is not given), LoRA on the LLM's linear layers plus the trainable vision
connector (paper section 3.2), optionally started from a saved checkpoint (a later stage),
the ``live_config.json`` settings saved with every checkpoint, and the loader of a saved
checkpoint (:func:`load_trained`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from live_ros.training.config import ConfigError, ModelSection, TrainConfig

SMOLLM2_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct"


@dataclass
class ModelSpec:
    """The resolved base LLM and encoder of a run."""

    llm: Path
    base_llm: str                 # what live_config.json names as the base LLM
    encoder: dict                 # id, dim, num_tokens, image_size (+ the encoder config when known)
    preset: str | None = None

    @property
    def encoder_id(self) -> str:
        return self.encoder["id"]


def resolve_model(section: ModelSection) -> ModelSpec:
    """Base LLM folder and encoder from the config (the preset fills what is not given)."""
    from live_ros.model import presets

    llm = Path(section.llm).expanduser() if section.llm else None
    base_name = str(llm.resolve()) if llm else ""
    if llm is None:
        llm = presets.resolve_paths(section.preset).llm
        base_name = SMOLLM2_NAME if section.preset == "embedded" else str(llm)
    encoder = {"id": section.encoder_id, "dim": section.vision_hidden_size, "num_tokens": section.frame_num_tokens,
               "image_size": section.frame_resolution}
    if not section.preset and encoder["image_size"] is None:
        encoder["image_size"] = 224
    if any(v is None for v in encoder.values()):
        if not section.preset:
            raise ConfigError("without model.preset, give model.encoder_id, model.vision_hidden_size and "
                              "model.frame_num_tokens")
        enc = presets.load_encoder(section.preset)
        c = enc.config
        known = {"id": enc.encoder_id, "dim": enc.dim, "num_tokens": enc.num_tokens, "image_size": enc.image_size}
        encoder = {k: (known[k] if v is None else v) for k, v in encoder.items()}
        spatial = c.spatial if section.frame_num_tokens is None else round((int(section.frame_num_tokens) - 1) ** 0.5)
        encoder.update(backend=c.backend, model_name=c.model_name, spatial=spatial, mean=list(c.mean),
                       std=list(c.std), frame_delta=str(encoder["id"]).endswith("+delta"))
        del enc
    encoder["preset"] = section.preset
    return ModelSpec(llm, base_name, encoder, section.preset)


def build_model(config: TrainConfig, spec: ModelSpec, device: str):
    """(peft model with LoRA + trainable connector, HF tokenizer, StreamTokenizer)."""
    import torch

    from live_ros.model.checkpoint import LoraSettings, add_lora, load_base, load_tokenizer, quiet_transformers
    from live_ros.model.format import FormatSpec, StreamTokenizer

    fmt = FormatSpec(frame_num_tokens=int(spec.encoder["num_tokens"]))
    tokenizer = load_tokenizer(spec.llm, fmt.frame_token, add=True)
    model = load_base(spec.llm, tokenizer, int(spec.encoder["dim"]), int(spec.encoder["num_tokens"]),
                      encoder_id=spec.encoder_id, frame_fps=config.model.fps,
                      frame_resolution=int(spec.encoder["image_size"] or 224), spec=fmt,
                      stream_loss_weight=config.objective.stream_weight, device="cpu",
                      connector_seed=config.model.connector_seed)
    model.config.use_cache = False
    lora = config.lora
    torch.manual_seed(config.seed)  # LoRA's A matrices
    with quiet_transformers(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # peft asks transformers a deprecated question
        peft_model = add_lora(model, LoraSettings(r=lora.r, alpha=lora.alpha, dropout=lora.dropout,
                                                  target_modules=lora.target_modules),
                              untie_embeddings=lora.untie_embeddings)
    if config.model.init_from:
        init_adapter(peft_model, Path(config.model.init_from))
    if config.run.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    peft_model.to(device)
    return peft_model, tokenizer, StreamTokenizer(tokenizer, fmt)


def init_adapter(peft_model, folder: Path) -> None:
    """Load LoRA + connector weights of a saved checkpoint (``final/``) into a fresh run's
    model, to train a later stage from it (model.init_from)."""
    from peft.utils import set_peft_model_state_dict
    from safetensors.torch import load_file

    from live_ros.model.checkpoint import ADAPTER_WEIGHTS

    path = folder / ADAPTER_WEIGHTS
    if not path.is_file():
        raise ConfigError(f"model.init_from: {path} does not exist: give a checkpoint folder written by live-ros "
                          f"train (its final/ folder)")
    weights = {k: v.float() for k, v in load_file(str(path)).items()}
    try:
        result = set_peft_model_state_dict(peft_model, weights)
    except RuntimeError as err:
        raise ConfigError(f"model.init_from: {folder} does not fit this run's model ({err})") from None
    unexpected = list(getattr(result, "unexpected_keys", []) or [])
    if unexpected:
        raise ConfigError(f"model.init_from: {folder} holds weights this run's model lacks, e.g. {unexpected[0]}: "
                          f"use the same LoRA settings and encoder")


def live_config(model, spec: ModelSpec, config: TrainConfig) -> dict:
    from live_ros.model.checkpoint import live_settings

    base = model.get_base_model()
    return live_settings(base.config, spec.encoder, spec.base_llm, preset=spec.preset, mode=config.objective.mode,
                         stream_weight=config.objective.stream_weight,
                         lora={"r": config.lora.r, "alpha": config.lora.alpha,
                               "target_modules": config.lora.target_modules})


def load_trained(folder: Path, spec: ModelSpec | None = None, llm: str | Path | None = None, device: str = "cpu",
                 merge: bool = True):
    """A saved training checkpoint through ``checkpoint.load_live`` (the loader users get)."""
    from live_ros.model.checkpoint import load_live, read_live_config
    from live_ros.model.format import FormatSpec

    live = read_live_config(folder)
    llm = llm or (spec.llm if spec else live["base_llm"])
    return load_live(llm, folder, vision_hidden_size=live["vision_hidden_size"], encoder_id=live["encoder_id"],
                     frame_num_tokens=live["frame_num_tokens"], frame_fps=live["frame_fps"],
                     frame_resolution=live["frame_resolution"], spec=FormatSpec(**live["live_format"]),
                     tokenizer_dir=folder, device=device, merge=merge)


