"""``live-ros train``: LoRA + connector on the streaming EOS objective (paper section 3.3).

One YAML config file describes a run (``config/train_embedded.yaml`` is the embedded
default); ``key=value`` arguments override single entries (``optim.lr=1e-4``). The loop is
a plain PyTorch one: AdamW over the LoRA weights and the connector, cosine schedule with
linear warmup (5 %), gradient accumulation, gradient clipping; bf16 autocast on a GPU and
on CPUs with native bf16 (``run.precision: auto``), fp32 otherwise.

Data: timed streams (``streams.jsonl`` from ``live-ros generate``) and their pre-extracted
frame features (``<features>/<video_id>.safetensors`` from ``live-ros extract``). Each
time a stream is drawn (once per epoch), its question insertions are drawn afresh when the
stream carries a plan (:func:`live_ros.data.dialogue.redraw`, seeded by seed, epoch and
stream), the release's augmentation is applied if enabled (:mod:`live_ros.augment`), the
turns are encoded in the configured format (``streaming``, or the ``per_frame`` /
``interleaved`` baselines) with the stream weight w, and a stream longer than
``max_length`` positions is cut to its longest prefix of whole frames and turns that fits.

Loss: the weighted cross-entropy of :func:`live_ros.model.live_model.streaming_loss`,
normalised over all labelled positions of the optimizer step (all micro-batches of the
accumulation together); logits are computed only where a label is.

Output folder (``--out``, default the config's ``out_dir``)::

    train_config.json         the resolved config
    log.jsonl                 one line per optimizer step (loss, lr, tokens, seconds)
    loss_curve.png            loss per step (and its moving average), learning rate
    checkpoint-STEP/          every ``run.save_every`` steps and at the end: adapter (fp32), tokenizer,
                              live_config.json, and training_state.pt (optimizer,
                              scheduler, step, RNG, loss history); ``--resume`` takes the
                              latest; the newest ``run.keep_checkpoints`` are kept
    final/                    the final checkpoint: adapter + connector (fp16), tokenizer
                              with <v>, live_config.json (encoder id, base LLM, fps, format)
    metrics.json              the evaluation on the held-out streams, with the training
                              statistics (tokens per stream, speed) under "train"

Resuming gives the same result as an uninterrupted run: data order, question draws and
augmentation are functions of (seed, epoch, stream); the RNG state (dropout) is restored.
Ctrl-C saves a checkpoint of the last completed step.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from live_ros.augment import AugmentConfig

if TYPE_CHECKING:  # torch and the model are imported inside the functions: --help stays instant
    import torch

    from live_ros.data.streams import StreamSample
    from live_ros.model.format import Encoded, StreamTokenizer

MODES = ("streaming", "per_frame", "interleaved")
CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
STATE_FILE = "training_state.pt"
SMOLLM2_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct"


class ConfigError(ValueError):
    """A config file or override that cannot be used, with what to do about it."""


# ----------------------------------------------------------------------------- config
@dataclass
class ModelSection:
    preset: str | None = "embedded"      # defaults for the base LLM and the encoder
    llm: str | None = None               # local base LLM folder (default: the preset's)
    encoder_id: str | None = None        # the features' encoder (default: the preset's encoder)
    vision_hidden_size: int | None = None
    frame_num_tokens: int | None = None
    frame_resolution: int | None = None
    fps: float = 2.0
    connector_seed: int = 0
    init_from: str | None = None         # start LoRA + connector from this checkpoint folder (a later stage)


@dataclass
class LoraSection:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: str = r"model.*(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
    untie_embeddings: bool = False       # needed for lm_head in target_modules with tied embeddings


@dataclass
class ObjectiveSection:
    mode: str = "streaming"              # streaming | per_frame | interleaved
    stream_weight: float = 1.0           # w: weight of the frame-decision positions
    max_length: int = 2048               # positions per stream (longer: cut to a prefix)
    name_weight: float = 1.0             # weight of the targets that start an object's name (1: the paper's loss)


@dataclass
class DataSection:
    train_streams: str | None = None
    train_features: str | None = None
    eval_streams: str | None = None
    eval_features: str | None = None
    redraw_questions: bool = True        # fresh question insertions each epoch (streams with a plan)
    extra_streams: str | None = None     # more training streams with their own features paths (event windows)
    limit: int | None = None             # use only the first N training streams
    eval_limit: int | None = None


@dataclass
class OptimSection:
    lr: float = 2e-4
    weight_decay: float = 0.0
    warmup_ratio: float = 0.05
    epochs: float = 2
    batch_size: int = 2                  # streams per micro-batch
    grad_accum: int = 4                  # micro-batches per optimizer step
    max_grad_norm: float = 1.0
    max_steps: int | None = None         # overrides epochs; 0: no training (the ablation's untrained arm)


@dataclass
class RunSection:
    device: str = "cpu"
    threads: int = 2
    precision: str = "auto"              # auto (bf16 autocast where native: GPU, AVX512-BF16 CPU) | fp32 | bf16
    save_every: int = 50                 # optimizer steps between checkpoints (0: only at the end)
    keep_checkpoints: int = 2
    save_dtype: str = "float16"          # dtype of the final adapter
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
            raise ConfigError(f"augmentation applies to the streaming format only (objective.mode is '{o.mode}'): "
                              f"set augment.enabled=false")
        if self.run.precision not in ("auto", "fp32", "bf16"):
            raise ConfigError(f"run.precision is '{self.run.precision}': use auto, fp32 or bf16")
        if self.run.save_dtype not in ("float16", "bfloat16", "float32"):
            raise ConfigError(f"run.save_dtype is '{self.run.save_dtype}': use float16, bfloat16 or float32")
        if self.eval.future not in ("continue", "sequence"):
            raise ConfigError(f"eval.future is '{self.eval.future}': use continue or sequence")
        if not self.data.train_streams or not self.data.train_features:
            raise ConfigError("data.train_streams and data.train_features are required (a streams.jsonl from "
                              "`live-ros generate` and its features folder from `live-ros extract`)")
        m = self.model
        if not m.preset and not (m.llm and m.encoder_id is not None and m.vision_hidden_size and m.frame_num_tokens):
            raise ConfigError("without model.preset, give model.llm, model.encoder_id, model.vision_hidden_size "
                              "and model.frame_num_tokens")
        return self


def _build(cls, data: dict, where: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'the config'} must be a mapping, got {type(data).__name__}")
    names = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(f"unknown config key(s) {', '.join((where + k) for k in unknown)}; known in "
                          f"{where.rstrip('.') or 'the top level'}: {', '.join(names)}")
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


# ----------------------------------------------------------------------------- data
@dataclass
class TrainItem:
    """One drawn and encoded stream."""

    video_id: str
    encoded: Encoded
    frame_tokens: torch.Tensor          # [F, N, dim], F = encoded.num_frames
    truncated: bool = False
    augmented: list = field(default_factory=list)


class StreamDataset:
    """Training streams with their features; ``item(index, epoch)`` draws one (question
    insertions, augmentation) deterministically from (seed, epoch, index) and encodes it."""

    def __init__(self, samples: Sequence[StreamSample], features_dir: str | Path, tokens: StreamTokenizer, *,
                 mode: str = "streaming", stream_weight: float = 1.0, max_length: int = 2048, seed: int = 0,
                 redraw: bool = True, augment: AugmentConfig | None = None, encoder_id: str | None = None,
                 vision_hidden_size: int | None = None, fps: float | None = None, name_weight: float = 1.0):
        self.samples = list(samples)
        if not self.samples:
            raise ConfigError("no training streams")
        self.features_dir = Path(features_dir)
        self.tokens = tokens
        self.mode = mode
        self.stream_weight = stream_weight
        self.name_weight = name_weight
        self.name_ids: set[int] = set()
        if name_weight != 1.0:
            from live_ros.data.world import object_catalog

            self.name_ids = tokens.first_token_ids(sorted(object_catalog()))
        self.max_length = max_length
        self.seed = seed
        self.augment = augment or AugmentConfig()
        self.encoder_id = encoder_id or None
        self.vision_hidden_size = vision_hidden_size
        if fps is not None:
            off = [s.video_id for s in self.samples if abs(s.fps - fps) > 1e-6]
            if off:
                raise ConfigError(f"{len(off)} streams (e.g. '{off[0]}') are on another fps grid than the model's "
                                  f"{fps:g} fps: generate them at {fps:g} fps or set model.fps")
        self._redraw = None
        if redraw:
            try:
                from live_ros.data.dialogue import redraw as redraw_fn
            except ImportError:  # the data module offers no redraw: turns stay as generated
                redraw_fn = None
            self._redraw = redraw_fn
        texts = {t.text for s in self.samples for t in s.turns if t.role == "assistant" and t.text}
        self.wrong_texts = sorted(texts)

    def __len__(self) -> int:
        return len(self.samples)

    def draw(self, index: int, epoch: int) -> StreamSample:
        """The sample as drawn in ``epoch`` (fresh question insertions when it has a plan)."""
        import numpy as np

        sample = self.samples[index]
        if self._redraw is not None and sample.meta.get("plan") and not sample.meta.get("fixed"):
            sample = self._redraw(sample, np.random.default_rng([self.seed, epoch, index, 1]))
        return sample

    def item(self, index: int, epoch: int) -> TrainItem:
        import numpy as np

        from live_ros.augment import augment_turns, mask_context_only
        from live_ros.evaluate import fit_context, load_stream_features
        from live_ros.model.format import weight_targets

        sample = self.draw(index, epoch)
        feats, _, meta = load_stream_features(sample, self.features_dir, expect_encoder=self.encoder_id)
        where = f"features of '{sample.video_id}'"
        if feats.ndim != 3 or feats.shape[1] != len(self.tokens.frame_ids) or (
                self.vision_hidden_size and feats.shape[2] != self.vision_hidden_size):
            raise ConfigError(f"{where} have shape {tuple(feats.shape)} but the model takes "
                              f"[T, {len(self.tokens.frame_ids)}, {self.vision_hidden_size}]: extract them with the "
                              f"model's encoder")
        if meta.get("fps") and abs(float(meta["fps"]) - sample.fps) > 1e-6:
            raise ConfigError(f"{where} are at {meta['fps']} fps but the stream is on a {sample.fps} fps grid")
        n_frames = min(int(feats.shape[0]), sample.num_frames)
        if n_frames < sample.num_frames:  # features end early: keep the turns within them
            from live_ros.data.streams import StreamSample as _S

            kept = [t for t in sample.turns if sample.frame_of(t.time) < n_frames]
            sample = _S(sample.video_id, sample.duration, sample.fps, kept, sample.video, sample.features,
                        sample.meta)
        turns = sample.to_turns(n_frames)
        aug = augment_turns(turns, self.augment, np.random.default_rng([self.seed, epoch, index, 2]),
                            wrong_texts=self.wrong_texts, fps=sample.fps)   # inactive: the turns unchanged
        turns, context_only = aug.turns, aug.context_only
        enc = self.tokens.encode(turns, self.mode, self.stream_weight)
        truncated = False
        if len(enc.input_ids) > self.max_length:
            turns, _, truncated = fit_context(self.tokens, turns, self.mode, self.max_length)
            enc = self.tokens.encode(turns, self.mode, self.stream_weight)
            context_only = [i for i in context_only if i < len(turns)]
        mask_context_only(enc, turns, context_only, aug.unlearned_frames)   # frames past a cut are skipped
        if self.name_ids:
            weight_targets(enc, self.name_ids, self.name_weight)
        return TrainItem(sample.video_id, enc, feats[:enc.num_frames], truncated, aug.applied)


@dataclass
class Layout:
    """Which streams each optimizer step takes: epochs of a seeded permutation, cut into
    micro-batches of ``batch_size``, ``grad_accum`` micro-batches per step."""

    num_streams: int
    batch_size: int
    grad_accum: int
    seed: int

    @property
    def micro_per_epoch(self) -> int:
        return math.ceil(self.num_streams / self.batch_size)

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.micro_per_epoch / self.grad_accum)

    def order(self, epoch: int) -> list[int]:
        import numpy as np

        return [int(i) for i in np.random.default_rng([self.seed, epoch]).permutation(self.num_streams)]

    def step(self, step: int) -> tuple[int, list[list[int]]]:
        """(epoch, micro-batches of stream indices) of optimizer step ``step`` (0-based)."""
        epoch, k = divmod(step, self.steps_per_epoch)
        order = self.order(epoch)
        micro = []
        for m in range(k * self.grad_accum, min((k + 1) * self.grad_accum, self.micro_per_epoch)):
            micro.append(order[m * self.batch_size:(m + 1) * self.batch_size])
        return epoch, micro


# ----------------------------------------------------------------------------- model
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


def bf16_autocast(precision: str, device: str) -> bool:
    """Whether to compute in bf16 (autocast; the weights and the optimizer stay fp32).
    ``auto``: on a GPU with bf16, and on a CPU with native bf16 (AVX512-BF16 / AMX, where
    it is about twice as fast as fp32); fp32 elsewhere."""
    import torch

    if precision in ("bf16", "fp32"):
        return precision == "bf16"
    if str(device).startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def cosine_schedule(optimizer, warmup_steps: int, total_steps: int):
    """Linear warmup from 0, then cosine decay to 0 (the Hugging Face schedule)."""
    import torch

    def factor(step: int) -> float:
        if step < warmup_steps:
            return step / max(1, warmup_steps)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def micro_loss(model, batch: dict, device: str, autocast) -> tuple[torch.Tensor, int]:
    """(sum of weighted cross-entropy over the labelled positions, their count) of one
    micro-batch; the logits are computed only at the labelled positions."""
    import torch

    from live_ros.model.format import IGNORE
    from live_ros.model.live_model import streaming_loss

    labels = batch["labels"]
    keep = (labels != IGNORE).any(0).nonzero().squeeze(1)
    count = int((labels != IGNORE).sum())
    if count == 0:
        return torch.zeros((), device=device), 0
    frames = batch["frame_tokens"]
    with autocast():
        out = model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device),
                    frame_tokens=None if frames is None else frames.to(device), logits_to_keep=keep.to(device),
                    use_cache=False)
    loss = streaming_loss(out.logits, labels[:, keep].to(device), batch["loss_weights"][:, keep].to(device))
    return loss * count, count


# ----------------------------------------------------------------------------- state
def _rng_state() -> dict:
    import random

    import torch

    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    import random

    import torch

    torch.set_rng_state(state["torch"])
    if "python" in state:
        random.setstate(_tuples(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tuples(value):
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def checkpoints(out_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints of a run, oldest first."""
    found = []
    if Path(out_dir).is_dir():
        for p in Path(out_dir).iterdir():
            m = CHECKPOINT_RE.match(p.name)
            if m and (p / STATE_FILE).is_file():
                found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(out_dir: Path) -> Path | None:
    found = checkpoints(out_dir)
    return found[-1][1] if found else None


