"""The streaming engine of LIVE (paper section 3.4): one continuous KV cache per stream.

Every frame is one forward of its tokens (plus the interval token chosen at the frame
before); logits are computed only at a frame's last position, where the decision is read:
the interval (silence) token is kept when its probability is >= theta (the release's
default 0.725), otherwise the model speaks: the closing token and ``Assistant:`` are fed
and a response is decoded greedily to eos or ``max_new_tokens``, then the stream goes on.
A query is inserted after the newest frame taken in and answered at once; it stays in
context, so later frames can answer it again ("tell me when X appears").

- :class:`StreamEngine`: the synchronous core (``take_frame``, ``take_frames``,
  ``take_batch``, ``ask``, ``reset``, ``configure``), used by tests and the benchmark.
- :class:`ThreadedEngine`: thread-safe intake (``submit_frame``/``submit_query`` from any
  thread, never blocking on decoding), a worker thread, an event queue and callback, a
  bounded backlog taken in one batched forward with cut-back to the earliest speaking frame.

Events are plain dataclasses: :class:`SilentEvent` and :class:`ResponseEvent` (partial
while decoding, then final). No ROS here: a node wraps this.
"""

from __future__ import annotations

import itertools
import math
import queue
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field, replace
from typing import Callable

import torch

from live_ros.engine.cache import FRAME, OPEN, SINK, TEXT, CacheLayout, CachePolicy
from live_ros.engine.runner import KVRunner

RELEASE_THETA = 0.725


class EngineInputError(ValueError):
    """A frame, query or setting the engine refuses; the message names the fix. The
    stream is not affected."""


# -- settings ----------------------------------------------------------------------------
@dataclass
class EngineConfig:
    """Settings of one stream; the ones marked (live) can change while it runs
    (:meth:`StreamEngine.configure`)."""

    theta: float = RELEASE_THETA            # (live) keep silent when P(interval) >= theta (section 3.4)
    max_new_tokens: int = 100               # (live) response length limit (the release: 100)
    min_new_tokens: int = 0                 # eos banned before this many tokens (benchmarks)
    system_prompt: str | None = None        # (live) None: the checkpoint's FormatSpec prompt
    cache_budget: int | None = 1280         # (live) tokens kept at every frame boundary; None: unbounded
    sink_tokens: int = 4                    # first positions always kept (besides the system prompt)
    text_share: float = 0.25                # dialogue text kept up to this share of the budget
    frame_window: int | None = None         # at most this many recent frames (None: budget decides)
    evict_chunk: int | None = None          # evict down to budget - chunk (None: budget // 8)
    eviction: str = "recompact"             # "recompact" (rotate kept keys) or "reprefill" (recompute)
    mute: bool = False                      # (live) no proactive responses: speak only when asked
    min_response_interval: float = 0.0      # (live) seconds of stream time between proactive responses
    max_query_chars: int = 2000             # longer queries are refused
    max_batch: int = 16                     # backlog frames taken in one forward
    max_backlog: int = 64                   # ThreadedEngine: frames waiting; the oldest are dropped past it
    max_pending_queries: int = 8            # (live) ThreadedEngine: queries waiting; more are refused at intake
    no_video_timeout: float = 10.0          # (live) ThreadedEngine: a query asked before the stream's first
                                            # frame waits this long (seconds) for it, then is refused
    fps: float = 2.0                        # stamps of frames given without one: previous + 1/fps
    partials: bool = True                   # emit partial response events while decoding
    record_ids: bool = False                # keep a log of every fed token id (tests)

    LIVE = ("theta", "max_new_tokens", "min_new_tokens", "system_prompt", "cache_budget", "mute",
            "min_response_interval", "max_query_chars", "max_batch", "max_backlog", "partials",
            "max_pending_queries", "no_video_timeout")

    def check(self) -> "EngineConfig":
        def bad(msg: str):
            raise EngineInputError(msg)
        if not isinstance(self.theta, (int, float)) or not 0.0 <= float(self.theta) <= 1.0:
            bad(f"theta {self.theta!r} must be a probability within [0, 1] (the release uses {RELEASE_THETA}; "
                f"higher speaks more often)")
        if not isinstance(self.max_new_tokens, int) or not 1 <= self.max_new_tokens <= 4096:
            bad(f"max_new_tokens {self.max_new_tokens!r} must be an integer within [1, 4096]")
        if not isinstance(self.min_new_tokens, int) or not 0 <= self.min_new_tokens <= self.max_new_tokens:
            bad(f"min_new_tokens {self.min_new_tokens!r} must be within [0, max_new_tokens]")
        if self.system_prompt is not None and not isinstance(self.system_prompt, str):
            bad("system_prompt must be a string (or None for the checkpoint's prompt)")
        if self.cache_budget is not None and (not isinstance(self.cache_budget, int) or self.cache_budget < 256):
            bad(f"cache_budget {self.cache_budget!r} is too small: give at least 256 tokens (None: unbounded)")
        if self.eviction not in ("recompact", "reprefill"):
            bad(f"eviction '{self.eviction}' is unknown: use 'recompact' or 'reprefill'")
        if not isinstance(self.min_response_interval, (int, float)) or self.min_response_interval < 0:
            bad(f"min_response_interval {self.min_response_interval!r} must be >= 0 seconds")
        if not isinstance(self.max_query_chars, int) or self.max_query_chars < 1:
            bad("max_query_chars must be a positive integer")
        if self.max_batch < 1 or self.max_backlog < 1:
            bad("max_batch and max_backlog must be >= 1")
        if not isinstance(self.max_pending_queries, int) or self.max_pending_queries < 1:
            bad(f"max_pending_queries {self.max_pending_queries!r} must be an integer >= 1")
        if not isinstance(self.no_video_timeout, (int, float)) or not self.no_video_timeout >= 0:
            bad(f"no_video_timeout {self.no_video_timeout!r} must be >= 0 seconds")
        if not self.fps > 0:
            bad("fps must be > 0")
        self.policy()
        return self

    def policy(self) -> CachePolicy:
        try:
            return CachePolicy(self.cache_budget, self.sink_tokens, self.text_share, self.frame_window,
                               self.evict_chunk)
        except ValueError as err:
            raise EngineInputError(str(err)) from None


