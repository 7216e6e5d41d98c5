"""The release's augmentation (live_ros/training/augment.py): a wrong or empty turn
(context only, its labels and its opening decision masked) then the correction (learned);
a delayed response (with ``catch_up``: the skipped decisions unlearned); a dropped
response; answers to questions untouched; deterministic from a seed."""

from __future__ import annotations

import pytest
from model_helpers import smollm2_tokenizer

from live_ros.data.streams import StreamSample, TimedTurn
from live_ros.model.format import IGNORE, FormatSpec, StreamTokenizer, Turn
from live_ros.training.augment import AugmentConfig, augment_turns, encode_augmented


@pytest.fixture(scope="module")
def tokens():
    return StreamTokenizer(smollm2_tokenizer(), FormatSpec(frame_num_tokens=2))


def kitchen() -> list[Turn]:
    """13 frames; responses after frames 3, 7 and 11 (frame-decided), a question and its
    answer after frame 8."""
    return StreamSample(
        "kitchen",
        6.0,
        2.0,
        [
            TimedTurn("user", 0.0, "Narrate what I do."),
            TimedTurn("assistant", 1.5, "You pick up the knife."),
            TimedTurn("assistant", 3.5, "You cut the tomato."),
            TimedTurn("user", 4.0, "What is on the board?"),
            TimedTurn("assistant", 4.0, "A tomato."),
            TimedTurn("assistant", 5.5, "You put the knife down."),
        ],
    ).to_turns()


RESPONSES = ["You pick up the knife.", "You cut the tomato.", "You put the knife down."]


def frames_of(turns) -> int:
    return sum(t.num_frames for t in turns if t.role == "stream")


def placed(turns) -> list[tuple[int, str, str]]:
    """(frame the text turn follows, role, text) for every text turn."""
    out, frames = [], 0
    for t in turns:
        if t.role == "stream":
            frames += t.num_frames
        else:
            out.append((frames - 1, t.role, t.text))
    return out


def frame_index_before(turns, idx) -> int:
    assert turns[idx - 1].role == "stream"
    return frames_of(turns[:idx]) - 1


def check_masks(tokens, aug):
    """Context-only turns: no label in their span, their opening decision unlearned. The
    correction after each: its text learned, its opening decision "speak"."""
    enc = encode_augmented(tokens, aug)
    ref = tokens.encode(aug.turns)
    assert enc.input_ids == ref.input_ids  # masking changes labels only
    for c in aug.context_only:
        role, start, end = enc.turn_spans[c]
        assert role == "assistant"
        assert all(y == IGNORE for y in enc.labels[start:end]) and not any(enc.weights[start:end])
        frame = frame_index_before(aug.turns, c)
        assert enc.labels[enc.frame_ends[frame]] == IGNORE and enc.decision_labels[frame] == -1
        assert ref.labels[enc.frame_ends[frame]] == tokens.close_id  # it would have been learned
        fix = next(i for i in range(c + 1, len(aug.turns)) if aug.turns[i].role == "assistant")
        _, start, end = enc.turn_spans[fix]
        learned = [y for y in enc.labels[start:end] if y != IGNORE]
        assert learned == tokens.response_ids(aug.turns[fix].text)
        frame = frame_index_before(aug.turns, fix)
        assert enc.labels[enc.frame_ends[frame]] == tokens.close_id and enc.decision_labels[frame] == 1
    # everything outside the context-only turns and their decisions keeps its label
    masked = {p for c in aug.context_only for p in range(*enc.turn_spans[c][1:])}
    masked |= {enc.frame_ends[frame_index_before(aug.turns, c)] for c in aug.context_only}
    for p, (a, b) in enumerate(zip(enc.labels, ref.labels)):
        if p not in masked:
            assert a == b
    return enc


@pytest.mark.parametrize("kind", ["wrong", "empty"])
def test_wrong_or_empty_turn_then_correction(tokens, kind):
    turns = kitchen()
    seen = set()
    for seed in range(24):
        aug = augment_turns(turns, AugmentConfig(**{f"p_{kind}": 1.0}), seed, fps=2.0)
        assert frames_of(aug.turns) == 13
        assert {p.split(":")[0] for p, _ in aug.applied} == {kind}
        assert len(aug.context_only) == len(aug.applied) >= 1
        for c in aug.context_only:
            wrong = aug.turns[c]
            assert wrong.role == "assistant" and aug.turns[c - 1].role == "stream"
            fix = aug.turns[c + 2]
            assert aug.turns[c + 1].role == "stream" and fix.role == "assistant" and fix.text in RESPONSES
            if kind == "wrong":
                assert wrong.text in RESPONSES + ["A tomato."] and wrong.text != fix.text  # another text
            else:
                assert wrong.text == ""
        where = {p.split(":")[1] for p, _ in aug.applied}
        seen |= where
        # positions: late = the wrong turn at the response's frame, the correction one frame later;
        # early = the wrong turn at an earlier frame of the segment, the correction on time
        orig = {text: f for f, role, text in placed(turns) if role == "assistant"}
        now = placed(aug.turns)
        for (pattern, _), c in zip(aug.applied, aug.context_only):
            at_wrong, at_fix = frame_index_before(aug.turns, c), frame_index_before(aug.turns, c + 2)
            fix_text = aug.turns[c + 2].text
            if pattern.endswith("late"):
                assert at_wrong == orig[fix_text] and at_fix == orig[fix_text] + 1
            else:
                assert at_wrong < at_fix == orig[fix_text]
        assert ("assistant", "A tomato.") in [(r, t) for _, r, t in now]  # the answer is untouched
        check_masks(tokens, aug)
    assert seen == {"late", "early"}


