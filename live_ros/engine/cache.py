"""The bounded KV-cache policy: what a stream keeps once it passes its token budget.

The release never trims its cache, so speed falls as it grows and quality collapses past
the LLM's context (SmolLM2: 8,192 positions, about 6 minutes of 10-token frames at 2 fps).
Here, as in StreamingVLM (attention sinks + a short window of recent vision tokens + a
longer window of recent text), a stream keeps:

- the sink: the system prompt (and at least ``sink_tokens`` first tokens), always;
- dialogue text (user turns, responses) up to ``text_share`` of the budget, newest kept
  longest: text outlives frames;
- a window of the most recent frames filling the rest (at most ``frame_window`` frames).

:class:`CacheLayout` records which cache positions hold which span (sink, the opener of a
frame list, a frame, a dialogue unit). :class:`CachePolicy` decides, when the budget is
passed, which tokens to keep; the engine then evicts the rest (see
:meth:`live_ros.engine.runner.KVRunner.compact`). Eviction keeps the sequence well formed:
the oldest frame of a list goes together with the interval token after it, so a list
``[f1,f2,f3]`` becomes ``[f2,f3]``, and a list whose frames are all gone stays as ``[]``
until the dialogue text that closed it is evicted too.

Evicting down to ``budget - chunk`` rather than to the budget itself spaces evictions out
(hysteresis): one eviction every ``chunk`` tokens of new input.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

SINK, OPEN, FRAME, TEXT = "sink", "open", "frame", "text"


@dataclass
class Span:
    """Contiguous cache positions ``[start, end)`` holding one piece of the stream.

    kind: "sink" (system prompt), "open" (the opener of frame list ``list_id``), "frame"
    (one frame's tokens, led by ``lead`` interval tokens), "text" (a dialogue unit: a user
    turn with the close of the list before it, or an assistant turn through eos).
    """

    kind: str
    start: int
    end: int
    frame: int = -1  # frame index (frames)
    list_id: int = -1  # frame list (opens and frames)
    unit: int = -1  # dialogue unit id (text)
    role: str = ""  # "user" or "assistant" (text)
    query_id: int = 0  # the query a user unit holds
    lead: int = 0  # frames: leading interval tokens

    @property
    def size(self) -> int:
        return self.end - self.start


@dataclass
class CacheLayout:
    """Which span every cache position belongs to, in order."""

    spans: list[Span] = field(default_factory=list)

    @property
    def length(self) -> int:
        return self.spans[-1].end if self.spans else 0

    def add(self, kind: str, n: int, **meta) -> Span:
        """Append ``n`` positions; text of the same unit extends the previous span."""
        start = self.length
        last = self.spans[-1] if self.spans else None
        if last is not None and kind in (TEXT, SINK) and last.kind == kind and last.unit == meta.get("unit", -1):
            last.end += n
            return last
        span = Span(kind, start, start + n, **meta)
        self.spans.append(span)
        return span

    def truncate(self, length: int) -> None:
        """Cut back to the first ``length`` positions."""
        while self.spans and self.spans[-1].start >= length:
            self.spans.pop()
        if self.spans and self.spans[-1].end > length:
            self.spans[-1].end = length

    def count(self, kind: str) -> int:
        return sum(s.size for s in self.spans if s.kind == kind)

    def frames(self) -> list[int]:
        """Indices of the frames in the cache, oldest first."""
        return [s.frame for s in self.spans if s.kind == FRAME]

    def queries(self) -> list[int]:
        return [s.query_id for s in self.spans if s.kind == TEXT and s.query_id]

    def apply(self, keep: torch.Tensor) -> None:
        """Renumber the spans after the positions ``~keep`` were evicted (``keep`` is a
        bool mask over the old positions); spans left empty disappear."""
        kept_before = torch.zeros(len(keep) + 1, dtype=torch.long)
        kept_before[1:] = torch.cumsum(keep.long(), 0)
        spans = []
        for s in self.spans:
            # A frame whose leading interval was evicted (its predecessor went) loses it.
            lead = int(keep[s.start : s.start + s.lead].sum()) if s.kind == FRAME else 0
            start, end = int(kept_before[s.start]), int(kept_before[s.end])
            if end > start:
                s.start, s.end = start, end
                if s.kind == FRAME:
                    s.lead = lead
                spans.append(s)
        self.spans = spans

    def summary(self) -> dict:
        return {
            "tokens": self.length,
            "sink": self.count(SINK),
            "frames": len(self.frames()),
            "frame_tokens": self.count(FRAME),
            "text_tokens": self.count(TEXT) + self.count(OPEN),
        }


@dataclass
class EvictionPlan:
    """Which cache positions survive (``keep``, bool per position) and what goes."""

    keep: torch.Tensor
    frames: list[int]  # evicted frame indices
    units: list[int]  # evicted dialogue units
    queries: list[int]  # queries whose user turn was evicted
    tokens: int  # positions evicted

    @property
    def kept(self) -> int:
        return int(self.keep.sum())


@dataclass
class CachePolicy:
    """Token budget of one stream's KV cache (None: unbounded, the release's behaviour).

    budget: cache positions allowed at every frame boundary (a response being decoded may
    pass it by up to its own length; it is brought back at the next frame).
    sink_tokens: first positions always kept (the system prompt is always kept too).
    text_share: dialogue text is kept up to this share of the budget, newest first.
    frame_window: at most this many recent frames (None: as many as the budget allows).
    chunk: evict down to ``budget - chunk`` (None: budget // 8), so evictions are rare.
    """

    budget: int | None = 1280
    sink_tokens: int = 4
    text_share: float = 0.25
    frame_window: int | None = None
    chunk: int | None = None

    def __post_init__(self):
        self.check()

    def check(self) -> None:
        if self.budget is not None and (not isinstance(self.budget, int) or self.budget < 64):
            raise ValueError(
                f"cache budget {self.budget!r} is too small: give at least 64 tokens (or None for an unbounded cache)"
            )
        if not 0.0 <= self.text_share <= 1.0:
            raise ValueError(f"text_share {self.text_share} must be within [0, 1]")
        if self.frame_window is not None and self.frame_window < 1:
            raise ValueError("frame_window must be >= 1 (or None)")
        if self.chunk is not None and (self.chunk < 0 or (self.budget is not None and self.chunk >= self.budget)):
            raise ValueError(f"chunk {self.chunk} must be within [0, budget)")

    @property
    def low_water(self) -> int:
        if self.budget is None:
            raise ValueError("an unbounded cache (budget None) has no low-water mark")
        chunk = self.budget // 8 if self.chunk is None else self.chunk
        return self.budget - chunk

    def over(self, layout: CacheLayout, incoming: int = 0) -> bool:
        """True when ``incoming`` more positions would pass the budget or the frame window."""
        if self.budget is None:
            return False
        if layout.length + incoming > self.budget:
            return True
        return self.frame_window is not None and len(layout.frames()) > self.frame_window

    def plan(self, layout: CacheLayout, incoming: int = 0, protect_units: tuple[int, ...] = ()) -> EvictionPlan | None:
        """Positions to keep so that ``incoming`` more fit under the low-water mark.

        Order: dialogue text over its share goes first (oldest unit, with every frame
        older than it), then the oldest frames, then older text; the sink, the newest
        frame and the units in ``protect_units`` (the latest query and response) stay.
        Returns None when nothing needs to go.
        """
        if self.budget is None or not self.over(layout, incoming):
            return None
        n = layout.length
        keep = torch.ones(n, dtype=torch.bool)
        target = max(0, self.low_water - incoming)
        text_budget = int(self.text_share * self.budget)
        spans = layout.spans
        protected = [
            s.kind == SINK or s.start < self.sink_tokens or (s.kind == TEXT and s.unit in protect_units) for s in spans
        ]
        frame_ids = [i for i, s in enumerate(spans) if s.kind == FRAME]
        if frame_ids:
            protected[frame_ids[-1]] = True  # the newest frame: its decision is pending
        state = {"total": n, "text": sum(s.size for s in spans if s.kind in (TEXT, OPEN)), "frames": len(frame_ids)}
        ev_frames: list[int] = []
        ev_units: list[int] = []
        ev_queries: list[int] = []
        gone = [False] * len(spans)

        def drop(i: int) -> None:
            s = spans[i]
            still = int(keep[s.start : s.end].sum())
            keep[s.start : s.end] = False
            state["total"] -= still
            if s.kind in (TEXT, OPEN):
                state["text"] -= still
            gone[i] = True

        def drop_frame(i: int) -> None:
            s = spans[i]
            prev = next((j for j in range(i - 1, -1, -1) if not gone[j]), None)
            first_of_list = prev is None or spans[prev].kind != FRAME or spans[prev].list_id != s.list_id
            drop(i)
            state["frames"] -= 1
            ev_frames.append(s.frame)
            # Keep the list well formed: [f1,f2,f3] -> [f2,f3] (the interval after f1 goes
            # with it); a middle frame goes with the interval before it.
            nxt = i + 1
            if first_of_list and nxt < len(spans) and spans[nxt].kind == FRAME and spans[nxt].list_id == s.list_id:
                lead = slice(spans[nxt].start, spans[nxt].start + spans[nxt].lead)
                state["total"] -= int(keep[lead].sum())
                keep[lead] = False

        def drop_unit(i: int) -> bool:
            """Evict text span i and everything unprotected before it (older)."""
            if protected[i]:
                return False
            for j in range(i):
                if not gone[j] and not protected[j]:
                    if spans[j].kind == FRAME:
                        drop_frame(j)
                    else:
                        drop(j)
                        if spans[j].kind == TEXT:
                            ev_units.append(spans[j].unit)
                            if spans[j].query_id:
                                ev_queries.append(spans[j].query_id)
            drop(i)
            ev_units.append(spans[i].unit)
            if spans[i].query_id:
                ev_queries.append(spans[i].query_id)
            return True

        def oldest(kind_set) -> int | None:
            for i, s in enumerate(spans):
                if not gone[i] and not protected[i] and s.kind in kind_set:
                    return i
            return None

        # 1. Text over its share: oldest dialogue units first.
        while state["text"] > text_budget and state["total"] > target:
            i = oldest((TEXT,))
            if i is None or not drop_unit(i):
                break
        # 2. Frames beyond the window, then the oldest frames until under the target.
        while self.frame_window is not None and state["frames"] > self.frame_window:
            i = oldest((FRAME,))
            if i is None:
                break
            drop_frame(i)
        while state["total"] > target:
            i = oldest((FRAME,))
            if i is None:
                break
            drop_frame(i)
        # 3. Still over (text-heavy stream): older text, then empty frame-list openers.
        while state["total"] > target:
            i = oldest((TEXT,))
            if i is None or not drop_unit(i):
                break
        evicted = int((~keep).sum())
        if evicted == 0:
            return None
        return EvictionPlan(keep, ev_frames, ev_units, ev_queries, evicted)
