"""The model a run trains: the :class:`~live_ros.model.config.LiveConfig` its checkpoints
are saved with (the config's ``model``, ``lora`` and ``objective`` sections over the
preset's named config, :func:`live_ros.model.presets.live_config`), the base LLM built
from it with LoRA on the LLM's linear layers plus the trainable vision connector (paper
section 3.2), optionally started from a saved checkpoint (a later stage).

A saved checkpoint loads through :func:`live_ros.model.checkpoint.load_checkpoint`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from live_ros.training.config import ConfigError, TrainConfig

if TYPE_CHECKING:
    from live_ros.model.config import EncoderSettings, LiveConfig


@dataclass(frozen=True)
class ModelSpec:
    """A run's model: the local base LLM folder and the live settings of its checkpoints."""

    llm: Path
    live: LiveConfig


def resolve_model(config: TrainConfig) -> ModelSpec:
    """The base LLM folder and the LiveConfig of a run: the preset's named config (or the
    defaults without a preset) with what the training config gives replacing its values."""
    from live_ros.model import presets
    from live_ros.model.config import ConfigError as LiveConfigError
    from live_ros.model.config import LiveConfig, LoraSettings

    section = config.model
    if section.preset:
        presets.get(section.preset)  # an unknown name: PresetError with the known ones
        base = presets.live_config(section.preset)
    else:
        if section.encoder_id is None or not section.vision_hidden_size or not section.frame_num_tokens:
            raise ConfigError(
                "without model.preset, give model.encoder_id, model.vision_hidden_size and model.frame_num_tokens"
            )
        base = LiveConfig()
    given = Path(section.llm).expanduser() if section.llm else None
    llm = given or (presets.resolve_paths(section.preset).llm if section.preset else None)
    if llm is None:
        raise ConfigError("give model.llm (a local base LLM folder) or model.preset")
    base_llm = str(llm.resolve()) if given else base.base_llm or str(llm)
    lora = config.lora
    evidence = _evidence(section.evidence)
    try:
        live = replace(
            base,
            base_llm=base_llm,
            encoder=_encoder(section, base.encoder),
            vision_hidden_size=section.vision_hidden_size or base.vision_hidden_size,
            frame_fps=section.fps,
            stream_weight=config.objective.stream_weight,
            mode=config.objective.mode,
            lora=LoraSettings(
                r=lora.r,
                alpha=lora.alpha,
                dropout=lora.dropout,
                target_modules=lora.target_modules,
                modules_to_save=("connector", "evidence") if evidence else ("connector",),
            ),
            vocabulary=vocabulary_of(section.vocabulary),
            evidence=evidence,
        )
    except LiveConfigError as err:
        raise ConfigError(f"model: {err}") from None
    return ModelSpec(llm, live)


def _evidence(path: str | None):
    """``model.evidence``: the settings of a fitted evidence head file (None: no head)."""
    if not path:
        return None
    from live_ros.model.config import ConfigError as LiveConfigError
    from live_ros.model.evidence import load_head

    try:
        return load_head(Path(path).expanduser())[0]
    except LiveConfigError as err:
        raise ConfigError(f"model.evidence: {err}") from None


def vocabulary_of(value: str) -> tuple[str, ...]:
    """``model.vocabulary``: "world" (the synthetic world's named objects), "" or nouns."""
    if value.strip() == "world":
        from live_ros.data.world_objects import named_objects

        return tuple(named_objects())
    return tuple(n.strip() for n in value.split(",") if n.strip())


