"""The paper's metrics on hand-made logits, every expected value computed by hand.

The logits are built position by position: a silent frame puts a large logit on the
interval token, a speaking frame on the closing token, a correct language position
puts ln(V - 1) on its label (p = 1/2, so every such token has CE = ln 2), a wrong one is
all zeros (p = 1/V, argmax = token 0, CE = ln V).
"""

from __future__ import annotations

import math

import pytest
import torch
from model_helpers import smollm2_tokenizer

from live_ros.evaluation.metrics import (
    StreamResult,
    TurnResult,
    fluency,
    frame_diff,
    language,
    mean_over_streams,
    needed_positions,
    plan_turns,
    speaks,
    stream_metrics,
)
from live_ros.model.format import FormatSpec, StreamTokenizer, Turn

V = 49152  # SmolLM2's vocabulary (the placeholder <v> is the 49153rd entry, outside the logits)
HALF = math.log(V - 1)  # label logit giving p = 1/2
P06 = math.log(1.5 * (V - 1))  # silent logit giving p(silent) = 0.6: argmax silent, but < theta 0.725


@pytest.fixture(scope="module")
def tokens():
    return StreamTokenizer(smollm2_tokenizer(), FormatSpec(frame_num_tokens=2))


# Frames: f0-3 | A0 | f4-7 | A1 | f8-10 | A2 | f11-12 | user | A3 | f13-15 | A4 | f16 | A5 | f17-18
TURNS = [
    Turn("stream", num_frames=4),
    Turn("assistant", "on time"),
    Turn("stream", num_frames=4),
    Turn("assistant", "early"),
    Turn("stream", num_frames=3),
    Turn("assistant", "late"),
    Turn("stream", num_frames=2),
    Turn("user", "what is it?"),
    Turn("assistant", "a cup"),
    Turn("stream", num_frames=3),
    Turn("assistant", "late and missed"),
    Turn("stream", num_frames=1),
    Turn("assistant", "last"),
    Turn("stream", num_frames=2),
]
SPEAK = {3, 5, 12}  # frames whose argmax is the closing token
UNSURE = {4, 16}  # frames whose argmax is silent with p = 0.6 (speak only with theta 0.725)


def hand_logits(tokens, enc, wrong: set[int] = frozenset()):
    logits = torch.zeros(len(enc.input_ids), V)
    for f, pos in enumerate(enc.frame_ends):
        if f in SPEAK:
            logits[pos, tokens.close_id] = 20.0
        elif f in UNSURE:
            logits[pos, tokens.interval_id] = P06
        else:
            logits[pos, tokens.interval_id] = 20.0
    for pos, label in enumerate(enc.labels):
        if label >= 0 and pos not in enc.frame_ends and pos not in wrong:
            logits[pos, label] = HALF
    return logits


def test_plan_reads_the_right_positions(tokens):
    enc = tokens.encode(TURNS)
    plans = plan_turns(enc)
    assert [p.frames for p in plans] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10], [], [13, 14, 15], [16]]
    assert [p.decision_positions for p in plans] == [[enc.frame_ends[f] for f in p.frames] for p in plans]
    # Next turn's frames, capped at n - 1: A0 f4-6, A1 f8-10, A2 f11-12 (the frames before
    # the question), A3 none (no frames of its own), A4 f16 (1 < 2), A5 is the last turn:
    # none, though f17-18 follow. (Read only when the turn stays silent.)
    assert [p.future_frames for p in plans] == [[4, 5, 6], [8, 9, 10], [11, 12], [], [16], []]
    assert [p.future_positions for p in plans][2] == [enc.frame_ends[11], enc.frame_ends[12]]
    # Language positions: "Assistant:"'s last token through the last word; labels = text + eos.
    texts = [t.text for t in TURNS if t.role == "assistant"]
    for plan, text in zip(plans, texts):
        assert [enc.labels[p] for p in plan.lang_positions] == tokens.response_ids(text)
        assert plan.lang_positions[-1] == plan.span[1] - 2  # the eos itself predicts nothing
    assert not plans[3].timed and plans[3].decision_positions == []


