"""evaluate(): end to end on hand-made streams and feature files with a tiny model, checked
against an independent computation (full forwards, no cache tricks); truncation at the
context; failures; the table and the JSON (the `evaluate` verb: test_cli_evaluate.py)."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
from model_helpers import smollm2_tokenizer, tiny_model

from live_ros.data.features import FORMAT, save_features
from live_ros.data.streams import StreamSample, TimedTurn
from live_ros.evaluation.metrics import plan_turns, stream_metrics
from live_ros.evaluation.offline import continuation, evaluate, format_table, write_json

DIM, NTOK = 16, 2


def write_features(folder, video_id, num_frames, *, fps=2.0, dim=DIM, ntok=NTOK, encoder_id="", seed=0):
    """A features file in the layout of live_ros.data.features, with random tokens."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randn(num_frames, ntok, dim, generator=g).half()
    save_features(
        folder / f"{video_id}.safetensors",
        tokens,
        torch.arange(num_frames, dtype=torch.float64) / fps,
        {
            "format": FORMAT,
            "encoder_id": encoder_id,
            "fps": fps,
            "video": f"{video_id}.mp4",
            "num_frames": num_frames,
            "num_tokens": ntok,
            "dim": dim,
        },
    )
    return tokens


def kitchen():
    return StreamSample(
        "kitchen",
        duration=6.0,
        fps=2.0,
        turns=[
            TimedTurn("user", 0.0, "Narrate what I do."),
            TimedTurn("assistant", 1.5, "You pick up the knife."),
            TimedTurn("assistant", 3.5, "You cut the tomato."),
            TimedTurn("user", 4.0, "What is on the board?"),
            TimedTurn("assistant", 4.0, "A tomato."),  # right after the question: untimed
            TimedTurn("assistant", 5.5, "You put the knife down."),
        ],
    )


def garden():
    return StreamSample(
        "garden",
        duration=4.0,
        fps=2.0,
        turns=[TimedTurn("assistant", 1.0, "You open the gate."), TimedTurn("assistant", 3.0, "You water the plants.")],
    )


@pytest.fixture(scope="module")
def tiny():
    model, tokens = tiny_model(smollm2_tokenizer(), vision_dim=DIM, frame_num_tokens=NTOK)
    return model.eval(), tokens


def silent_leaning(model, tokens, bias: float):
    """A copy of ``model`` whose interval token gets ``bias`` added to its logit, so that
    some frames stay silent (an untrained tiny model speaks at every frame)."""
    model = copy.deepcopy(model)
    head = torch.nn.Linear(model.lm_head.in_features, model.lm_head.out_features, bias=True)
    with torch.no_grad():
        head.weight.copy_(model.lm_head.weight)
        head.bias.zero_()
        head.bias[tokens.interval_id] = bias
    model.lm_head = head
    return model


@pytest.fixture
def features(tmp_path):
    folder = tmp_path / "features"
    feats = {
        s.video_id: write_features(folder, s.video_id, s.num_frames, seed=k)
        for k, s in enumerate((kitchen(), garden()))
    }
    return folder, feats


def reference(model, tokens, sample, feats, look_ahead: bool):
    """The metrics from plain full forwards: one over the stream, and for the look-ahead one
    over the prefix + appended frames (no KV cache, no logits_to_keep)."""
    enc = tokens.encode(sample.to_turns())
    with torch.no_grad():
        logits = model(input_ids=torch.tensor(enc.input_ids)[None], frame_tokens=feats[: enc.num_frames]).logits[0]

    def future(plan):
        prefix = plan.decision_positions[-1] + 1
        chunk = [tokens.interval_id] + [tokens.frame_token_id] * NTOK
        k = len(plan.future_frames)
        seen = sum(e < prefix for e in enc.frame_ends)
        frames = torch.cat([feats[:seen], feats[plan.future_frames]])
        with torch.no_grad():
            out = model(input_ids=torch.tensor(enc.input_ids[:prefix] + chunk * k)[None], frame_tokens=frames).logits[0]
        return out[[prefix + (j + 1) * len(chunk) - 1 for j in range(k)]]

    return stream_metrics(
        logits, enc, silent_id=tokens.interval_id, fps=sample.fps, theta=0.725, future=future if look_ahead else None
    ), enc


