"""live-ros train on tiny real models: a short run writes a checkpoint that loads through
checkpoint.load_live with the trained model's logits; a resumed run equals an
uninterrupted one; the loss skips unlabelled logits without changing; the config, the
data draw and the command line."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from model_helpers import smollm2_tokenizer, tiny_model
from safetensors.torch import load_file

from live_ros.data.features import FORMAT, save_features
from live_ros.data.streams import StreamSample, TimedTurn, save_samples
from live_ros.model.checkpoint import load_live
from live_ros.model.format import IGNORE, FormatSpec, collate
from live_ros.train import (ConfigError, Layout, StreamDataset, add_train, latest_checkpoint, load_config,
                            micro_loss, train)

DIM, NTOK, ENC = 16, 2, "test/encoder@0:32px:1+1"
ROOT = Path(__file__).resolve().parent.parent


def write_features(folder, video_id, num_frames, fps=2.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randn(num_frames, NTOK, DIM, generator=g).half()
    save_features(folder / f"{video_id}.safetensors", tokens, torch.arange(num_frames, dtype=torch.float64) / fps,
                  {"format": FORMAT, "encoder_id": ENC, "fps": fps, "video": f"{video_id}.mp4",
                   "num_frames": num_frames, "num_tokens": NTOK, "dim": DIM})


def streams():
    return [
        StreamSample("kitchen", 6.0, 2.0, [TimedTurn("user", 0.0, "Narrate what I do."),
                                           TimedTurn("assistant", 1.5, "You pick up the knife."),
                                           TimedTurn("assistant", 3.5, "You cut the tomato."),
                                           TimedTurn("user", 4.0, "What is on the board?"),
                                           TimedTurn("assistant", 4.0, "A tomato."),
                                           TimedTurn("assistant", 5.5, "You put the knife down.")]),
        StreamSample("garden", 4.0, 2.0, [TimedTurn("assistant", 1.0, "You open the gate."),
                                          TimedTurn("assistant", 3.0, "You water the plants.")]),
        StreamSample("desk", 5.0, 2.0, [TimedTurn("user", 0.0, "Tell me what happens."),
                                        TimedTurn("assistant", 2.0, "A cup appears."),
                                        TimedTurn("assistant", 4.5, "The cup leaves.")]),
        StreamSample("door", 3.0, 2.0, [TimedTurn("assistant", 0.5, "The door opens."),
                                        TimedTurn("assistant", 2.5, "The door closes.")]),
    ]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny base LLM folder, 4 training streams and 1 held-out stream with features."""
    root = tmp_path_factory.mktemp("train")
    tok = smollm2_tokenizer()
    model, _ = tiny_model(tok, vision_dim=DIM, frame_num_tokens=NTOK)
    model.save_pretrained(root / "llm")
    tok.save_pretrained(root / "llm")
    train_samples = streams()
    save_samples(train_samples, root / "train" / "streams.jsonl")
    for k, s in enumerate(train_samples):
        write_features(root / "train" / "features", s.video_id, s.num_frames, seed=k)
    held_out = [StreamSample("porch", 4.0, 2.0, [TimedTurn("assistant", 1.5, "A dog runs by."),
                                                 TimedTurn("assistant", 3.0, "The dog sits.")])]
    save_samples(held_out, root / "eval" / "streams.jsonl")
    write_features(root / "eval" / "features", "porch", held_out[0].num_frames, seed=9)
    config = {
        "seed": 3,
        "model": {"preset": None, "llm": str(root / "llm"), "encoder_id": ENC, "vision_hidden_size": DIM,
                  "frame_num_tokens": NTOK, "frame_resolution": 32, "fps": 2.0},
        "lora": {"r": 4, "alpha": 8, "dropout": 0.1},
        "objective": {"mode": "streaming", "stream_weight": 2.0, "max_length": 512},
        "data": {"train_streams": str(root / "train" / "streams.jsonl"),
                 "train_features": str(root / "train" / "features"),
                 "eval_streams": str(root / "eval" / "streams.jsonl"),
                 "eval_features": str(root / "eval" / "features")},
        "optim": {"lr": "3e-2", "epochs": 2, "batch_size": 2, "grad_accum": 1, "warmup_ratio": 0.0},
        "run": {"save_every": 2, "keep_checkpoints": 5, "threads": 2},
        "augment": {"enabled": True, "p_wrong": 0.2, "p_empty": 0.1, "p_delay": 0.2, "p_drop": 0.1},
    }
    path = root / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    return root, path


