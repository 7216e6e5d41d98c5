"""The KV runner (live_ros/engine/runner.py) computes what the transformers model computes,
through transformers' own attention: the function registered under the config's
``_attn_implementation`` (sdpa, eager or any registered one), with grouped-query and plain
multi-head attention, the oneDNN-packed and the plain products, chunks and single tokens."""

from __future__ import annotations

import pytest
import torch
from test_engine import one_thread, rand_frames, tiny  # noqa: F401
from transformers import AttentionInterface
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from live_ros.engine import KVRunner

# fp32 throughout; the runner and the model differ only in the order of summation (fused
# and oneDNN-packed products, SDPA kernels over a preallocated store vs the model's path),
# a few float32 ulps per product. The logits of these tiny models are of order 1, so 1e-4
# leaves a margin of hundreds of ulps and still catches any wrong mask, position or head
# (those move logits by 1e-2 or more).
TOL = dict(atol=1e-4, rtol=1e-4)


def _sequence(tokens):
    ids = tokens.prefix_ids + tokens.open_ids() + tokens.frame_ids + [tokens.interval_id] + tokens.frame_ids
    return ids, len(tokens.prefix_ids) + 2


def _run(runner, tokens, frames):
    """Feed the sequence as the engine does: the prefix as one chunk, then the frames as a
    chunk, then the last three tokens one at a time; the logits at every fed position
    but the prefix's inner ones."""
    ids, cut = _sequence(tokens)
    tail = len(ids) - 3
    with torch.inference_mode():
        a = runner.forward(runner.embed(ids[:cut]), ids[:cut], [0, -1])
        emb = runner.embed(ids[cut:], torch.stack(frames))
        b = runner.forward(emb[: tail - cut], ids[cut:tail], list(range(tail - cut)))
        c = [runner.forward(emb[i - cut : i - cut + 1], ids[i : i + 1], [-1]) for i in range(tail, len(ids))]
    return ids, cut, torch.cat([a, b, *c])


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("kv_heads", [2, 4])  # grouped-query (2 queries per key head) and multi-head
@pytest.mark.parametrize("pack", [True, False])
def test_runner_matches_hf_forward(attn, kv_heads, pack):
    model, tokens = tiny(seed=1, attention_bias=True, num_key_value_heads=kv_heads)
    model.set_attn_implementation(attn)
    runner = KVRunner(model, 256, pack=pack)
    assert runner.attn_implementation == attn
    frames = rand_frames(2)
    ids, cut, got = _run(runner, tokens, frames)
    with torch.no_grad():
        ref = model(input_ids=torch.tensor([ids]), frame_tokens=torch.stack(frames)).logits[0]
    torch.testing.assert_close(got, ref[[0, *range(cut - 1, len(ids))]], **TOL)
    assert runner.ids[: runner.length].tolist() == ids


def test_runner_calls_the_registered_attention_function():
    """A function registered with transformers' AttentionInterface and named in the config
    is what the runner calls, once per layer and forward, even when named after the runner
    was built; the logits stay those of the model's own (sdpa) forward."""
    calls = []

    def counting(module, query, key, value, attention_mask, **kwargs):
        calls.append((query.shape, key.shape, None if attention_mask is None else attention_mask.dtype))
        return ALL_ATTENTION_FUNCTIONS["sdpa"](module, query, key, value, attention_mask, **kwargs)

    AttentionInterface.register("live_ros_counting", counting)
    model, tokens = tiny(seed=2, layers=3)
    frames = rand_frames(2, seed=1)
    ids, cut = _sequence(tokens)
    with torch.no_grad():
        ref = model(input_ids=torch.tensor([ids]), frame_tokens=torch.stack(frames)).logits[0]
    runner = KVRunner(model, 64)
    assert runner.attn_implementation == model.config._attn_implementation == "sdpa"
    model.set_attn_implementation("live_ros_counting")
    try:
        assert runner.attn_implementation == "live_ros_counting"
        _, _, got = _run(runner, tokens, frames)
    finally:
        model.set_attn_implementation("sdpa")
    torch.testing.assert_close(got, ref[[0, *range(cut - 1, len(ids))]], **TOL)
    forwards = 2 + 3  # two chunks, three single tokens
    assert len(calls) == 3 * forwards
    # Grouped-query heads are folded onto the key heads (2 per key head here): the keys and
    # values are passed as stored, [1, kv_heads, length, head_dim], never repeated; a chunk
    # carries an additive causal mask (what every dense attention function takes), one token none.
    heads, kv, hd = 4, 2, 16
    first = calls[0]
    assert first[0] == (1, kv, (heads // kv) * cut, hd) and first[1] == (1, kv, cut, hd)
    assert first[2] == torch.float32
    last = calls[-1]
    assert last[0] == (1, kv, heads // kv, hd) and last[1] == (1, kv, len(ids), hd) and last[2] is None


def test_unknown_attention_implementation_is_refused():
    model, _ = tiny(seed=3, layers=1)
    runner = KVRunner(model, 16)
    with pytest.raises(KeyError):
        runner.attention_function("no_such_attention")
