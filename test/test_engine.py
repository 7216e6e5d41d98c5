"""The streaming engine (paper section 3.4) on tiny random Llamas with the real SmolLM2
tokenizer: theta decisions, query placement, batched backlog with cut-back, streamed
answers, bad inputs, settings (live_ros/engine/engine.py, config.py, events.py,
stream.py). The threaded intake is in test_engine_threaded.py, the baselines in
test_engine_baselines.py; both use the helpers here.

Some tests steer the model through its weights (``steer``): every layer's output
projections are zeroed, so the last hidden state is the input embedding; frames carry a
2-d direction (a, b) through the connector, the LM head reads it as the logits of the
interval and closing tokens, and text positions predict eos. A frame (1, 0) then stays
silent, a frame (0, 1) speaks, and every response is empty (eos at once).
"""

from __future__ import annotations

import math
from functools import lru_cache

import pytest
import torch

from live_ros.data.streams import StreamSample, TimedTurn
from live_ros.engine import EngineConfig, EngineInputError, ResponseEvent, SilentEvent, StreamEngine
from live_ros.model.config import EncoderSettings, LiveConfig
from live_ros.model.format import FormatSpec, StreamTokenizer, Turn, add_frame_token, speaks
from live_ros.model.live_model import LiveLlamaConfig, LiveLlamaForCausalLM

N_TOK = 3  # tokens per frame in these tests
VDIM = 16  # frame token dimension


# -- helpers (also used by test_engine_cache.py) ---------------------------------------------
@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread (two threads' synchronisation costs more than
    their products, badly so on a busy machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@lru_cache(maxsize=None)
def _tokenizer():
    from live_ros.assets import smollm2_dir, smollm2_ready

    if smollm2_ready():
        from live_ros.model.checkpoint import load_tokenizer

        return load_tokenizer(smollm2_dir())
    from transformers import AutoTokenizer

    from live_ros.assets import tinycoder_gguf

    tok = AutoTokenizer.from_pretrained(str(tinycoder_gguf().parent), gguf_file="tiny.gguf")
    add_frame_token(tok)
    return tok


def tiny(seed: int = 0, layers: int = 2, frame_num_tokens: int = N_TOK, **overrides):
    """A random LiveLlama (hidden 64) and its StreamTokenizer."""
    tok = _tokenizer()
    spec = FormatSpec(frame_num_tokens=frame_num_tokens)
    tokens = StreamTokenizer(tok, spec)
    cfg = dict(
        vocab_size=len(tok) - 1,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        live=LiveConfig(encoder=EncoderSettings(num_tokens=frame_num_tokens), vision_hidden_size=VDIM, format=spec),
        v_placeholder_id=tokens.frame_token_id,
        tie_word_embeddings=False,
    )
    cfg.update(overrides)
    torch.manual_seed(seed)
    model = LiveLlamaForCausalLM(LiveLlamaConfig(**cfg)).eval()
    model.reset_connector(seed)
    return model, tokens


def steer(model, tokens, k: float = 3.0):
    """Set the logits through the weights (see the module docstring)."""
    h = model.config.hidden_size
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        emb = model.model.embed_tokens.weight
        emb.zero_()
        emb[:, h - 1] = 1.0  # every text token: "predict eos"
        c0, c2 = model.connector[0], model.connector[2]
        c0.weight.zero_()
        c0.weight[0, 0] = c0.weight[1, 1] = 1.0
        c0.bias.fill_(10.0)  # GELU(10 + x) = 10 + x
        c2.weight.zero_()
        c2.weight[0, 0] = c2.weight[1, 1] = 1.0
        c2.bias.zero_()
        c2.bias[0] = c2.bias[1] = -10.0  # a frame embeds as (a, b, 0, ...)
        head = model.lm_head.weight
        head.zero_()
        head[tokens.interval_id, 0] = k
        head[tokens.close_id, 1] = k
        head[tokens.eos_id, h - 1] = k
    return model


def frame(a: float = 1.0, b: float = 0.0) -> torch.Tensor:
    t = torch.zeros(N_TOK, VDIM)
    t[:, 0], t[:, 1] = a, b
    return t


SILENT, SPEAK = frame(1, 0), frame(0, 1)


def rand_frames(n: int, seed: int = 0, n_tok: int = N_TOK) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n_tok, VDIM, generator=g) for _ in range(n)]


def engine(model, tokens, **cfg) -> StreamEngine:
    cfg.setdefault("record_ids", True)
    return StreamEngine(model, tokens, EngineConfig(**cfg))


def finals(events):
    return [e for e in events if isinstance(e, ResponseEvent) and e.final]


