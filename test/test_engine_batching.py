"""Many streams on one model (live_ros/engine/batching.py, runner.py's forward_many): a
joined forward computes what each chunk's own forward computes, streams never cross
(queries, responses, resets), and one stream's failure leaves the others served.

Tolerance: a product over more rows may take another oneDNN kernel, so batched and lone
results differ by float rounding (about 1e-6 here); 1e-4 is allowed on logits and
probabilities, and decisions are compared where the probability is farther than that from
theta."""

from __future__ import annotations

import threading

import pytest
import torch
from model_helpers import tiny_model, tiny_tokenizer

from live_ros.engine import (
    EngineConfig,
    ForwardBatcher,
    KVRunner,
    ResponseEvent,
    StreamEngine,
    ThreadedEngine,
    forward_many,
    stream_group,
)

N_TOK, VDIM, TOL = 2, 16, 1e-4


@pytest.fixture
def tiny():
    return tiny_model(tiny_tokenizer(), vision_dim=VDIM, frame_num_tokens=N_TOK)


def frames(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, N_TOK, VDIM, generator=torch.Generator().manual_seed(seed))


def test_a_joined_forward_is_each_chunk_s_own_forward(tiny):
    model, _ = tiny
    hidden = model.config.hidden_size
    gen = torch.Generator().manual_seed(1)
    prefixes = [torch.randn(n, hidden, generator=gen) for n in (5, 40, 17)]
    chunks = [torch.randn(n, hidden, generator=gen) for n in (3, 1, 6)]
    alone = [KVRunner(model, 64) for _ in prefixes]
    joined = [KVRunner(model, 64) for _ in prefixes]
    for a, j, pre in zip(alone, joined, prefixes):
        a.forward(pre)
        j.forward(pre)
    want = [r.forward(c, logits_at=[0, -1]) for r, c in zip(alone, chunks)]
    got = forward_many([(r, c, None, [0, -1]) for r, c in zip(joined, chunks)])
    for w, g, a, j in zip(want, got, alone, joined):
        assert torch.allclose(w, g, atol=TOL, rtol=0)
        assert a.length == j.length
        assert torch.allclose(a.k[:, :, : a.length], j.k[:, :, : j.length], atol=TOL, rtol=0)
    assert forward_many([(joined[0], chunks[0][:0], None, [-1])]) == [None]


def run_alone(model, tokens, cfg, fr):
    eng = StreamEngine(model, tokens, cfg)
    return [e for f in fr for e in eng.take_frame(f)]


def test_streams_batched_decide_and_say_what_they_say_alone(tiny):
    model, tokens = tiny
    cfg = EngineConfig(theta=0.5, partials=False, max_new_tokens=6)
    inputs = {name: frames(16, seed) for seed, name in enumerate(("front", "left", "right"))}
    engines, batcher = stream_group(model, tokens, list(inputs), cfg, window_s=0.2)
    threaded = {name: ThreadedEngine(eng) for name, eng in engines.items()}
    try:
        for i in range(16):
            for name, t in threaded.items():
                t.submit_frame(inputs[name][i])
            for t in threaded.values():
                assert t.wait_idle(60)
    finally:
        for t in threaded.values():
            t.stop()
    assert batcher.stats.largest >= 2, f"no forward carried two streams: {batcher.stats}"
    for name, t in threaded.items():
        got = [e for e in iter(lambda: t.get_event(0), None)]
        want = run_alone(model, tokens, cfg, inputs[name])
        decisions = lambda evs: [(e.frame_index, e.kind, e.p_interval) for e in evs]  # noqa: E731
        assert len(decisions(got)) == len(decisions(want)), name
        for (i, kind, p), (_, kind_w, p_w) in zip(decisions(got), decisions(want)):
            assert abs(p - p_w) < TOL, f"{name} frame {i}: {p} batched vs {p_w} alone"
            if abs(p_w - cfg.theta) > TOL:
                assert kind == kind_w, f"{name} frame {i}"
        said = lambda evs: [e.text for e in evs if isinstance(e, ResponseEvent)]  # noqa: E731
        assert said(got) == said(want), name


def test_queries_and_resets_stay_in_their_stream(tiny):
    model, tokens = tiny
    engines, batcher = stream_group(model, tokens, ["a", "b"], EngineConfig(theta=0.0, partials=False))
    a, b = engines["a"], engines["b"]
    for f in frames(6, 0):
        a.take_frame(f)
        b.take_frame(f)
    length_a = a.runner.length
    answer = [e for e in a.ask("What is there?") if isinstance(e, ResponseEvent) and e.final]
    assert answer and answer[0].response_kind == "answer" and b.active_query == 0
    assert b.layout.queries() == [] and a.layout.queries() == [answer[0].query_id]
    b.reset()
    assert a.runner.length > length_a and a.layout.queries() == [answer[0].query_id]
    assert b.runner.length == len(b._prefix_ids()) and b.last_frame is None
    assert a.runner.weights is b.runner.weights and a.runner.k.data_ptr() != b.runner.k.data_ptr()


def test_one_stream_s_failing_chunk_leaves_the_others_served(tiny):
    model, _ = tiny
    hidden = model.config.hidden_size
    batcher = ForwardBatcher(window_s=1.0)
    good, full = KVRunner(model, 64), KVRunner(model, 4, grow=False)
    for r in (good, full):
        batcher.attach(r)
    out: dict = {}

    def submit(name, runner, n):
        with batcher.job():
            try:
                out[name] = runner.forward(torch.randn(n, hidden), logits_at=[-1])
            except RuntimeError as err:
                out[name] = err

    with batcher.job():  # both workers counted before either submits: one batch of two
        threads = [
            threading.Thread(target=submit, args=("good", good, 3)),
            threading.Thread(target=submit, args=("full", full, 8)),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert isinstance(out["full"], RuntimeError) and "KV store full" in str(out["full"])
    assert out["good"].shape == (1, model.config.vocab_size) and good.length == 3 and full.length == 0
    assert batcher.stats.retried == 1
    with pytest.raises(ValueError, match="window_s"):
        ForwardBatcher(window_s=-1)
    with pytest.raises(ValueError, match="unique"):
        stream_group(model, None, ["x", "x"])