def test_hand_computed_stream(tokens):
    enc = tokens.encode(TURNS)
    plans = plan_turns(enc)
    wrong = {plans[0].lang_positions[1]}  # A0: first token right, second wrong, rest right
    logits = hand_logits(tokens, enc, wrong)
    r = stream_metrics(logits, enc, silent_id=tokens.interval_id, fps=2.0, theta=0.725)
    n = [len(p.lang_positions) for p in plans]
    t = r.turns
    # frame_diff: A0 on time; A1 speaks at its 2nd of 4 frames: early by 2; A2 silent, f11
    # silent, f12 speaks: -(1 + 1); A3 after the question: untimed; A4 silent, its one
    # future frame f16 silent: -1; A5 last turn, silent, nothing to look ahead: 0.
    assert [x.frame_diff for x in t] == [0, 2, -2, None, -1, 0]
    assert [x.spoke for x in t] == [True, True, True, None, False, False]
    # theta 0.725: f4 (p = 0.6) speaks, so A1 is early by 3; f16 speaks: A4 -1 (found), A5 0.
    assert [x.frame_diff_theta for x in t] == [0, 3, -2, None, -1, 0]
    assert [x.spoke_theta for x in t] == [True, True, True, None, True, True]
    assert (r.timed_turns, r.missed, r.missed_theta) == (5, 2, 0)
    assert r.time_diff == pytest.approx((0 + 2 + 2 + 1 + 0) / 5 / 2.0)
    assert r.time_diff_theta == pytest.approx((0 + 3 + 2 + 1 + 0) / 5 / 2.0)
    # LM: A0's tokens: ln 2, ln V, then ln 2; every other turn ln 2 throughout (PPL 2).
    # Tolerance: HALF is stored as a float32 logit (rounding up to 5e-7 of 10.8), which moves
    # p = 1/2 by about 5e-7 relative; metrics.language sums the softmax in float64, so nothing
    # here depends on the CPU's vector width (float32 sums of 49k terms did, by up to 1.3e-4).
    ppl0 = math.exp((math.log(V) + (n[0] - 1) * math.log(2)) / n[0])
    assert t[0].lm_ppl == pytest.approx(ppl0, rel=1e-6)
    assert [x.lm_ppl for x in t[1:]] == pytest.approx([2.0] * 5, rel=1e-6)
    assert r.lm_ppl == pytest.approx((ppl0 + 10.0) / 6, rel=1e-6)
    assert [x.lm_correct for x in t] == [1] + n[1:]
    assert r.lm_correctness == pytest.approx((1 / n[0] + 5) / 6)
    # Fluency: on time (4 + 1 correct) / (4 + n0); early by 2: (4 - 2) / (4 + n1); late:
    # (3 - 1) / (3 + n2), (3 - 1) / (3 + n4); A5 counts as on time (release): (1 + n5) / (1 + n5).
    flu = [5 / (4 + n[0]), 2 / (4 + n[1]), 2 / (3 + n[2]), None, 2 / (3 + n[4]), 1.0]
    assert [x.fluency for x in t] == pytest.approx(flu)
    assert r.fluency == pytest.approx(sum(f for f in flu if f is not None) / 5)
    assert t[1].fluency_theta == pytest.approx(1 / (4 + n[1]))
    # The same from logits at the needed positions only (what evaluate computes).
    pos = needed_positions(plans)
    sparse = stream_metrics(logits[pos], enc, silent_id=tokens.interval_id, fps=2.0, theta=0.725, positions=pos)
    assert sparse.to_dict() == r.to_dict()
    assert r.to_dict()["per_turn"][3]["frame_diff"] is None