# -- theta ------------------------------------------------------------------------------------------
def test_decisions_follow_theta():
    model, tokens = tiny()
    steer(model, tokens, k=2.0)
    angles = [i * math.pi / 2 / 30 for i in range(31)]  # from "silent" (1,0) to "speak" (0,1)
    frames = [frame(math.cos(a), math.sin(a)) for a in angles]
    with torch.no_grad():  # P(interval) of each frame, from the HF model on the plain sequence
        refs = []
        for f in frames:
            ids = tokens.prefix_ids + tokens.open_ids() + tokens.frame_ids
            logits = model(input_ids=torch.tensor([ids]), frame_tokens=f[None]).logits[0, -1]
            refs.append(float(logits.softmax(-1)[tokens.interval_id]))
    assert min(refs) < 0.2 and max(refs) > 0.9
    eng = engine(model, tokens)
    for theta in (0.3, 0.6, 0.725, 0.9):
        eng.configure(theta=theta)
        got, probs = [], []
        for f in frames:
            eng.reset()
            ev = eng.take_frame(f)
            got.append(isinstance(ev[-1], ResponseEvent))
            probs.append(ev[0].p_interval if isinstance(ev[0], SilentEvent) else finals(ev)[0].p_interval)
        assert probs == pytest.approx(refs, abs=1e-5)
        assert got == [speaks(p, theta) for p in refs] == [p < theta for p in refs]
        assert any(got) and not all(got)


def test_interval_kept_only_at_or_above_theta():
    assert speaks(0.725, 0.725) is False  # kept (silent) at exactly theta
    assert speaks(0.7249, 0.725) is True
    assert speaks(1.0, 1.0) is False and speaks(0.0, 0.0) is False
    p = torch.tensor([0.9, 0.725, 0.7249, 0.1])  # the same rule elementwise (the evaluation's)
    assert speaks(p, 0.725).tolist() == [False, False, True, True]


# -- where things land in the sequence -----------------------------------------------------------
def test_mid_stream_query_lands_after_newest_frame():
    model, tokens = tiny()
    steer(model, tokens)
    eng = engine(model, tokens)
    events = []
    for _ in range(5):
        events += eng.take_frame(SILENT)
    events += eng.ask("what is on the table?")
    for f in (SILENT, SILENT, SILENT, SPEAK, SILENT):
        events += eng.take_frame(f)
    turns = [
        Turn("stream", num_frames=5),
        Turn("user", "what is on the table?"),
        Turn("assistant", ""),
        Turn("stream", num_frames=4),
        Turn("assistant", ""),
        Turn("stream", num_frames=1),
    ]
    assert eng.fed_ids == tokens.encode(turns).input_ids
    assert eng.cache_ids() == eng.fed_ids
    done = finals(events)
    assert [(e.response_kind, e.query_id, e.frame_index, e.proactive) for e in done] == [
        ("answer", 1, 4, False),  # at once, after frame 4
        ("answer", 1, 8, True),
    ]  # later, proactive, while the query is in context
    assert eng.stats.queries_answered == 1


def test_query_before_any_frame_and_narration_without_query():
    model, tokens = tiny()
    steer(model, tokens)
    eng = engine(model, tokens)
    ev = eng.take_frame(SPEAK)
    assert [(e.response_kind, e.query_id) for e in finals(ev)] == [("narration", 0)]
    eng.reset()
    ev = eng.ask("hello?") + eng.take_frame(SILENT)
    assert finals(ev)[0].frame_index == -1
    turns = [Turn("user", "hello?"), Turn("assistant", ""), Turn("stream", num_frames=1)]
    assert eng.fed_ids == tokens.encode(turns).input_ids


def test_standing_instruction_opens_every_stream_and_narration_goes_on_after_an_answer():
    model, tokens = tiny()
    steer(model, tokens)
    eng = engine(model, tokens, instruction="Narrate what you see.")
    events = eng.take_frame(SILENT) + eng.take_frame(SPEAK)
    events += eng.ask("what is on the table?")
    for f in (SILENT, SPEAK, SILENT):
        events += eng.take_frame(f)
    # the instruction is a user turn before the first frame list: the sequence training learns
    sample = StreamSample(
        "s",
        2.0,
        2.0,
        [
            TimedTurn("assistant", 0.5, ""),
            TimedTurn("user", 0.5, "what is on the table?"),
            TimedTurn("assistant", 0.5, ""),
            TimedTurn("assistant", 1.5, ""),
        ],
        instruction="Narrate what you see.",
    )
    assert eng.fed_ids == tokens.encode(sample.to_turns()).input_ids
    prefix = tokens.prefix_ids + tokens.user_ids("Narrate what you see.")
    assert eng.cache_ids()[: len(prefix)] == prefix
    # proactive responses are narration (query 0), before and after the answer to query 1
    assert [(e.response_kind, e.query_id, e.proactive) for e in finals(events)] == [
        ("narration", 0, True),
        ("answer", 1, False),
        ("narration", 0, True),
    ]
    eng.reset()  # after a reset the stream opens with the instruction again
    assert eng.cache_ids() == prefix
    eng.configure(instruction="")  # silent until asked: a later proactive response continues the query
    assert eng.cache_ids() == tokens.prefix_ids
    ev = eng.take_frame(SILENT) + eng.ask("tell me when it changes") + eng.take_frame(SPEAK)
    assert [(e.response_kind, e.query_id) for e in finals(ev)] == [("answer", 2), ("answer", 2)]
    with pytest.raises(EngineInputError, match="instruction"):
        eng.configure(instruction="x" * (eng.cfg.max_query_chars + 1))


