"""The threaded engine (live_ros/engine/threaded.py): intake from any thread, a bounded
backlog, queries and frames sharing the model, every query ending in an answer or a
refusal; on the tiny models of test_engine.py."""

from __future__ import annotations

import threading
import time

import pytest
from test_engine import SILENT, finals, one_thread, rand_frames, steer, tiny  # noqa: F401  (one_thread: autouse fixture)

from live_ros.engine import EngineConfig, EngineInputError, SilentEvent, StreamEngine, ThreadedEngine


def test_producer_thread_submits_while_worker_decodes():
    model, tokens = tiny(seed=5)
    core = StreamEngine(model, tokens, EngineConfig(max_new_tokens=40, min_new_tokens=40, max_backlog=500, max_batch=8))
    core.script = lambda i, p: i % 25 == 3  # a long response now and then
    got, lock = [], threading.Lock()

    def listen(ev):
        with lock:
            got.append(ev)

    n_frames = 120
    frames = rand_frames(n_frames, seed=6)
    with ThreadedEngine(core, listen) as eng:

        def produce():
            for i, f in enumerate(frames):
                eng.submit_frame(f, i * 0.5)
                if i == 60:
                    eng.submit_query("what now?")
                time.sleep(0.001)

        producer = threading.Thread(target=produce)
        producer.start()
        producer.join()
        assert eng.wait_idle(60)
        st = eng.stats()
    silent = [e for e in got if isinstance(e, SilentEvent)]
    responses = finals(got)
    assert st.frames_in == n_frames and st.frames_dropped == 0 and st.frames_taken == n_frames
    assert sorted(e.frame_index for e in silent) + [e.frame_index for e in responses if e.proactive] != []
    taken = sorted([e.frame_index for e in silent] + [e.frame_index for e in responses if e.proactive])
    assert taken == list(range(n_frames))  # no frame skipped, none twice
    assert max(e.batch for e in silent) > 1  # a backlog was taken in batches
    assert [e.query_id for e in responses if e.response_kind == "answer" and not e.proactive] == [1]
    assert st.queries_answered == 1 and st.backlog == 0 and st.lag_s == 0.0
    order = [e.frame_index for e in got if isinstance(e, SilentEvent) or (e.final and e.proactive)]
    assert order == sorted(order)


def test_full_backlog_drops_oldest_and_counts():
    model, tokens = tiny(seed=5)
    core = StreamEngine(model, tokens, EngineConfig(theta=0.0, max_backlog=4))
    gate, entered = threading.Event(), threading.Event()

    def hold(ev):
        entered.set()
        gate.wait(30)

    eng = ThreadedEngine(core, hold, start=True)
    try:
        frames = rand_frames(12, seed=7)
        eng.submit_frame(frames[0], 0.0)  # the worker takes it and blocks in the callback
        assert entered.wait(30)
        for i, f in enumerate(frames[1:], 1):
            eng.submit_frame(f, i * 0.5)
        st = eng.stats()
        assert st.frames_dropped == 7 and st.backlog == 4
        assert st.lag_s == pytest.approx(5.5)
        gate.set()
        assert eng.wait_idle(30)
        st = eng.stats()
        assert st.frames_taken == 5 and st.lag_s == 0.0
    finally:
        gate.set()
        eng.stop()


def held_on_first_frame(core):
    """A ThreadedEngine whose worker stops inside frame 0's event until ``gate`` is set
    (``entered`` tells it got there), so inputs pile up as they do while the model is busy;
    every event goes to ``got``."""
    gate, entered = threading.Event(), threading.Event()
    got = []

    def listen(ev):
        got.append(ev)
        if isinstance(ev, SilentEvent) and ev.frame_index == 0 and not entered.is_set():
            entered.set()
            gate.wait(30)

    return ThreadedEngine(core, listen), gate, entered, got