@pytest.mark.parametrize("look_ahead", ["continue", "sequence"])
def test_evaluate_two_streams_matches_full_forwards(tiny, features, look_ahead):
    model, tokens = tiny
    model = silent_leaning(model, tokens, 0.85)  # some turns on time, some early, some late
    folder, feats = features
    samples = [kitchen(), garden()]
    result = evaluate(model, tokens, samples, folder, theta=0.725, future=look_ahead)
    assert (result["streams"], result["turns"], result["timed_turns"]) == (2, 6, 5)
    diffs = [t["frame_diff"] for r in result["per_stream"] for t in r["per_turn"] if t["frame_diff"] is not None]
    assert min(diffs) < 0 < max(diffs)
    assert result["missed"] > 0
    assert result["settings"]["mode"] == "streaming" and result["settings"]["max_positions"] == 4096
    for record, sample in zip(result["per_stream"], samples):
        ref, enc = reference(model, tokens, sample, feats[sample.video_id], look_ahead == "continue")
        assert record["tokens"] == len(enc.input_ids)
        assert (record["frames"], record["truncated"], record["notes"]) == (sample.num_frames, False, [])
        got, want = record["per_turn"], ref.to_dict()["per_turn"]
        for g, w in zip(got, want):
            for key in ("frame_diff", "frame_diff_theta", "spoke", "spoke_theta", "lm_correct", "n_frames", "n_lang"):
                assert g[key] == w[key], (sample.video_id, g["turn"], key)
            for key in ("lm_ppl", "fluency", "fluency_theta"):
                assert g[key] == pytest.approx(w[key], rel=1e-4, abs=1e-6)
    m = result["metrics"]
    for key in ("lm_ppl", "time_diff", "time_diff_theta", "fluency", "lm_correctness"):
        assert m[key] == pytest.approx(sum(r[key] for r in result["per_stream"]) / 2)
        assert math.isfinite(m[key])
    assert result["tokens"] == sum(r["tokens"] for r in result["per_stream"])


def test_look_ahead_on_the_cache_equals_a_full_forward(tiny, features):
    """The release's look-ahead (prefix up to the turn's last frame, then the next frames
    each after an interval token, no response) computed on a slice of the stream's KV
    cache gives the logits of a plain forward over that sequence."""
    model, tokens = tiny
    folder, feats = features
    sample = kitchen()
    enc = tokens.encode(sample.to_turns())
    frames = feats[sample.video_id]
    with torch.no_grad():
        out = model(input_ids=torch.tensor(enc.input_ids)[None], frame_tokens=frames, use_cache=True)
        look = continuation(model, tokens, "streaming", out.past_key_values, frames)
        checked = 0
        for plan in plan_turns(enc):
            if not plan.future_frames:
                continue
            prefix = plan.decision_positions[-1] + 1
            chunk = [tokens.interval_id] + [tokens.frame_token_id] * NTOK
            k = len(plan.future_frames)
            seen = sum(e < prefix for e in enc.frame_ends)
            full = model(
                input_ids=torch.tensor(enc.input_ids[:prefix] + chunk * k)[None],
                frame_tokens=torch.cat([frames[:seen], frames[plan.future_frames]]),
            ).logits[0]
            want = full[[prefix + (j + 1) * len(chunk) - 1 for j in range(k)]]
            torch.testing.assert_close(look(plan), want, atol=1e-4, rtol=1e-4)
            checked += 1
        # the stream's own cache is untouched (the look-ahead works on copies of its prefix)
        assert out.past_key_values.get_seq_length() == len(enc.input_ids)
    assert checked == 2


