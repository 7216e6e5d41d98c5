"""Responders and their template library (paper section 3.2, step 3): the question
library's size and modes, and a local LM writing a response while the template logic still
decides when to speak."""

from __future__ import annotations

import pytest

from live_ros.data.annotations import Event, VideoAnnotation
from live_ros.data.dialogue_responders import Context, LLMResponder, templates


def test_template_library():
    lib = templates()
    for cat in ("past", "present", "future"):
        assert len(lib[cat]) == 50, cat
        assert len({e["q"] for e in lib[cat]}) == 50
    modes = {e["mode"] for e in lib["future"]}
    assert {"remind-appears", "remind-leaves", "remind-start", "remind-end", "watch", "next"} <= modes
    assert any(e["q"].startswith("Tell me when the {object}") for e in lib["future"])


@pytest.fixture
def one_thread():
    """One torch thread: on a shared 2-core machine two threads are several times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_llm_responder_smollm2(one_thread):
    from live_ros.assets import smollm2_dir, smollm2_ready

    if not smollm2_ready():
        pytest.skip("SmolLM2 is not converted (run scripts/setup.sh)")
    responder = LLMResponder(smollm2_dir(), max_new_tokens=8)
    ann = VideoAnnotation("tiny", 6.0, events=[Event(2.0, "appears", "cat", "The cat appears.")], domain="scene")
    q = {"text": "What do you see now?", "mode": "current", "category": "present"}
    past = [(ann.events[0], "start")]
    text = responder.respond(Context(ann, q, 3.0, "ask", past, [], None))
    assert isinstance(text, str) and len(text) >= 2
    # when to speak stays the template's decision: no update for a count question on a move
    assert (
        responder.respond(
            Context(
                ann,
                {**q, "mode": "count"},
                3.0,
                "update",
                past,
                [(Event(3.0, "turns", "cat", "The cat turns around."), "start")],
                None,
            )
        )
        is None
    )