# -- inputs and events -------------------------------------------------------------------
@dataclass
class FrameInput:
    """A validated frame: its index in the stream, stamp, video time and tokens."""

    index: int
    stamp: float
    video_time: float
    tokens: torch.Tensor                     # [N, D] float32
    arrival: float                           # time.perf_counter() at intake


@dataclass
class QueryInput:
    query_id: int
    text: str
    stamp: float | None
    arrival: float


@dataclass
class SilentEvent:
    """A frame taken in without a response. ``suppressed`` names why the model's wish to
    speak was overruled ("mute", "min_response_interval"), empty otherwise."""

    frame_index: int
    stamp: float
    video_time: float
    p_interval: float
    batch: int = 1                           # frames in the forward that took it in
    suppressed: str = ""
    timings: dict = field(default_factory=dict)
    kind: str = "silent"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ResponseEvent:
    """A response, streamed: partial events (``final`` False, text so far) then a final one.

    response_kind: "narration" (proactive, no query in context), "answer" (to ``query_id``:
    at once, or proactive later while the query is in context) or "refusal" (a query that
    could not be answered; ``text`` says why). ``frame_index``/``stamp``/``video_time``:
    the frame the response belongs to (the newest frame taken in; -1/None before any).
    """

    response_id: int
    query_id: int
    response_kind: str
    text: str
    final: bool
    frame_index: int
    stamp: float | None
    video_time: float | None
    proactive: bool = False
    tokens: int = 0
    p_interval: float | None = None
    timings: dict = field(default_factory=dict)
    kind: str = "response"

    def to_dict(self) -> dict:
        return asdict(self)


Event = SilentEvent | ResponseEvent


@dataclass
class EngineStats:
    """Counters of one engine (cumulative across resets, except cache figures)."""

    frames_in: int = 0                       # frames accepted
    frames_taken: int = 0                    # frames fed to the model
    frames_dropped: int = 0                  # backlog full (ThreadedEngine) or discarded by reset
    frames_rejected: int = 0                 # bad inputs
    queries_accepted: int = 0
    queries_answered: int = 0
    queries_refused: int = 0
    queries_rejected: int = 0
    responses: int = 0
    evictions: int = 0
    evicted_tokens: int = 0
    last_eviction_s: float = 0.0
    max_eviction_s: float = 0.0
    cache_tokens: int = 0
    cache_peak_tokens: int = 0
    lag_s: float = 0.0                       # newest input stamp - newest frame taken in
    backlog: int = 0
    last_error: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def interval_probability(logits: torch.Tensor, interval_id: int) -> torch.Tensor:
    """P(interval token) at each row of ``logits`` [..., vocab] (fp32 softmax)."""
    return torch.softmax(logits.float(), dim=-1)[..., interval_id]


def decide(p_interval: float, theta: float) -> bool:
    """THE streaming decision (paper section 3.4, probability correction): stay silent
    when the interval token's probability is at least theta, else speak. True = speak."""
    return not p_interval >= theta


# -- the core ----------------------------------------------------------------------------
def _base_model(model):
    try:
        from peft import PeftModel
    except ImportError:  # pragma: no cover
        PeftModel = ()
    if isinstance(model, PeftModel):
        raise EngineInputError("the model still has unmerged LoRA layers: load it with merge=True "
                               "(or call merge_and_unload()) before streaming")
    for name, _ in model.named_modules():
        if name.endswith("lora_A"):
            raise EngineInputError(f"the model has an unmerged LoRA layer ({name}): merge_and_unload() first")
    return model


