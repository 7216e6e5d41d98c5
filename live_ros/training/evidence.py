"""``live-ros fit-evidence``: fit the object evidence head (live_ros/model/evidence.py) on
the frames of the training streams.

Every frame of every stream is one example: its tokens' features (the first half of each
token when the encoder appends frame differences) and, from the stream's annotation, the
objects in view at the frame's time (an actor counts while its track says visible). A
trained noun is its own class; every object outside the vocabulary (the generic objects of
the training split, the never-trained ones of the held-out split) is the generic class, the
noun of "Something I can't name appears." (live_ros/data/generic.py). A last class,
``ANY_OBJECT``, is 1 whenever any object is in view: learnt from all 28 trained objects it
carries over to objects never seen (98 % of their frames on the held-out split, where the
generic class, learnt from 4 objects, finds 12 %), so that an unknown object reads as
"something, no name" rather than as nothing. The classifier is a
multi-label logistic regression (one sigmoid per class, full-batch AdamW), and the report
scores it per class on a held-out split: recall and precision at 0.5, and how often a frame's
whole set of objects is right.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from live_ros.data.annotations import VideoAnnotation, load_annotation
from live_ros.data.features import features_path, load_features
from live_ros.data.generic import GENERIC_NOUN
from live_ros.data.streams import load_samples
from live_ros.model.config import EvidenceSettings, parse_encoder_id
from live_ros.model.evidence import evidence_logits, save_head

ANY_OBJECT = "something"  # the last class: some object in view (it tells an unknown object from none)


@dataclass
class FrameSet:
    """Examples of one split: features [M, N, input_dim], targets [M, classes] (0/1)."""

    features: torch.Tensor
    targets: torch.Tensor
    streams: int


def classes_of(vocabulary: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The head's classes: the trained nouns, the generic noun (an object outside them), then
    ``ANY_OBJECT`` (some object in view, whichever)."""
    return (*vocabulary, GENERIC_NOUN, ANY_OBJECT)


def frame_targets(annotation: VideoAnnotation, times: list[float], classes: tuple[str, ...]) -> torch.Tensor:
    """[T, classes]: 1 where an object of the class is visible at the frame's time (classes
    of :func:`classes_of`: the nouns, the generic noun, then ``ANY_OBJECT``)."""
    actors = annotation.meta.get("actors", {})
    nouns, generic, anything = classes[:-2], len(classes) - 2, len(classes) - 1
    out = torch.zeros(len(times), len(classes))
    for actor in annotation.tracks:
        noun = actors.get(actor, actor.split("#")[0])
        column = nouns.index(noun) if noun in nouns else generic
        for i, t in enumerate(times):
            if annotation.box_at(actor, t)[1]:
                out[i, column] = out[i, anything] = 1.0
    return out


def input_dim_of(encoder_id: str, dim: int) -> int:
    """The pooled features' width in a token of ``dim`` values (half of it with frame differences)."""
    parsed = parse_encoder_id(encoder_id)
    return dim // 2 if parsed is not None and parsed.frame_delta else dim


def load_frames(data_dir: str | Path, classes: tuple[str, ...]) -> tuple[FrameSet, str, int]:
    """(examples, encoder id, input_dim) of a split folder (``streams.jsonl`` + ``features/``)."""
    data_dir = Path(data_dir)
    xs, ys, encoder_id, input_dim = [], [], "", 0
    samples = load_samples(data_dir / "streams.jsonl")
    for sample in samples:
        if "annotation" not in sample.meta:
            raise ValueError(
                f"{data_dir / 'streams.jsonl'}: stream {sample.video_id} names no annotation (meta.annotation): "
                f"the head learns what is in view from it; use a split written by `live-ros generate world`"
            )
        tokens, times, meta = load_features(features_path(data_dir / "features", sample.video_id))
        encoder_id = meta.get("encoder_id", "")
        input_dim = input_dim_of(encoder_id, tokens.shape[-1])
        annotation = load_annotation(Path(sample.meta["annotation"]))
        xs.append(tokens[..., :input_dim].float())
        ys.append(frame_targets(annotation, [float(t) for t in times], classes))
    return FrameSet(torch.cat(xs), torch.cat(ys), len(samples)), encoder_id, input_dim


