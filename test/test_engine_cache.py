"""The bounded cache: the policy keeps the sink, recent frames and dialogue text in a well
formed sequence; after eviction the model computes what a fresh prefill of the kept tokens
computes (re-prefill exactly; re-compaction exactly for what RoPE positions change);
cut-back and eviction together; and a 5,000-frame stream stays within its budget."""

from __future__ import annotations

import pytest
import torch
from test_engine import N_TOK, SILENT, SPEAK, engine, finals, one_thread, rand_frames, steer, tiny  # noqa: F401

from live_ros.engine import CacheLayout, CachePolicy, EngineConfig, KVRunner, ResponseEvent, StreamEngine
from live_ros.engine.cache import FRAME, OPEN, SINK, TEXT


def check_layout(eng: StreamEngine) -> None:
    """Every span of the layout holds the tokens it claims, in a well-formed order."""
    tk = eng.tokens
    ids = eng.cache_ids()
    spans = eng.layout.spans
    assert spans[0].kind == SINK and ids[: spans[0].end] == eng._prefix_ids()
    assert spans[-1].end == len(ids) == eng.runner.length
    prev = None
    for s in spans:
        assert prev is None or s.start == prev.end
        piece = ids[s.start : s.end]
        if s.kind == FRAME:
            assert piece == [tk.interval_id] * s.lead + tk.frame_ids
            # a list's first kept frame has no interval before it, the others have one
            first = prev.kind != FRAME or prev.list_id != s.list_id
            assert s.lead == (0 if first else 1), (s, prev)
        elif s.kind == OPEN:
            assert piece == tk.open_ids(False)
        prev = s


def fresh_logits(model, eng: StreamEngine, frames_by_index: dict) -> torch.Tensor:
    """Logits at the last cached position from a fresh prefill of the kept tokens, built
    from their ids and the kept frames' tokens (not from anything the engine stored)."""
    kept = [frames_by_index[i] for i in eng.layout.frames()]
    with torch.no_grad():
        return model(
            input_ids=torch.tensor([eng.cache_ids()]), frame_tokens=torch.stack(kept) if kept else None
        ).logits[0, -1]


# -- the policy on its own ----------------------------------------------------------------------
def _layout(n_frames: int, text_every: int = 0) -> CacheLayout:
    lay = CacheLayout()
    lay.add(SINK, 20)
    list_id, unit, is_open = 0, 0, False
    for i in range(n_frames):
        if not is_open:
            list_id += 1
            lay.add(OPEN, 2, list_id=list_id)
            is_open = True
            lay.add(FRAME, N_TOK, frame=i, list_id=list_id, lead=0)
        else:
            lay.add(FRAME, N_TOK + 1, frame=i, list_id=list_id, lead=1)
        if text_every and i % text_every == text_every - 1:
            unit += 1
            lay.add(TEXT, 12, unit=unit, role="assistant")
            is_open = False
    return lay


def test_policy_keeps_sink_recent_frames_and_text_longer():
    lay = _layout(200, text_every=20)
    policy = CachePolicy(budget=400, text_share=0.5, chunk=40)
    assert policy.over(lay)
    plan = policy.plan(lay, incoming=4)
    assert plan is not None and lay.length - plan.tokens + 4 <= 400 - 40
    lay.apply(plan.keep)
    assert lay.spans[0].kind == SINK and lay.spans[0].size == 20
    kept = lay.frames()
    assert kept == list(range(kept[0], 200))  # a window of the newest frames
    units = sorted({s.unit for s in lay.spans if s.kind == TEXT})
    assert units and units[0] < kept[0] // 20 + 1  # text older than the oldest kept frame
    assert lay.count(TEXT) + lay.count(OPEN) <= 0.5 * 400
    # frame_window caps the frames even under the budget
    lay = _layout(50)
    plan = CachePolicy(budget=4000, frame_window=10).plan(lay)
    lay.apply(plan.keep)
    assert lay.frames() == list(range(40, 50))
    assert CachePolicy(budget=None).plan(_layout(500)) is None
    with pytest.raises(ValueError, match="too small"):
        CachePolicy(budget=10)


# -- eviction gives what a fresh prefill of the kept tokens gives ---------------------------------
def _stream(eng, frames, query_at=(), speak_at=()):
    evs = []
    for i, f in enumerate(frames):
        if i in query_at:
            evs += eng.ask(f"what happens at {i}?")
        eng.script = lambda j, p, i=i: j in speak_at
        evs += eng.take_frame(f)
    return evs


def test_reprefill_eviction_equals_fresh_prefill():
    model, tokens = tiny(seed=11)
    frames = rand_frames(120, seed=3)
    eng = engine(model, tokens, cache_budget=256, eviction="reprefill", max_new_tokens=6, min_new_tokens=6)
    _stream(eng, frames[:-1], query_at={30, 70}, speak_at={50, 90})
    assert eng.stats.evictions >= 3
    ev = eng.take_frame(frames[-1])
    check_layout(eng)
    assert eng.layout.spans[1].kind != FRAME or eng.layout.frames()[0] > 0  # old frames went
    ref = fresh_logits(model, eng, dict(enumerate(frames)))
    p_ref = float(ref.softmax(-1)[tokens.interval_id])
    assert ev[0].p_interval == pytest.approx(p_ref, abs=1e-5)
    with torch.inference_mode():  # and the whole distribution, from the engine's own cache
        logits = eng.runner.forward(eng.runner.embed([tokens.interval_id]), [tokens.interval_id], [-1])[0]
        eng.runner.truncate(eng.runner.length - 1)
    with torch.no_grad():
        kept = [frames[i] for i in eng.layout.frames()]
        full = model(
            input_ids=torch.tensor([eng.cache_ids() + [tokens.interval_id]]), frame_tokens=torch.stack(kept)
        ).logits[0, -1]
    torch.testing.assert_close(logits, full, atol=1e-4, rtol=1e-4)


