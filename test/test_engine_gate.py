"""The frame gate (EngineConfig.frame_gate, live_ros/engine/engine.py): frames whose tokens
barely changed since the last frame taken in are not fed, each still gets its silent event
(marked "gate"), at most frame_gate_max_skip in a row; off by default."""

from __future__ import annotations

import math

import pytest
import torch
from model_helpers import tiny_model, tiny_tokenizer

from live_ros.engine import EngineConfig, EngineInputError, SilentEvent, StreamEngine

N_TOK, VDIM = 2, 16


@pytest.fixture
def tiny():
    return tiny_model(tiny_tokenizer(), vision_dim=VDIM, frame_num_tokens=N_TOK)


def scene(seed: int) -> torch.Tensor:
    return torch.randn(N_TOK, VDIM, generator=torch.Generator().manual_seed(seed))


def test_still_frames_are_skipped_and_changes_are_fed(tiny):
    model, tokens = tiny
    eng = StreamEngine(model, tokens, EngineConfig(theta=0.0, frame_gate=0.05, frame_gate_max_skip=3))
    a, b = scene(1), scene(2)
    inputs = [a, a + 1e-4, a, a, a, a, b, b]  # still, still, ..., a change, still
    events = [e for f in inputs for e in eng.take_frame(f)]
    assert [e.frame_index for e in events] == list(range(8))  # every frame has its event, in order
    gated = [e.frame_index for e in events if e.suppressed == "gate"]
    assert gated == [1, 2, 3, 5, 7]  # frame 4 is fed: 3 skipped in a row is the most
    assert all(math.isnan(e.p_interval) and e.batch == 0 for e in events if e.suppressed == "gate")
    assert eng.stats.frames_gated == 5 and eng.stats.frames_taken == 3
    assert eng.last_frame.index == 6


def test_a_batch_is_cut_before_its_first_still_frame(tiny):
    model, tokens = tiny
    eng = StreamEngine(model, tokens, EngineConfig(theta=0.0, frame_gate=0.05))
    a, b, c = scene(1), scene(2), scene(3)
    frames = [eng.validate_frame(t) for t in (a, b, b, c)]
    n, events = eng.take_batch(frames)
    assert n == 2 and [e.frame_index for e in events] == [0, 1] and all(e.batch == 2 for e in events)
    n, events = eng.take_batch(frames[2:])
    assert n == 1 and events[0].suppressed == "gate"
    n, events = eng.take_batch(frames[3:])
    assert n == 1 and isinstance(events[0], SilentEvent) and events[0].suppressed == ""


def test_the_gate_is_off_by_default_and_checked(tiny):
    model, tokens = tiny
    eng = StreamEngine(model, tokens, EngineConfig(theta=0.0))
    a = scene(1)
    assert not any(e.suppressed for f in (a, a, a) for e in eng.take_frame(f))
    eng.configure(frame_gate=0.5)
    assert eng.take_frame(a)[0].suppressed == "gate"
    with pytest.raises(EngineInputError, match="frame_gate"):
        eng.configure(frame_gate=-1.0)
    with pytest.raises(EngineInputError, match="frame_gate_max_skip"):
        EngineConfig(frame_gate_max_skip=0).check()
