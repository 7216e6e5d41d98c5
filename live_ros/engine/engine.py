"""The streaming engine of LIVE (paper section 3.4): one continuous KV cache per stream.

Every frame is one forward of its tokens (plus the interval token chosen at the frame
before); logits are computed only at a frame's last position, where the decision is read:
the interval (silence) token is kept when its probability is >= theta (the release's
default 0.725), otherwise the model speaks: the closing token and ``Assistant:`` are fed
and a response is decoded greedily to eos or ``max_new_tokens``, then the stream goes on.
A query is inserted after the newest frame taken in and answered at once; it stays in
context, so later frames can answer it again ("tell me when X appears"). A standing
instruction (``EngineConfig.instruction``, e.g. "Narrate what you see.") sits in the
never-evicted prefix: the model narrates unasked, questions are answered on top of it and
narration goes on after an answer.

- :class:`StreamEngine`: the synchronous core (``take_frame``, ``take_frames``,
  ``take_batch``, ``ask``, ``reset``, ``configure``), used by tests and the benchmark.
- :class:`~live_ros.engine.threaded.ThreadedEngine` (threaded.py): thread-safe intake, a
  worker thread, an event queue and callback, a bounded backlog taken in one batched
  forward with cut-back to the earliest speaking frame.

The pieces of the sequence come from live_ros/model/format.py (the grammar), the decision
from its ``speaks``; settings are in config.py, events in events.py, the token stream
this builds on in stream.py. No ROS here: a node wraps the threaded engine.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import replace
from typing import NoReturn

import torch

from live_ros.engine.cache import FRAME, OPEN, TEXT
from live_ros.engine.config import EngineConfig, EngineInputError
from live_ros.engine.events import Event, FrameInput, QueryInput, ResponseEvent, SilentEvent
from live_ros.engine.stream import TokenStream, interval_probability
from live_ros.model.format import speaks


class StreamEngine(TokenStream):
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
        self._active_query = 0  # latest query still in context
        self._protect: dict[str, int] = {}  # units never evicted: latest query and response
        self._gated_run = 0  # the frame gate: frames skipped in a row
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
        instruction, cache_budget, mute, min_response_interval, ...). Invalid values are
        refused with EngineInputError and nothing changes. A new system prompt or
        instruction is applied at once (the kept cache is recomputed after it); a smaller
        budget at the next frame."""
        unknown = [k for k in changes if k not in EngineConfig.LIVE]
        if unknown:
            raise EngineInputError(
                f"cannot change {unknown} while streaming; live settings: {', '.join(EngineConfig.LIVE)}"
            )
        new = replace(self.cfg, **changes).check()
        old_prompt = self._prefix_ids()
        self.cfg = new
        self.policy = new.policy()
        self.runner.reserve(self._capacity() if new.cache_budget else 0)
        if hasattr(self, "_prefix_len") and self._prefix_ids() != old_prompt:
            self._replace_prefix()
        return self.cfg

    def _replace_prefix(self) -> None:
        prefix = self._prefix_ids()
        r = self.runner
        old = self._prefix_len
        emb = r.emb[old : r.length].clone()
        ids = r.ids[old : r.length].clone()
        r.reset()
        with torch.inference_mode():
            r.forward(r.embed(prefix), prefix)
            for s in range(0, emb.shape[0], 512):
                r.forward(emb[s : s + 512], ids[s : s + 512])
        shift = len(prefix) - old
        spans = self._layout.spans
        spans[0].end = len(prefix)
        for span in spans[1:]:
            span.start += shift
            span.end += shift
        self._prefix_len = len(prefix)
        self.stats.cache_tokens = r.length

    # -- validation (any thread, under the caller's lock) ---------------------------------
    def _reject(self, err: EngineInputError, counter: str) -> NoReturn:
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
                    f"stamps must not decrease within a stream; call reset() to start a new stream"
                )
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
                    f"shorten it (or raise max_query_chars)"
                )
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
            n, ev = self.take_batch(frames[i : i + self.cfg.max_batch])
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
            lead = is_open
            if not is_open:
                list_id += 1
                opener = tk.open_ids()
                pieces.append((OPEN, opener, {"list_id": list_id}))
                offset += len(opener)
                is_open = True
            ids = tk.frame_chunk_ids("streaming", lead=lead)
            pieces.append((FRAME, ids, {"frame": f.index, "list_id": list_id, "lead": len(ids) - len(tk.frame_ids)}))
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
        if self.cfg.frame_gate > 0:
            gated, frames = self._gate(frames)
            if gated:
                return gated, self._gated_events(frames[:gated])
        t_start = time.perf_counter()
        pieces, ends = self.frame_pieces(frames)
        self._make_room(sum(len(p) for _, p, _ in pieces), self._protected())
        start = self.runner.length
        logits = self._feed(pieces, [f.tokens for f in frames], ends)
        self._open = True
        self._list_id = max(self._list_id, max((m.get("list_id", 0) for _, _, m in pieces), default=0))
        t_fwd = time.perf_counter() - t_start
        probs = interval_probability(logits, self.tokens.silent_id("streaming")).tolist()
        events: list[Event] = []
        cfg = self.cfg
        for j, f in enumerate(frames):
            p = probs[j]
            if p != p:  # NaN: a broken model or input; never speak on it
                self.stats.last_error = f"the model gave no valid probability at frame {f.index} (NaN logits)"
                speak = False
            else:
                speak = self.script(f.index, p) if self.script is not None else speaks(p, cfg.theta)
            suppressed = ""
            if speak:
                if cfg.mute:
                    suppressed = "mute"
                elif self._last_proactive is not None and f.stamp - self._last_proactive < cfg.min_response_interval:
                    suppressed = "min_response_interval"
            self._last_taken = f
            self.stats.frames_taken += 1
            timings = {
                "arrival_to_decision_s": time.perf_counter() - f.arrival,
                "forward_s": t_fwd,
                "batch": len(frames),
                "queue_s": t_start - f.arrival,
            }
            if speak and not suppressed:
                self._cut_back(start + ends[j] + 1)
                self._last_proactive = f.stamp
                events += self._respond_proactive(f, p, timings)
                return j + 1, events
            ev = SilentEvent(f.index, f.stamp, f.video_time, p, len(frames), suppressed, timings)
            events.append(ev)
            self._emit(ev)
        return len(frames), events

    # -- the frame gate (EngineConfig.frame_gate) --------------------------------------------
    def _changed(self, tokens: torch.Tensor, ref: torch.Tensor | None) -> bool:
        if ref is None or self._gated_run >= self.cfg.frame_gate_max_skip:
            return True
        change = float(torch.linalg.vector_norm(tokens - ref)) / (float(torch.linalg.vector_norm(ref)) + 1e-6)
        return change >= self.cfg.frame_gate

    def _gate(self, frames: list[FrameInput]) -> tuple[int, list[FrameInput]]:
        """How many leading frames the gate skips (their tokens changed by less than
        ``frame_gate`` since the last frame taken in), or 0 and the frames to feed now: up
        to the first later one the gate would skip (it is looked at again in the next call)."""
        ref = self._last_taken.tokens if self._last_taken is not None else None
        n = 0
        while n < len(frames) and not self._changed(frames[n].tokens, ref):
            self._gated_run += 1
            n += 1
        if n:
            return n, frames
        self._gated_run = 0
        keep = 1
        while keep < len(frames) and self._changed(frames[keep].tokens, frames[keep - 1].tokens):
            keep += 1
        return 0, frames[:keep]

    def _gated_events(self, frames: list[FrameInput]) -> list[Event]:
        """Skipped frames: a silent event each, marked ``suppressed="gate"`` (no forward, no
        probability), so every frame still gets its decision."""
        events: list[Event] = []
        for f in frames:
            self.stats.frames_gated += 1
            ev = SilentEvent(f.index, f.stamp, f.video_time, float("nan"), 0, "gate", {"queue_s": 0.0})
            events.append(ev)
            self._emit(ev)
        return events

    def _protected(self) -> tuple[int, ...]:
        return tuple(self._protect.values())

    def _respond_proactive(self, f: FrameInput, p: float, timings: dict) -> list[Event]:
        tk = self.tokens
        unit = self._new_unit()
        qid = 0 if self.cfg.instruction else self._active_query  # see EngineConfig.instruction
        kind = "answer" if qid else "narration"
        head = [(TEXT, tk.speak_ids(), {"unit": unit, "role": "assistant"})]
        self._open = False
        return self._respond(head, unit, kind, qid, f, f.arrival, True, p, timings)

    def _respond(
        self,
        head,
        unit: int,
        kind: str,
        query_id: int,
        frame: FrameInput | None,
        arrival: float,
        proactive: bool,
        p: float | None,
        timings: dict,
    ) -> list[Event]:
        """Feed ``head`` (ending with the assistant prefix) and decode the response,
        emitting a partial event per token and a final one."""
        self._protect["response"] = unit
        rid = next(self._response_ids)
        events: list[Event] = []
        where: tuple[int, float | None, float | None] = (
            (frame.index, frame.stamp, frame.video_time) if frame is not None else (-1, None, None)
        )
        t0 = time.perf_counter()
        logits = self._feed(head, logits_at=[-1])
        first: dict = {}

        def on_token(out: list[int]) -> None:
            now = time.perf_counter()
            if not first:
                first["t"] = now
            if self.cfg.partials:
                ev = ResponseEvent(
                    rid,
                    query_id,
                    kind,
                    self.tokens.decode(out),
                    False,
                    *where,
                    proactive,
                    len(out),
                    p,
                    {"since_arrival_s": now - arrival},
                )
                events.append(ev)
                self._emit(ev)

        out = self._greedy(logits, {"unit": unit, "role": "assistant"}, on_token)
        now = time.perf_counter()
        t_first = first.get("t", now)
        timings = dict(timings)
        timings.update(
            {
                "arrival_to_first_token_s": t_first - arrival,
                "arrival_to_final_s": now - arrival,
                "prefill_s": t_first - t0,
                "decode_s": now - t0,
                "tokens": len(out),
                "tokens_per_s": len(out) / max(now - t0, 1e-9),
            }
        )
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
        user = tk.user_turn_ids(query.text, list_open=self._open)
        head = [
            (TEXT, user, {"unit": user_unit, "role": "user", "query_id": query.query_id}),
            (TEXT, tk.assistant_prefix_ids(False), {"unit": unit, "role": "assistant"}),
        ]
        try:
            self._make_room(len(user) + len(head[1][1]) + self.cfg.max_new_tokens, self._protected())
            self._open = False
            self._active_query = query.query_id
            self._protect["query"] = user_unit
            events = self._respond(
                head,
                unit,
                "answer",
                query.query_id,
                self._last_taken,
                query.arrival,
                False,
                None,
                {"queue_s": time.perf_counter() - query.arrival},
            )
        except Exception as err:  # the model failed: the query still gets its ending
            self.stats.last_error = f"answering query {query.query_id} failed: {err}"
            return [self.refuse(query, f"the engine failed while answering ({err})")]
        self.stats.queries_answered += 1
        return events

    def refuse(self, query: QueryInput, reason: str) -> ResponseEvent:
        """The final event of a query that will not be answered."""
        f = self._last_taken
        where: tuple[int, float | None, float | None] = (
            (f.index, f.stamp, f.video_time) if f is not None else (-1, None, None)
        )
        ev = ResponseEvent(
            next(self._response_ids),
            query.query_id,
            "refusal",
            reason,
            True,
            *where,
            timings={"arrival_to_final_s": time.perf_counter() - query.arrival},
        )
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
        return self.runner.ids[: self.runner.length].tolist()

    def snapshot(self) -> dict:
        st = self.stats.to_dict()
        st.update(
            cache_tokens=self.runner.length,
            layout=self._layout.summary(),
            cache_budget=self.cfg.cache_budget,
            theta=self.cfg.theta,
        )
        return st
