"""The engine against the paper's public loop (test/release_loop.py), on the committed
embedded checkpoint and 200 real frames of media/demo.mp4: the same tokens fed, the same
decision at every frame, the same words.

Tolerances: the engine's forward (fused, oneDNN-packed products, its own KV store) and
transformers' forward sum in different orders, so fp32 probabilities differ by about
1e-6; 1e-4 is allowed. A decision could only differ at a frame whose probability lies
within that of theta; the test says so if one does rather than failing on the CPU's
rounding.
"""

from __future__ import annotations

import pytest
import torch
from conftest import ROOT
from release_loop import ReleaseLoop

from live_ros.engine import EngineConfig, ResponseEvent, StreamEngine
from live_ros.model.format import DEFAULT_INSTRUCTION

FRAMES = 200
FPS = 2.25  # media/demo.mp4 lasts 90 s: 2.25 fps gives 200 frames of it
TOL = 1e-4


@pytest.fixture(scope="module")
def system():
    from live_ros.data.features import extract_video
    from live_ros.model.checkpoint import load_checkpoint

    torch.manual_seed(0)
    loaded = load_checkpoint("embedded")
    tokens, _ = extract_video(ROOT / "media" / "demo.mp4", loaded.encoder, fps=FPS)
    assert tokens.shape[0] >= FRAMES
    return loaded, tokens[:FRAMES].float()


def run_both(system, questions: dict[int, str]):
    """Engine and reference side by side. A question due at frame i is asked after frame i
    in both, once the reference sees the frame stay silent (there both orders agree: the
    release skips that decision, the engine reads it and keeps silent)."""
    loaded, frames = system
    cfg = EngineConfig(cache_budget=None, instruction=DEFAULT_INSTRUCTION, record_ids=True, partials=False)
    engine = StreamEngine(loaded.model, loaded.tokens, cfg)
    ref = ReleaseLoop(
        loaded.model, loaded.tokens.tokenizer, loaded.config.format, theta=cfg.theta, instruction=cfg.instruction
    )
    rows, due = [], dict(questions)
    for i, f in enumerate(frames):
        events = engine.take_frame(f, i / FPS)
        logits = ref.feed_frame(f)
        p_ref = float(logits.softmax(-1)[ref.interval_id])
        asked = None
        if due and min(due) <= i and p_ref >= cfg.theta + TOL:
            asked = due.pop(min(due))
            ref.last_ids = [ref.interval_id]  # not fed: the question closes the list
            said_ref = None
        else:
            p_ref, said_ref = ref.decide(logits)
        said = next((e.text for e in events if isinstance(e, ResponseEvent) and e.final), None)
        p = next((e.p_interval for e in events if e.p_interval is not None), None)
        rows.append((i, p, p_ref, said, said_ref))
        if asked is not None:
            answer = next(e.text for e in engine.ask(asked) if isinstance(e, ResponseEvent) and e.final)
            rows.append((i, None, None, answer, ref.ask(asked)))
    assert not due, f"questions never asked (no silent frame after them): {due}"
    return engine, ref, rows


def check(engine, ref, rows, theta):
    close = [r for r in rows if r[1] is not None and abs(r[1] - theta) < TOL]
    assert not close, f"frames whose probability is within {TOL} of theta (rounding decides them): {close}"
    for i, p, p_ref, said, said_ref in rows:
        if p is not None:
            assert abs(p - p_ref) < TOL, f"frame {i}: P(interval) {p:.6f} (engine) vs {p_ref:.6f} (release loop)"
        assert said == said_ref, f"frame {i}: the engine said {said!r}, the release loop {said_ref!r}"
    assert engine.fed_ids == ref.ids, "the engine and the release loop fed different tokens"


def test_200_frames_decide_and_narrate_as_the_release_loop(system):
    engine, ref, rows = run_both(system, {})
    check(engine, ref, rows, engine.cfg.theta)
    spoke = [r for r in rows if r[3] is not None]
    assert spoke and len(spoke) < FRAMES, "the demo should make the model speak at some frames, not all"


def test_questions_are_answered_as_the_release_loop_answers_them(system):
    engine, ref, rows = run_both(system, {60: "What do you see now?", 150: "What just happened?"})
    check(engine, ref, rows, engine.cfg.theta)
    answers = [r for r in rows if r[1] is None]
    assert len(answers) == 2 and all(a[3] for a in answers)


def test_a_question_at_a_speaking_frame_comes_after_that_frame_s_response(system):
    """The engine's documented order (StreamEngine.answer): a frame's decision is always
    read, so a question asked at a frame that speaks is answered after that response (the
    release answers first and skips the frame's decision)."""
    loaded, frames = system
    engine = StreamEngine(loaded.model, loaded.tokens, EngineConfig(theta=1.0, partials=False, record_ids=True))
    first = engine.take_frame(frames[0], 0.0)
    assert [e.response_kind for e in first if isinstance(e, ResponseEvent)] == ["narration"]
    answer = [e for e in engine.ask("What do you see?") if isinstance(e, ResponseEvent) and e.final]
    assert answer[0].response_kind == "answer" and answer[0].frame_index == 0
    fed = engine.fed_ids
    user = loaded.tokens.text_ids(" What do you see?")
    starts = [k for k in range(len(fed)) if fed[k : k + len(user)] == user]
    assistant = loaded.tokens.assistant_prefix_ids(after_close=True)
    first_response = next(k for k in range(len(fed)) if fed[k : k + len(assistant)] == assistant)
    assert starts and first_response < starts[0], "the frame's response must precede the question"
