"""The training run's configuration: one YAML file (``config/train_embedded.yaml`` is the
embedded default, every key commented there), ``key=value`` overrides of single entries
(``optim.lr=1e-4``, values parsed as YAML), checked before anything is loaded.

A :class:`TrainConfig` has one dataclass per section: ``model``, ``lora``, ``objective``,
``data``, ``optim``, ``augment`` (:class:`live_ros.training.augment.AugmentConfig`),
``run`` and ``eval``. Unknown keys, numbers written as text and impossible values raise
:class:`ConfigError` with what to do about it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Sequence

from live_ros.model.format import MODES, Mode
from live_ros.training.augment import AugmentConfig


class ConfigError(ValueError):
    """A config file or override that cannot be used, with what to do about it."""


@dataclass
class ModelSection:
    preset: str | None = "embedded"  # defaults for the base LLM and the encoder
    llm: str | None = None  # local base LLM folder (default: the preset's)
    encoder_id: str | None = None  # the features' encoder (default: the preset's encoder)
    vision_hidden_size: int | None = None
    frame_num_tokens: int | None = None
    frame_resolution: int | None = None
    fps: float = 2.0
    connector_seed: int = 0
    init_from: str | None = None  # start LoRA + connector from this checkpoint folder (a later stage)
    # the nouns the model is taught to name, saved with the checkpoint (LiveConfig.vocabulary):
    # "world" = the synthetic world's named objects, "" = none recorded, else comma-separated nouns
    vocabulary: str = "world"
    # an object evidence head fitted by `live-ros fit-evidence` (model/evidence.py): its
    # classifier is loaded and frozen, its class names trained with the LLM; null: none
    evidence: str | None = None


@dataclass
class LoraSection:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: str = r"model.*(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
    untie_embeddings: bool = False  # needed for lm_head in target_modules with tied embeddings


@dataclass
class ObjectiveSection:
    mode: Mode = "streaming"  # streaming | per_frame | interleaved (model/format.py MODES)
    stream_weight: float = 1.0  # w: weight of the frame-decision positions
    max_length: int = 2048  # positions per stream (longer: cut to a prefix)
    name_weight: float = 1.0  # weight of the targets that start an object's name (1: the paper's loss)


@dataclass
class DataSection:
    train_streams: str | None = None
    train_features: str | None = None
    eval_streams: str | None = None
    eval_features: str | None = None
    redraw_questions: bool = True  # fresh question insertions each epoch (streams with a plan)
    extra_streams: str | None = None  # more training streams with their own features paths (event windows)
    limit: int | None = None  # use only the first N training streams
    eval_limit: int | None = None


@dataclass
class OptimSection:
    lr: float = 2e-4
    weight_decay: float = 0.0
    warmup_ratio: float = 0.05
    epochs: float = 2
    batch_size: int = 2  # streams per micro-batch
    grad_accum: int = 4  # micro-batches per optimizer step
    max_grad_norm: float = 1.0
    max_steps: int | None = None  # overrides epochs; 0: no training (the ablation's untrained arm)


@dataclass
class RunSection:
    device: str = "cpu"
    threads: int = 2
    precision: str = "auto"  # auto (bf16 autocast where native: GPU, AVX512-BF16 CPU) | fp32 | bf16
    save_every: int = 50  # optimizer steps between checkpoints (0: only at the end)
    keep_checkpoints: int = 2
    save_dtype: str = "float16"  # dtype of the final adapter
    gradient_checkpointing: bool = False
    log_every: int = 1


@dataclass
class EvalSection:
    enabled: bool = True
    theta: float | None = 0.725
    future: str = "continue"
    max_positions: int | None = None


@dataclass
class TrainConfig:
    seed: int = 0
    out_dir: str = "runs/embedded"
    model: ModelSection = field(default_factory=ModelSection)
    lora: LoraSection = field(default_factory=LoraSection)
    objective: ObjectiveSection = field(default_factory=ObjectiveSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    run: RunSection = field(default_factory=RunSection)
    eval: EvalSection = field(default_factory=EvalSection)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> "TrainConfig":
        return _build(cls, data or {}, "")

    def validate(self) -> "TrainConfig":
        o = self.objective
        if o.mode not in MODES:
            raise ConfigError(f"objective.mode is '{o.mode}': use one of {', '.join(MODES)}")
        if not o.stream_weight > 0:
            raise ConfigError(f"objective.stream_weight (w) must be > 0, got {o.stream_weight}")
        if not o.name_weight > 0:
            raise ConfigError(f"objective.name_weight must be > 0, got {o.name_weight}")
        if o.max_length < 64:
            raise ConfigError(f"objective.max_length must be >= 64 (the system prompt and a frame), got {o.max_length}")
        p = self.optim
        for name in ("batch_size", "grad_accum"):
            if getattr(p, name) < 1:
                raise ConfigError(f"optim.{name} must be >= 1, got {getattr(p, name)}")
        if not p.lr > 0:
            raise ConfigError(f"optim.lr must be > 0, got {p.lr}")
        if not 0 <= p.warmup_ratio < 1:
            raise ConfigError(f"optim.warmup_ratio must be in [0, 1), got {p.warmup_ratio}")
        if p.max_steps is None and not p.epochs > 0:
            raise ConfigError(f"optim.epochs must be > 0 (or set optim.max_steps), got {p.epochs}")
        if p.max_steps is not None and p.max_steps < 0:
            raise ConfigError(f"optim.max_steps must be >= 0 (0: save the untrained model), got {p.max_steps}")
        if self.lora.r < 1:
            raise ConfigError(f"lora.r must be >= 1, got {self.lora.r}")
        if self.augment.active and o.mode != "streaming":
            raise ConfigError(
                f"augmentation applies to the streaming format only (objective.mode is '{o.mode}'): "
                f"set augment.enabled=false"
            )
        if self.run.precision not in ("auto", "fp32", "bf16"):
            raise ConfigError(f"run.precision is '{self.run.precision}': use auto, fp32 or bf16")
        if self.run.save_dtype not in ("float16", "bfloat16", "float32"):
            raise ConfigError(f"run.save_dtype is '{self.run.save_dtype}': use float16, bfloat16 or float32")
        if self.eval.future not in ("continue", "sequence"):
            raise ConfigError(f"eval.future is '{self.eval.future}': use continue or sequence")
        if not self.data.train_streams or not self.data.train_features:
            raise ConfigError(
                "data.train_streams and data.train_features are required (a streams.jsonl from "
                "`live-ros generate` and its features folder from `live-ros extract`)"
            )
        m = self.model
        if not m.preset and not (m.llm and m.encoder_id is not None and m.vision_hidden_size and m.frame_num_tokens):
            raise ConfigError(
                "without model.preset, give model.llm, model.encoder_id, model.vision_hidden_size "
                "and model.frame_num_tokens"
            )
        return self


def _build(cls, data: dict, where: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'the config'} must be a mapping, got {type(data).__name__}")
    names = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(
            f"unknown config key(s) {', '.join((where + k) for k in unknown)}; known in "
            f"{where.rstrip('.') or 'the top level'}: {', '.join(names)}"
        )
    kwargs = {}
    for name, value in data.items():
        default = getattr(cls(), name)
        if is_dataclass(default):
            kwargs[name] = _build(type(default), value or {}, f"{where}{name}.")
        else:
            kwargs[name] = _coerce(value, default, f"{where}{name}")
    try:
        return cls(**kwargs)
    except ValueError as err:
        raise ConfigError(str(err)) from err


def _coerce(value, default, key: str):
    """Numbers written as text by YAML (``2e-4`` is a string in YAML 1.1) become numbers."""
    if isinstance(value, str) and isinstance(default, (int, float)) and not isinstance(default, bool):
        try:
            return float(value) if isinstance(default, float) or not value.lstrip("-").isdigit() else int(value)
        except ValueError:
            raise ConfigError(f"{key} must be a number, got {value!r}") from None
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def apply_overrides(data: dict, overrides: Sequence[str]) -> dict:
    """``section.key=value`` overrides (values parsed as YAML) applied to a config mapping."""
    import yaml

    data = json.loads(json.dumps(data))  # a deep copy
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not key=value (e.g. optim.lr=1e-4)")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        node = data
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override '{item}': {part} is not a section")
        value = yaml.safe_load(raw) if raw.strip() else None
        node[parts[-1]] = value
    return data


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> TrainConfig:
    """A config file (YAML) with ``key=value`` overrides, checked."""
    import yaml

    data: dict = {}
    if path:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist (see config/train_embedded.yaml)")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path} is not valid YAML: {err}") from err
    data = apply_overrides(data, overrides)
    return TrainConfig.from_dict(data).validate()
