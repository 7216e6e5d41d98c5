"""The one model configuration: every live setting of a checkpoint, each stored once.

A live_ros checkpoint folder holds peft's adapter files (LoRA + connector) and
``live_config.json``, written by :meth:`LiveConfig.save_pretrained` and read by
:meth:`LiveConfig.from_pretrained` (the Hugging Face convention). The settings:

- ``encoder``: which vision encoder makes the frame tokens (backend, model, weights tag,
  image size = the frame resolution the camera letterboxes to, tokens per frame, frame
  difference, normalisation). Its id (``backend/model@weights:SIZEpx:layout``) is derived.
- ``vision_hidden_size``: the width of one frame token (the connector's input).
- ``frame_fps``: the frame rate the model was trained at (paper section 3.4: 2 fps).
- ``format``: the sequence format (:class:`~live_ros.model.format.FormatSpec`); its
  ``frame_num_tokens`` is the encoder's tokens per frame, not stored a second time.
- ``lora``, ``stream_weight``, ``mode``: how it was trained (section 3.3).
- ``base_llm``: the name of the LLM the adapter belongs to.
- ``vocabulary``: the object nouns the model was trained to name; any other object's right
  answer is the generic one ("Something I can't name appears."). Empty: not recorded
  (evaluation then counts every object as known).
- ``evidence``: the object evidence head, if any (:class:`EvidenceSettings`,
  live_ros/model/evidence.py): which object classes it scores and which frame token it adds
  their names to. None: frames enter through the connector alone, as in the paper.

Importing this module costs no torch: camera_subscriber reads the fps and resolution of a
checkpoint through it. Files of ``format_version`` 1 (every value at top level, several
twice) are read too.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, get_args

from live_ros.model.format import FormatSpec, Mode

CONFIG_NAME = "live_config.json"
FORMAT_VERSION = 2
LORA_TARGETS = r"model.*(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
# backend/model_name@weights_tag:SIZEpx:1[+SxS][+delta]
_ID = re.compile(
    r"^(?P<backend>[^/@:]+)/(?P<model>[^@]+)@(?P<tag>[^:]*):(?P<size>\d+)px:"
    r"1(?:\+(?P<s1>\d+)x(?P<s2>\d+))?(?P<delta>\+delta)?$"
)


class ConfigError(ValueError):
    """A live_config.json (or settings) that cannot describe a model, with what to do."""


@dataclass(frozen=True)
class EncoderSettings:
    """The vision encoder whose frame tokens the model takes (see model/encoders.py).

    ``backend=""``: tokens from an encoder not described here (features given as files);
    the id is then empty and nothing checks it. ``weights_tag`` is the weights' identity
    (8 hex of the file's sha256, or a folder name; ``""``: whatever local copy is given).
    """

    backend: str = ""
    model_name: str = ""
    weights_tag: str = ""
    image_size: int = 224  # the letterbox size: the frame resolution
    num_tokens: int = 10  # tokens per frame: 1 pooled + spatial x spatial
    frame_delta: bool = False  # each token followed by its difference from the previous frame's
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    def __post_init__(self):
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if not (isinstance(self.num_tokens, int) and self.num_tokens >= 1):
            raise ConfigError(f"encoder.num_tokens must be an int >= 1, got {self.num_tokens!r}")
        if not (isinstance(self.image_size, int) and self.image_size > 0):
            raise ConfigError(f"encoder.image_size must be a positive int, got {self.image_size!r}")
        if self.backend and self.spatial is None:
            raise ConfigError(
                f"encoder {self.backend}/{self.model_name}: {self.num_tokens} tokens per frame is "
                f"not 1 + s x s (1 pooled token and an s x s grid)"
            )

    @property
    def spatial(self) -> int | None:
        """The side of the pooled grid (0: the pooled token only), if tokens are 1 + s x s."""
        s = math.isqrt(self.num_tokens - 1)
        return s if s * s == self.num_tokens - 1 else None

    @property
    def token_layout(self) -> str:
        layout = "1" if not self.spatial else f"1+{self.spatial}x{self.spatial}"
        return layout + ("+delta" if self.frame_delta else "")

    @property
    def encoder_id(self) -> str:
        """As :attr:`live_ros.model.encoders.VisionEncoder.encoder_id` (it travels in FrameTokens)."""
        if not self.backend:
            return ""
        return f"{self.backend}/{self.model_name}@{self.weights_tag}:{self.image_size}px:{self.token_layout}"

    def with_weights_tag(self, tag: str) -> "EncoderSettings":
        return replace(self, weights_tag=tag)

    def accepts(self, encoder_id: str) -> bool:
        """Whether tokens of ``encoder_id`` fit (any weights when the tag is empty)."""
        if not self.backend:
            return True
        if self.weights_tag:
            return encoder_id == self.encoder_id
        parsed = parse_encoder_id(encoder_id)
        return parsed is not None and parsed.with_weights_tag("") == replace(self, mean=parsed.mean, std=parsed.std)

    def encoder_config(self, weights: str | Path | None, random_init: bool = False):
        """The :class:`~live_ros.model.encoders.EncoderConfig` that builds this encoder."""
        from live_ros.model.encoders import EncoderConfig

        if not self.backend:
            raise ConfigError(
                "this checkpoint names no encoder backend (it was trained on feature files): "
                "it cannot encode frames itself"
            )
        spatial = self.spatial
        if spatial is None:  # __post_init__ rejects this already when there is a backend
            raise ConfigError(
                f"encoder {self.backend}/{self.model_name}: {self.num_tokens} tokens per frame is "
                f"not 1 + s x s (1 pooled token and an s x s grid)"
            )
        return EncoderConfig(
            backend=self.backend,
            model_name=self.model_name,
            weights=None if weights is None else str(weights),
            image_size=self.image_size,
            spatial=spatial,
            mean=self.mean,
            std=self.std,
            random_init=random_init,
            frame_delta=self.frame_delta,
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["mean"], data["std"] = list(self.mean), list(self.std)
        return data


def parse_encoder_id(encoder_id: str, **settings) -> EncoderSettings | None:
    """The settings an encoder id names (None when it is not of the form
    ``backend/model@weights:SIZEpx:1[+SxS][+delta]``)."""
    m = _ID.match(encoder_id or "")
    if not m or m["s1"] != m["s2"]:
        return None
    s = int(m["s1"] or 0)
    return EncoderSettings(
        backend=m["backend"],
        model_name=m["model"],
        weights_tag=m["tag"],
        image_size=int(m["size"]),
        num_tokens=1 + s * s,
        frame_delta=bool(m["delta"]),
        **settings,
    )


@dataclass(frozen=True)
class LoraSettings:
    """LoRA on every linear layer of the LLM (section 3.3); the connector is trained fully
    (``modules_to_save``). The release: r=128, alpha=256, lm_head included."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: str = LORA_TARGETS
    modules_to_save: tuple[str, ...] = ("connector",)

    def __post_init__(self):
        object.__setattr__(self, "modules_to_save", tuple(self.modules_to_save))

    def peft_config(self):
        from peft import LoraConfig

        return LoraConfig(
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=self.target_modules,
            modules_to_save=list(self.modules_to_save),
            task_type="CAUSAL_LM",
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["modules_to_save"] = list(self.modules_to_save)
        return data


@dataclass(frozen=True)
class EvidenceSettings:
    """The object evidence head (live_ros/model/evidence.py): a linear classifier over the
    first ``input_dim`` values of a frame token (its features, without the frame difference)
    that scores ``classes`` (e.g. the trained nouns, the generic noun, "something"), applied to every token
    of the frame and maxed over them (``pooling="max"``: an object seen in one grid cell
    counts) or to token ``token`` only (``"token"``); the sum of the class names' word
    embeddings, each weighted by its probability, is added to the projection of token ``token``."""

    classes: tuple[str, ...]
    input_dim: int
    token: int = 0
    pooling: str = "max"

    def __post_init__(self):
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
        if not self.classes:
            raise ConfigError("evidence.classes is empty: name the object classes the head scores")
        if not (isinstance(self.input_dim, int) and self.input_dim > 0):
            raise ConfigError(f"evidence.input_dim must be a positive int, got {self.input_dim!r}")
        if not (isinstance(self.token, int) and self.token >= 0):
            raise ConfigError(f"evidence.token must be an int >= 0, got {self.token!r}")
        if self.pooling not in ("max", "token"):
            raise ConfigError(f"evidence.pooling must be 'max' or 'token', got {self.pooling!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "classes": list(self.classes),
            "input_dim": self.input_dim,
            "token": self.token,
            "pooling": self.pooling,
        }


RELEASE_LORA = LoraSettings(r=128, alpha=256, dropout=0.05, target_modules=LORA_TARGETS + r"|lm_head$")


@dataclass(frozen=True)
class LiveConfig:
    """Every live setting of a checkpoint (see the module docstring)."""

    base_llm: str = ""
    encoder: EncoderSettings = field(default_factory=EncoderSettings)
    vision_hidden_size: int = 1024
    frame_fps: float = 2.0
    format: FormatSpec = field(default_factory=FormatSpec)
    lora: LoraSettings = field(default_factory=LoraSettings)
    stream_weight: float = 1.0
    mode: str = "streaming"
    vocabulary: tuple[str, ...] = ()
    evidence: EvidenceSettings | None = None

    def __post_init__(self):
        object.__setattr__(self, "vocabulary", tuple(str(n) for n in self.vocabulary))
        if self.evidence is not None and self.evidence.token >= self.encoder.num_tokens:
            raise ConfigError(
                f"evidence.token {self.evidence.token} is not one of the {self.encoder.num_tokens} tokens per frame"
            )
        if self.evidence is not None and self.evidence.input_dim > self.vision_hidden_size:
            raise ConfigError(
                f"evidence.input_dim {self.evidence.input_dim} exceeds the frame tokens' width "
                f"{self.vision_hidden_size}: fit the head on the features this model takes"
            )
        # the sequence format's tokens per frame is the encoder's: one value, kept in one place
        if self.format.frame_num_tokens != self.encoder.num_tokens:
            object.__setattr__(self, "format", replace(self.format, frame_num_tokens=self.encoder.num_tokens))
        object.__setattr__(self, "frame_fps", float(self.frame_fps))
        if not self.frame_fps > 0:
            raise ConfigError(f"frame_fps must be > 0, got {self.frame_fps}")
        if self.mode not in get_args(Mode):
            raise ConfigError(f"mode must be one of {', '.join(get_args(Mode))}, got {self.mode!r}")
        if not (isinstance(self.vision_hidden_size, int) and self.vision_hidden_size > 0):
            raise ConfigError(f"vision_hidden_size must be a positive int, got {self.vision_hidden_size!r}")

    # -- derived values ---------------------------------------------------------------------
    @property
    def frame_num_tokens(self) -> int:
        return self.encoder.num_tokens

    @property
    def frame_resolution(self) -> int:
        return self.encoder.image_size

    @property
    def encoder_id(self) -> str:
        return self.encoder.encoder_id

    # -- (de)serialisation ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        fmt = self.format.to_dict()
        del fmt["frame_num_tokens"]  # the encoder's num_tokens
        return {
            "format_version": FORMAT_VERSION,
            "base_llm": self.base_llm,
            "encoder": self.encoder.to_dict(),
            "vision_hidden_size": self.vision_hidden_size,
            "frame_fps": self.frame_fps,
            "format": fmt,
            "lora": self.lora.to_dict(),
            "stream_weight": self.stream_weight,
            "mode": self.mode,
            **({"vocabulary": list(self.vocabulary)} if self.vocabulary else {}),
            **({"evidence": self.evidence.to_dict()} if self.evidence else {}),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LiveConfig":
        version = data.get("format_version", 1)
        if version == 1:
            return _from_v1(data)
        if version != FORMAT_VERSION:
            raise ConfigError(
                f"live_config format_version {version} is newer than this live_ros ({FORMAT_VERSION}): update live_ros"
            )
        data = dict(data)
        data.pop("format_version")
        _check_keys("live_config", data, {f.name for f in fields(cls)})
        enc, fmt, lora = data.pop("encoder", {}), data.pop("format", {}), data.pop("lora", {})
        evidence = data.pop("evidence", None)
        _check_keys("encoder", enc, {f.name for f in fields(EncoderSettings)})
        _check_keys("format", fmt, {f.name for f in fields(FormatSpec)} - {"frame_num_tokens"})
        _check_keys("lora", lora, {f.name for f in fields(LoraSettings)})
        if evidence is not None:
            _check_keys("evidence", evidence, {f.name for f in fields(EvidenceSettings)})
            evidence = EvidenceSettings(**evidence)
        return cls(
            encoder=EncoderSettings(**enc),
            format=FormatSpec(**fmt),
            lora=LoraSettings(**lora),
            evidence=evidence,
            **data,
        )

    def save_pretrained(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / CONFIG_NAME
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        return path

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> "LiveConfig":
        path = Path(folder) / CONFIG_NAME
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing (the live settings of a live_ros checkpoint): pass a folder "
                f"written by live-ros train, or name a preset (a release folder is loaded "
                f"through the videollm-online-8b-v1plus preset, which supplies its settings)"
            )
        try:
            data = json.loads(path.read_text())
            return cls.from_dict(data)
        except (json.JSONDecodeError, TypeError, ConfigError) as err:
            raise ConfigError(f"{path}: {err}") from err


def _check_keys(what: str, data: dict, known: set[str]) -> None:
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown {what} keys {unknown}; known keys: {sorted(known)}")


def _from_v1(data: dict[str, Any]) -> LiveConfig:
    """A ``format_version`` 1 file: values at top level, the encoder's repeated inside ``encoder``."""
    enc = data.get("encoder") or {}
    num_tokens = int(data.get("frame_num_tokens") or enc.get("num_tokens") or 10)
    image_size = int(data.get("frame_resolution") or enc.get("image_size") or 224)
    norm: dict[str, Any] = {k: tuple(enc[k]) for k in ("mean", "std") if k in enc}
    encoder_id = data.get("encoder_id") or enc.get("id") or ""
    encoder = parse_encoder_id(encoder_id, **norm)
    if encoder is None or encoder.encoder_id != encoder_id:  # an id this form cannot name: no encoder check
        encoder = EncoderSettings(image_size=image_size, num_tokens=num_tokens, **norm)
    fmt = dict(data.get("live_format") or {})
    fmt.pop("frame_num_tokens", None)
    lora = dict(data.get("lora") or {})
    return LiveConfig(
        base_llm=data.get("base_llm", ""),
        encoder=encoder,
        vision_hidden_size=int(data.get("vision_hidden_size") or enc.get("dim") or 1024),
        frame_fps=float(data.get("frame_fps", 2.0)),
        format=FormatSpec(**fmt),
        lora=LoraSettings(**lora),
        stream_weight=float(data.get("stream_weight", 1.0)),
        mode=data.get("mode", "streaming"),
    )


def override_note(what: str, value, checkpoint_value, unit: str = "") -> str:
    """The log line of a node parameter that overrides a checkpoint's setting."""
    return (
        f"{what} {value}{unit} overrides the checkpoint's {checkpoint_value}{unit}: the model was trained "
        f"at {checkpoint_value}{unit}"
    )


__all__ = [
    "CONFIG_NAME",
    "FORMAT_VERSION",
    "ConfigError",
    "EncoderSettings",
    "EvidenceSettings",
    "LiveConfig",
    "LoraSettings",
    "RELEASE_LORA",
    "LORA_TARGETS",
    "parse_encoder_id",
    "override_note",
]