class _Stream:
    """A token stream on a :class:`KVRunner`: feeding pieces (recorded in a
    :class:`CacheLayout`), tokens pending for the next forward, greedy decoding, eviction.
    Shared by the engine and the baselines, so all get the same optimisations."""

    def __init__(self, model, tokens, config: EngineConfig | None = None, *, runner: KVRunner | None = None,
                 on_event: Callable[[Event], None] | None = None):
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
        self.runner = runner or KVRunner(model, self._capacity())
        self.script: Callable[[int, float], bool] | None = None   # benchmarks: (frame, p) -> speak
        self._response_ids = itertools.count(1)
        self._unit_ids = itertools.count(1)
        self.fed_ids: list[int] = []
        self._layout = CacheLayout()

    # -- sizes ---------------------------------------------------------------------------
    def _capacity(self) -> int:
        budget = self.cfg.cache_budget or 4096
        return budget + self.cfg.max_new_tokens + self.cfg.max_batch * (self.frame_num_tokens + 2) + 256

    @property
    def layout(self) -> CacheLayout:
        return self._layout

    def _prefix_ids(self) -> list[int]:
        tk = self.tokens
        prompt = self.cfg.system_prompt
        if prompt is None:
            return list(tk.prefix_ids)
        bos = tk.prefix_ids[:len(tk.prefix_ids) - len(tk.text_ids(tk.spec.system_prompt + "\n"))]
        return list(bos) + tk.text_ids(prompt + "\n")     # never empty: the sink needs a token

    # -- feeding -------------------------------------------------------------------------
    def _emit(self, event: Event) -> None:
        if self.on_event is not None:
            self.on_event(event)

    def _feed(self, pieces: list[tuple[str, list[int], dict]], frames: list[torch.Tensor] | None = None,
              logits_at: list[int] | None = None) -> torch.Tensor | None:
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
        self._pending = []
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
            del self.fed_ids[len(self.fed_ids) - (self.runner.length - length):]
        self.runner.truncate(length)
        self._layout.truncate(length)
        self.stats.cache_tokens = length

    def _make_room(self, incoming: int, protect: tuple[int, ...] = ()) -> None:
        """Evict (section "bounded cache" of the README) so ``incoming`` tokens fit."""
        pending = sum(len(p) for _, p, _ in self._pending)
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

    def _greedy(self, logits: torch.Tensor, meta: dict, on_token: Callable[[list[int]], None] | None = None,
                max_new: int | None = None, min_new: int | None = None) -> list[int]:
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
                self._pending = [(TEXT, [eos], meta)]
                return out
            out.append(tok)
            if on_token is not None:
                on_token(out)
            if len(out) >= max_new:
                self._pending = [(TEXT, [tok, eos], meta)]
                return out
            logits = self._feed([(TEXT, [tok], meta)], logits_at=[-1])

    def _new_unit(self) -> int:
        return next(self._unit_ids)

    def _start(self) -> None:
        """A fresh cache holding the system prompt (the attention sink)."""
        self.runner.reset()
        self._layout = CacheLayout()
        self._pending: list[tuple[str, list[int], dict]] = []
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
            raise EngineInputError(f"frame tokens of type {type(frame_tokens).__name__} are not an array: pass a "
                                   f"tensor or numpy array of shape {want} from the vision encoder") from None
        if t.dim() == 3 and t.shape[0] == 1:
            t = t[0]
        if t.dim() != 2 or t.shape[0] != n or (d is not None and t.shape[1] != d):
            raise EngineInputError(
                f"frame tokens have shape {tuple(t.shape)} but this model takes {want}: {n} tokens of dimension "
                f"{d} per frame, from the encoder '{self.encoder_id}'. Use the vision encoder the checkpoint was "
                f"trained with (its output for one frame)")
        if not (t.is_floating_point()):
            raise EngineInputError(f"frame tokens have dtype {t.dtype}: pass floating-point encoder outputs")
        t = t.detach().to("cpu", torch.float32).clone()
        bad = int((~torch.isfinite(t)).sum())
        if bad:
            raise EngineInputError(f"frame tokens hold {bad} NaN or inf values: the frame was refused (check the "
                                   f"camera image and the encoder's dtype; bf16/fp16 overflow shows up as inf)")
        return t


