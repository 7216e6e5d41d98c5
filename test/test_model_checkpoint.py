"""Checkpoints: save/load and LoRA merge keep the logits; load_checkpoint gives the same model
from the embedded preset and from its folder; the release's adapter layout loads exactly
through its preset; every load failure names the file and the fix."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import pytest
import torch
from model_helpers import _tinycoder_tokenizer, tiny_model, tiny_tokenizer
from safetensors.torch import load_file, save_file
from transformers import LlamaConfig, LlamaForCausalLM

from live_ros.model import presets
from live_ros.model.checkpoint import (
    CheckpointError,
    add_lora,
    load_checkpoint,
    load_encoder,
    load_llm,
    load_tokenizer,
    save_checkpoint,
)
from live_ros.model.config import RELEASE_LORA, EncoderSettings, LiveConfig, LoraSettings
from live_ros.model.format import Turn


def _batch(tokens, seed=0):
    enc = tokens.encode(
        [Turn("stream", num_frames=2), Turn("user", "what?"), Turn("assistant", "a cat"), Turn("stream", num_frames=1)]
    )
    frames = torch.randn(
        enc.num_frames, tokens.spec.frame_num_tokens, 16, generator=torch.Generator().manual_seed(seed)
    )
    return torch.tensor([enc.input_ids]), frames


def _train_lora_a_little(model, tokens):
    peft_model = add_lora(model, LoraSettings(r=4, alpha=8, dropout=0.0))
    ids, frames = _batch(tokens)
    for p in peft_model.parameters():  # LoRA B starts at zero: give it weights that change the output
        if p.requires_grad:
            with torch.no_grad():
                p.add_(torch.randn_like(p) * 0.05)
    return peft_model, ids, frames


def test_save_load_and_merge_keep_logits(tmp_path):
    tok = tiny_tokenizer()
    model, tokens = tiny_model(tok)
    llm_dir = tmp_path / "llm"
    model.save_pretrained(llm_dir)  # the "base LLM" folder (its connector is ignored on load)
    tok.save_pretrained(llm_dir)
    peft_model, ids, frames = _train_lora_a_little(model, tokens)
    peft_model.eval()
    with torch.no_grad():
        reference = peft_model(input_ids=ids, frame_tokens=frames).logits
    live = LiveConfig(
        base_llm=str(llm_dir),
        encoder=EncoderSettings(num_tokens=2),
        vision_hidden_size=16,
        format=tokens.spec,
        lora=LoraSettings(r=4, alpha=8, dropout=0.0),
    )
    assert model.config.live_config == replace(live, base_llm="", lora=LoraSettings())
    ckpt = save_checkpoint(peft_model, tok, tmp_path / "ckpt", live, dtype=torch.float32)
    assert {p.name for p in ckpt.iterdir()} >= {"adapter_config.json", "adapter_model.safetensors", "live_config.json"}
    keys = set(load_file(str(ckpt / "adapter_model.safetensors")))
    assert "base_model.model.connector.0.weight" in keys
    assert not any("embed_tokens" in k or "base_layer" in k for k in keys)  # no base weights saved

    for merge in (False, True):
        # the folder alone: its live_config.json names the base LLM (a local folder here) and the rest
        loaded = load_checkpoint(ckpt, merge=merge)
        assert loaded.encoder is None and loaded.config == live and loaded.folder == ckpt
        assert loaded.model_config.live_config == live and loaded.tokens.spec == tokens.spec
        with torch.no_grad():
            logits = loaded.model(input_ids=ids, frame_tokens=frames).logits
        # fp32 on one CPU, the same weights: only the LoRA merge's rounding differs
        torch.testing.assert_close(logits, reference, rtol=1e-4, atol=1e-4)
        assert loaded.adapter.missing == [] and loaded.adapter.unexpected == []


def test_embedded_preset_and_its_folder_give_the_same_model():
    """load_checkpoint('embedded') and load_checkpoint(<its folder>): one config, one model
    (the same logits on one real frame), and load_encoder gives the same encoder."""
    from skimage import data

    by_name = load_checkpoint("embedded")
    by_folder = load_checkpoint(presets.EMBEDDED_CHECKPOINT)
    assert by_name.config == by_folder.config == presets.live_config("embedded")
    assert by_name.folder == by_folder.folder == presets.EMBEDDED_CHECKPOINT and by_name.notes == []
    assert by_name.encoder.encoder_id == by_folder.encoder.encoder_id == by_name.config.encoder_id
    assert by_name.model_config.frame_fps == 2.0 and by_name.model_config.frame_resolution == 224
    frame = data.chelsea()
    with torch.no_grad():
        frame_tokens = by_name.encoder.encode([frame])
        assert torch.equal(frame_tokens, by_folder.encoder.encode([frame]))
        encoder = load_encoder("embedded")
        assert encoder.encoder_id == by_name.encoder.encoder_id
        assert torch.equal(encoder.encode([frame]), frame_tokens)
        ids = torch.tensor([by_name.tokens.prefix_ids + by_name.tokens.open_ids() + by_name.tokens.frame_ids])
        a = by_name.model(input_ids=ids, frame_tokens=frame_tokens).logits
        b = by_folder.model(input_ids=ids, frame_tokens=frame_tokens).logits
    torch.testing.assert_close(a, b, rtol=0, atol=0)  # same files, same code path: bit-identical


def test_release_layout_adapter_loads_exactly(tmp_path):
    """A hand-written adapter with the release's settings and key names, at tiny shapes."""
    tok = tiny_tokenizer()
    llm = tmp_path / "Meta-Llama-3-8B-Instruct"
    config = LlamaConfig(
        vocab_size=len(tok) - 1,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(llm)
    adapter = tmp_path / "videollm-online-8b-v1plus"
    adapter.mkdir()
    tok.save_pretrained(adapter)  # the release saves its tokenizer with <v>
    (adapter / "adapter_config.json").write_text(
        json.dumps(
            {
                "base_model_name_or_path": "meta-llama/Meta-Llama-3-8B-Instruct",
                "peft_type": "LORA",
                "task_type": "CAUSAL_LM",
                "r": 128,
                "lora_alpha": 256,
                "lora_dropout": 0.05,
                "bias": "none",
                "target_modules": "model.*(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)|lm_head$",
                "modules_to_save": ["connector"],
                "inference_mode": True,
                "fan_in_fan_out": False,
            }
        )
    )
    assert RELEASE_LORA.target_modules == json.loads((adapter / "adapter_config.json").read_text())["target_modules"]
    gen = torch.Generator().manual_seed(1)
    shapes = {
        "self_attn.q_proj": (64, 64),
        "self_attn.k_proj": (64, 32),
        "self_attn.v_proj": (64, 32),
        "self_attn.o_proj": (64, 64),
        "mlp.gate_proj": (64, 96),
        "mlp.up_proj": (64, 96),
        "mlp.down_proj": (96, 64),
    }
    written = {}
    for layer in range(2):
        for name, (fan_in, fan_out) in shapes.items():
            prefix = f"base_model.model.model.layers.{layer}.{name}"
            written[f"{prefix}.lora_A.weight"] = torch.randn(128, fan_in, generator=gen)
            written[f"{prefix}.lora_B.weight"] = torch.randn(fan_out, 128, generator=gen)
    written["base_model.model.lm_head.lora_A.weight"] = torch.randn(128, 64, generator=gen)
    written["base_model.model.lm_head.lora_B.weight"] = torch.randn(len(tok) - 1, 128, generator=gen)
    written["base_model.model.connector.0.weight"] = torch.randn(64, 1024, generator=gen)
    written["base_model.model.connector.0.bias"] = torch.randn(64, generator=gen)
    written["base_model.model.connector.2.weight"] = torch.randn(64, 64, generator=gen)
    written["base_model.model.connector.2.bias"] = torch.randn(64, generator=gen)
    save_file(written, str(adapter / "adapter_model.safetensors"))

    siglip = tmp_path / "siglip-large"
    siglip.mkdir()  # only named (for the weights tag): the encoder is not built here
    loaded = load_checkpoint(
        adapter,
        preset="videollm-online-8b-v1plus",
        llm=str(llm),
        vision=str(siglip),
        merge=False,
        force=True,
        with_encoder=False,
    )
    assert loaded.config.encoder_id == "siglip/google/siglip-large-patch16-384@siglip-large:384px:1+3x3"
    report = loaded.adapter
    assert report.missing == [] and report.unexpected == [] and report.loaded == len(written) == 34
    params = dict(loaded.model.named_parameters())
    for key, value in written.items():
        module = key.replace("lora_A.weight", "lora_A.default.weight").replace("lora_B.weight", "lora_B.default.weight")
        module = module.replace("connector.", "connector.modules_to_save.default.")
        torch.testing.assert_close(params[module], value, rtol=0, atol=0)
    cfg = loaded.model_config
    assert (cfg.frame_num_tokens, cfg.frame_fps, cfg.frame_resolution, cfg.vision_hidden_size) == (10, 2.0, 384, 1024)
    assert cfg.v_placeholder_id == len(tok) - 1  # <v> is the last id; the embedding is not resized
    assert loaded.tokens.spec.stream_close == "]\n"
    assert loaded.tokens.interval_id == tok(",", add_special_tokens=False).input_ids[-1]


def test_load_failures_name_file_and_fix(tmp_path):
    tok = tiny_tokenizer()
    model, tokens = tiny_model(tok)
    llm_dir = tmp_path / "llm"
    model.save_pretrained(llm_dir)
    tok.save_pretrained(llm_dir)
    empty = tmp_path / "empty"
    empty.mkdir()
    live = LiveConfig(encoder=EncoderSettings(num_tokens=2), vision_hidden_size=16)
    with pytest.raises(CheckpointError, match=r"adapter_config.json is missing .*checkpoint folder"):
        load_llm(llm_dir, empty, live)
    (empty / "adapter_config.json").write_text(
        json.dumps({"r": 4, "lora_alpha": 8, "peft_type": "LORA", "target_modules": ["q_proj"]})
    )
    with pytest.raises(CheckpointError, match=r"adapter_model.safetensors is missing .*copy"):
        load_llm(llm_dir, empty, live)
    with pytest.raises(CheckpointError, match=r"config.json is missing"):
        load_llm(tmp_path / "nowhere", None, live)
    plain = tmp_path / "plain_tokenizer"
    _tinycoder_tokenizer().save_pretrained(plain)  # a base LLM's tokenizer: no <v>
    with pytest.raises(CheckpointError, match=r"has no frame placeholder '<v>'.*tokenizer saved with the checkpoint"):
        load_tokenizer(plain, add=False)


def test_wrong_encoder_for_a_checkpoint_is_refused(tmp_path):
    tok = tiny_tokenizer()
    model, tokens = tiny_model(tok)
    peft_model = add_lora(model, LoraSettings(r=2, alpha=4))
    other = replace(presets.EMBEDDED_CONFIG, encoder=presets.EMBEDDED_CONFIG.encoder.with_weights_tag("0badc0de"))
    ckpt = save_checkpoint(peft_model, tok, tmp_path / "ckpt", other)
    with pytest.raises(
        CheckpointError,
        match=r"expects frame tokens from 'timm/tf_efficientnet_lite0@0badc0de.*"
        r"weights .* are '57934424'",
    ):
        load_checkpoint(ckpt, preset="embedded")
    with pytest.raises(CheckpointError, match="neither a preset"):
        load_checkpoint(tmp_path / "nowhere")
    with pytest.raises(CheckpointError, match="live_config.json is missing.*videollm-online-8b-v1plus"):
        load_checkpoint(tmp_path)


def test_lora_on_tied_lm_head_is_refused_unless_untied():
    tok = tiny_tokenizer()
    model, _ = tiny_model(tok)
    model.config.tie_word_embeddings = True
    with pytest.raises(CheckpointError, match="tied input/output embeddings"):
        add_lora(model, RELEASE_LORA)
    add_lora(model, RELEASE_LORA, untie_embeddings=True)
    assert model.config.tie_word_embeddings is False


def test_presets_refuse_8b_on_cpu_and_name_missing_paths(monkeypatch):
    for var in ("LIVE_ROS_LLAMA3_8B", "LIVE_ROS_SIGLIP", "LIVE_ROS_VIDEOLLM_ONLINE"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(presets.PresetError, match="8B model.*--force"):
        load_checkpoint("videollm-online-8b-v1plus")
    with pytest.raises(presets.PresetError, match=r"--llm \(or \$LIVE_ROS_LLAMA3_8B\).*never downloads"):
        presets.resolve_paths("videollm-online-8b-v1plus")
    with pytest.raises(presets.PresetError, match="unknown preset 'nope'"):
        presets.get("nope")


def test_check_model_embedded_runs():
    out = subprocess.run(
        [sys.executable, "-m", "live_ros.cli", "check-model", "embedded", "--max-new-tokens", "4"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    for line in ("parameters", "load time", "one frame", "answer", "memory"):
        assert line in out.stdout
    assert "SmolLM2" in out.stdout and "tf_efficientnet_lite0" in out.stdout
    assert "settings      2 fps, 224 px, 10 tokens/frame" in out.stdout
