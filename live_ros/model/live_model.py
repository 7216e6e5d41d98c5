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

import torch
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.modeling_outputs import CausalLMOutputWithPast

from live_ros.model.format import IGNORE, FormatSpec


class LiveLlamaConfig(LlamaConfig):
    """A Llama config plus the live settings (the release stores none of them)."""

    model_type = "live_llama"

    def __init__(self, vision_hidden_size: int = 1280, frame_num_tokens: int = 10, frame_token: str = "<v>",
                 v_placeholder_id: int | None = None, stream_loss_weight: float = 1.0, frame_fps: float = 2.0,
                 frame_resolution: int = 224, encoder_id: str = "", live_format: dict | None = None, **kwargs):
        super().__init__(**kwargs)
        self.vision_hidden_size = vision_hidden_size
        self.frame_num_tokens = frame_num_tokens
        self.frame_token = frame_token
        self.v_placeholder_id = v_placeholder_id
        self.stream_loss_weight = stream_loss_weight
        self.frame_fps = frame_fps
        self.frame_resolution = frame_resolution
        self.encoder_id = encoder_id
        self.live_format = live_format or FormatSpec(frame_token=frame_token,
                                                     frame_num_tokens=frame_num_tokens).to_dict()

    @property
    def format_spec(self) -> FormatSpec:
        return FormatSpec(**self.live_format)


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
    ce = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), flat_labels,
                                     ignore_index=IGNORE, reduction="none")
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
        self.post_init()

    def reset_connector(self, seed: int = 0) -> None:
        """A reproducible fresh connector (the base LLM folder has none)."""
        generator = torch.Generator().manual_seed(seed)
        for layer in (self.connector[0], self.connector[2]):
            bound = 1.0 / layer.in_features ** 0.5
            with torch.no_grad():
                layer.weight.copy_(torch.empty_like(layer.weight, device="cpu").uniform_(-bound, bound, generator=generator))
                layer.bias.copy_(torch.empty_like(layer.bias, device="cpu").uniform_(-bound, bound, generator=generator))

    def project_frames(self, frame_tokens: torch.Tensor) -> torch.Tensor:
        """Frame tokens [F, N, vision_dim] -> LLM embeddings [F, N, hidden]."""
        if frame_tokens.shape[-1] != self.config.vision_hidden_size:
            raise ValueError(f"frame tokens have dimension {frame_tokens.shape[-1]} but the connector expects "
                             f"{self.config.vision_hidden_size} (encoder '{self.config.encoder_id}'): use the "
                             f"vision encoder this checkpoint was trained with")
        weight = next(self.connector.parameters())  # (peft may wrap the connector)
        return self.connector(frame_tokens.to(device=weight.device, dtype=weight.dtype))

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

    def forward(self, input_ids: torch.Tensor | None = None, frame_tokens: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, loss_weights: torch.Tensor | None = None,
                inputs_embeds: torch.Tensor | None = None, **kwargs) -> CausalLMOutputWithPast:
        if inputs_embeds is None:
            inputs_embeds = self.embed(input_ids, frame_tokens)
        out = super().forward(inputs_embeds=inputs_embeds, **kwargs)
        if labels is not None:
            out.loss = streaming_loss(out.logits, labels, loss_weights)
        return out
