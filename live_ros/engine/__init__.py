"""The streaming engine (paper section 3.4): continuous KV cache, theta decision, queries at
any time, streamed answers, bounded memory on endless streams, and the baselines.

Plain Python/torch (no ROS): a node wraps :class:`ThreadedEngine`. Modules: config.py
(settings and their defaults), events.py (inputs, events, counters), stream.py (the token
stream on the KV runner), engine.py (:class:`StreamEngine`), threaded.py
(:class:`ThreadedEngine`), baselines.py, cache.py (eviction), runner.py (the forward),
weights.py (the LLM's weights in the runner's form, one copy per model), batching.py (many
streams on one model, their forwards joined).
"""

from live_ros.engine.batching import ForwardBatcher, stream_group
from live_ros.engine.baselines import InterleavedDialogue, PerFrameDialogue
from live_ros.engine.cache import CacheLayout, CachePolicy, EvictionPlan, Span
from live_ros.engine.config import RELEASE_THETA, EngineConfig, EngineInputError
from live_ros.engine.engine import StreamEngine
from live_ros.engine.events import EngineStats, Event, FrameInput, QueryInput, ResponseEvent, SilentEvent
from live_ros.engine.runner import KVRunner, forward_many
from live_ros.engine.stream import interval_probability
from live_ros.engine.threaded import ThreadedEngine
from live_ros.engine.weights import RunnerWeights, stream_only

__all__ = [
    "RELEASE_THETA",
    "EngineConfig",
    "EngineInputError",
    "EngineStats",
    "Event",
    "FrameInput",
    "QueryInput",
    "ResponseEvent",
    "SilentEvent",
    "StreamEngine",
    "ThreadedEngine",
    "interval_probability",
    "CacheLayout",
    "CachePolicy",
    "EvictionPlan",
    "Span",
    "KVRunner",
    "forward_many",
    "ForwardBatcher",
    "stream_group",
    "RunnerWeights",
    "stream_only",
    "PerFrameDialogue",
    "InterleavedDialogue",
]