def fit(frames: FrameSet, settings: EvidenceSettings, steps: int = 300, lr: float = 1e-2, seed: int = 0) -> nn.Linear:
    """A multi-label logistic regression (full batch, Adam) of the targets on the features."""
    torch.manual_seed(seed)
    head = nn.Linear(frames.features.shape[-1], frames.targets.shape[1])
    nn.init.zeros_(head.weight)
    prior = frames.targets.mean(0).clamp(1e-4, 1 - 1e-4)
    with torch.no_grad():
        head.bias.copy_(torch.log(prior / (1 - prior)))  # start at each class's base rate
    opt = torch.optim.Adam(head.parameters(), lr=lr)
    loss_fn = nn.BCEWithLogitsLoss()
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn(evidence_logits(head, frames.features, settings), frames.targets)
        loss.backward()
        opt.step()
    return head


def report(head: nn.Linear, frames: FrameSet, settings: EvidenceSettings, title: str) -> str:
    """Per-class recall and precision at 0.5 on ``frames``, and the frames whose whole set is right."""
    classes = settings.classes
    with torch.no_grad():
        predicted = torch.sigmoid(evidence_logits(head, frames.features, settings)) >= 0.5
    truth = frames.targets >= 0.5
    lines = [
        f"{title}: {len(truth)} frames of {frames.streams} streams",
        f"{'class':<24}{'in view':>8}{'recall':>8}{'precision':>10}",
    ]
    for i, noun in enumerate(classes):
        n_true, n_pred = int(truth[:, i].sum()), int(predicted[:, i].sum())
        if not n_true and not n_pred:
            continue
        hit = int((truth[:, i] & predicted[:, i]).sum())
        recall = f"{hit / n_true:.0%}" if n_true else "-"
        precision = f"{hit / n_pred:.0%}" if n_pred else "-"
        lines.append(f"{noun:<24}{n_true:>8}{recall:>8}{precision:>10}")
    exact = (predicted == truth).all(1).float().mean().item()
    false_names = (predicted[:, :-2] & ~truth[:, :-2]).any(1).float().mean().item()
    lines.append(f"frames with the whole set right: {exact:.1%}; frames naming a class not in view: {false_names:.1%}")
    return "\n".join(lines)


def fit_evidence(
    train_dir: str | Path,
    out: str | Path,
    vocabulary: list[str] | tuple[str, ...],
    val_dir: str | Path | None = None,
    steps: int = 300,
    pooling: str = "max",
    log=print,
) -> Path:
    """Fit the head on ``train_dir``'s frames, report it (on ``val_dir`` too), save it to ``out``."""
    classes = classes_of(vocabulary)
    train, encoder_id, input_dim = load_frames(train_dir, classes)
    log(f"fitting the evidence head: {len(classes)} classes on {len(train.targets)} frames ({encoder_id})")
    settings = EvidenceSettings(classes=classes, input_dim=input_dim, token=0, pooling=pooling)
    head = fit(train, settings, steps=steps)
    parts = [report(head, train, settings, f"train ({train_dir})")]
    if val_dir is not None:
        val, val_encoder, _ = load_frames(val_dir, classes)
        if val_encoder != encoder_id:
            raise ValueError(f"{val_dir} holds features of '{val_encoder}', {train_dir} of '{encoder_id}'")
        parts.append(report(head, val, settings, f"held out ({val_dir})"))
    text = "\n\n".join(parts)
    log(text)
    path = save_head(head, settings, out, report=text)
    log(f"evidence head: {path}")
    return path


__all__ = [
    "ANY_OBJECT",
    "FrameSet",
    "classes_of",
    "frame_targets",
    "input_dim_of",
    "load_frames",
    "fit",
    "report",
    "fit_evidence",
]
