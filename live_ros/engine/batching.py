"""Many streams, one model: the forwards of several streams that come at the same time run
as one (:func:`~live_ros.engine.runner.forward_many`), so the weights are read once for
all of them.

Each stream stays what it is alone: a :class:`~live_ros.engine.engine.StreamEngine` with
its own KV cache, layout, queries and settings, wrapped by its own
:class:`~live_ros.engine.threaded.ThreadedEngine` (intake, backlog, worker thread). Only
the forward is shared: a :class:`ForwardBatcher` attached to every stream's runner
collects the chunks that the streams' workers submit together (the frames of cameras due
at the same tick, or tokens of answers decoded at the same time) and the first of them
runs them all in one forward, giving each its own logits. Rotary positions, keys, values
and attention stay each stream's own, so batching changes no stream's tokens or
decisions beyond float rounding (test/test_engine_batching.py).

A forward waits until every stream that is working on a job has submitted one, or
``window_s`` has passed, whichever comes first; a stream alone never waits.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import torch

from live_ros.engine.config import EngineConfig
from live_ros.engine.engine import StreamEngine
from live_ros.engine.runner import KVRunner, forward_many


@dataclass(eq=False)
class _Chunk:
    runner: KVRunner
    embeds: torch.Tensor
    ids: object
    logits_at: list[int] | None
    result: torch.Tensor | None = None
    error: BaseException | None = None
    done: bool = False


@dataclass
class BatchStats:
    forwards: int = 0  # forwards run
    chunks: int = 0  # chunks they carried (chunks / forwards: the mean batch)
    largest: int = 0
    retried: int = 0  # batches that failed and were run chunk by chunk
    sizes: dict = field(default_factory=dict)  # batch size -> forwards of that size


class ForwardBatcher:
    """Joins the forwards of the runners attached to it (see the module's docstring)."""

    def __init__(self, window_s: float = 0.005):
        if not window_s >= 0:
            raise ValueError(f"window_s {window_s!r} must be >= 0 seconds")
        self.window_s = float(window_s)
        self.stats = BatchStats()
        self._cv = threading.Condition()
        self._waiting: list[_Chunk] = []
        self._inside = 0  # streams working on a job (job())
        self._running = False

    def attach(self, runner) -> None:
        """Route ``runner.forward`` through this batcher."""
        runner.batcher = self

    @contextmanager
    def job(self):
        """A stream's worker is working on a job (it will submit forwards): batches wait
        for it up to ``window_s``."""
        with self._cv:
            self._inside += 1
        try:
            yield
        finally:
            with self._cv:
                self._inside -= 1
                self._cv.notify_all()

    def forward(self, runner, embeds: torch.Tensor, ids=None, logits_at: list[int] | None = None):
        """What ``runner.forward(embeds, ids, logits_at)`` returns, computed together with
        the chunks other streams submit meanwhile."""
        chunk = _Chunk(runner, embeds, ids, logits_at)
        deadline = time.monotonic() + self.window_s
        with self._cv:
            self._waiting.append(chunk)
            self._cv.notify_all()
            batch = None
            while not chunk.done:
                if not self._running:
                    now = time.monotonic()
                    if len(self._waiting) >= max(self._inside, 1) or now >= deadline:
                        batch, self._waiting, self._running = self._waiting, [], True
                        break
                    self._cv.wait(deadline - now)
                else:
                    self._cv.wait()
        if batch is not None:
            self._run(batch)
        if chunk.error is not None:
            raise chunk.error
        return chunk.result

    def _run(self, batch: list[_Chunk]) -> None:
        lengths = [c.runner.length for c in batch]
        try:
            results = forward_many([(c.runner, c.embeds, c.ids, c.logits_at) for c in batch])
            for c, res in zip(batch, results):
                c.result = res
        except Exception:
            # one stream's chunk must not fail the others: back to where each was, then alone
            for c, length in zip(batch, lengths):
                c.runner.length = length
            self.stats.retried += len(batch) > 1
            for c in batch:
                try:
                    c.result = forward_many([(c.runner, c.embeds, c.ids, c.logits_at)])[0]
                except Exception as err:
                    c.error = err
        with self._cv:
            st = self.stats
            st.forwards += 1
            st.chunks += len(batch)
            st.largest = max(st.largest, len(batch))
            st.sizes[len(batch)] = st.sizes.get(len(batch), 0) + 1
            for c in batch:
                c.done = True
            self._running = False
            self._cv.notify_all()


def stream_group(
    model, tokens, names: list[str], config: EngineConfig | None = None, *, window_s: float = 0.005
) -> tuple[dict[str, StreamEngine], ForwardBatcher]:
    """One :class:`StreamEngine` per name on one model (one copy of its weights), their
    forwards joined by one :class:`ForwardBatcher`."""
    if not names or len(set(names)) != len(names):
        raise ValueError(f"stream names must be given and unique, got {names}")
    batcher = ForwardBatcher(window_s)
    engines = {}
    for name in names:
        engine = StreamEngine(model, tokens, replace(config or EngineConfig()))
        batcher.attach(engine.runner)
        engines[name] = engine
    return engines, batcher