def _ids_and_frames(tokens, seed=0):
    from live_ros.model.format import Turn

    enc = tokens.encode([Turn("stream", num_frames=3), Turn("user", "what now?"), Turn("assistant", "a cat"),
                         Turn("stream", num_frames=2)])
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
    assert {"adapter_config.json", "adapter_model.safetensors", "live_config.json",
            "tokenizer_config.json"} <= {p.name for p in final.iterdir()}
    weights = load_file(str(final / "adapter_model.safetensors"))
    assert all(v.dtype == torch.float16 for v in weights.values())
    assert "base_model.model.connector.0.weight" in weights and "base_model.model.connector.2.bias" in weights
    assert not any("lm_head" in k or "embed_tokens" in k for k in weights)
    live = json.loads((final / "live_config.json").read_text())
    assert live["encoder_id"] == ENC and live["base_llm"] == str((root / "llm").resolve())
    assert (live["frame_fps"], live["vision_hidden_size"], live["frame_num_tokens"], live["mode"]) == \
        (2.0, DIM, NTOK, "streaming")
    assert FormatSpec(**live["live_format"]).frame_num_tokens == NTOK

    # The saved checkpoint through the users' loader gives the trained model's logits.
    loaded = load_live(root / "llm", final, vision_hidden_size=DIM, encoder_id=ENC, frame_num_tokens=NTOK,
                       spec=FormatSpec(**live["live_format"]), tokenizer_dir=final)
    assert "<v>" in loaded.tokens.tokenizer.get_vocab()
    ids, frames = _ids_and_frames(loaded.tokens)
    trained = result.model.eval()
    with torch.no_grad():
        expect = trained(input_ids=ids, frame_tokens=frames).logits
        got = loaded.model(input_ids=ids, frame_tokens=frames).logits
        base = load_live(root / "llm", None, vision_hidden_size=DIM, encoder_id=ENC, frame_num_tokens=NTOK,
                         spec=FormatSpec(**live["live_format"])).model(input_ids=ids, frame_tokens=frames).logits
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
        sum(h["tokens"] for h in result.history) / 4)
    assert 0 < train_stats["labelled_per_stream"] < train_stats["tokens_per_stream"]
    printed = capsys.readouterr().out
    assert "LM-PPL" in printed and "training tokens per stream" in printed


def test_resume_continues_at_the_step_with_the_same_result(setup, tmp_path):
    _, path = setup
    config = lambda: load_config(path, ["eval.enabled=false"])  # noqa: E731
    full = train(config(), out_dir=tmp_path / "full", max_steps=4, progress=False)

    part = train(config(), out_dir=tmp_path / "part", max_steps=4, progress=False, stop_after=3)
    assert part.interrupted and part.final_dir is None and part.steps == 3
    assert latest_checkpoint(tmp_path / "part").name == "checkpoint-3"
    with pytest.raises(ConfigError, match="--resume"):
        train(config(), out_dir=tmp_path / "part", max_steps=4, progress=False)
    resumed = train(config(), out_dir=tmp_path / "part", max_steps=4, progress=False, resume=True)
    assert resumed.start_step == 3 and resumed.steps == 4
    assert [h["step"] for h in resumed.history] == [1, 2, 3, 4]
    for a, b in zip(full.history, resumed.history):  # dropout and augmentation are on: RNG and draws restored
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-7) and a["lr"] == pytest.approx(b["lr"])
    a = load_file(str(tmp_path / "full" / "checkpoint-4" / "adapter_model.safetensors"))  # fp32
    b = load_file(str(tmp_path / "part" / "checkpoint-4" / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-7)
    assert full.stats["tokens"] == resumed.stats["tokens"] and full.stats["streams"] == resumed.stats["streams"]
    with pytest.raises(ConfigError, match="does not fit"):  # resuming with another LoRA rank
        train(load_config(path, ["eval.enabled=false", "lora.r=8"]), out_dir=tmp_path / "part", max_steps=4,
              progress=False, resume=True)


def test_loss_at_labelled_positions_equals_the_model_loss(setup):
    tok = smollm2_tokenizer()
    model, tokens = tiny_model(tok, vision_dim=DIM, frame_num_tokens=NTOK)
    _, path = setup
    config = load_config(path)
    ds = StreamDataset(streams(), config.data.train_features, tokens, stream_weight=2.0, encoder_id=ENC,
                       vision_hidden_size=DIM)
    items = [ds.item(0, 0), ds.item(1, 0)]
    batch = collate([it.encoded for it in items], [it.frame_tokens for it in items], tok.eos_token_id)
    with torch.no_grad():
        full = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                     frame_tokens=batch["frame_tokens"], labels=batch["labels"],
                     loss_weights=batch["loss_weights"]).loss
        total, count = micro_loss(model, batch, "cpu", lambda: torch.autocast("cpu", enabled=False))
    assert count == int((batch["labels"] != IGNORE).sum())
    torch.testing.assert_close(total / count, full, rtol=1e-5, atol=1e-6)