def live_config(model, spec: ModelSpec, config: TrainConfig) -> dict:
    from live_ros.model.checkpoint import live_settings

    base = model.get_base_model()
    return live_settings(base.config, spec.encoder, spec.base_llm, preset=spec.preset, mode=config.objective.mode,
                         stream_weight=config.objective.stream_weight,
                         lora={"r": config.lora.r, "alpha": config.lora.alpha,
                               "target_modules": config.lora.target_modules})


def save_training_checkpoint(folder: Path, model, tokenizer, live: dict, optimizer, scheduler, step: int,
                             rng: dict, history: list, stats: dict) -> Path:
    """A resumable checkpoint, written aside and renamed into place: the adapter in fp32
    (also loadable with ``load_live``), tokenizer, live_config.json, training_state.pt."""
    import torch

    from live_ros.model.checkpoint import save_checkpoint

    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    save_checkpoint(model, tokenizer, tmp, live, dtype=torch.float32)
    torch.save({"step": step, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "rng": rng, "history": history, "stats": stats}, tmp / STATE_FILE)
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return folder


def load_training_checkpoint(folder: Path, model, optimizer, scheduler) -> dict:
    """Restore adapter, optimizer, scheduler and RNG from ``folder``; the saved state."""
    import torch
    from peft.utils import set_peft_model_state_dict
    from safetensors.torch import load_file

    from live_ros.model.checkpoint import ADAPTER_WEIGHTS

    state = torch.load(Path(folder) / STATE_FILE, map_location="cpu", weights_only=True)
    weights = load_file(str(Path(folder) / ADAPTER_WEIGHTS))
    device = next(p for p in model.parameters()).device
    try:
        set_peft_model_state_dict(model, {k: v.to(device) for k, v in weights.items()})
        optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as err:
        raise ConfigError(f"{folder} does not fit this run's model ({err}): resume with the config the run was "
                          f"started with (its train_config.json), or train into another --out") from err
    scheduler.load_state_dict(state["scheduler"])
    _set_rng_state(state["rng"])
    return state