def test_every_query_ends_in_answer_or_refusal_across_reset():
    model, tokens = tiny()
    steer(model, tokens)
    core = StreamEngine(model, tokens, EngineConfig())
    eng, gate, entered, got = held_on_first_frame(core)
    try:
        eng.submit_frame(SILENT, 0.0)
        assert entered.wait(30)
        q1, q2 = eng.submit_query("first?"), eng.submit_query("second?")
        eng.reset()  # q1, q2 still waiting: refused
        eng.submit_frame(SILENT, 0.0)  # a new stream: stamps restart
        q3 = eng.submit_query("third?")
        gate.set()
        assert eng.wait_idle(30)
        q4 = eng.submit_query("fourth?")
        eng.stop()  # q4 answered or refused, never lost
    finally:
        gate.set()
        eng.stop()
    ends = {e.query_id: e.response_kind for e in finals(got) if e.query_id and not e.proactive}
    assert ends[q1] == ends[q2] == "refusal" and ends[q3] == "answer" and ends[q4] in ("answer", "refusal")
    st = core.stats
    assert st.queries_accepted == 4 and st.queries_answered + st.queries_refused == 4
    refusal = next(e for e in finals(got) if e.query_id == q1)
    assert "reset" in refusal.text


def test_threaded_rejects_bad_input_in_caller():
    model, tokens = tiny()
    with ThreadedEngine(StreamEngine(model, tokens, EngineConfig(theta=0.0))) as eng:
        eng.submit_frame(rand_frames(1)[0], 1.0)
        with pytest.raises(EngineInputError, match="goes backwards"):
            eng.submit_frame(rand_frames(1)[0], 0.0)
        with pytest.raises(EngineInputError, match="empty"):
            eng.submit_query("")
        eng.submit_frame(rand_frames(1)[0], 1.5)
        assert eng.wait_idle(30)
        st = eng.stats()
    assert st.frames_taken == 2 and "empty" in st.last_error


def test_query_flood_is_bounded_and_frames_keep_their_share():
    """Under a flood of queries the worker alternates one answer and one batch of waiting
    frames: each answer is about a newer frame than the one before, queries past
    max_pending_queries are refused at intake, and every dropped frame has a reason."""
    model, tokens = tiny()
    steer(model, tokens)
    core = StreamEngine(model, tokens, EngineConfig(max_pending_queries=4, max_batch=2, max_backlog=6))
    eng, gate, entered, got = held_on_first_frame(core)
    try:
        eng.submit_frame(SILENT, 0.0)
        assert entered.wait(30)
        for i in range(1, 11):  # 10 frames while the worker is held: 6 wait, 4 dropped
            eng.submit_frame(SILENT, 0.5 * i)
        st = eng.stats()
        assert st.frames_dropped == 4 and st.backlog == 6
        assert "dropped" in st.last_error and "max_backlog=6" in st.last_error
        ids = [eng.submit_query(f"question {k}?") for k in range(4)]
        with pytest.raises(EngineInputError, match="max_pending_queries=4"):
            eng.submit_query("one too many?")
        gate.set()
        assert eng.wait_idle(60)
        st = eng.stats()
    finally:
        gate.set()
        eng.stop()
    answers = [e for e in finals(got) if e.response_kind == "answer" and not e.proactive]
    assert [a.query_id for a in answers] == ids
    seen = [a.frame_index for a in answers]
    assert seen == sorted(set(seen)) and seen[-1] == 10, seen  # frames were taken between the answers
    assert st.frames_taken == 7 and st.lag_s == 0.0 and st.queries_rejected == 1 and st.queries_accepted == 4


def test_query_before_any_frame_waits_for_video_or_is_refused():
    model, tokens = tiny()
    steer(model, tokens)
    # asked, then a frame: the worker (started after both) takes the frame first
    eng = ThreadedEngine(StreamEngine(model, tokens, EngineConfig()), start=False)
    q = eng.submit_query("what do you see?")
    eng.submit_frame(SILENT, 0.0)
    eng.start()
    try:
        assert eng.wait_idle(30)
    finally:
        eng.stop()
    (answer,) = [e for e in finals(list(eng.events.queue)) if e.query_id == q]
    assert answer.response_kind == "answer" and answer.frame_index == 0
    # no frame at all: refused once no_video_timeout has passed, and at a reset
    got = []
    with ThreadedEngine(StreamEngine(model, tokens, EngineConfig(no_video_timeout=0.2)), got.append) as eng:
        q = eng.submit_query("anyone there?")
        assert eng.wait_idle(30)
        eng.configure(no_video_timeout=600.0)
        assert eng.wait_idle(30)
        q2 = eng.submit_query("and now?")
        eng.reset()
    ends = {e.query_id: e for e in finals(got)}
    assert ends[q].response_kind == "refusal" and "no video since the stream (re)started" in ends[q].text
    assert ends[q2].response_kind == "refusal" and "no video" in ends[q2].text and "reset" in ends[q2].text