class StreamEngine(_Stream):
    """The synchronous core: one stream, one continuous KV cache (paper section 3.4).

    >>> engine = StreamEngine(loaded.model, loaded.tokens, EngineConfig(theta=0.725))
    >>> events = engine.take_frame(frame_tokens, stamp)      # [SilentEvent] or response events
    >>> events = engine.ask("What am I holding?")            # answered at once

    Every method returns the events it produced (partial ones included) and also hands
    each to ``on_event`` as it happens. Not thread-safe: see :class:`ThreadedEngine`.
    """

    def __init__(self, model, tokens, config: EngineConfig | None = None, **kwargs):
        super().__init__(model, tokens, config, **kwargs)
        self._query_ids = itertools.count(1)
        self.reset()

    # -- stream state ----------------------------------------------------------------------
    def reset(self, system_prompt: str | None = None, *, intake: bool = True) -> None:
        """Start a new stream: the cache holds only the system prompt again; frame indices,
        stamps and video time restart (unless ``intake`` is False: the caller restarted
        them already). Queries answered before stay answered; the :class:`ThreadedEngine`
        refuses the ones still waiting."""
        if system_prompt is not None:
            self.cfg = replace(self.cfg, system_prompt=system_prompt).check()
        if intake:
            self.reset_intake()
        self._open = False
        self._list_id = 0
        self._last_taken: FrameInput | None = None
        self._last_proactive: float | None = None
        self._active_query = 0             # latest query still in context
        self._protect: dict[str, int] = {}  # units never evicted: latest query and response
        self._start()

    def continue_ids(self, next_query_id: int = 1, next_response_id: int = 1) -> None:
        """Number the next query and response from these ids on (never lower than now): a
        node restarted from its journal keeps ids unique across processes."""
        q, r = next(self._query_ids), next(self._response_ids)
        self._query_ids = itertools.count(max(q, int(next_query_id)))
        self._response_ids = itertools.count(max(r, int(next_response_id)))

    def reset_intake(self) -> None:
        """Restart frame numbering and stamp checks (a new stream's inputs)."""
        self._next_index = 0
        self._first_stamp: float | None = None
        self._last_stamp: float | None = None

    def configure(self, **changes) -> EngineConfig:
        """Change settings while streaming (theta, max_new_tokens, system_prompt,
        cache_budget, mute, min_response_interval, ...). Invalid values are refused with
        EngineInputError and nothing changes. A new system prompt is applied at once (the
        kept cache is recomputed after it); a smaller budget at the next frame."""
        unknown = [k for k in changes if k not in EngineConfig.LIVE]
        if unknown:
            raise EngineInputError(f"cannot change {unknown} while streaming; live settings: "
                                   f"{', '.join(EngineConfig.LIVE)}")
        new = replace(self.cfg, **changes).check()
        old_prompt = self._prefix_ids()
        self.cfg = new
        self.policy = new.policy()
        self.runner.reserve(self._capacity() if new.cache_budget else 0)
        if "system_prompt" in changes and hasattr(self, "_prefix_len") and self._prefix_ids() != old_prompt:
            self._replace_prefix()
        return self.cfg

    def _replace_prefix(self) -> None:
        prefix = self._prefix_ids()
        r = self.runner
        old = self._prefix_len
        emb = r.emb[old:r.length].clone()
        ids = r.ids[old:r.length].clone()
        r.reset()
        with torch.inference_mode():
            r.forward(r.embed(prefix), prefix)
            for s in range(0, emb.shape[0], 512):
                r.forward(emb[s:s + 512], ids[s:s + 512])
        shift = len(prefix) - old
        spans = self._layout.spans
        spans[0].end = len(prefix)
        for s in spans[1:]:
            s.start += shift
            s.end += shift
        self._prefix_len = len(prefix)
        self.stats.cache_tokens = r.length

    # -- validation (any thread, under the caller's lock) ---------------------------------
    def _reject(self, err: EngineInputError, counter: str) -> None:
        self.stats.last_error = str(err)
        setattr(self.stats, counter, getattr(self.stats, counter) + 1)
        raise err

    def validate_frame(self, frame_tokens, stamp: float | None = None) -> FrameInput:
        """Check a frame and give it its index; EngineInputError names what is wrong."""
        try:
            tokens = self._check_frame_tokens(frame_tokens)
            if stamp is None:
                stamp = 0.0 if self._last_stamp is None else self._last_stamp + 1.0 / self.cfg.fps
            if isinstance(stamp, bool) or not isinstance(stamp, (int, float)) or not math.isfinite(stamp):
                raise EngineInputError(f"frame stamp {stamp!r} is not a finite number of seconds")
            stamp = float(stamp)
            if self._last_stamp is not None and stamp < self._last_stamp:
                raise EngineInputError(
                    f"frame stamp {stamp:.3f} s goes backwards (the previous frame was at {self._last_stamp:.3f} s): "
                    f"stamps must not decrease within a stream; call reset() to start a new stream")
        except EngineInputError as err:
            self._reject(err, "frames_rejected")
        if self._first_stamp is None:
            self._first_stamp = stamp
        self._last_stamp = stamp
        index = self._next_index
        self._next_index += 1
        self.stats.frames_in += 1
        return FrameInput(index, stamp, stamp - self._first_stamp, tokens, time.perf_counter())

    def validate_query(self, text, stamp: float | None = None) -> QueryInput:
        """Check a query and give it its id; EngineInputError names what is wrong."""
        try:
            if not isinstance(text, str):
                raise EngineInputError(f"a query must be text, not {type(text).__name__}")
            if not text.strip():
                raise EngineInputError("the query is empty: send a question or an instruction")
            if len(text) > self.cfg.max_query_chars:
                raise EngineInputError(
                    f"the query is {len(text)} characters long, the limit is {self.cfg.max_query_chars}: "
                    f"shorten it (or raise max_query_chars)")
        except EngineInputError as err:
            self._reject(err, "queries_rejected")
        self.stats.queries_accepted += 1
        return QueryInput(next(self._query_ids), text.strip(), stamp, time.perf_counter())

    # -- frames --------------------------------------------------------------------------
    def take_frame(self, frame_tokens, stamp: float | None = None) -> list[Event]:
        """Validate and take in one frame; its events (silent, or a whole response)."""
        return self.take_frames([self.validate_frame(frame_tokens, stamp)])

    def take_frames(self, frames: list[FrameInput]) -> list[Event]:
        """Take in validated frames, batched ``max_batch`` at a time; after a response the
        frames behind the speaking one are taken in again."""
        events: list[Event] = []
        i = 0
        while i < len(frames):
            n, ev = self.take_batch(frames[i:i + self.cfg.max_batch])
            events += ev
            i += n
        return events

    def frame_pieces(self, frames: list[FrameInput]) -> tuple[list, list[int]]:
        """The pieces that feed ``frames`` (opener if the list is closed, interval token
        before every frame but a list's first) and each frame's last offset."""
        tk = self.tokens
        pieces, ends = [], []
        offset = sum(len(p) for _, p, _ in self._pending)
        is_open = self._open
        list_id = self._list_id
        for f in frames:
            if not is_open:
                list_id += 1
                opener = tk.open_ids(False)
                pieces.append((OPEN, opener, {"list_id": list_id}))
                offset += len(opener)
                lead = []
                is_open = True
            else:
                lead = [tk.interval_id]
            ids = lead + tk.frame_ids
            pieces.append((FRAME, ids, {"frame": f.index, "list_id": list_id, "lead": len(lead)}))
            offset += len(ids)
            ends.append(offset - 1)
        return pieces, ends

    def take_batch(self, frames: list[FrameInput]) -> tuple[int, list[Event]]:
        """One forward over ``frames`` with logits at each frame's last token; every frame's
        decision is read there. If a frame speaks, the cache is cut back to it (the later
        frames were fed as if silent) and the response follows at that frame. Returns how
        many frames were consumed (up to and including the speaking one) and the events."""
        if not frames:
            return 0, []
        t_start = time.perf_counter()
        pieces, ends = self.frame_pieces(frames)
        self._make_room(sum(len(p) for _, p, _ in pieces), self._protected())
        start = self.runner.length
        logits = self._feed(pieces, [f.tokens for f in frames], ends)
        self._open = True
        self._list_id = max(self._list_id, max((m.get("list_id", 0) for _, _, m in pieces), default=0))
        t_fwd = time.perf_counter() - t_start
        probs = interval_probability(logits, self.tokens.interval_id).tolist()
        events: list[Event] = []
        cfg = self.cfg
        for j, f in enumerate(frames):
            p = probs[j]
            if p != p:   # NaN: a broken model or input; never speak on it
                self.stats.last_error = f"the model gave no valid probability at frame {f.index} (NaN logits)"
                speak = False
            else:
                speak = self.script(f.index, p) if self.script is not None else decide(p, cfg.theta)
            suppressed = ""
            if speak:
                if cfg.mute:
                    suppressed = "mute"
                elif (self._last_proactive is not None
                      and f.stamp - self._last_proactive < cfg.min_response_interval):
                    suppressed = "min_response_interval"
            self._last_taken = f
            self.stats.frames_taken += 1
            timings = {"arrival_to_decision_s": time.perf_counter() - f.arrival, "forward_s": t_fwd, "batch": len(frames),
                       "queue_s": t_start - f.arrival}
            if speak and not suppressed:
                self._cut_back(start + ends[j] + 1)
                self._last_proactive = f.stamp
                events += self._respond_proactive(f, p, timings)
                return j + 1, events
            ev = SilentEvent(f.index, f.stamp, f.video_time, p, len(frames), suppressed, timings)
            events.append(ev)
            self._emit(ev)
        return len(frames), events

    def _protected(self) -> tuple[int, ...]:
        return tuple(self._protect.values())

    def _respond_proactive(self, f: FrameInput, p: float, timings: dict) -> list[Event]:
        tk = self.tokens
        unit = self._new_unit()
        qid = self._active_query
        kind = "answer" if qid else "narration"
        head = [(TEXT, tk.close_ids + tk.assistant_prefix_ids(True), {"unit": unit, "role": "assistant"})]
        self._open = False
        return self._respond(head, unit, kind, qid, f, f.arrival, True, p, timings)

    def _respond(self, head, unit: int, kind: str, query_id: int, frame: FrameInput | None, arrival: float,
                 proactive: bool, p: float | None, timings: dict) -> list[Event]:
        """Feed ``head`` (ending with the assistant prefix) and decode the response,
        emitting a partial event per token and a final one."""
        self._protect["response"] = unit
        rid = next(self._response_ids)
        events: list[Event] = []
        where = (frame.index, frame.stamp, frame.video_time) if frame is not None else (-1, None, None)
        t0 = time.perf_counter()
        logits = self._feed(head, logits_at=[-1])
        first: dict = {}

        def on_token(out: list[int]) -> None:
            now = time.perf_counter()
            if not first:
                first["t"] = now
            if self.cfg.partials:
                ev = ResponseEvent(rid, query_id, kind, self.tokens.decode(out), False, *where, proactive, len(out),
                                   p, {"since_arrival_s": now - arrival})
                events.append(ev)
                self._emit(ev)

        out = self._greedy(logits, {"unit": unit, "role": "assistant"}, on_token)
        now = time.perf_counter()
        t_first = first.get("t", now)
        timings = dict(timings)
        timings.update({"arrival_to_first_token_s": t_first - arrival, "arrival_to_final_s": now - arrival,
                        "prefill_s": t_first - t0, "decode_s": now - t0, "tokens": len(out),
                        "tokens_per_s": len(out) / max(now - t0, 1e-9)})
        ev = ResponseEvent(rid, query_id, kind, self.tokens.decode(out), True, *where, proactive, len(out), p, timings)
        events.append(ev)
        self.stats.responses += 1
        self._emit(ev)
        return events

    # -- queries -------------------------------------------------------------------------
    def ask(self, text, stamp: float | None = None) -> list[Event]:
        """Validate a query and answer it at once (see :meth:`answer`)."""
        return self.answer(self.validate_query(text, stamp))

    def answer(self, query: QueryInput) -> list[Event]:
        """Insert the query after the newest frame taken in (closing the frame list) and
        answer it at once. The query stays in context: later frames may answer it again
        (those responses carry its id). If the model fails, the query gets a refusal."""
        tk = self.tokens
        user_unit, unit = self._new_unit(), self._new_unit()
        user = (tk.close_ids + tk.user_ids(query.text, True)) if self._open else tk.user_ids(query.text, False)
        head = [(TEXT, user, {"unit": user_unit, "role": "user", "query_id": query.query_id}),
                (TEXT, tk.assistant_prefix_ids(False), {"unit": unit, "role": "assistant"})]
        try:
            self._make_room(len(user) + len(head[1][1]) + self.cfg.max_new_tokens, self._protected())
            self._open = False
            self._active_query = query.query_id
            self._protect["query"] = user_unit
            events = self._respond(head, unit, "answer", query.query_id, self._last_taken, query.arrival, False,
                                   None, {"queue_s": time.perf_counter() - query.arrival})
        except Exception as err:  # the model failed: the query still gets its ending
            self.stats.last_error = f"answering query {query.query_id} failed: {err}"
            return [self.refuse(query, f"the engine failed while answering ({err})")]
        self.stats.queries_answered += 1
        return events

    def refuse(self, query: QueryInput, reason: str) -> ResponseEvent:
        """The final event of a query that will not be answered."""
        f = self._last_taken
        where = (f.index, f.stamp, f.video_time) if f is not None else (-1, None, None)
        ev = ResponseEvent(next(self._response_ids), query.query_id, "refusal", reason, True, *where,
                           timings={"arrival_to_final_s": time.perf_counter() - query.arrival})
        self.stats.queries_refused += 1
        self._emit(ev)
        return ev

    def _after_eviction(self, plan) -> None:
        if self._active_query in plan.queries:
            left = self._layout.queries()
            self._active_query = left[-1] if left else 0

    # -- inspection ----------------------------------------------------------------------
    @property
    def last_frame(self) -> FrameInput | None:
        return self._last_taken

    @property
    def active_query(self) -> int:
        return self._active_query

    def cache_ids(self) -> list[int]:
        """The token ids now in the cache (after evictions), in order."""
        return self.runner.ids[:self.runner.length].tolist()

    def snapshot(self) -> dict:
        st = self.stats.to_dict()
        st.update(cache_tokens=self.runner.length, layout=self._layout.summary(),
                  cache_budget=self.cfg.cache_budget, theta=self.cfg.theta)
        return st