def test_truncates_at_the_context(tiny, tmp_path):
    model, tokens = tiny
    long = StreamSample(
        "long",
        duration=100.0,
        fps=2.0,
        turns=[TimedTurn("assistant", t, f"Step {k}.") for k, t in enumerate(range(5, 100, 10))],
    )
    write_features(tmp_path, "long", long.num_frames)
    full = len(tokens.encode(long.to_turns()).input_ids)
    old = model.config.max_position_embeddings
    model.config.max_position_embeddings = 300  # the default limit is the model's context
    try:
        result = evaluate(model, tokens, [long], tmp_path)
    finally:
        model.config.max_position_embeddings = old
    rec = result["per_stream"][0]
    assert full > 300 and rec["truncated"] and 250 < rec["tokens"] <= 300
    assert rec["frames"] < long.num_frames and 0 < rec["turns"] < 10
    assert "truncated at the context (300 positions)" in rec["notes"][0]
    assert "truncated at the context" in format_table(result)
    small = evaluate(model, tokens, [long], tmp_path, max_positions=120)["per_stream"][0]
    assert small["tokens"] <= 120 and small["turns"] < rec["turns"]


def test_short_features_drop_the_turns_after_them(tiny, tmp_path):
    model, tokens = tiny
    write_features(tmp_path, "garden", 5)  # 2.0 s of the 4.0 s
    rec = evaluate(model, tokens, [garden()], tmp_path)["per_stream"][0]
    assert rec["frames"] == 5 and rec["turns"] == 1
    assert rec["notes"] == ["features cover 5 of 9 frames; 1 turns after their end left out"]


def test_baseline_modes_run(tiny, features):
    model, tokens = tiny
    folder, _ = features
    per_frame = evaluate(model, tokens, [garden()], folder, mode="per_frame")
    assert per_frame["turns"] == 2 and per_frame["timed_turns"] == 2
    inter = evaluate(model, tokens, [garden()], folder, mode="interleaved")
    # every frame speaks: each turn is early by its frames - 1 (3 and 4 frames)
    assert [t["frame_diff"] for t in inter["per_stream"][0]["per_turn"]] == [2, 3]


def test_failures_name_the_fix(tiny, features, tmp_path):
    model, tokens = tiny
    folder, _ = features
    with pytest.raises(FileNotFoundError, match="no features for stream 'nowhere'"):
        evaluate(model, tokens, [StreamSample("nowhere", 2.0)], folder)
    write_features(tmp_path / "fps", "garden", 9, fps=1.0)
    with pytest.raises(ValueError, match="1.0 fps"):
        evaluate(model, tokens, [garden()], tmp_path / "fps")
    write_features(tmp_path / "dim", "garden", 9, dim=8)
    with pytest.raises(ValueError, match="the model's encoder"):
        evaluate(model, tokens, [garden()], tmp_path / "dim")
    write_features(tmp_path / "enc", "garden", 9, encoder_id="some/other@1:16px:1")
    model.config.encoder_id = "tiny/test@1:16px:1"
    try:
        with pytest.raises(ValueError, match="some/other@1:16px:1"):
            evaluate(model, tokens, [garden()], tmp_path / "enc")
    finally:
        model.config.encoder_id = ""
    with pytest.raises(ValueError, match="mode"):
        evaluate(model, tokens, [garden()], folder, mode="chat")
    with pytest.raises(ValueError, match="theta"):
        evaluate(model, tokens, [garden()], folder, theta=1.5)


def test_table_and_json(tiny, features, tmp_path):
    model, tokens = tiny
    folder, _ = features
    result = evaluate(model, tokens, [kitchen(), garden()], folder, theta=0.725)
    table = format_table(result)
    for word in (
        "LM-PPL",
        "TimeDiff",
        "TimeDiff@0.725",
        "Fluency",
        "LM-Correctness",
        "kitchen",
        "garden",
        "mean of 2",
        "streams: 2",
        "turns: 6",
    ):
        assert word in table
    path = write_json(result, tmp_path / "out" / "metrics.json")
    assert json.loads(path.read_text()) == json.loads(json.dumps(result))
    assert [p.name for p in path.parent.iterdir()] == ["metrics.json"]
