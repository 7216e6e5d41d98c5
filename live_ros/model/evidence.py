"""Object evidence: what the frame features say is in view, handed to the LLM as words.

A linear probe on the pooled EfficientNet-Lite0 features of a frame tells the 24 named world
objects apart at 97.7 % (scripts/evidence_probe.py), while the LLM, reading the same
features through the connector alone, names the right object for about a third of the
events (live_ros/checkpoints/embedded/README.md). The head closes that gap without changing
the sequence: a linear classifier over each frame token's features, maxed over the frame's
tokens (a small object fills one grid cell more than the pooled token), scores each
object class (the trained nouns, the generic noun for objects it was never taught,
live_ros/data/generic.py, and "something": any object in view) with an independent
sigmoid, several objects can be in view, and
the sum of the class names' word embeddings, each weighted by its probability, is added to
that token's projection. The classifier is fitted on the training streams' frames
(live_ros/training/evidence.py, ``live-ros fit-evidence``) and frozen while the LLM learns to
read it; the name embeddings start as the LLM's own word embeddings and are trained with it.
Tokens per frame, the format, the engine and the messages stay as they are.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from live_ros.model.config import ConfigError, EvidenceSettings

HEAD_FORMAT = "live_ros.evidence/1"


class ObjectEvidence(nn.Module):
    """``classifier``: Linear(input_dim -> classes); ``names``: [classes, hidden] word
    embeddings of the class nouns."""

    def __init__(self, settings: EvidenceSettings, hidden_size: int):
        super().__init__()
        self.settings = settings
        self.classifier = nn.Linear(settings.input_dim, len(settings.classes))
        self.names = nn.Parameter(torch.zeros(len(settings.classes), hidden_size))

    def logits(self, frame_tokens: torch.Tensor) -> torch.Tensor:
        """[F, classes] of frames [F, N, dim] (see :class:`EvidenceSettings` for the pooling)."""
        return evidence_logits(self.classifier, frame_tokens, self.settings)

    def probabilities(self, frame_tokens: torch.Tensor) -> torch.Tensor:
        """[F, classes]: the probability that each class is in view, per frame."""
        return torch.sigmoid(self.logits(frame_tokens))

    def forward(self, frame_tokens: torch.Tensor) -> torch.Tensor:
        """[F, hidden]: the probability-weighted class names, added to token ``settings.token``."""
        return self.probabilities(frame_tokens) @ self.names

    @torch.no_grad()
    def init_names(self, tokenizer, embeddings: nn.Embedding) -> None:
        """Each class's name vector = the mean word embedding of " noun" in the LLM."""
        for i, noun in enumerate(self.settings.classes):
            ids = tokenizer(" " + noun, add_special_tokens=False)["input_ids"]
            vectors = embeddings.weight[torch.tensor(ids, device=embeddings.weight.device)]
            self.names[i].copy_(vectors.float().mean(0).to(self.names.dtype))


def evidence_logits(classifier: nn.Linear, frame_tokens: torch.Tensor, settings: EvidenceSettings) -> torch.Tensor:
    """[F, classes]: the classifier on each token's features, maxed over the frame's tokens
    (``pooling="max"``) or on token ``settings.token`` only."""
    tokens = frame_tokens[..., : settings.input_dim].to(classifier.weight.dtype)
    if settings.pooling == "token":
        return classifier(tokens[:, settings.token])
    return classifier(tokens).amax(dim=1)


def save_head(classifier: nn.Linear, settings: EvidenceSettings, path: str | Path, report: str = "") -> Path:
    """A fitted classifier and its classes, as one safetensors file (``model.evidence`` of a
    training run)."""
    import json

    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().float().cpu().contiguous() for k, v in classifier.state_dict().items()}
    meta = {"format": HEAD_FORMAT, "settings": json.dumps(settings.to_dict()), "report": report}
    save_file(state, str(path), metadata=meta)
    return path


def load_head(path: str | Path) -> tuple[EvidenceSettings, dict[str, torch.Tensor]]:
    """(settings, classifier state) of a file written by :func:`save_head`."""
    import json

    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    fix = f"fit one with `live-ros fit-evidence DATA/train --out {path}`"
    if not path.is_file():
        raise ConfigError(f"evidence head {path} does not exist: {fix}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        if meta.get("format") != HEAD_FORMAT:
            raise ConfigError(f"{path} is not an evidence head ({HEAD_FORMAT}): {fix}")
        settings = EvidenceSettings(**json.loads(meta["settings"]))
        return settings, load_file(str(path))
    except ConfigError:
        raise
    except Exception as err:  # not safetensors, or a head without its settings
        raise ConfigError(f"{path} is not a readable evidence head ({err}): {fix}") from err


__all__ = ["HEAD_FORMAT", "ObjectEvidence", "evidence_logits", "save_head", "load_head"]
