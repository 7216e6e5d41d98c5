"""LiveModel: frames through the connector, the weighted streaming loss, a tiny overfit."""

from __future__ import annotations

import pytest
import torch
from model_helpers import tiny_model, tiny_tokenizer

from live_ros.model.format import IGNORE, Turn, collate
from live_ros.model.live_model import streaming_loss


@pytest.fixture(scope="module")
def tiny():
    return tiny_model(tiny_tokenizer())


def test_placeholders_take_projected_frames(tiny):
    model, tokens = tiny
    enc = tokens.encode([Turn("stream", num_frames=2), Turn("assistant", "yes")])
    ids = torch.tensor([enc.input_ids])
    frames = torch.randn(2, 2, 16)
    embeds = model.embed(ids, frames)
    slots = (ids[0] == tokens.frame_token_id).nonzero().flatten()
    torch.testing.assert_close(embeds[0, slots], model.project_frames(frames).reshape(4, -1))
    with pytest.raises(ValueError, match="4 frame placeholders in input_ids but 2 frame tokens"):
        model.embed(ids, frames[:1])
    with pytest.raises(ValueError, match="dimension 8 but the connector expects 16"):
        model.project_frames(torch.randn(1, 2, 8))


def test_stream_weight_scales_only_decision_positions():
    logits = torch.randn(1, 4, 10)
    labels = torch.tensor([[3, IGNORE, 5, 7]])
    ce = torch.nn.functional.cross_entropy(logits[0], torch.tensor([3, 0, 5, 7]), reduction="none")
    weights = torch.tensor([[2.0, 0.0, 1.0, 1.0]])  # position 0 is a frame decision, w = 2
    assert streaming_loss(logits, labels, weights).item() == pytest.approx(((2 * ce[0] + ce[2] + ce[3]) / 3).item())
    assert streaming_loss(logits, labels).item() == pytest.approx(((ce[0] + ce[2] + ce[3]) / 3).item())


def test_tiny_model_overfits_a_two_stream_batch():
    model, tokens = tiny_model(tiny_tokenizer(), seed=1)
    streams = [
        [Turn("stream", num_frames=3), Turn("assistant", "A cat comes in."), Turn("stream", num_frames=2)],
        [
            Turn("stream", num_frames=1),
            Turn("user", "What is it?"),
            Turn("assistant", "A rocket."),
            Turn("stream", num_frames=4),
            Turn("assistant", "It leaves."),
        ],
    ]
    encoded = [tokens.encode(s, stream_weight=2.0) for s in streams]
    gen = torch.Generator().manual_seed(0)
    frames = [torch.randn(e.num_frames, 2, 16, generator=gen) for e in encoded]
    batch = collate(encoded, frames, pad_id=tokens.eos_id)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    losses = []
    for _ in range(60):
        loss = model(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0], losses[::10]
    model.eval()
    with torch.no_grad():
        logits = model(**{k: v for k, v in batch.items() if k not in ("labels", "loss_weights")}).logits
    for b, enc in enumerate(encoded):  # every frame decision is now the labelled one
        for pos, decision in zip(enc.frame_ends, enc.decision_labels):
            if decision >= 0:
                assert logits[b, pos].argmax().item() == (tokens.close_id if decision else tokens.interval_id)


def test_config_over_a_base_saved_by_an_earlier_live_model():
    """A base LLM folder written by an earlier LiveLlamaConfig carries its loose live keys
    (encoder_id, live_format, ...); the model config over it takes the live settings from the
    LiveConfig alone."""
    from transformers import LlamaConfig

    from live_ros.model.config import LiveConfig
    from live_ros.model.live_model import LEGACY_KEYS, LiveLlamaConfig

    base = LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, vocab_size=64)
    old = dict.fromkeys(LEGACY_KEYS, 7) | {"encoder_id": "x/y@z:32px:1+1", "live_format": {"frame_token": "<v>"}}
    base.update(old)
    live = LiveConfig(vision_hidden_size=12)
    config = LiveLlamaConfig.from_live(live, base, v_placeholder_id=5)
    assert config.live_config == live and config.vision_hidden_size == 12 and config.v_placeholder_id == 5
    assert config.hidden_size == 16