def test_delay_moves_a_response_one_or_two_frames(tokens):
    turns = kitchen()
    shifts = set()
    for seed in range(16):
        aug = augment_turns(turns, AugmentConfig(p_delay=1.0), seed, fps=2.0)
        assert not aug.context_only and frames_of(aug.turns) == 13
        now = {text: f for f, role, text in placed(aug.turns)}
        # after frame 3 (room up to frame 6): 1 or 2 later; after frame 7: the question follows
        # at frame 8, no room; after frame 11: one frame left
        shifts.add(now[RESPONSES[0]] - 3)
        assert now[RESPONSES[1]] == 7 and now[RESPONSES[2]] == 12
        assert [t.time for t in aug.turns if t.text == RESPONSES[2]] == [6.0]
        assert sorted(p for p, _ in aug.applied) == ["delay", "delay"]
        enc = tokens.encode(aug.turns)
        assert [i for i, d in enumerate(enc.decision_labels) if d == 1] == sorted([now[RESPONSES[0]], 7, 12])
    assert shifts == {1, 2}


def test_catch_up_unlearns_the_frames_a_delayed_response_skipped(tokens):
    """catch_up: the event's frame and the frames up to the late response carry no decision
    label (neither the release's silence nor speech); the late response is learned."""
    for seed in range(8):
        plain = augment_turns(kitchen(), AugmentConfig(p_delay=1.0, max_delay=3), seed, fps=2.0)
        aug = augment_turns(kitchen(), AugmentConfig(p_delay=1.0, max_delay=3, catch_up=True), seed, fps=2.0)
        assert aug.turns == plain.turns and not plain.unlearned_frames
        now = {text: f for f, role, text in placed(aug.turns)}
        # responses 0 and 2 were said after frames 3 and 11 (response 1: no room to move)
        skipped = list(range(3, now[RESPONSES[0]])) + list(range(11, now[RESPONSES[2]]))
        assert aug.unlearned_frames == skipped and 1 <= now[RESPONSES[0]] - 3 <= 3 and now[RESPONSES[2]] == 12
        enc, ref = encode_augmented(tokens, aug), tokens.encode(aug.turns)
        assert enc.input_ids == ref.input_ids
        for frame in range(enc.num_frames):
            if frame in skipped:
                assert ref.decision_labels[frame] == 0 and enc.decision_labels[frame] == -1
                assert enc.labels[enc.frame_ends[frame]] == IGNORE and enc.weights[enc.frame_ends[frame]] == 0
            else:
                assert enc.decision_labels[frame] == ref.decision_labels[frame]
        assert enc.decision_labels[now[RESPONSES[0]]] == enc.decision_labels[12] == 1


def test_drop_removes_responses_not_answers(tokens):
    aug = augment_turns(kitchen(), AugmentConfig(p_drop=1.0), 0)
    assert [t.text for t in aug.turns if t.role == "assistant"] == ["A tomato."]
    assert frames_of(aug.turns) == 13 and sorted(i for _, i in aug.applied) == [3, 5, 10]
    enc = tokens.encode(aug.turns)
    assert 1 not in enc.decision_labels and enc.decision_labels.count(0) > 0


def test_deterministic_from_seed_and_off_by_default():
    cfg = AugmentConfig(p_wrong=0.25, p_empty=0.25, p_delay=0.25, p_drop=0.25)
    runs = [augment_turns(kitchen(), cfg, seed, wrong_texts=["A bird flies by."]) for seed in range(12)]
    again = [augment_turns(kitchen(), cfg, seed, wrong_texts=["A bird flies by."]) for seed in range(12)]
    assert [r.turns for r in runs] == [r.turns for r in again]
    assert len({repr(r.turns) for r in runs}) > 3
    assert augment_turns(kitchen(), AugmentConfig(), 5).turns == kitchen()
    assert augment_turns(kitchen(), AugmentConfig(p_drop=1.0, enabled=False), 5).turns == kitchen()


def test_wrong_without_other_text_becomes_empty():
    turns = StreamSample("one", 3.0, 2.0, [TimedTurn("assistant", 1.5, "Hello.")]).to_turns()
    aug = augment_turns(turns, AugmentConfig(p_wrong=1.0), 0)
    assert [p.split(":")[0] for p, _ in aug.applied] == ["empty"]
    assert aug.turns[aug.context_only[0]].text == ""
    aug = augment_turns(turns, AugmentConfig(p_wrong=1.0), 0, wrong_texts=["Hello.", "Goodbye."])
    assert aug.turns[aug.context_only[0]].text == "Goodbye."


def test_config_checks():
    with pytest.raises(ValueError, match="<= 1"):
        AugmentConfig(p_wrong=0.6, p_drop=0.6)
    with pytest.raises(ValueError, match="probability"):
        AugmentConfig(p_delay=-0.1)
    with pytest.raises(ValueError, match="catch_up"):
        AugmentConfig(catch_up="yes")
    with pytest.raises(ValueError, match="unknown keys"):
        AugmentConfig.from_dict({"p_wrongg": 0.1})
    assert AugmentConfig.from_dict({"p_wrong": 0.1, "p_empty": 0.05, "p_delay": 0.1, "p_drop": 0.05}).active
