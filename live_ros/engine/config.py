"""Settings of the streaming engine, each default defined here once: the node's
parameters (live_ros/nodes/live_llm.py) and the command line take theirs from
:class:`EngineConfig`."""

from __future__ import annotations

from dataclasses import dataclass

from live_ros.engine.cache import CachePolicy
from live_ros.model.format import RELEASE_THETA


class EngineInputError(ValueError):
    """A frame, query or setting the engine refuses; the message names the fix. The
    stream is not affected."""


@dataclass
class EngineConfig:
    """Settings of one stream; the ones marked (live) can change while it runs
    (:meth:`~live_ros.engine.engine.StreamEngine.configure`).

    ``max_new_tokens`` is 48 rather than the release's 100: the responses LIVE learns are
    short narrations (the embedded checkpoint's at most 13 tokens on its held-out streams),
    so 48 only stops a runaway response, and every token decoded is time the stream is not
    taken in (the frames wait in the backlog), which on the embedded model's 2 CPU cores
    matters. The node, the command line and the benchmarks take this value.
    """

    theta: float = RELEASE_THETA  # (live) keep silent when P(interval) >= theta (section 3.4)
    max_new_tokens: int = 48  # (live) response length limit (the release: 100; see below)
    min_new_tokens: int = 0  # eos banned before this many tokens (benchmarks)
    system_prompt: str | None = None  # (live) None: the checkpoint's FormatSpec prompt
    # (live) the standing instruction after the system prompt, before the first frame, kept in
    # the cache's never-evicted prefix for the whole stream and after every reset. "": none
    # (the model stays silent until asked). With one, proactive responses are narration
    # (query_id 0) and a query is answered on top of it; without one, a proactive response
    # continues the latest query (a "tell me when ..." answered later carries its id).
    # live_llm's default is live_ros/model/format.py: DEFAULT_INSTRUCTION.
    instruction: str = ""
    cache_budget: int | None = 1280  # (live) tokens kept at every frame boundary; None or 0: unbounded
    sink_tokens: int = 4  # first positions always kept (besides the system prompt)
    text_share: float = 0.25  # dialogue text kept up to this share of the budget
    frame_window: int | None = None  # at most this many recent frames (None: budget decides)
    evict_chunk: int | None = None  # evict down to budget - chunk (None: budget // 8)
    eviction: str = "recompact"  # "recompact" (rotate kept keys) or "reprefill" (recompute)
    mute: bool = False  # (live) no proactive responses: speak only when asked
    min_response_interval: float = 0.0  # (live) seconds of stream time between proactive responses
    max_query_chars: int = 2000  # longer queries are refused
    max_batch: int = 16  # backlog frames taken in one forward
    max_backlog: int = 64  # ThreadedEngine: frames waiting; the oldest are dropped past it
    max_pending_queries: int = 8  # (live) ThreadedEngine: queries waiting; more are refused at intake
    no_video_timeout: float = 10.0  # (live) ThreadedEngine: a query asked before the stream's first
    # frame waits this long (seconds) for it, then is refused
    # (live) the frame gate, off at 0: a frame whose tokens changed by less than this (relative
    # L2 distance to the last frame fed) is not fed; it gets a silent event marked "gate".
    # At most frame_gate_max_skip frames are skipped in a row (the model keeps its sense of time).
    frame_gate: float = 0.0
    frame_gate_max_skip: int = 4
    fps: float = 2.0  # stamps of frames given without one: previous + 1/fps
    partials: bool = True  # emit partial response events while decoding
    record_ids: bool = False  # keep a log of every fed token id (tests)

    LIVE = (
        "theta",
        "max_new_tokens",
        "min_new_tokens",
        "system_prompt",
        "instruction",
        "cache_budget",
        "mute",
        "min_response_interval",
        "max_query_chars",
        "max_batch",
        "max_backlog",
        "partials",
        "max_pending_queries",
        "no_video_timeout",
        "frame_gate",
    )

    def __post_init__(self):
        # the one rule for an unbounded cache: None or 0 (ROS parameters and the command line
        # cannot say None), so the node, the CLI and the core agree
        if self.cache_budget == 0 and not isinstance(self.cache_budget, bool):
            self.cache_budget = None

    def check(self) -> "EngineConfig":
        def bad(msg: str):
            raise EngineInputError(msg)

        if not isinstance(self.theta, (int, float)) or not 0.0 <= float(self.theta) <= 1.0:
            bad(
                f"theta {self.theta!r} must be a probability within [0, 1] (the release uses {RELEASE_THETA}; "
                f"higher speaks more often)"
            )
        if not isinstance(self.max_new_tokens, int) or not 1 <= self.max_new_tokens <= 4096:
            bad(f"max_new_tokens {self.max_new_tokens!r} must be an integer within [1, 4096]")
        if not isinstance(self.min_new_tokens, int) or not 0 <= self.min_new_tokens <= self.max_new_tokens:
            bad(f"min_new_tokens {self.min_new_tokens!r} must be within [0, max_new_tokens]")
        if self.system_prompt is not None and not isinstance(self.system_prompt, str):
            bad("system_prompt must be a string (or None for the checkpoint's prompt)")
        if not isinstance(self.instruction, str):
            bad("instruction must be a string ('' for none: silent until asked)")
        if len(self.instruction) > self.max_query_chars:
            bad(
                f"the instruction is {len(self.instruction)} characters long, the limit is {self.max_query_chars} "
                f"(max_query_chars): shorten it"
            )
        if self.cache_budget is not None and (not isinstance(self.cache_budget, int) or self.cache_budget < 256):
            bad(f"cache_budget {self.cache_budget!r} is too small: give at least 256 tokens (None or 0: unbounded)")
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
        if not isinstance(self.frame_gate, (int, float)) or not 0.0 <= self.frame_gate < 10.0:
            bad(f"frame_gate {self.frame_gate!r} must be within [0, 10) (a relative change; 0: no gate)")
        if not isinstance(self.frame_gate_max_skip, int) or self.frame_gate_max_skip < 1:
            bad(f"frame_gate_max_skip {self.frame_gate_max_skip!r} must be an integer >= 1")
        if not self.fps > 0:
            bad("fps must be > 0")
        self.policy()
        return self

    def policy(self) -> CachePolicy:
        try:
            return CachePolicy(
                self.cache_budget, self.sink_tokens, self.text_share, self.frame_window, self.evict_chunk
            )
        except ValueError as err:
            raise EngineInputError(str(err)) from None
