"""live-ros train's loop (live_ros/training/loop.py) on tiny real models: a short run
writes a checkpoint that loads through checkpoint.load_checkpoint with the trained model's
logits; the loss skips unlabelled logits without changing; the baseline formats train; a
later stage starts from a saved checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from model_helpers import smollm2_tokenizer, tiny_model
from safetensors.torch import load_file
from training_helpers import DIM, ENC, NTOK, make_run, streams

from live_ros.model.checkpoint import build_base, load_checkpoint, load_tokenizer
from live_ros.model.config import LiveConfig
from live_ros.model.format import IGNORE, collate
from live_ros.training.config import ConfigError, load_config
from live_ros.training.data import StreamDataset
from live_ros.training.loop import micro_loss, train
from live_ros.training.state import latest_checkpoint


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny base LLM folder, 4 training streams and 1 held-out stream with features, and their config."""
    return make_run(tmp_path_factory.mktemp("train"))


def _ids_and_frames(tokens, seed=0):
    from live_ros.model.format import Turn

    enc = tokens.encode(
        [
            Turn("stream", num_frames=3),
            Turn("user", "what now?"),
            Turn("assistant", "a cat"),
            Turn("stream", num_frames=2),
        ]
    )
    frames = torch.randn(enc.num_frames, NTOK, DIM, generator=torch.Generator().manual_seed(seed))
    return torch.tensor([enc.input_ids]), frames


def test_two_steps_write_a_checkpoint_that_loads_with_the_same_logits(setup, tmp_path, capsys):
    root, path = setup
    config = load_config(path, ["eval.theta=0.5"])
    assert config.optim.lr == pytest.approx(3e-2)  # "3e-2" is text in YAML 1.1: read as a number
    result = train(config, out_dir=tmp_path / "run", max_steps=2, progress=False)
    out = tmp_path / "run"
    assert result.steps == 2 and [h["step"] for h in result.history] == [1, 2]
    assert all(np.isfinite(h["loss"]) and h["loss"] > 0 for h in result.history)
    final = result.final_dir
    assert final == out / "final"
    assert {"adapter_config.json", "adapter_model.safetensors", "live_config.json", "tokenizer_config.json"} <= {
        p.name for p in final.iterdir()
    }
    weights = load_file(str(final / "adapter_model.safetensors"))
    assert all(v.dtype == torch.float16 for v in weights.values())
    assert "base_model.model.connector.0.weight" in weights and "base_model.model.connector.2.bias" in weights
    assert not any("lm_head" in k or "embed_tokens" in k for k in weights)
    config = LiveConfig.from_pretrained(final)
    assert config.encoder_id == ENC and config.base_llm == str((root / "llm").resolve())
    assert (config.frame_fps, config.vision_hidden_size, config.frame_num_tokens, config.mode) == (
        2.0,
        DIM,
        NTOK,
        "streaming",
    )

    # The saved checkpoint through the one loader (its live_config.json names the base LLM
    # folder) gives the trained model's logits; the base model with a fresh connector does not.
    loaded = load_checkpoint(final, with_encoder=False)
    assert loaded.config == config and loaded.folder == final and loaded.encoder is None
    assert "<v>" in loaded.tokens.tokenizer.get_vocab() and loaded.tokens.spec == config.format
    ids, frames = _ids_and_frames(loaded.tokens)
    trained = result.model.eval()
    untrained = build_base(root / "llm", load_tokenizer(root / "llm", config.format.frame_token), config)
    with torch.no_grad():
        expect = trained(input_ids=ids, frame_tokens=frames).logits
        got = loaded.model(input_ids=ids, frame_tokens=frames).logits
        base = untrained(input_ids=ids, frame_tokens=frames).logits
    # fp16 storage: a rounding-level difference, far below what training changed
    diff = (got - expect).abs().max().item()
    assert diff < 5e-3, diff
    assert (base - expect).abs().max().item() > 50 * diff

    # The outputs: log, loss curve, resumable checkpoint at step 2, metrics with the training statistics.
    assert (out / "loss_curve.png").stat().st_size > 1000
    assert len((out / "log.jsonl").read_text().splitlines()) == 2
    assert latest_checkpoint(out) == out / "checkpoint-2"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["streams"] == 1 and metrics["settings"]["theta"] == 0.5
    assert set(metrics["metrics"]) >= {"lm_ppl", "time_diff", "fluency", "lm_correctness"}
    train_stats = metrics["train"]
    assert train_stats["streams"] == 4 and train_stats["tokens_per_stream"] == pytest.approx(
        sum(h["tokens"] for h in result.history) / 4
    )
    assert 0 < train_stats["labelled_per_stream"] < train_stats["tokens_per_stream"]
    printed = capsys.readouterr().out
    assert "LM-PPL" in printed and "training tokens per stream" in printed


def test_loss_at_labelled_positions_equals_the_model_loss(setup):
    tok = smollm2_tokenizer()
    model, tokens = tiny_model(tok, vision_dim=DIM, frame_num_tokens=NTOK)
    _, path = setup
    config = load_config(path)
    ds = StreamDataset(
        streams(), config.data.train_features, tokens, stream_weight=2.0, encoder_id=ENC, vision_hidden_size=DIM
    )
    items = [ds.item(0, 0), ds.item(1, 0)]
    batch = collate([it.encoded for it in items], [it.frame_tokens for it in items], tok.eos_token_id)
    with torch.no_grad():
        full = model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            frame_tokens=batch["frame_tokens"],
            labels=batch["labels"],
            loss_weights=batch["loss_weights"],
        ).loss
        total, count = micro_loss(model, batch, "cpu", lambda: torch.autocast("cpu", enabled=False))
    assert count == int((batch["labels"] != IGNORE).sum())
    torch.testing.assert_close(total / count, full, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", ["per_frame", "interleaved"])
def test_baseline_formats_train(setup, tmp_path, mode):
    _, path = setup
    config = load_config(path, [f"objective.mode={mode}", "augment.enabled=false", "eval.enabled=false"])
    result = train(config, out_dir=tmp_path / mode, max_steps=1, progress=False)
    streaming = train(
        load_config(path, ["augment.enabled=false", "eval.enabled=false"]),
        out_dir=tmp_path / "s",
        max_steps=1,
        progress=False,
    )
    assert json.loads((result.final_dir / "live_config.json").read_text())["mode"] == mode
    # the baselines spend more tokens per stream than streaming EOS (the ablation's point)
    assert result.stats["tokens_per_stream"] > streaming.stats["tokens_per_stream"]


def test_a_later_stage_starts_from_a_saved_checkpoint_and_zero_steps_saves_it_untrained(setup, tmp_path):
    root, path = setup
    first = train(
        load_config(path, ["augment.enabled=false"]),
        out_dir=tmp_path / "a",
        max_steps=1,
        progress=False,
        evaluate_at_end=False,
    )
    # 0 steps from init_from: the saved adapter is exactly the one started from (the ablation's untrained arm
    # is the same with no init_from)
    second = train(
        load_config(path, ["augment.enabled=false", f"model.init_from={first.final_dir}"]),
        out_dir=tmp_path / "b",
        max_steps=0,
        progress=False,
        evaluate_at_end=False,
    )
    assert second.steps == 0
    a = load_file(str(first.final_dir / "adapter_model.safetensors"))
    b = load_file(str(second.final_dir / "adapter_model.safetensors"))
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ConfigError, match="init_from"):
        train(
            load_config(path, [f"model.init_from={tmp_path / 'nowhere'}"]),
            out_dir=tmp_path / "c",
            max_steps=1,
            progress=False,
            evaluate_at_end=False,
        )
