"""The training data: timed streams (``streams.jsonl`` from ``live-ros generate``) with
their pre-extracted frame features (``<features>/<video_id>.safetensors`` from ``live-ros
extract``), drawn and encoded one stream at a time, and the order the optimizer steps take
them in.

Each time a stream is drawn (once per epoch), its question insertions are drawn afresh
when the stream carries a plan (:func:`live_ros.data.dialogue.redraw`, seeded by seed,
epoch and stream), the release's augmentation is applied if enabled
(:mod:`live_ros.training.augment`), the turns are encoded in the configured format
(``streaming``, or the ``per_frame`` / ``interleaved`` baselines) with the stream weight
w, and a stream longer than ``max_length`` positions is cut to its longest prefix of whole
frames and turns that fits. Everything drawn is a function of (seed, epoch, stream), so a
resumed run sees the same data as an uninterrupted one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from live_ros.training.augment import AugmentConfig, augment_turns, mask_context_only
from live_ros.training.config import ConfigError

if TYPE_CHECKING:  # torch and the model are imported inside the functions: --help stays instant
    import torch

    from live_ros.data.streams import StreamSample
    from live_ros.model.format import Encoded, Mode, StreamTokenizer


@dataclass
class TrainItem:
    """One drawn and encoded stream."""

    video_id: str
    encoded: Encoded
    frame_tokens: torch.Tensor  # [F, N, dim], F = encoded.num_frames
    truncated: bool = False
    augmented: list = field(default_factory=list)


class StreamDataset:
    """Training streams with their features; ``item(index, epoch)`` draws one (question
    insertions, augmentation) deterministically from (seed, epoch, index) and encodes it."""

    def __init__(
        self,
        samples: Sequence[StreamSample],
        features_dir: str | Path,
        tokens: StreamTokenizer,
        *,
        mode: Mode = "streaming",
        stream_weight: float = 1.0,
        max_length: int = 2048,
        seed: int = 0,
        redraw: bool = True,
        augment: AugmentConfig | None = None,
        encoder_id: str | None = None,
        vision_hidden_size: int | None = None,
        fps: float | None = None,
        name_weight: float = 1.0,
    ):
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
            from live_ros.data.world_objects import object_catalog

            self.name_ids = tokens.first_token_ids(sorted(object_catalog()))
        self.max_length = max_length
        self.seed = seed
        self.augment = augment or AugmentConfig()
        self.encoder_id = encoder_id or None
        self.vision_hidden_size = vision_hidden_size
        if fps is not None:
            off = [s.video_id for s in self.samples if abs(s.fps - fps) > 1e-6]
            if off:
                raise ConfigError(
                    f"{len(off)} streams (e.g. '{off[0]}') are on another fps grid than the model's "
                    f"{fps:g} fps: generate them at {fps:g} fps or set model.fps"
                )
        self._redraw: Callable[..., StreamSample] | None = None
        if redraw:
            from live_ros.data.dialogue import redraw as redraw_fn

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

        from live_ros.evaluation.offline import fit_context, load_stream_features
        from live_ros.model.format import weight_targets

        sample = self.draw(index, epoch)
        feats, _, meta = load_stream_features(sample, self.features_dir, expect_encoder=self.encoder_id)
        where = f"features of '{sample.video_id}'"
        if (
            feats.ndim != 3
            or feats.shape[1] != len(self.tokens.frame_ids)
            or (self.vision_hidden_size and feats.shape[2] != self.vision_hidden_size)
        ):
            raise ConfigError(
                f"{where} have shape {tuple(feats.shape)} but the model takes "
                f"[T, {len(self.tokens.frame_ids)}, {self.vision_hidden_size}]: extract them with the "
                f"model's encoder"
            )
        if meta.get("fps") and abs(float(meta["fps"]) - sample.fps) > 1e-6:
            raise ConfigError(f"{where} are at {meta['fps']} fps but the stream is on a {sample.fps} fps grid")
        n_frames = min(int(feats.shape[0]), sample.num_frames)
        if n_frames < sample.num_frames:  # features end early: keep the turns within them
            from live_ros.data.streams import StreamSample as _S

            kept = [t for t in sample.turns if sample.frame_of(t.time) < n_frames]
            sample = _S(sample.video_id, sample.duration, sample.fps, kept, sample.video, sample.features, sample.meta)
        turns = sample.to_turns(n_frames)
        aug = augment_turns(
            turns,
            self.augment,
            np.random.default_rng([self.seed, epoch, index, 2]),
            wrong_texts=self.wrong_texts,
            fps=sample.fps,
        )  # inactive: the turns unchanged
        turns, context_only = aug.turns, aug.context_only
        enc = self.tokens.encode(turns, self.mode, self.stream_weight)
        truncated = False
        if len(enc.input_ids) > self.max_length:
            turns, _, truncated = fit_context(self.tokens, turns, self.mode, self.max_length)
            enc = self.tokens.encode(turns, self.mode, self.stream_weight)
            context_only = [i for i in context_only if i < len(turns)]
        mask_context_only(enc, turns, context_only, aug.unlearned_frames)  # frames past a cut are skipped
        if self.name_ids:
            weight_targets(enc, self.name_ids, self.name_weight)
        return TrainItem(sample.video_id, enc, feats[: enc.num_frames], truncated, aug.applied)


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
            micro.append(order[m * self.batch_size : (m + 1) * self.batch_size])
        return epoch, micro
