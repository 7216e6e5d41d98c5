"""The threaded wrapper of the streaming engine: intake from any thread (a ROS node's
callbacks), one worker thread that owns the model, events on a queue and a callback."""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections import deque
from dataclasses import replace
from typing import Any, Callable

import torch

from live_ros.engine.config import EngineConfig, EngineInputError
from live_ros.engine.engine import StreamEngine
from live_ros.engine.events import EngineStats, Event, FrameInput, QueryInput


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

    def __init__(self, engine: StreamEngine, on_event: Callable[[Event], None] | None = None, *, start: bool = True):
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
        self._epoch = 0  # bumped by reset: older frames never reach the new stream
        self._last_job = ""  # "query" or "frames": the worker alternates when both wait
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
        self._threads = torch.get_num_threads()  # the worker uses the creator's setting
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
            self.engine.stats.last_error = (
                f"{len(self._frames)} waiting frame(s) dropped: {why} before the model took them"
            )
            self._frames.clear()

    def configure(self, **changes) -> None:
        """Change live settings (checked now, applied by the worker before its next step)."""
        replace(self.engine.cfg, **{k: v for k, v in changes.items() if k in EngineConfig.LIVE}).check()
        unknown = [k for k in changes if k not in EngineConfig.LIVE]
        if unknown:
            raise EngineInputError(
                f"cannot change {unknown} while streaming; live settings: {', '.join(EngineConfig.LIVE)}"
            )
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
                st.last_error = (
                    f"frame {old.index} (stamp {old.stamp:.3f} s) dropped: {len(self._frames) + 1} "
                    f"frames were waiting while the model was busy (max_backlog="
                    f"{self.engine.cfg.max_backlog}); {st.frames_dropped} dropped so far. Lower the "
                    f"camera fps, shorten responses (max_new_tokens) or raise max_backlog"
                )
            self._frames.append(frame)
            self._newest_stamp = frame.stamp
            self._cv.notify_all()
        return frame.index

    def submit_query(self, text, stamp: float | None = None) -> int:
        """Queue a query; returns its id. Raises EngineInputError for bad input."""
        with self._cv:
            limit = self.engine.cfg.max_pending_queries
            if len(self._queries) >= limit:
                self.engine._reject(
                    EngineInputError(
                        f"{len(self._queries)} queries are already waiting for the model (max_pending_queries={limit}): "
                        f"this one was not accepted, so the video keeps its share of the model; ask again once "
                        f"an answer has come (or raise max_pending_queries)"
                    ),
                    "queries_rejected",
                )
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
    def _next_job(self) -> tuple[str, Any] | None:
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
                if not self._running or job is None:  # job is set whenever the worker still runs
                    return
                self._busy = True
                epoch = self._epoch
            kind, item = job
            if kind in ("query", "frames"):
                self._last_job = kind
            batcher = getattr(eng.runner, "batcher", None)  # streams sharing forwards (batching.py)
            with batcher.job() if batcher is not None else contextlib.nullcontext():
                self._do(kind, item, epoch)

    def _do(self, kind: str, item, epoch: int) -> None:
        """One job of the worker; a failure is exposed in the stats and the stream goes on."""
        eng = self.engine
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
                eng.refuse(
                    item,
                    f"no video since the stream (re)started: no frame came within "
                    f"no_video_timeout={eng.cfg.no_video_timeout:g} s of this query, so it cannot be "
                    f"answered about the scene; check the camera and frame_encoder (live-ros "
                    f"status), then ask again",
                )
            else:
                n, _ = eng.take_batch(item)
                if n < len(item):
                    with self._cv:
                        if self._epoch == epoch:
                            self._frames.extendleft(reversed(item[n:]))
                        else:
                            eng.stats.frames_dropped += len(item) - n
                            eng.stats.last_error = (
                                f"{len(item) - n} frame(s) dropped: the stream was reset while the model took them"
                            )
        except Exception as err:  # keep the stream alive; the error is exposed
            eng.stats.last_error = f"{kind} failed: {err!r}"
            if kind == "query":
                eng.refuse(item, f"the engine failed while answering ({err})")