def plot_losses(history: Sequence[dict], path: Path, title: str = "") -> Path | None:
    """The loss per optimizer step, its moving average and the learning rate, as a PNG."""
    if not history:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [h["step"] for h in history]
    losses = [h["loss"] for h in history]
    smooth, ema = [], None
    alpha = 2.0 / (max(2, len(losses) // 20) + 1)  # an exponential moving average over ~5 % of the run
    for x in losses:
        ema = x if ema is None else (1 - alpha) * ema + alpha * x
        smooth.append(ema)
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    ax.plot(steps, losses, color="tab:blue", alpha=0.35, lw=1, label="loss")
    ax.plot(steps, smooth, color="tab:blue", lw=2, label="moving average")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("streaming EOS loss")
    ax.grid(alpha=0.3)
    ax2 = ax.twinx()
    ax2.plot(steps, [h["lr"] for h in history], color="tab:orange", lw=1, label="learning rate")
    ax2.set_ylabel("learning rate", color="tab:orange")
    lines = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(lines, [ln.get_label() for ln in lines], loc="upper right", fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)
    return path


# ----------------------------------------------------------------------------- training
@dataclass
class TrainResult:
    out_dir: Path
    final_dir: Path | None
    start_step: int
    steps: int                      # optimizer steps done in all (total of the run)
    history: list                   # [{step, epoch, loss, lr, tokens, streams, seconds}]
    stats: dict                     # training tokens per stream, speed, ...
    metrics: dict | None
    model: Any = None               # the trained peft model (in memory)
    tokens: Any = None              # its StreamTokenizer
    tokenizer: Any = None
    interrupted: bool = False


def _stats_summary(stats: dict) -> dict:
    n = max(1, stats["streams"])
    secs = max(1e-9, stats["seconds"])
    return {**stats, "tokens_per_stream": stats["tokens"] / n, "labelled_per_stream": stats["labelled"] / n,
            "frames_per_stream": stats["frames"] / n, "steps_per_second": stats["steps"] / secs,
            "tokens_per_second": stats["tokens"] / secs}


def _log(msg: str) -> None:
    from tqdm import tqdm

    tqdm.write(msg, file=sys.stderr)


def train(config: TrainConfig, *, out_dir: str | Path | None = None, resume: bool = False,
          max_steps: int | None = None, device: str | None = None, progress: bool = True,
          evaluate_at_end: bool | None = None, stop_after: int | None = None) -> TrainResult:
    """Train, checkpoint, save the final checkpoint and evaluate. ``stop_after``: stop
    (with a checkpoint) once this step is reached, as if interrupted (tests)."""
    import torch
    from tqdm import tqdm

    from live_ros.data.streams import load_samples
    from live_ros.model.format import collate

    config.validate()
    out = Path(out_dir or config.out_dir)
    device = device or config.run.device
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda asked for, but torch sees no GPU (or is a CPU build)")
    if max_steps is not None:
        if int(max_steps) < 0:
            raise ConfigError(f"--max-steps must be >= 0, got {max_steps}")
        config.optim.max_steps = int(max_steps)
    existing = latest_checkpoint(out)
    if existing is not None and not resume:
        raise ConfigError(f"{out} already holds checkpoints ({existing.name}): pass --resume to continue that run, "
                          f"or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    if resume and existing is not None and (out / "train_config.json").is_file():
        changed = _changed_keys(json.loads((out / "train_config.json").read_text()), config.to_dict())
        if changed:
            _log(f"note: the config differs from the one {out} was started with: {', '.join(changed)}")
    (out / "train_config.json").write_text(json.dumps(config.to_dict(), indent=1))

    spec = resolve_model(config.model)
    samples = load_samples(Path(config.data.train_streams))[:config.data.limit or None]
    if config.data.extra_streams:
        samples += load_samples(Path(config.data.extra_streams))
    model, tokenizer, tokens = build_model(config, spec, device)
    dataset = StreamDataset(samples, config.data.train_features, tokens, mode=config.objective.mode,
                            stream_weight=config.objective.stream_weight, max_length=config.objective.max_length,
                            seed=config.seed, redraw=config.data.redraw_questions, augment=config.augment,
                            encoder_id=spec.encoder_id, vision_hidden_size=int(spec.encoder["dim"]),
                            fps=config.model.fps, name_weight=config.objective.name_weight)
    opt = config.optim
    layout = Layout(len(dataset), opt.batch_size, opt.grad_accum, config.seed)
    total = opt.max_steps if opt.max_steps is not None else max(1, math.ceil(opt.epochs * layout.steps_per_epoch))
    trainable = [p for _, p in model.named_parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=opt.lr, weight_decay=opt.weight_decay)
    scheduler = cosine_schedule(optimizer, math.ceil(opt.warmup_ratio * total), total)
    live = live_config(model, spec, config)

    history: list[dict] = []
    stats = {"streams": 0, "tokens": 0, "labelled": 0, "frames": 0, "truncated": 0, "augmented": 0,
             "steps": 0, "seconds": 0.0}
    start = 0
    if resume and existing is not None:
        state = load_training_checkpoint(existing, model, optimizer, scheduler)
        start, history, stats = int(state["step"]), list(state["history"]), dict(state["stats"])
        _log(f"resuming from {existing} at step {start} of {total}")
    elif resume:
        _log(f"no checkpoint in {out}: starting from step 0")

    n_params = sum(p.numel() for p in trainable)
    _log(f"training {spec.base_llm} + connector ({n_params / 1e6:.2f}M trainable: LoRA r={config.lora.r} and the "
         f"connector) on {len(dataset)} streams, {config.objective.mode} format, w={config.objective.stream_weight}, "
         f"{total} steps of {opt.batch_size}x{opt.grad_accum} streams ({layout.steps_per_epoch} steps/epoch), "
         f"device {device}, {'bf16 autocast' if bf16_autocast(config.run.precision, device) else 'fp32'}")
    use_bf16 = bf16_autocast(config.run.precision, device)
    dev_type = "cuda" if str(device).startswith("cuda") else "cpu"

    def autocast():
        return torch.autocast(dev_type, dtype=torch.bfloat16, enabled=use_bf16)

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokens.eos_id
    log_file = (out / "log.jsonl").open("a")
    bar = tqdm(total=total, initial=start, desc="training", unit="step", disable=not progress, dynamic_ncols=True)
    model.train()
    step = start
    rng_next = _rng_state()   # the RNG state at the start of the next step (what a checkpoint holds)
    interrupted = updating = False
    t_run = time.perf_counter()
    try:
        while step < total:
            t0 = time.perf_counter()
            epoch, micro = layout.step(step)
            items = [[dataset.item(i, epoch) for i in mb] for mb in micro]
            n_labels = sum(sum(1 for y in it.encoded.labels if y != -100) for mb in items for it in mb)
            loss_sum = 0.0
            optimizer.zero_grad(set_to_none=True)
            for mb in items:
                batch = collate([it.encoded for it in mb], [it.frame_tokens for it in mb], pad_id)
                part, count = micro_loss(model, batch, device, autocast)
                if count:
                    (part / max(1, n_labels)).backward()
                    loss_sum += float(part.detach())
            grad_norm = float(torch.nn.utils.clip_grad_norm_(trainable, opt.max_grad_norm)) \
                if opt.max_grad_norm else float("nan")
            lr = scheduler.get_last_lr()[0]
            flat = [it for mb in items for it in mb]
            n_tokens = sum(len(it.encoded.input_ids) for it in flat)
            loss = loss_sum / max(1, n_labels)
            record = {"step": step + 1, "epoch": epoch, "loss": loss, "lr": lr, "grad_norm": grad_norm,
                      "streams": len(flat), "tokens": n_tokens, "labelled": n_labels}
            updating = True  # a Ctrl-C from here to the end of the update saves nothing
            optimizer.step()
            scheduler.step()
            step += 1
            seconds = time.perf_counter() - t0
            record["seconds"] = round(seconds, 3)
            history.append(record)
            for key, value in (("streams", len(flat)), ("tokens", n_tokens), ("labelled", n_labels),
                               ("frames", sum(it.encoded.num_frames for it in flat)),
                               ("truncated", sum(it.truncated for it in flat)),
                               ("augmented", sum(bool(it.augmented) for it in flat)), ("steps", 1),
                               ("seconds", seconds)):
                stats[key] += value
            rng_next = _rng_state()
            updating = False
            if step % max(1, config.run.log_every) == 0 or step == total:
                log_file.write(json.dumps(record) + "\n")
                log_file.flush()
            bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", tok_s=f"{n_tokens / max(seconds, 1e-9):.0f}")
            bar.update()
            if (config.run.save_every and (step % config.run.save_every == 0 or step == total)) or \
                    (stop_after is not None and step >= stop_after):
                _checkpoint(out, step, model, tokenizer, live, optimizer, scheduler, rng_next, history, stats,
                            config.run.keep_checkpoints)
                plot_losses(history, out / "loss_curve.png", _title(config, spec))
            if stop_after is not None and step >= stop_after and step < total:
                interrupted = True
                break
    except KeyboardInterrupt:
        interrupted = True
        if not updating and step > start:
            path = _checkpoint(out, step, model, tokenizer, live, optimizer, scheduler, rng_next, history, stats,
                               config.run.keep_checkpoints)
            _log(f"interrupted: saved {path} (step {step}); continue with --resume")
        plot_losses(history, out / "loss_curve.png", _title(config, spec))
        raise
    finally:
        bar.close()
        log_file.close()

    plot_losses(history, out / "loss_curve.png", _title(config, spec))
    summary = {**_stats_summary(stats), "mode": config.objective.mode, "stream_weight": config.objective.stream_weight,
               "device": str(device), "precision": "bf16" if use_bf16 else "fp32", "steps_total": total}
    result = TrainResult(out, None, start, step, history, summary, None, model, tokens, tokenizer, interrupted)
    if interrupted:
        return result
    _log(f"trained {step - start} steps (to step {step}) in {time.perf_counter() - t_run:.1f} s "
         f"({summary['steps_per_second']:.3f} steps/s, "
         f"{summary['tokens_per_second']:.0f} tokens/s); {stats['streams']} streams drawn: "
         f"{summary['tokens_per_stream']:.1f} tokens per stream ({summary['labelled_per_stream']:.1f} labelled, "
         f"{summary['frames_per_stream']:.1f} frames), {stats['truncated']} truncated")
    result.final_dir = save_final(model, tokenizer, out / "final", live, config.run.save_dtype)
    _log(f"final checkpoint: {result.final_dir}")
    if (config.eval.enabled if evaluate_at_end is None else evaluate_at_end) and config.data.eval_streams:
        result.metrics = evaluate_final(config, spec, result.final_dir, device)
        from live_ros.evaluate import format_table, write_json

        write_json({**result.metrics, "train": summary}, out / "metrics.json")
        print(format_table(result.metrics))
    else:
        from live_ros.evaluate import write_json

        write_json({"train": summary}, out / "metrics.json")
    print(f"training tokens per stream: {summary['tokens_per_stream']:.1f} ({config.objective.mode}; "
          f"{summary['labelled_per_stream']:.1f} labelled)")
    return result


def _changed_keys(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ (the run section aside: devices and threads may change)."""
    out = []
    for key in sorted(set(old) | set(new)):
        if not prefix and key in ("run", "out_dir"):
            continue
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _changed_keys(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}")
    return out


def _title(config: TrainConfig, spec: ModelSpec) -> str:
    return (f"{Path(spec.base_llm).name} LoRA r={config.lora.r}, {config.objective.mode}, "
            f"w={config.objective.stream_weight:g}, lr={config.optim.lr:g}")


def _checkpoint(out: Path, step: int, model, tokenizer, live, optimizer, scheduler, rng, history, stats,
                keep: int) -> Path:
    path = save_training_checkpoint(out / f"checkpoint-{step}", model, tokenizer, live, optimizer, scheduler, step,
                                    rng, history, stats)
    for _, old in checkpoints(out)[:-max(1, keep)]:
        shutil.rmtree(old, ignore_errors=True)
    return path


def save_final(model, tokenizer, folder: Path, live: dict, dtype: str = "float16") -> Path:
    """The final checkpoint (``checkpoint.save_checkpoint``: adapter + connector in
    ``dtype``, tokenizer with <v>, live_config.json)."""
    from live_ros.model.checkpoint import _dtype, save_checkpoint

    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    save_checkpoint(model, tokenizer, tmp, live, dtype=_dtype(dtype))
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return folder


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


def evaluate_final(config: TrainConfig, spec: ModelSpec, folder: Path, device: str) -> dict:
    """``evaluate`` on the held-out streams with the saved final checkpoint."""
    from live_ros.data.streams import load_samples
    from live_ros.evaluate import evaluate

    samples = load_samples(Path(config.data.eval_streams))[:config.data.eval_limit or None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        loaded = load_trained(folder, spec, device=device)
    _log(f"evaluating {folder} on {len(samples)} held-out streams")
    return evaluate(loaded.model, loaded.tokens, samples, config.data.eval_features or config.data.train_features,
                    theta=config.eval.theta or None, mode=config.objective.mode, future=config.eval.future,
                    max_positions=config.eval.max_positions, progress=_log)


# ----------------------------------------------------------------------------- command line
def add_train(sub) -> None:
    """Add the ``train`` verb to an argparse subparsers object."""
    p = sub.add_parser(
        "train", help="train LoRA + connector on the streaming EOS objective (resumable)",
        description="Train a LIVE model (LoRA on the LLM's linear layers + the vision connector) on timed streams "
                    "and their pre-extracted features, with the streaming EOS objective (or a baseline format). "
                    "Writes checkpoints (resumable), a loss curve, the final checkpoint and its evaluation on the "
                    "held-out streams into the output folder.",
        epilog="Overrides: section.key=value, e.g. optim.lr=1e-4 objective.mode=per_frame objective.stream_weight=2 "
               "augment.enabled=true data.limit=100 (values are YAML).")
    p.add_argument("--config", required=True, metavar="FILE", help="YAML config (e.g. config/train_embedded.yaml)")
    p.add_argument("--out", metavar="DIR", help="output folder (default: the config's out_dir)")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint-STEP in the folder")
    p.add_argument("--max-steps", type=int, default=None, metavar="N",
                   help="optimizer steps in all (overrides optim.epochs; the schedule is laid out for N)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: the config's run.device)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: the config's run.threads, 2)")
    p.add_argument("--no-eval", action="store_true", help="skip the evaluation at the end")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    p.set_defaults(run=run)


def run(args) -> int:
    """The ``train`` verb. 0 ok, 1 failed (the message says why), 130 interrupted."""
    from live_ros.data.features import FeaturesError
    from live_ros.model.checkpoint import CheckpointError
    from live_ros.model.presets import PresetError

    try:
        config = load_config(args.config, args.overrides)
        import torch

        torch.set_num_threads(args.threads or config.run.threads or 2)
        train(config, out_dir=args.out, resume=args.resume, max_steps=args.max_steps, device=args.device,
              progress=not args.quiet, evaluate_at_end=False if args.no_eval else None)
    except (ConfigError, CheckpointError, PresetError, FeaturesError, FileNotFoundError) as err:
        print(f"live-ros train: {err}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="live-ros")
    add_train(parser.add_subparsers(dest="verb", required=True))
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
