"""LiveModel: a vision connector in front of a Llama-family causal LM (paper section 3.3).

The module layout is the release's ``LiveLlamaForCausalLM``: the LLM's own ``model`` and
``lm_head`` plus a top-level ``connector``, so the release's adapter keys
(``base_model.model.connector.0.weight``, ``base_model.model.model.layers.N...``,
``base_model.model.lm_head...``) load unchanged once wrapped by peft.

Frame tokens enter through placeholder ids (``<v>``): the embedding lookup clamps them into
the vocabulary and their positions are overwritten with the connector's outputs, as in
the release (the embedding matrix is never resized).
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.modeling_outputs import CausalLMOutputWithPast

from live_ros.model.config import EncoderSettings, LiveConfig, parse_encoder_id
from live_ros.model.evidence import ObjectEvidence
from live_ros.model.format import IGNORE, FormatSpec


LEGACY_KEYS = (
    "vision_hidden_size",
    "frame_num_tokens",
    "frame_token",
    "stream_loss_weight",
    "frame_fps",
    "frame_resolution",
    "encoder_id",
    "live_format",
)


class LiveLlamaConfig(LlamaConfig):
    """The base LLM's Llama config plus the checkpoint's :class:`LiveConfig` (``live``, kept
    as its dict so that transformers can serialise it) and the id of the frame placeholder.
    The live values below are read from ``live``, never stored beside it."""

    model_type = "live_llama"

    def __init__(self, live: dict | LiveConfig | None = None, v_placeholder_id: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.live = (live if isinstance(live, LiveConfig) else LiveConfig.from_dict(live or {})).to_dict()
        self.v_placeholder_id = v_placeholder_id

    @classmethod
    def from_live(cls, live: LiveConfig, base: LlamaConfig, v_placeholder_id: int) -> "LiveLlamaConfig":
        """The model config of ``live`` over the base LLM's config ``base``."""
        settings = base.to_dict()
        # the base's own identity, and the live settings of a base folder saved by an earlier
        # LiveLlamaConfig (its loose keys, now all in ``live``)
        for key in ("model_type", "architectures", "transformers_version", "live", "v_placeholder_id", *LEGACY_KEYS):
            settings.pop(key, None)
        return cls(live=live, v_placeholder_id=v_placeholder_id, **settings)

    @property
    def live_config(self) -> LiveConfig:
        return LiveConfig.from_dict(self.live)

    @property
    def vision_hidden_size(self) -> int:
        return self.live["vision_hidden_size"]

    @property
    def frame_num_tokens(self) -> int:
        return self.live["encoder"]["num_tokens"]

    @property
    def frame_token(self) -> str:
        return self.live["format"]["frame_token"]

    @property
    def frame_fps(self) -> float:
        return self.live["frame_fps"]

    @property
    def frame_resolution(self) -> int:
        return self.live["encoder"]["image_size"]

    @property
    def stream_loss_weight(self) -> float:
        return self.live["stream_weight"]

    @property
    def encoder_id(self) -> str:
        return self.live_config.encoder_id

    @encoder_id.setter
    def encoder_id(self, encoder_id: str) -> None:
        """Name another encoder (tests; its settings parsed from the id, ``""``: none)."""
        live = self.live_config
        encoder = parse_encoder_id(encoder_id, mean=live.encoder.mean, std=live.encoder.std) if encoder_id else None
        if encoder_id and encoder is None:
            raise ValueError(f"'{encoder_id}' is not an encoder id (backend/model@weights:SIZEpx:1+SxS)")
        encoder = encoder or EncoderSettings(image_size=live.encoder.image_size, num_tokens=live.encoder.num_tokens)
        self.live = replace(live, encoder=encoder).to_dict()

    @property
    def live_format(self) -> dict:
        return self.format_spec.to_dict()

    @property
    def format_spec(self) -> FormatSpec:
        return self.live_config.format


def build_connector(vision_dim: int, hidden: int) -> nn.Sequential:
    """The projector: ``Sequential(Linear, GELU (exact erf), Linear)``, weights at 0 and 2."""
    return nn.Sequential(nn.Linear(vision_dim, hidden), nn.GELU(), nn.Linear(hidden, hidden))