def test_recompaction_rotates_keys_to_new_positions():
    # With one layer, the cached keys and values depend only on each token and its
    # position, so re-compaction is exact: the logits equal a fresh prefill's.
    model, tokens = tiny(seed=12, layers=1)
    frames = rand_frames(90, seed=4)
    eng = engine(model, tokens, cache_budget=256, eviction="recompact", max_new_tokens=5, min_new_tokens=5)
    _stream(eng, frames[:-1], query_at={20}, speak_at={40, 60})
    assert eng.stats.evictions >= 2
    ev = eng.take_frame(frames[-1])
    check_layout(eng)
    ref = fresh_logits(model, eng, dict(enumerate(frames)))
    assert ev[0].p_interval == pytest.approx(float(ref.softmax(-1)[tokens.interval_id]), abs=1e-5)
    # With more layers the deeper keys still carry what the evicted tokens contributed
    # (StreamingLLM/StreamingVLM's choice); the first layer's keys equal a fresh prefill's.
    model, tokens = tiny(seed=13, layers=2)
    eng = engine(model, tokens, cache_budget=256, eviction="recompact", theta=0.0)
    _stream(eng, frames)
    assert eng.stats.evictions >= 2
    n = eng.runner.length
    fresh = KVRunner(model, n + 8)
    with torch.inference_mode():
        fresh.forward(eng.runner.emb[:n].clone(), eng.cache_ids())
    torch.testing.assert_close(eng.runner.k[0, :, :n], fresh.k[0, :, :n], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(eng.runner.v[0, :, :n], fresh.v[0, :, :n], atol=1e-5, rtol=1e-5)


def test_cut_back_combined_with_eviction():
    model, tokens = tiny(seed=14)
    steer(model, tokens)
    pattern = [SILENT] * 70
    eng = engine(model, tokens, cache_budget=256, eviction="reprefill", max_batch=16)
    for f in pattern[:60]:
        eng.take_frame(f)
    before = eng.stats.evictions
    # A backlog whose forward needs an eviction first, with two speaking frames in it.
    backlog = [
        SILENT,
        SILENT,
        SILENT,
        SPEAK,
        SILENT,
        SILENT,
        SPEAK,
        SILENT,
        SILENT,
        SILENT,
        SILENT,
        SILENT,
        SILENT,
        SILENT,
    ]
    frames = {i: f for i, f in enumerate(pattern[:60])}
    batch = []
    for f in backlog:
        fi = eng.validate_frame(f)
        frames[fi.index] = f
        batch.append(fi)
    events = eng.take_frames(batch)
    assert eng.stats.evictions > before
    responses = finals(events)
    assert [e.frame_index for e in responses] == [63, 66]  # at the speaking frames
    check_layout(eng)
    # the response's text sits right after its frame in the kept sequence
    spans = eng.layout.spans
    for e in responses:
        i = next(k for k, s in enumerate(spans) if s.kind == FRAME and s.frame == e.frame_index)
        assert spans[i + 1].kind == TEXT and spans[i + 1].role == "assistant"
    ids = eng.cache_ids()
    s = spans[-1]
    assert s.kind == FRAME and s.frame == batch[-1].index
    ref = fresh_logits(model, eng, frames)
    assert events[-1].p_interval == pytest.approx(float(ref.softmax(-1)[tokens.interval_id]), abs=1e-5)
    assert ids[: len(eng._prefix_ids())] == eng._prefix_ids()


def test_5000_frames_stay_within_budget():
    model, tokens = tiny(seed=15)
    budget = 256
    cfg = EngineConfig(cache_budget=budget, max_new_tokens=8, min_new_tokens=8)
    eng = StreamEngine(model, tokens, cfg)
    eng.script = lambda i, p: i % 211 == 7
    capacity = eng.runner.capacity
    frames = rand_frames(64, seed=8)
    peak_silent, peak, queries = 0, 0, 0
    for i in range(5000):
        if i % 997 == 500:
            queries += 1
            for ev in eng.ask(f"anything new at frame {i}?"):
                peak = max(peak, eng.runner.length)
        events = eng.take_frame(frames[i % 64], i * 0.5)
        if not isinstance(events[-1], ResponseEvent):
            peak_silent = max(peak_silent, eng.runner.length)
        peak = max(peak, eng.runner.length)
    assert peak_silent <= budget  # at every frame boundary
    assert peak <= budget + cfg.max_new_tokens + 64  # a response may pass it briefly
    assert eng.runner.capacity == capacity  # the store was never re-allocated
    assert eng.stats.evictions > 50 and eng.stats.frames_taken == 5000
    assert eng.stats.queries_answered == queries
    check_layout(eng)
    assert eng.layout.frames()[-1] == 4999


def test_unbounded_cache_grows_like_the_release():
    model, tokens = tiny(seed=16)
    eng = StreamEngine(model, tokens, EngineConfig(cache_budget=None, theta=0.0))
    for f in rand_frames(300, seed=1):
        eng.take_frame(f)
    assert eng.stats.evictions == 0
    assert eng.runner.length == len(eng._prefix_ids()) + 2 + 300 * (N_TOK + 1) - 1
