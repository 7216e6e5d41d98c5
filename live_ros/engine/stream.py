"""A token stream on a :class:`~live_ros.engine.runner.KVRunner`, shared by the
streaming engine (engine.py) and the baselines (baselines.py): feeding pieces of the
grammar (live_ros/model/format.py) recorded in a cache layout, tokens left pending for the
next forward, greedy decoding, eviction and frame checks."""

from __future__ import annotations

import itertools
import logging
import math
import time
from dataclasses import replace
from typing import Callable

import torch

from live_ros.engine.cache import SINK, TEXT, CacheLayout
from live_ros.engine.config import EngineConfig, EngineInputError
from live_ros.engine.events import EngineStats, Event
from live_ros.engine.runner import KVRunner

log = logging.getLogger(__name__)

UNBOUNDED_START = 1024  # tokens an unbounded stream's store starts with; it grows by KVRunner.step


def interval_probability(logits: torch.Tensor, interval_id: int) -> torch.Tensor:
    """P(interval token) at each row of ``logits`` [..., vocab] (fp32 softmax)."""
    return torch.softmax(logits.float(), dim=-1)[..., interval_id]


def _base_model(model):
    try:
        from peft import PeftModel
    except ImportError:  # pragma: no cover
        pass
    else:
        if isinstance(model, PeftModel):
            raise EngineInputError(
                "the model still has unmerged LoRA layers: load it with merge=True "
                "(or call merge_and_unload()) before streaming"
            )
    for name, _ in model.named_modules():
        if name.endswith("lora_A"):
            raise EngineInputError(f"the model has an unmerged LoRA layer ({name}): merge_and_unload() first")
    return model