def test_name_weight_scales_only_the_targets_that_start_an_object_name(setup):
    tokens = tiny_model(smollm2_tokenizer(), vision_dim=DIM, frame_num_tokens=NTOK)[1]
    _, path = setup
    features = load_config(path).data.train_features
    plain = StreamDataset(streams(), features, tokens, stream_weight=2.0, encoder_id=ENC, vision_hidden_size=DIM)
    named = StreamDataset(streams(), features, tokens, stream_weight=2.0, encoder_id=ENC, vision_hidden_size=DIM,
                          name_weight=4.0)
    cup, = tokens.first_token_ids(["coffee cup"])  # "desk": "A cup appears." has no " coffee"
    cat_ids = tokens.first_token_ids(["cat"])
    assert named.name_ids >= cat_ids | {cup} and not plain.name_ids
    for index in range(len(streams())):
        a, b = plain.item(index, 0).encoded, named.item(index, 0).encoded
        assert a.labels == b.labels
        for label, wa, wb in zip(a.labels, a.weights, b.weights):
            assert wb == (4.0 * wa if label in named.name_ids else wa)
    from live_ros.model.format import Turn

    enc = tokens.encode([Turn("stream", num_frames=2), Turn("assistant", "The cat appears.")], stream_weight=2.0)
    before = list(enc.weights)
    from live_ros.model.format import weight_targets

    assert weight_targets(enc, cat_ids, 3.0) == 1
    changed = [i for i, (x, y) in enumerate(zip(before, enc.weights)) if x != y]
    assert [enc.labels[i] for i in changed] == list(cat_ids) and enc.weights[changed[0]] == 3.0
    with pytest.raises(ConfigError, match="name_weight"):
        load_config(path, ["objective.name_weight=0"])


def test_dataset_draws_questions_per_epoch_and_cuts_long_streams(setup, tmp_path):
    dialogue = pytest.importorskip("live_ros.data.dialogue")
    from live_ros.data.annotations import Event, VideoAnnotation

    ann = VideoAnnotation("scene", 20.0, events=[Event(3.2, "appears", "cat", "The cat appears."),
                                                 Event(10.3, "appears", "rocket", "The rocket appears."),
                                                 Event(15.0, "leaves", "cat", "The cat leaves.")],
                          source="world", domain="scene")
    sample = dialogue.offline_stream(ann, 2.0, rng=0)
    write_features(tmp_path, "scene", sample.num_frames)
    tokens = tiny_model(smollm2_tokenizer(), vision_dim=DIM, frame_num_tokens=NTOK)[1]
    ds = StreamDataset([sample], tmp_path, tokens, seed=1, encoder_id=ENC, vision_hidden_size=DIM)
    texts = [[(t.role, t.time, t.text) for t in ds.draw(0, epoch).turns] for epoch in range(6)]
    assert texts[0] == [(t.role, t.time, t.text) for t in ds.draw(0, 0).turns]  # deterministic
    assert len({json.dumps(t) for t in texts}) > 1                                 # fresh per epoch
    fixed = StreamDataset([sample], tmp_path, tokens, seed=1, redraw=False, encoder_id=ENC, vision_hidden_size=DIM)
    assert fixed.draw(0, 3).turns == sample.turns

    short = StreamDataset([sample], tmp_path, tokens, seed=1, max_length=120, encoder_id=ENC, vision_hidden_size=DIM)
    item = short.item(0, 0)
    assert item.truncated and len(item.encoded.input_ids) <= 120
    assert item.frame_tokens.shape[0] == item.encoded.num_frames < sample.num_frames