def streaming_loss(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """The streaming EOS objective (section 3.3): cross-entropy at every labelled position,
    frame-decision positions weighted by the stream weight w (``weights``), summed and
    divided by the number of labelled positions, as in the release.

    ``labels[b, i]`` is the target of position i (already shifted; IGNORE = -100).
    """
    flat_labels = labels.reshape(-1)
    ce = nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(), flat_labels, ignore_index=IGNORE, reduction="none"
    )
    if weights is not None:
        ce = ce * weights.reshape(-1).to(ce.dtype)
    count = (flat_labels != IGNORE).sum().clamp(min=1)
    return ce.sum() / count


class LiveLlamaForCausalLM(LlamaForCausalLM):
    """Llama + connector. ``forward`` takes ``frame_tokens`` [F, N, vision_dim] (F frames of
    N tokens, in the order their placeholders appear in ``input_ids``) and, for training,
    ``labels`` and ``loss_weights`` from :class:`~live_ros.model.format.StreamTokenizer`."""

    config_class = LiveLlamaConfig

    def __init__(self, config: LiveLlamaConfig):
        super().__init__(config)
        self.connector = build_connector(config.vision_hidden_size, config.hidden_size)
        evidence = config.live_config.evidence
        self.evidence = ObjectEvidence(evidence, config.hidden_size) if evidence else None
        self.evidence_token = evidence.token if evidence else 0
        self.post_init()

    def reset_connector(self, seed: int = 0) -> None:
        """A reproducible fresh connector (the base LLM folder has none)."""
        generator = torch.Generator().manual_seed(seed)
        for layer in (self.connector[0], self.connector[2]):
            bound = 1.0 / layer.in_features**0.5
            with torch.no_grad():
                layer.weight.copy_(
                    torch.empty_like(layer.weight, device="cpu").uniform_(-bound, bound, generator=generator)
                )
                layer.bias.copy_(
                    torch.empty_like(layer.bias, device="cpu").uniform_(-bound, bound, generator=generator)
                )

    def project_frames(self, frame_tokens: torch.Tensor) -> torch.Tensor:
        """Frame tokens [F, N, vision_dim] -> LLM embeddings [F, N, hidden]."""
        if frame_tokens.shape[-1] != self.config.vision_hidden_size:
            raise ValueError(
                f"frame tokens have dimension {frame_tokens.shape[-1]} but the connector expects "
                f"{self.config.vision_hidden_size} (encoder '{self.config.encoder_id}'): use the "
                f"vision encoder this checkpoint was trained with"
            )
        weight = next(self.connector.parameters())  # (peft may wrap the connector)
        frame_tokens = frame_tokens.to(device=weight.device, dtype=weight.dtype)
        projected = self.connector(frame_tokens)
        if self.evidence is not None:  # the object evidence, added to its token (model/evidence.py)
            token = self.evidence_token
            projected = projected.clone()
            projected[:, token] = projected[:, token] + self.evidence(frame_tokens).to(projected.dtype)
        return projected

    def embed(self, input_ids: torch.Tensor, frame_tokens: torch.Tensor | None = None) -> torch.Tensor:
        """Token embeddings with the placeholder positions replaced by projected frames."""
        table = self.get_input_embeddings()
        embeds = table(input_ids.clamp(max=table.num_embeddings - 1))
        mask = input_ids == self.config.v_placeholder_id
        n_slots = int(mask.sum())
        if n_slots or frame_tokens is not None:
            n_given = 0 if frame_tokens is None else frame_tokens.shape[0] * frame_tokens.shape[1]
            if n_given != n_slots:
                raise ValueError(f"{n_slots} frame placeholders in input_ids but {n_given} frame tokens given")
            if n_slots:
                projected = self.project_frames(frame_tokens).reshape(-1, embeds.shape[-1]).to(embeds.dtype)
                embeds = embeds.masked_scatter(mask.unsqueeze(-1), projected)
        return embeds

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        frame_tokens: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        loss_weights: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        if inputs_embeds is None:
            inputs_embeds = self.embed(input_ids, frame_tokens)
        out = super().forward(inputs_embeds=inputs_embeds, **kwargs)
        if labels is not None:
            out.loss = streaming_loss(out.logits, labels, loss_weights)
        return out
