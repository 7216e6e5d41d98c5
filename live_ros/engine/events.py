"""What goes into the engine (validated frames and queries) and what comes out: plain
dataclasses, :class:`SilentEvent` and :class:`ResponseEvent` (partial while decoding, then
final), and the counters of :class:`EngineStats`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@dataclass
class FrameInput:
    """A validated frame: its index in the stream, stamp, video time and tokens."""

    index: int
    stamp: float
    video_time: float
    tokens: torch.Tensor  # [N, D] float32
    arrival: float  # time.perf_counter() at intake


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
    batch: int = 1  # frames in the forward that took it in
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

    frames_in: int = 0  # frames accepted
    frames_taken: int = 0  # frames fed to the model
    frames_gated: int = 0  # frames the frame gate skipped (EngineConfig.frame_gate)
    frames_dropped: int = 0  # backlog full (ThreadedEngine) or discarded by reset
    frames_rejected: int = 0  # bad inputs
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
    lag_s: float = 0.0  # newest input stamp - newest frame taken in
    backlog: int = 0
    last_error: str = ""
    budget_switches: int = 0  # an unbounded cache switched to a budget before the model's positions ran out
    last_warning: str = ""

    def to_dict(self) -> dict:
        return asdict(self)