def test_partial_events_stream_then_final():
    model, tokens = tiny(seed=3)
    seen = []
    eng = StreamEngine(model, tokens, EngineConfig(max_new_tokens=6, min_new_tokens=6), on_event=seen.append)
    eng.script = lambda i, p: i == 1
    events = eng.take_frame(rand_frames(1)[0]) + eng.take_frame(rand_frames(1, 1)[0])
    partial = [e for e in seen if isinstance(e, ResponseEvent) and not e.final]
    final = finals(seen)
    assert events == seen
    assert len(partial) == 6 and [e.tokens for e in partial] == list(range(1, 7))
    assert len(final) == 1 and final[0].text == partial[-1].text and final[0].tokens == 6
    t = final[0].timings
    assert 0 <= t["arrival_to_first_token_s"] <= t["arrival_to_final_s"]
    assert all(e.response_id == final[0].response_id for e in partial)


# -- backlog: one batched forward, cut back to the earliest speaking frame ------------------------
def test_batched_backlog_matches_frame_by_frame():
    model, tokens = tiny(seed=2)
    frames = rand_frames(12, seed=5)
    # All silent (theta 0): the batched forward reads the same P(interval) at every frame.
    one = engine(model, tokens, theta=0.0)
    probs_one = [one.take_frame(f)[0].p_interval for f in frames]
    many = engine(model, tokens, theta=0.0)
    evs = many.take_frames([many.validate_frame(f) for f in frames])
    assert [e.batch for e in evs] == [12] * 12
    assert [e.p_interval for e in evs] == pytest.approx(probs_one, abs=1e-5)
    assert many.fed_ids == one.fed_ids
    # A theta where some frames speak: the same decisions, responses at the same frames.
    theta = sorted(probs_one)[len(probs_one) // 2]
    one = engine(model, tokens, theta=theta, max_new_tokens=4)
    ref = [e for f in frames for e in one.take_frame(f)]
    many = engine(model, tokens, theta=theta, max_new_tokens=4)
    got = many.take_frames([many.validate_frame(f) for f in frames])
    key = [(e.kind, e.frame_index, getattr(e, "text", ""), getattr(e, "final", True)) for e in ref]
    assert key == [(e.kind, e.frame_index, getattr(e, "text", ""), getattr(e, "final", True)) for e in got]
    assert 1 <= len(finals(got)) < len(frames)
    assert many.fed_ids == one.fed_ids
    assert max(e.batch for e in got if isinstance(e, SilentEvent)) > 1


def test_cut_back_puts_response_at_earliest_speaking_frame():
    model, tokens = tiny()
    steer(model, tokens)
    pattern = [SILENT, SILENT, SPEAK, SILENT, SPEAK, SILENT, SILENT]
    ref = engine(model, tokens)
    ref_events = [e for f in pattern for e in ref.take_frame(f)]
    eng = engine(model, tokens)
    batch = [eng.validate_frame(f) for f in pattern]
    n, first = eng.take_batch(batch)
    assert n == 3  # consumed through the speaking frame
    assert [e.kind for e in first] == ["silent", "silent", "response"]
    assert finals(first)[0].frame_index == 2
    rest = eng.take_frames(batch[n:])
    got = first + rest
    assert [(e.kind, e.frame_index, getattr(e, "final", True)) for e in got] == [
        (e.kind, e.frame_index, getattr(e, "final", True)) for e in ref_events
    ]
    assert eng.fed_ids == ref.fed_ids == eng.cache_ids()
    assert finals(got)[1].frame_index == 4
    # the cache itself: same keys as frame by frame
    n_tok = ref.runner.length
    assert eng.runner.length == n_tok
    torch.testing.assert_close(eng.runner.k[:, :, :n_tok], ref.runner.k[:, :, :n_tok], atol=1e-5, rtol=1e-5)


# -- settings ------------------------------------------------------------------------------------
def test_mute_and_min_response_interval():
    model, tokens = tiny()
    steer(model, tokens)
    eng = engine(model, tokens, mute=True)
    ev = eng.take_frame(SPEAK, 0.0)
    assert isinstance(ev[0], SilentEvent) and ev[0].suppressed == "mute"
    assert finals(eng.ask("still there?"))[0].response_kind == "answer"  # asked: answered
    eng.configure(mute=False, min_response_interval=2.0)
    kinds = [type(eng.take_frame(SPEAK, t)[-1]).__name__ for t in (1.0, 1.5, 2.5, 3.0, 3.5)]
    assert kinds == ["ResponseEvent", "SilentEvent", "SilentEvent", "ResponseEvent", "SilentEvent"]
    with pytest.raises(EngineInputError, match="theta"):
        eng.configure(theta=1.5)
    with pytest.raises(EngineInputError, match="cannot change"):
        eng.configure(eviction="none")
    assert eng.cfg.theta == 0.725


def test_system_prompt_change_mid_stream_recomputes_cache():
    model, tokens = tiny(seed=4)
    eng = engine(model, tokens, theta=0.0)
    frames = rand_frames(4, seed=9)
    for f in frames[:3]:
        eng.take_frame(f)
    eng.configure(system_prompt="You describe what you see.")
    assert eng.cache_ids()[: len(eng._prefix_ids())] == eng._prefix_ids() != tokens.prefix_ids
    ev = eng.take_frame(frames[3])
    ids = eng.cache_ids()
    with torch.no_grad():
        ref = model(input_ids=torch.tensor([ids]), frame_tokens=torch.stack(frames)).logits[0, -1]
    assert ev[0].p_interval == pytest.approx(float(ref.softmax(-1)[tokens.interval_id]), abs=1e-5)


def test_bad_inputs_rejected_and_stream_goes_on():
    model, tokens = tiny()
    eng = engine(model, tokens, theta=0.0, max_new_tokens=4)
    eng.take_frame(rand_frames(1)[0], 1.0)
    cases = [
        (lambda: eng.take_frame(torch.zeros(N_TOK, VDIM + 1), 2.0), r"shape \(3, 17\).*\(3, 16\).*encoder"),
        (lambda: eng.take_frame(torch.zeros(N_TOK + 1, VDIM), 2.0), r"takes \(3, 16\)"),
        (lambda: eng.take_frame(torch.full((N_TOK, VDIM), math.nan), 2.0), r"NaN or inf"),
        (lambda: eng.take_frame(frame(math.inf, 0), 2.0), r"NaN or inf"),
        (lambda: eng.take_frame("not a frame", 2.0), r"not an array"),
        (lambda: eng.take_frame(rand_frames(1)[0], 0.5), r"goes backwards.*reset\(\)"),
        (lambda: eng.take_frame(rand_frames(1)[0], math.nan), r"finite"),
        (lambda: eng.ask(""), r"empty"),
        (lambda: eng.ask("   \n"), r"empty"),
        (lambda: eng.ask("x" * 10_000), r"10000 characters.*limit is 2000"),
        (lambda: eng.ask(42), r"must be text"),
    ]
    for call, pattern in cases:
        with pytest.raises(EngineInputError, match=pattern):
            call()
        assert eng.stats.last_error
    assert eng.stats.frames_rejected == 7 and eng.stats.queries_rejected == 4
    length = eng.runner.length
    ev = eng.take_frame(rand_frames(1)[0], 2.0)  # the stream goes on
    assert isinstance(ev[0], SilentEvent) and ev[0].frame_index == 1
    assert eng.runner.length == length + N_TOK + 1
    assert finals(eng.ask("ok?"))[0].response_kind == "answer"


def test_a_budget_of_zero_means_unbounded_as_none_does():
    """One rule for an unbounded cache (ROS parameters and the command line cannot say None):
    cache_budget 0 is None in the config, in a live change and in the engine's policy."""
    from dataclasses import replace

    assert EngineConfig(cache_budget=0).check().cache_budget is None
    assert replace(EngineConfig(), cache_budget=0).cache_budget is None
    with pytest.raises(EngineInputError, match=r"too small: give at least 256 tokens \(None or 0: unbounded\)"):
        EngineConfig(cache_budget=100).check()
    model, tokens = tiny()
    eng = engine(model, tokens, cache_budget=0)
    assert eng.cfg.cache_budget is None and eng.policy.budget is None
    for f in rand_frames(4):
        eng.take_frame(f)
    assert eng.configure(cache_budget=512).cache_budget == 512
    assert eng.configure(cache_budget=0).cache_budget is None and eng.policy.budget is None