def test_future_callable_is_the_look_ahead(tokens):
    """With ``future`` (the release's re-run without the response), only silent turns with
    frames to look at ask for it, and its answer decides how late they are."""
    enc = tokens.encode(TURNS)
    logits = hand_logits(tokens, enc)
    asked = []

    def future(plan):
        asked.append(plan.turn)
        rows = torch.zeros(len(plan.future_frames), V)
        rows[:, tokens.interval_id] = 20.0
        rows[0, tokens.interval_id] = 0.0
        rows[0, tokens.close_id] = 20.0  # speaks at the first appended frame
        return rows

    r = stream_metrics(logits, enc, silent_id=tokens.interval_id, fps=2.0, theta=0.725, future=future)
    assert sorted(set(asked)) == [2, 4]  # A2 and A4 (asked once each, shared by both rules)
    assert len(asked) == 2
    assert [x.frame_diff for x in r.turns] == [0, 2, -1, None, -1, 0]
    assert r.missed == 1  # only A5 now


def test_speaks_is_argmax_not_silent():
    silent, close, other = 3, 5, 7
    rows = torch.zeros(4, 10)
    rows[0, silent] = 5.0  # silent
    rows[1, close] = 5.0  # the closing token wins: speaks
    rows[2, other] = 5.0  # any other token wins: speaks too (release: argmax != interval)
    rows[3, silent] = 1.0  # silent wins, but with little confidence
    rows[3, other] = 0.9
    assert speaks(rows, silent).tolist() == [False, True, True, False]
    p3 = rows[3].softmax(-1)[silent].item()
    assert p3 < 0.5
    assert speaks(rows, silent, theta=0.725).tolist() == [False, True, True, True]
    assert speaks(rows, silent, theta=p3 - 0.01).tolist() == [False, True, True, False]
    assert speaks(rows, silent, theta=0).tolist() == speaks(rows, silent).tolist()
    # theta below 0.5: the engine's rule (live_ros.model.format.speaks), silent while
    # p(silent) >= theta, even when another token is the argmax (the release's correction).
    rows2 = torch.tensor([[math.log(0.4), math.log(0.6)]])
    assert speaks(rows2, 0, theta=0.3).tolist() == [False]
    assert speaks(rows2, 0).tolist() == [True]  # the plain argmax speaks
    assert speaks(rows, None).tolist() == [True] * 4  # interleaved: always speaks


def test_frame_diff_and_fluency_rules():
    assert frame_diff([False, False, True], [], 0).frame_diff == 0
    assert frame_diff([True, False, True, False], [], 0).frame_diff == 3
    assert frame_diff([False] * 4, [False, False, True], 3).frame_diff == -3
    assert frame_diff([False] * 4, [False, False, False], 3).frame_diff == -3
    assert frame_diff([False] * 4, [False, False, False], 3).spoke is False
    assert frame_diff([False] * 4, [True, True], 2).frame_diff == -1
    called = []
    assert frame_diff([True], lambda: called.append(1) or [], 0).frame_diff == 0
    assert not called  # the look-ahead runs only for a silent turn
    missed = frame_diff([False], lambda: called.append(1) or [], 0)
    assert (missed.frame_diff, missed.spoke, called) == (0, False, [])
    with pytest.raises(ValueError):
        frame_diff([], [], 0)
    with pytest.raises(ValueError):
        frame_diff([False, False], [False], 1 + 1)
    assert fluency(4, 6, 3, 0) == pytest.approx(7 / 10)
    assert fluency(4, 6, 3, 2) == pytest.approx(2 / 10)
    assert fluency(4, 6, 3, -2) == pytest.approx(3 / 10)


def test_language_ppl_and_leading_correct():
    logits = torch.zeros(3, 4)
    labels = torch.tensor([1, 2, 3])
    logits[0, 1] = math.log(3)  # p = 1/2
    logits[2, 3] = math.log(3)
    ppl, correct = language(logits, labels)  # CE: ln 2, ln 4, ln 2
    assert ppl == pytest.approx(math.exp((2 * math.log(2) + math.log(4)) / 3))
    assert correct == 1
    logits[1, 2] = 9.0
    assert language(logits, labels)[1] == 3