class TokenStream:
    """A token stream on a :class:`KVRunner`: feeding pieces (recorded in a
    :class:`CacheLayout`), tokens pending for the next forward, greedy decoding, eviction.
    Shared by the engine and the baselines, so all get the same optimisations."""

    def __init__(
        self,
        model,
        tokens,
        config: EngineConfig | None = None,
        *,
        runner: KVRunner | None = None,
        on_event: Callable[[Event], None] | None = None,
    ):
        self.model = _base_model(model)
        self.tokens = tokens
        self.cfg = replace(config or EngineConfig()).check()
        self.policy = self.cfg.policy()
        self.on_event = on_event
        self.stats = EngineStats()
        cfg = model.config
        self.frame_num_tokens = tokens.spec.frame_num_tokens
        self.vision_dim = getattr(cfg, "vision_hidden_size", None)
        self.encoder_id = getattr(cfg, "encoder_id", "") or "?"
        self.runner = runner or KVRunner(model, self._capacity(), grow=True)
        self.script: Callable[[int, float], bool] | None = None  # benchmarks: (frame, p) -> speak
        self._response_ids = itertools.count(1)
        self._unit_ids = itertools.count(1)
        self.fed_ids: list[int] = []
        self._layout = CacheLayout()

    # -- sizes ---------------------------------------------------------------------------
    def _headroom(self) -> int:
        """Tokens a stream may add past its budget before the next eviction: a batch of
        frames, a response, and a margin for the dialogue pieces around them."""
        return self.cfg.max_new_tokens + self.cfg.max_batch * (self.frame_num_tokens + 2) + 256

    def _capacity(self) -> int:
        """The KV store: a bounded stream gets all it can use at once (no growth while it
        runs); an unbounded one starts small and grows by the runner's fixed step."""
        if self.cfg.cache_budget is None:
            return UNBOUNDED_START
        return self.cfg.cache_budget + self._headroom()

    def _position_limit(self) -> int | None:
        """The LLM's positions (``max_position_embeddings``; SmolLM2 and Llama-3: 8,192)."""
        limit = getattr(self.model.config, "max_position_embeddings", None)
        return int(limit) if limit else None

    def _bound_before_positions(self, incoming: int) -> None:
        """An unbounded cache about to run past the LLM's positions switches to the budget
        policy with the largest budget that fits, and says so once (``stats.last_warning``
        and the log): past its positions a model's outputs degrade (paper section 3.4's
        release never trims its cache; this is where it would break)."""
        limit = self._position_limit()
        if limit is None or self.runner.length + incoming + self._headroom() <= limit:
            return
        budget = limit - self._headroom()
        if budget < 256:  # a model with too few positions for any budget: nothing to switch to
            return
        message = (
            f"the unbounded KV cache holds {self.runner.length} tokens and would run past the model's "
            f"{limit} positions (max_position_embeddings), where its outputs degrade: this stream now keeps "
            f"a budget of {budget} tokens (the system prompt, the newest frames and dialogue). Set "
            f"cache_budget to choose the budget yourself"
        )
        log.warning(message)
        self.stats.last_warning = message
        self.stats.budget_switches += 1
        self.cfg = replace(self.cfg, cache_budget=budget)
        self.policy = self.cfg.policy()
        self.runner.reserve(self._capacity())

    @property
    def layout(self) -> CacheLayout:
        return self._layout

    def _prefix_ids(self) -> list[int]:
        # never empty (the sink needs a token); the standing instruction is part of it
        return self.tokens.system_ids(self.cfg.system_prompt) + self.tokens.instruction_ids(self.cfg.instruction)

    # -- feeding -------------------------------------------------------------------------
    def _emit(self, event: Event) -> None:
        if self.on_event is not None:
            self.on_event(event)

    def _feed(
        self,
        pieces: list[tuple[str, list[int], dict]],
        frames: list[torch.Tensor] | None = None,
        logits_at: list[int] | None = None,
    ) -> torch.Tensor | None:
        """One forward of ``pending + pieces``; each piece is recorded as a span."""
        pending = self._pending
        pieces = pending + pieces
        ids = [i for _, p, _ in pieces for i in p]
        if not ids:
            return None
        start = self.runner.length
        frame_tokens = torch.stack(frames) if frames else None
        try:
            with torch.inference_mode():
                emb = self.runner.embed(ids, frame_tokens)
                logits = self.runner.forward(emb, ids, logits_at)
        except Exception:
            self.runner.truncate(min(start, self.runner.length))
            raise
        self._pending: list[tuple[str, list[int], dict]] = []
        for kind, p, meta in pieces:
            if p:
                self._layout.add(kind, len(p), **meta)
        if self.cfg.record_ids:
            self.fed_ids.extend(ids)
        n = self.runner.length
        self.stats.cache_tokens = n
        self.stats.cache_peak_tokens = max(self.stats.cache_peak_tokens, n)
        return logits

    def _cut_back(self, length: int) -> None:
        """Forget everything after ``length`` (a batched backlog's frames after the one that
        speaks: they are taken in again after the response)."""
        if self.cfg.record_ids:
            del self.fed_ids[len(self.fed_ids) - (self.runner.length - length) :]
        self.runner.truncate(length)
        self._layout.truncate(length)
        self.stats.cache_tokens = length

    def _make_room(self, incoming: int, protect: tuple[int, ...] = ()) -> None:
        """Evict (section "bounded cache" of the README) so ``incoming`` tokens fit."""
        pending = sum(len(p) for _, p, _ in self._pending)
        if self.policy.budget is None:
            self._bound_before_positions(incoming + pending)
        plan = self.policy.plan(self._layout, incoming + pending, protect)
        if plan is None:
            return
        t0 = time.perf_counter()
        keep_idx = torch.nonzero(plan.keep).flatten()
        self.runner.compact(keep_idx, self.cfg.eviction)
        self._layout.apply(plan.keep)
        dt = time.perf_counter() - t0
        st = self.stats
        st.evictions += 1
        st.evicted_tokens += plan.tokens
        st.last_eviction_s = dt
        st.max_eviction_s = max(st.max_eviction_s, dt)
        st.cache_tokens = self.runner.length
        self._after_eviction(plan)

    def _after_eviction(self, plan) -> None:
        pass

    def _greedy(
        self,
        logits: torch.Tensor,
        meta: dict,
        on_token: Callable[[list[int]], None] | None = None,
        max_new: int | None = None,
        min_new: int | None = None,
    ) -> list[int]:
        """Greedy decoding from ``logits`` (of the position before the response) to eos or
        the limit. Generated tokens are fed one forward each; the last one and eos are left
        pending, to be fed with the next forward (they stay in context)."""
        eos = self.tokens.eos_id
        max_new = self.cfg.max_new_tokens if max_new is None else max_new
        min_new = self.cfg.min_new_tokens if min_new is None else min_new
        out: list[int] = []
        while True:
            row = logits[-1]
            if len(out) < min_new:
                row = row.clone()
                row[eos] = -math.inf
            tok = int(row.argmax())
            if tok == eos:
                self._pending = [(TEXT, self.tokens.end_ids(), meta)]
                return out
            out.append(tok)
            if on_token is not None:
                on_token(out)
            if len(out) >= max_new:
                self._pending = [(TEXT, [tok] + self.tokens.end_ids(), meta)]
                return out
            logits = self._feed([(TEXT, [tok], meta)], logits_at=[-1])

    def _new_unit(self) -> int:
        return next(self._unit_ids)

    def _start(self) -> None:
        """A fresh cache holding the system prompt (the attention sink)."""
        self.runner.reset()
        self._layout = CacheLayout()
        self._pending = []
        self.fed_ids = []
        prefix = self._prefix_ids()
        self._prefix_len = len(prefix)
        self._feed([(SINK, prefix, {})])

    def _check_frame_tokens(self, frame_tokens) -> torch.Tensor:
        n, d = self.frame_num_tokens, self.vision_dim
        want = f"({n}, {d})"
        try:
            t = torch.as_tensor(frame_tokens)
        except (TypeError, ValueError, RuntimeError):
            raise EngineInputError(
                f"frame tokens of type {type(frame_tokens).__name__} are not an array: pass a "
                f"tensor or numpy array of shape {want} from the vision encoder"
            ) from None
        if t.dim() == 3 and t.shape[0] == 1:
            t = t[0]
        if t.dim() != 2 or t.shape[0] != n or (d is not None and t.shape[1] != d):
            raise EngineInputError(
                f"frame tokens have shape {tuple(t.shape)} but this model takes {want}: {n} tokens of dimension "
                f"{d} per frame, from the encoder '{self.encoder_id}'. Use the vision encoder the checkpoint was "
                f"trained with (its output for one frame)"
            )
        if not (t.is_floating_point()):
            raise EngineInputError(f"frame tokens have dtype {t.dtype}: pass floating-point encoder outputs")
        t = t.detach().to("cpu", torch.float32).clone()
        bad = int((~torch.isfinite(t)).sum())
        if bad:
            raise EngineInputError(
                f"frame tokens hold {bad} NaN or inf values: the frame was refused (check the "
                f"camera image and the encoder's dtype; bf16/fp16 overflow shows up as inf)"
            )
        return t
