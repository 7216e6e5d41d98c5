"""The streaming engine (paper section 3.4): continuous KV cache, theta decision, queries at
any time, streamed answers, bounded memory on endless streams, and the baselines.

Plain Python/torch (no ROS): a node wraps :class:`ThreadedEngine`.
"""

from live_ros.engine.baselines import InterleavedDialogue, PerFrameDialogue
from live_ros.engine.cache import CacheLayout, CachePolicy, EvictionPlan, Span
from live_ros.engine.engine import (RELEASE_THETA, EngineConfig, EngineInputError, EngineStats, Event, FrameInput,
                                    QueryInput, ResponseEvent, SilentEvent, StreamEngine, ThreadedEngine, decide,
                                    interval_probability)
from live_ros.engine.runner import KVRunner

__all__ = ["RELEASE_THETA", "EngineConfig", "EngineInputError", "EngineStats", "Event", "FrameInput", "QueryInput",
           "ResponseEvent", "SilentEvent", "StreamEngine", "ThreadedEngine", "decide", "interval_probability",
           "CacheLayout", "CachePolicy", "EvictionPlan", "Span", "KVRunner", "PerFrameDialogue",
           "InterleavedDialogue"]