def test_per_frame_and_interleaved_plans(tokens):
    turns = [
        Turn("stream", num_frames=3),
        Turn("assistant", "one"),
        Turn("stream", num_frames=2),
        Turn("assistant", "two"),
        Turn("stream", num_frames=1),
    ]
    enc = tokens.encode(turns, "per_frame")
    plans = plan_turns(enc, "per_frame")
    assert [p.frames for p in plans] == [[0, 1, 2], [3, 4]]
    assistant = [(s, e) for role, s, e in enc.turn_spans if role == "assistant"]
    prefix = len(tokens.assistant_prefix_ids(True))
    # the decision: the last token of the "Assistant:" after each frame (eos = silent)
    assert [p.decision_positions for p in plans] == [
        [s + prefix - 1 for s, _ in assistant[:3]],
        [s + prefix - 1 for s, _ in assistant[3:5]],
    ]
    assert plans[0].future_frames == [3, 4]  # min(2, 3 - 1)
    assert [enc.labels[p] for p in plans[0].lang_positions] == tokens.text_ids(" one") + [tokens.eos_id]
    # Silent everywhere (eos wins) except the second turn's last frame: -2 then on time.
    logits = torch.zeros(len(enc.input_ids), V)
    for p in plans:
        for pos in p.decision_positions:
            logits[pos, tokens.eos_id] = 20.0
    logits[plans[1].decision_positions[-1], tokens.eos_id] = 0.0
    logits[plans[1].decision_positions[-1], tokens.text_ids(" two")[0]] = 20.0
    r = stream_metrics(logits, enc, silent_id=tokens.eos_id, fps=1.0, mode="per_frame")
    assert [x.frame_diff for x in r.turns] == [-2, 0]
    assert r.time_diff == pytest.approx(1.0)
    # Interleaved: a response after every frame, so every turn is early by n - 1.
    enc = tokens.encode(turns, "interleaved")
    plans = plan_turns(enc, "interleaved")
    assistant = [(s, e) for role, s, e in enc.turn_spans if role == "assistant"]
    assert [p.span for p in plans] == [assistant[0], assistant[3]]  # each response's first copy
    assert [enc.labels[p] for p in plans[1].lang_positions] == tokens.text_ids(" two") + [tokens.eos_id]
    r = stream_metrics(torch.zeros(len(enc.input_ids), V), enc, silent_id=None, fps=2.0, mode="interleaved")
    assert [x.frame_diff for x in r.turns] == [2, 1]
    assert r.time_diff == pytest.approx(0.75)


def test_missing_positions_and_bad_shapes(tokens):
    enc = tokens.encode(TURNS)
    plans = plan_turns(enc)
    pos = needed_positions(plans, future_in_sequence=False)
    logits = hand_logits(tokens, enc)[pos]
    with pytest.raises(ValueError, match="no logits for position"):
        stream_metrics(logits, enc, silent_id=tokens.interval_id, fps=2.0, positions=pos)  # A2 needs f11-12
    with pytest.raises(ValueError, match="pass `positions`"):
        stream_metrics(logits, enc, silent_id=tokens.interval_id, fps=2.0)
    with pytest.raises(ValueError, match="fps"):
        stream_metrics(logits, enc, silent_id=tokens.interval_id, fps=0, positions=pos)


def test_mean_over_streams_skips_undefined():
    def turn(ppl, diff, flu):
        return TurnResult(0, 2 if diff is not None else 0, 3, ppl, 3, 1.0, diff, diff, True, True, flu, flu)

    a = StreamResult(2.0, 0.725, [turn(4.0, 2, 0.5), turn(2.0, None, None)])
    b = StreamResult(2.0, 0.725, [turn(6.0, None, None)])  # no timed turn: no TimeDiff, no Fluency
    m = mean_over_streams([a, b])
    assert m["lm_ppl"] == pytest.approx((3.0 + 6.0) / 2)
    assert m["time_diff"] == pytest.approx(1.0)  # only a: |2| / 2 fps
    assert m["fluency"] == pytest.approx(0.5)
    assert (m["streams"], m["turns"], m["timed_turns"]) == (2, 3, 1)
    assert mean_over_streams([])["lm_ppl"] is None