def test_layout_covers_every_stream_once_per_epoch():
    layout = Layout(num_streams=7, batch_size=2, grad_accum=2, seed=0)
    assert (layout.micro_per_epoch, layout.steps_per_epoch) == (4, 2)
    for epoch in range(2):
        seen = [i for s in range(epoch * 2, epoch * 2 + 2) for mb in layout.step(s)[1] for i in mb]
        assert sorted(seen) == list(range(7))
        assert all(layout.step(s)[0] == epoch for s in range(epoch * 2, epoch * 2 + 2))
    assert layout.order(0) != layout.order(1)


def test_config_errors_and_overrides(tmp_path, setup):
    _, path = setup
    c = load_config(path, ["objective.mode=per_frame", "augment.enabled=false", "optim.max_steps=7"])
    assert (c.objective.mode, c.augment.active, c.optim.max_steps) == ("per_frame", False, 7)
    with pytest.raises(ConfigError, match="streaming format only"):
        load_config(path, ["objective.mode=per_frame"])  # augmentation is on in this config
    with pytest.raises(ConfigError, match="optim.lrr"):
        load_config(path, ["optim.lrr=1"])
    with pytest.raises(ConfigError, match="objective.mode"):
        load_config(path, ["objective.mode=dialogue"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(path, ["optim.lr"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    shipped = load_config(ROOT / "config" / "train_embedded.yaml")
    assert shipped.model.preset == "embedded" and shipped.lora.r <= 32 and "lm_head" not in shipped.lora.target_modules
    assert shipped.optim.lr == pytest.approx(1e-3) and shipped.objective.mode == "streaming"
    # the committed checkpoint's recipe (stage 1; stage 2's overrides are in scripts/train_embedded.sh)
    assert (shipped.optim.grad_accum, shipped.optim.epochs) == (12, 1)
    assert shipped.data.extra_streams == "data/world/windows/streams.jsonl" and not shipped.augment.enabled
    script = (ROOT / "scripts" / "train_embedded.sh").read_text()
    assert "model.init_from=" in script and "optim.max_steps=60" in script and "optim.lr=5e-4" in script


def test_cli_runs_one_step(setup, tmp_path, capsys):
    _, path = setup
    parser = argparse.ArgumentParser()
    add_train(parser.add_subparsers(dest="verb"))
    args = parser.parse_args(["train", "--config", str(path), "--out", str(tmp_path / "cli"), "--max-steps", "1",
                              "--quiet", "--no-eval", "run.save_every=0"])
    assert args.run(args) == 0
    assert (tmp_path / "cli" / "final" / "adapter_model.safetensors").is_file()
    assert not list((tmp_path / "cli").glob("checkpoint-*"))
    bad = parser.parse_args(["train", "--config", str(path), "--out", str(tmp_path / "bad"), "objective.mode=x"])
    assert bad.run(bad) == 1
    assert "objective.mode" in capsys.readouterr().err


@pytest.mark.parametrize("mode", ["per_frame", "interleaved"])
def test_baseline_formats_train(setup, tmp_path, mode):
    _, path = setup
    config = load_config(path, [f"objective.mode={mode}", "augment.enabled=false", "eval.enabled=false"])
    result = train(config, out_dir=tmp_path / mode, max_steps=1, progress=False)
    streaming = train(load_config(path, ["augment.enabled=false", "eval.enabled=false"]), out_dir=tmp_path / "s",
                      max_steps=1, progress=False)
    assert json.loads((result.final_dir / "live_config.json").read_text())["mode"] == mode
    # the baselines spend more tokens per stream than streaming EOS (the ablation's point)
    assert result.stats["tokens_per_stream"] > streaming.stats["tokens_per_stream"]


def test_a_later_stage_starts_from_a_saved_checkpoint_and_zero_steps_saves_it_untrained(setup, tmp_path):
    root, path = setup
    first = train(load_config(path, ["augment.enabled=false"]), out_dir=tmp_path / "a", max_steps=1, progress=False,
                  evaluate_at_end=False)
    # 0 steps from init_from: the saved adapter is exactly the one started from (the ablation's untrained arm
    # is the same with no init_from)
    second = train(load_config(path, ["augment.enabled=false", f"model.init_from={first.final_dir}"]),
                   out_dir=tmp_path / "b", max_steps=0, progress=False, evaluate_at_end=False)
    assert second.steps == 0
    a = load_file(str(first.final_dir / "adapter_model.safetensors"))
    b = load_file(str(second.final_dir / "adapter_model.safetensors"))
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ConfigError, match="init_from"):
        train(load_config(path, [f"model.init_from={tmp_path / 'nowhere'}"]), out_dir=tmp_path / "c", max_steps=1,
              progress=False, evaluate_at_end=False)
