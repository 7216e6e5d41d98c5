"""One copy of the weights (live_ros/engine/weights.py), the KV store's growth and the
unbounded cache's switch to a budget before the model's positions run out
(live_ros/engine/runner.py, stream.py), on tiny random Llamas."""

from __future__ import annotations

import logging

import pytest
import torch
from model_helpers import tiny_model, tiny_tokenizer

from live_ros.engine import EngineConfig, KVRunner, RunnerWeights, StreamEngine, stream_only
from live_ros.engine.weights import RELEASED

N_TOK, VDIM = 2, 16


@pytest.fixture
def tiny():
    return tiny_model(tiny_tokenizer(), vision_dim=VDIM, frame_num_tokens=N_TOK)


def frames(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, N_TOK, VDIM, generator=torch.Generator().manual_seed(seed))


def test_every_runner_on_a_model_shares_one_copy(tiny):
    model, tokens = tiny
    a, b = KVRunner(model, 64), KVRunner(model, 64)
    assert a.weights is b.weights is RunnerWeights.of(model)
    e1, e2 = StreamEngine(model, tokens), StreamEngine(model, tokens)
    assert e1.runner.weights is e2.runner.weights is a.weights
    a.refresh_weights()  # read again: the new ones are shared from then on
    assert KVRunner(model, 64).weights is a.weights is not b.weights


def test_released_model_streams_the_same_and_refuses_its_own_forward(tiny):
    model, tokens = tiny
    cfg = EngineConfig(theta=0.5, partials=False, record_ids=True)
    before = StreamEngine(model, tokens, cfg)
    said = [[e.to_dict() for e in before.take_frame(f)] for f in frames(12)]
    projections = sum(p.numel() * p.element_size() for n, p in model.named_parameters() if "_proj" in n)
    head = model.lm_head.weight.numel() * model.lm_head.weight.element_size()  # untied in the tiny model
    assert stream_only(model) == projections + head
    assert all(p.numel() == 0 for n, p in model.named_parameters() if "_proj" in n or n.startswith("lm_head"))
    assert model.get_input_embeddings().weight.numel() > 0  # the table embeds text: kept
    after = StreamEngine(model, tokens, cfg)
    again = [[e.to_dict() for e in after.take_frame(f)] for f in frames(12)]
    strip = lambda evs: [{k: v for k, v in e.items() if k != "timings"} for e in evs]  # noqa: E731
    assert [strip(e) for e in again] == [strip(e) for e in said]
    assert after.fed_ids == before.fed_ids
    with pytest.raises(RuntimeError, match="handed to the streaming engine"):
        model(input_ids=torch.tensor([[1, 2]]))
    with pytest.raises(RuntimeError, match="cannot read the weights again"):
        after.runner.refresh_weights()
    assert stream_only(model) == 0  # once is enough
    assert "load the model again" in RELEASED


def test_a_tied_lm_head_stays_with_the_embedding_table():
    model, _ = tiny_model(tiny_tokenizer(), vision_dim=VDIM, frame_num_tokens=N_TOK, tie_word_embeddings=True)
    assert model.lm_head.weight is model.get_input_embeddings().weight
    stream_only(model)
    assert model.get_input_embeddings().weight.numel() > 0


def test_the_store_grows_by_fixed_steps_never_by_doubling(tiny):
    model, _ = tiny
    r = KVRunner(model, 100, step=64)
    r.forward(torch.randn(100, model.config.hidden_size))
    assert r.capacity == 100
    r.forward(torch.randn(1, model.config.hidden_size))
    assert r.capacity == 128  # 101 rounded up to the step, not 200
    r.forward(torch.randn(200, model.config.hidden_size))
    assert r.capacity == 320
    with pytest.raises(ValueError, match="growth step"):
        KVRunner(model, 8, step=0)


def test_a_bounded_stream_gets_its_whole_store_at_once_and_never_grows(tiny):
    model, tokens = tiny
    eng = StreamEngine(model, tokens, EngineConfig(cache_budget=256, theta=0.0, max_new_tokens=4))
    capacity = eng.runner.capacity
    assert capacity == 256 + eng._headroom()
    for f in frames(150):
        eng.take_frame(f)
    assert eng.stats.evictions > 0 and eng.runner.capacity == capacity


def test_an_unbounded_cache_switches_to_a_budget_before_the_positions_run_out(caplog):
    model, tokens = tiny_model(tiny_tokenizer(), vision_dim=VDIM, frame_num_tokens=N_TOK, max_position_embeddings=1024)
    eng = StreamEngine(model, tokens, EngineConfig(cache_budget=0, theta=0.0, partials=False))
    assert eng.cfg.cache_budget is None and eng.runner.capacity == 1024  # UNBOUNDED_START, then steps
    peak = 0
    with caplog.at_level(logging.WARNING, logger="live_ros.engine.stream"):
        for f in frames(500):
            eng.take_frame(f)
            peak = max(peak, eng.runner.length)
    budget = 1024 - eng._headroom()
    assert eng.stats.budget_switches == 1 and eng.cfg.cache_budget == budget
    assert "1024 positions" in eng.stats.last_warning and "Set cache_budget" in eng.stats.last_warning
    assert [r.getMessage() for r in caplog.records] == [eng.stats.last_warning]
    assert peak <= 1024 and eng.stats.evictions > 0
