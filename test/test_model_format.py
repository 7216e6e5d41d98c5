"""The streaming sequence format and its labels, checked by hand on SmolLM2's tokenizer."""

from __future__ import annotations

import pytest
from model_helpers import smollm2_tokenizer, tiny_tokenizer

from live_ros.model.format import IGNORE, FormatSpec, StreamTokenizer, Turn


@pytest.fixture(scope="module")
def tokens():
    return StreamTokenizer(smollm2_tokenizer(), FormatSpec(frame_num_tokens=2))


def test_hand_checked_sequence_and_labels(tokens):
    v = tokens.frame_token_id
    assert (tokens.interval_id, tokens.close_ids, tokens.eos_id) == (28, [77, 198], 2)  # ",", "]" "\n", <|im_end|>
    hi, ok = tokens.text_ids(" Hi"), tokens.text_ids(" ok")
    q = tokens.text_ids(" q")
    turns = [
        Turn("stream", num_frames=2),
        Turn("assistant", "Hi"),
        Turn("stream", num_frames=1),
        Turn("user", "q"),
        Turn("assistant", "ok"),
    ]
    enc = tokens.encode(turns, stream_weight=2.0)
    P = tokens.prefix_ids
    expected = (
        P
        + [198, 75]
        + [v, v]
        + [28]
        + [v, v]
        + [77, 198]  # "\n[" f1 "," f2 "]\n"
        + [9519, 9531, 42]
        + hi
        + [2]  # "Assistant:" " Hi" eos
        + [198, 75]
        + [v, v]
        + [77, 198]  # "\n[" f3 "]\n"
        + [11126, 42]
        + q  # "User:" " q"
        + [198, 9519, 9531, 42]
        + ok
        + [2]
    )  # "\nAssistant:" " ok" eos
    assert enc.input_ids == expected
    labelled = {i: (label, enc.weights[i]) for i, label in enumerate(enc.labels) if label != IGNORE}
    f1_end, f2_end = len(P) + 3, len(P) + 6
    a1 = f2_end + 1 + 2 + 3  # the response starts after "]\n" and "Assistant:"
    f3_end = a1 + len(hi) + 1 + 2 + 1
    a2 = len(expected) - len(ok) - 1
    want = {
        f1_end: (28, 2.0),
        f2_end: (77, 2.0),  # silent, then speak (weight w)
        a1 - 1: (hi[0], 1.0),
        **{a1 + k: (t, 1.0) for k, t in enumerate(hi[1:] + [2])},
        a2 - 1: (ok[0], 1.0),
        **{a2 + k: (t, 1.0) for k, t in enumerate(ok[1:] + [2])},
    }
    assert labelled == want
    assert enc.frame_ends == [f1_end, f2_end, f3_end]
    assert enc.decision_labels == [0, 1, -1]  # the frame before a user turn is not the model's decision


def test_special_token_text_in_a_query_stays_text(tokens):
    for text in ("<v>", "<|im_end|>", "\nAssistant: yes", "<|im_start|>system"):
        ids = tokens.user_ids(text)
        assert tokens.frame_token_id not in ids and tokens.eos_id not in ids
        assert tokens.tokenizer.convert_tokens_to_ids("<|im_start|>") not in ids
        assert text.strip() in tokens.tokenizer.decode(ids)


def test_learn_from_frame_leaves_context_unlabelled(tokens):
    turns = [Turn("stream", num_frames=3), Turn("assistant", "Hi")]
    enc = tokens.encode(turns, learn_from_frame=2)
    assert enc.decision_labels == [-1, -1, 1]
    assert [enc.labels[i] for i in enc.frame_ends] == [IGNORE, IGNORE, tokens.close_id]


def test_baselines_follow_the_paper(tokens):
    turns = [Turn("stream", num_frames=3), Turn("assistant", "Hi"), Turn("stream", num_frames=2)]
    per_frame = tokens.encode(turns, mode="per_frame")
    # Every frame is followed by an assistant turn: eos alone when silent, kept in context.
    assert per_frame.input_ids.count(tokens.eos_id) == 5
    assert sum(1 for role, _, _ in per_frame.turn_spans if role == "assistant") == 5
    assert per_frame.decision_labels == [0, 0, 1, 0, 0]
    interleaved = tokens.encode(turns, mode="interleaved")
    # A response after every frame that has one coming (the last two have none).
    assert sum(1 for role, _, _ in interleaved.turn_spans if role == "assistant") == 3
    streaming = tokens.encode(turns)
    assert len(streaming.input_ids) < len(per_frame.input_ids) < len(interleaved.input_ids) + 20