# -- the threaded wrapper ----------------------------------------------------------------
class ThreadedEngine:
    """Thread-safe intake around a :class:`StreamEngine` and a worker thread.

    ``submit_frame`` and ``submit_query`` validate at once (bad input raises
    EngineInputError in the caller, the stream goes on) and return without waiting for the
    model. Frames that arrive while the worker decodes wait in a bounded backlog
    (``max_backlog``; past it the oldest waiting frame is dropped and counted); the worker
    takes the backlog in one batched forward.

    Sharing the model between queries and video: when both wait, the worker alternates,
    one query, then one batch of the waiting frames (up to ``max_batch``), so a flood of
    questions never starves the video (frame lag stays about one answer plus one batch)
    and each answer sees the newest scene. At most ``max_pending_queries`` queries wait;
    more are refused at intake (EngineInputError, counted as rejected). A query asked
    before the current stream has taken any frame waits for the first frame (so it is
    answered about some video) for at most ``no_video_timeout`` seconds, then is refused
    ("no video since the stream (re)started"). Every accepted query ends in an answer or a
    refusal: queries still waiting at ``reset`` or ``stop`` are refused. Every dropped
    frame is counted in ``frames_dropped`` with its reason in ``last_error``. Events go to
    ``events`` (a queue) and ``on_event`` (called from the worker thread).
    """

    def __init__(self, engine: StreamEngine, on_event: Callable[[Event], None] | None = None, *,
                 start: bool = True):
        self.engine = engine
        self.events: queue.Queue = queue.Queue()
        self._callback = on_event
        engine.on_event = self._emit
        self._cv = threading.Condition()
        self._frames: deque[FrameInput] = deque()
        self._queries: deque[QueryInput] = deque()
        self._commands: deque[tuple[str, dict]] = deque()
        self._busy = False
        self._running = False
        self._thread: threading.Thread | None = None
        self._newest_stamp: float | None = None
        self._epoch = 0                     # bumped by reset: older frames never reach the new stream
        self._last_job = ""                 # "query" or "frames": the worker alternates when both wait
        if start:
            self.start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def _emit(self, event: Event) -> None:
        self.events.put(event)
        if self._callback is not None:
            try:
                self._callback(event)
            except Exception as err:  # a listener must not stop the stream
                self.engine.stats.last_error = f"event callback failed: {err!r}"

    # -- control -------------------------------------------------------------------------
    def start(self) -> None:
        with self._cv:
            if self._running:
                return
            self._running = True
        self._threads = torch.get_num_threads()   # the worker uses the creator's setting
        self._thread = threading.Thread(target=self._run, name="live-engine", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the worker after its current step; waiting queries are refused."""
        with self._cv:
            self._running = False
            refused = list(self._queries)
            self._queries.clear()
            no_video = self._no_video()
            self._discard_frames("the engine stopped")
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        for q in refused:
            self.engine.refuse(q, "the engine stopped before this query was answered" + no_video)

    def reset(self, system_prompt: str | None = None) -> None:
        """Start a new stream. Waiting frames are discarded, waiting queries refused; the
        worker clears the cache before taking anything newer."""
        with self._cv:
            refused = list(self._queries)
            self._queries.clear()
            no_video = self._no_video()
            self._discard_frames("the stream was reset")
            self.engine.reset_intake()
            self._newest_stamp = None
            self._epoch += 1
            self._commands.append(("reset", {"system_prompt": system_prompt}))
            self._cv.notify_all()
        for q in refused:
            self.engine.refuse(q, "the stream was reset before this query was answered: ask again" + no_video)

    def _no_video(self) -> str:
        """(Under the lock) what a refusal adds when the stream had no frame yet."""
        if self.engine.last_frame is None and not self._frames:
            return " (no video since the stream (re)started)"
        return ""

    def _discard_frames(self, why: str) -> None:
        """(Under the lock) drop every waiting frame, counted, with the reason."""
        if self._frames:
            self.engine.stats.frames_dropped += len(self._frames)
            self.engine.stats.last_error = (f"{len(self._frames)} waiting frame(s) dropped: {why} before the model "
                                            f"took them")
            self._frames.clear()

    def configure(self, **changes) -> None:
        """Change live settings (checked now, applied by the worker before its next step)."""
        replace(self.engine.cfg, **{k: v for k, v in changes.items() if k in EngineConfig.LIVE}).check()
        unknown = [k for k in changes if k not in EngineConfig.LIVE]
        if unknown:
            raise EngineInputError(f"cannot change {unknown} while streaming; live settings: "
                                   f"{', '.join(EngineConfig.LIVE)}")
        with self._cv:
            self._commands.append(("configure", changes))
            self._cv.notify_all()

    # -- intake (any thread) ---------------------------------------------------------------
    def submit_frame(self, frame_tokens, stamp: float | None = None) -> int:
        """Queue a frame; returns its index. Raises EngineInputError for bad input."""
        with self._cv:
            frame = self.engine.validate_frame(frame_tokens, stamp)
            if len(self._frames) >= self.engine.cfg.max_backlog:
                old = self._frames.popleft()
                st = self.engine.stats
                st.frames_dropped += 1
                st.last_error = (f"frame {old.index} (stamp {old.stamp:.3f} s) dropped: {len(self._frames) + 1} "
                                 f"frames were waiting while the model was busy (max_backlog="
                                 f"{self.engine.cfg.max_backlog}); {st.frames_dropped} dropped so far. Lower the "
                                 f"camera fps, shorten responses (max_new_tokens) or raise max_backlog")
            self._frames.append(frame)
            self._newest_stamp = frame.stamp
            self._cv.notify_all()
        return frame.index

    def submit_query(self, text, stamp: float | None = None) -> int:
        """Queue a query; returns its id. Raises EngineInputError for bad input."""
        with self._cv:
            limit = self.engine.cfg.max_pending_queries
            if len(self._queries) >= limit:
                self.engine._reject(EngineInputError(
                    f"{len(self._queries)} queries are already waiting for the model (max_pending_queries={limit}): "
                    f"this one was not accepted, so the video keeps its share of the model; ask again once "
                    f"an answer has come (or raise max_pending_queries)"), "queries_rejected")
            query = self.engine.validate_query(text, stamp)
            self._queries.append(query)
            self._cv.notify_all()
        return query.query_id

    # -- observation -----------------------------------------------------------------------
    def stats(self) -> EngineStats:
        with self._cv:
            st = replace(self.engine.stats)
            st.backlog = len(self._frames)
            last = self.engine.last_frame
            if self._newest_stamp is not None:
                st.lag_s = self._newest_stamp - last.stamp if last is not None else 0.0
            st.cache_tokens = self.engine.runner.length
        return st

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Block until nothing is waiting or running (tests, benchmarks)."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while self._busy or self._frames or self._queries or self._commands:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(left)
        return True

    def get_event(self, timeout: float | None = None) -> Event | None:
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            return None

    # -- the worker ------------------------------------------------------------------------
    def _next_job(self) -> tuple[str, object] | None:
        """(Under the lock) the worker's next step, or None when there is nothing to do
        yet: commands first; a query only once the stream has a frame (else it waits for
        one until ``no_video_timeout``); queries and frame batches alternate when both wait."""
        eng = self.engine
        if self._commands:
            return "command", self._commands.popleft()
        has_video = eng.last_frame is not None
        if self._queries and not has_video and not self._frames:
            if time.perf_counter() - self._queries[0].arrival >= eng.cfg.no_video_timeout:
                return "no_video", self._queries.popleft()
        if self._queries and has_video and not (self._frames and self._last_job == "query"):
            return "query", self._queries.popleft()
        if self._frames:
            n = min(len(self._frames), eng.cfg.max_batch)
            return "frames", [self._frames.popleft() for _ in range(n)]
        return None

    def _wait_time(self) -> float | None:
        """(Under the lock) how long the idle worker may sleep: until the first query
        waiting for video times out, or until notified."""
        if self._queries and self.engine.last_frame is None:
            left = self._queries[0].arrival + self.engine.cfg.no_video_timeout - time.perf_counter()
            return max(left, 0.001)
        return None

    def _run(self) -> None:
        eng = self.engine
        torch.set_num_threads(self._threads)
        while True:
            with self._cv:
                self._busy = False
                self._cv.notify_all()
                while self._running and (job := self._next_job()) is None:
                    self._cv.wait(self._wait_time())
                if not self._running:
                    return
                self._busy = True
                epoch = self._epoch
            kind, item = job
            if kind in ("query", "frames"):
                self._last_job = kind
            try:
                if kind == "command":
                    name, args = item
                    if name == "reset":
                        eng.reset(args.get("system_prompt"), intake=False)
                    else:
                        eng.configure(**args)
                elif kind == "query":
                    eng.answer(item)
                elif kind == "no_video":
                    eng.refuse(item, f"no video since the stream (re)started: no frame came within "
                                     f"no_video_timeout={eng.cfg.no_video_timeout:g} s of this query, so it cannot be "
                                     f"answered about the scene; check the camera and frame_encoder (live-ros "
                                     f"status), then ask again")
                else:
                    n, _ = eng.take_batch(item)
                    if n < len(item):
                        with self._cv:
                            if self._epoch == epoch:
                                self._frames.extendleft(reversed(item[n:]))
                            else:
                                eng.stats.frames_dropped += len(item) - n
                                eng.stats.last_error = (f"{len(item) - n} frame(s) dropped: the stream was reset "
                                                        f"while the model took them")
            except Exception as err:  # keep the stream alive; the error is exposed
                eng.stats.last_error = f"{kind} failed: {err!r}"
                if kind == "query":
                    eng.refuse(item, f"the engine failed while answering ({err})")