def _encoder(section, preset: EncoderSettings) -> EncoderSettings:
    """The encoder settings: ``model.encoder_id`` when it names them (an id of the form
    ``backend/model@weights:SIZEpx:1[+SxS][+delta]``), else the preset's, with the tokens
    per frame and the frame resolution the config gives."""
    from live_ros.model.config import EncoderSettings, parse_encoder_id

    num_tokens, image_size = section.frame_num_tokens, section.frame_resolution
    if section.encoder_id is None:
        return replace(preset, num_tokens=num_tokens or preset.num_tokens, image_size=image_size or preset.image_size)
    named = parse_encoder_id(section.encoder_id)
    if named is None or named.encoder_id != section.encoder_id:
        # an id of another form (features of an encoder not described here): no encoder check at load
        return EncoderSettings(image_size=image_size or preset.image_size, num_tokens=num_tokens or preset.num_tokens)
    if (named.backend, named.model_name) == (preset.backend, preset.model_name):  # the preset's normalisation
        named = replace(named, mean=preset.mean, std=preset.std)
    for key, value in (("frame_num_tokens", num_tokens), ("frame_resolution", image_size)):
        have = named.num_tokens if key == "frame_num_tokens" else named.image_size
        if value is not None and value != have:
            raise ConfigError(
                f"model.{key} is {value} but model.encoder_id '{section.encoder_id}' names {have}: "
                f"leave model.{key} null, or give the id the features were extracted with"
            )
    return named


def features_encoder_id(config: TrainConfig, spec: ModelSpec) -> str:
    """The encoder id the run's feature files must carry: ``model.encoder_id`` as written
    (also an id the LiveConfig cannot name), else the resolved encoder's."""
    given = config.model.encoder_id
    return spec.live.encoder_id if given is None else given


def build_model(config: TrainConfig, spec: ModelSpec, device: str):
    """(peft model with LoRA + trainable connector, HF tokenizer, StreamTokenizer)."""
    import torch

    from live_ros.model.checkpoint import add_lora, build_base, load_tokenizer
    from live_ros.runtime import quiet_transformers
    from live_ros.model.format import StreamTokenizer

    live = spec.live
    tokenizer = load_tokenizer(spec.llm, live.format.frame_token, add=True)
    model = build_base(spec.llm, tokenizer, live, device="cpu", connector_seed=config.model.connector_seed)
    model.config.use_cache = False
    torch.manual_seed(config.seed)  # LoRA's A matrices
    with quiet_transformers(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # peft asks transformers a deprecated question
        peft_model = add_lora(model, live.lora, untie_embeddings=config.lora.untie_embeddings)
    if config.model.init_from:
        init_adapter(peft_model, Path(config.model.init_from))
    if config.model.evidence:  # the fitted classifier (in peft's copy too), frozen
        from live_ros.model.evidence import ObjectEvidence, load_head

        state = load_head(Path(config.model.evidence).expanduser())[1]
        for module in peft_model.modules():
            if isinstance(module, ObjectEvidence):
                module.classifier.load_state_dict(state)
                module.classifier.requires_grad_(False)
    if config.run.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    peft_model.to(device)
    return peft_model, tokenizer, StreamTokenizer(tokenizer, live.format)


def init_adapter(peft_model, folder: Path) -> None:
    """Load LoRA + connector weights of a saved checkpoint (``final/``) into a fresh run's
    model, to train a later stage from it (model.init_from)."""
    from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict
    from safetensors.torch import load_file

    from live_ros.model.checkpoint import ADAPTER_WEIGHTS

    path = folder / ADAPTER_WEIGHTS
    if not path.is_file():
        raise ConfigError(
            f"model.init_from: {path} does not exist: give a checkpoint folder written by live-ros "
            f"train (its final/ folder)"
        )
    weights = {k: v.float() for k, v in load_file(str(path)).items()}
    # a checkpoint from before the evidence head: the run's own head and name vectors stay
    for key, value in get_peft_model_state_dict(peft_model, save_embedding_layers=False).items():
        if ".evidence." in key:
            weights.setdefault(key, value.detach().float())
    try:
        result = set_peft_model_state_dict(peft_model, weights)
    except RuntimeError as err:
        raise ConfigError(f"model.init_from: {folder} does not fit this run's model ({err})") from None
    unexpected = list(getattr(result, "unexpected_keys", []) or [])
    if unexpected:
        raise ConfigError(
            f"model.init_from: {folder} holds weights this run's model lacks, e.g. {unexpected[0]}: "
            f"use the same LoRA settings and encoder"
        )