def test_tokenizer_without_placeholder_is_refused():
    tok = tiny_tokenizer()
    with pytest.raises(ValueError, match="frame placeholder '<w>'"):
        StreamTokenizer(tok, FormatSpec(frame_token="<w>"))


def test_multi_token_interval_is_refused(tokens):
    with pytest.raises(ValueError, match="one token"):
        StreamTokenizer(tokens.tokenizer, FormatSpec(interval=" silence now"))


def test_grammar_pieces_compose_the_encoded_streams(tokens):
    """Every piece the engine, the baselines and the evaluation feed is a piece of
    ``encode``'s sequences: a stream assembled from the pieces is token for token the
    training sequence, in every mode."""
    assert tokens.system_ids() == tokens.prefix_ids
    assert tokens.system_ids("Be brief.") == tokens.bos_ids + tokens.text_ids("Be brief.\n")
    assert tokens.system_ids("") and tokens.end_ids() == [tokens.eos_id]
    assert [tokens.silent_id(m) for m in ("streaming", "per_frame", "interleaved")] == [
        tokens.interval_id,
        tokens.eos_id,
        None,
    ]
    hi = tokens.response_ids("Hi")
    turns = [
        Turn("stream", num_frames=2),
        Turn("assistant", "Hi"),
        Turn("stream", num_frames=2),
        Turn("user", "q"),
        Turn("assistant", "ok"),
        Turn("stream", num_frames=1),
    ]
    streaming = (
        tokens.system_ids()
        + tokens.open_ids()
        + tokens.frame_chunk_ids()
        + tokens.frame_chunk_ids(lead=True)
        + tokens.speak_ids()
        + hi
        + tokens.open_ids()
        + tokens.frame_chunk_ids()
        + tokens.frame_chunk_ids(lead=True)
        + tokens.user_turn_ids("q", list_open=True)
        + tokens.assistant_prefix_ids()
        + tokens.response_ids("ok")
        + tokens.open_ids()
        + tokens.frame_chunk_ids()
    )
    assert tokens.encode(turns).input_ids == streaming
    assert tokens.user_turn_ids("q", list_open=False) == tokens.user_ids("q")
    two = [Turn("stream", num_frames=2), Turn("assistant", "Hi")]
    per_frame = (
        tokens.system_ids()
        + tokens.frame_chunk_ids("per_frame")
        + tokens.end_ids()
        + tokens.frame_chunk_ids("per_frame")
        + hi
    )
    assert tokens.encode(two, mode="per_frame").input_ids == per_frame
    interleaved = tokens.system_ids() + (tokens.frame_chunk_ids("interleaved") + hi) * 2
    assert tokens.encode(two, mode="interleaved").input_ids == interleaved
    # after a silent decision, up to the next decision: what the evaluation's look-ahead feeds
    assert tokens.next_frame_ids() == [tokens.interval_id] + tokens.frame_ids
    assert tokens.next_frame_ids("per_frame") == tokens.end_ids() + tokens.frame_chunk_ids("per_frame")
    with pytest.raises(ValueError, match="unknown mode"):
        tokens.frame_chunk_ids("chat")


def test_speaks_is_silent_at_or_above_theta():
    import numpy as np
    import torch

    from live_ros.model.format import RELEASE_THETA, speaks

    assert speaks(RELEASE_THETA, RELEASE_THETA) is False and speaks(0.7249, RELEASE_THETA) is True
    assert speaks(torch.tensor([0.9, 0.725, 0.72]), 0.725).tolist() == [False, False, True]
    assert speaks(np.array([0.3, 0.2]), 0.25).tolist() == [False, True]
    assert speaks(float("nan"), 0.5) is True  # callers guard NaN themselves (see the docstring)


def test_bos_rule_of_each_preset(tokens):
    """The embedded checkpoint was trained without bos (SmolLM2's tokenizer adds none: rule
    "auto"); the release's template writes bos itself (rule "always", RELEASE_SPEC)."""
    from live_ros.model.presets import EMBEDDED_CONFIG, RELEASE_SPEC

    tok = tokens.tokenizer
    assert EMBEDDED_CONFIG.format.bos == "auto" and tokens.bos_ids == []
    assert RELEASE_SPEC.bos == "always"
    always = StreamTokenizer(tok, FormatSpec(frame_num_tokens=2, bos="always"))
    assert always.system_ids() == [tok.bos_token_id] + tokens.system_ids()
    assert StreamTokenizer(tok, FormatSpec(frame_num_tokens=2, bos="never")).bos_ids == []
    with pytest.raises(ValueError, match="'sometimes' is unknown"):
        StreamTokenizer(tok, FormatSpec(bos="sometimes"))
