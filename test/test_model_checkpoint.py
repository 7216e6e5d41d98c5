"""Checkpoints: save/load and LoRA merge keep the logits; the release's adapter layout loads
exactly; every load failure names the file and the fix."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from model_helpers import _tinycoder_tokenizer, tiny_model, tiny_tokenizer
from safetensors.torch import load_file, save_file
from transformers import LlamaConfig, LlamaForCausalLM

from live_ros.model import presets
from live_ros.model.checkpoint import (RELEASE_LORA, CheckpointError, LoraSettings, add_lora, live_settings,
                                       load_live, load_release_checkpoint, load_tokenizer, save_checkpoint)
from live_ros.model.format import Turn


def _batch(tokens, seed=0):
    enc = tokens.encode([Turn("stream", num_frames=2), Turn("user", "what?"), Turn("assistant", "a cat"),
                         Turn("stream", num_frames=1)])
    frames = torch.randn(enc.num_frames, tokens.spec.frame_num_tokens, 16, generator=torch.Generator().manual_seed(seed))
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
    model.save_pretrained(llm_dir)   # the "base LLM" folder (its connector is ignored on load)
    tok.save_pretrained(llm_dir)
    peft_model, ids, frames = _train_lora_a_little(model, tokens)
    peft_model.eval()
    with torch.no_grad():
        reference = peft_model(input_ids=ids, frame_tokens=frames).logits
    ckpt = save_checkpoint(peft_model, tok, tmp_path / "ckpt", live_settings(
        model.config, {"backend": "test"}, base_llm=str(llm_dir)), dtype=torch.float32)
    assert {p.name for p in ckpt.iterdir()} >= {"adapter_config.json", "adapter_model.safetensors", "live_config.json"}
    keys = set(load_file(str(ckpt / "adapter_model.safetensors")))
    assert "base_model.model.connector.0.weight" in keys
    assert not any("embed_tokens" in k or "base_layer" in k for k in keys)  # no base weights saved

    for merge in (False, True):
        loaded = load_live(llm_dir, ckpt, vision_hidden_size=16, encoder_id="", frame_num_tokens=2,
                           spec=tokens.spec, tokenizer_dir=ckpt, merge=merge)
        with torch.no_grad():
            logits = loaded.model(input_ids=ids, frame_tokens=frames).logits
        torch.testing.assert_close(logits, reference, rtol=1e-4, atol=1e-4)
        assert loaded.adapter.missing == [] and loaded.adapter.unexpected == []


def test_release_layout_adapter_loads_exactly(tmp_path):
    """A hand-written adapter with the release's settings and key names, at tiny shapes."""
    tok = tiny_tokenizer()
    llm = tmp_path / "Meta-Llama-3-8B-Instruct"
    config = LlamaConfig(vocab_size=len(tok) - 1, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(llm)
    adapter = tmp_path / "videollm-online-8b-v1plus"
    adapter.mkdir()
    tok.save_pretrained(adapter)  # the release saves its tokenizer with <v>
    (adapter / "adapter_config.json").write_text(json.dumps({
        "base_model_name_or_path": "meta-llama/Meta-Llama-3-8B-Instruct", "peft_type": "LORA",
        "task_type": "CAUSAL_LM", "r": 128, "lora_alpha": 256, "lora_dropout": 0.05, "bias": "none",
        "target_modules": "model.*(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)|lm_head$",
        "modules_to_save": ["connector"], "inference_mode": True, "fan_in_fan_out": False}))
    assert RELEASE_LORA.target_modules == json.loads((adapter / "adapter_config.json").read_text())["target_modules"]
    gen = torch.Generator().manual_seed(1)
    shapes = {"self_attn.q_proj": (64, 64), "self_attn.k_proj": (64, 32), "self_attn.v_proj": (64, 32),
              "self_attn.o_proj": (64, 64), "mlp.gate_proj": (64, 96), "mlp.up_proj": (64, 96),
              "mlp.down_proj": (96, 64)}
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

    loaded = load_release_checkpoint(adapter, llm, encoder_id="siglip-large-patch16-384", merge=False)
    report = loaded.adapter
    assert report.missing == [] and report.unexpected == [] and report.loaded == len(written) == 34
    params = dict(loaded.model.named_parameters())
    for key, value in written.items():
        module = key.replace("lora_A.weight", "lora_A.default.weight").replace("lora_B.weight", "lora_B.default.weight")
        module = module.replace("connector.", "connector.modules_to_save.default.")
        torch.testing.assert_close(params[module], value, rtol=0, atol=0)
    cfg = loaded.config
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
    with pytest.raises(CheckpointError, match=r"adapter_config.json is missing .*checkpoint folder"):
        load_live(llm_dir, empty, vision_hidden_size=16, encoder_id="", frame_num_tokens=2)
    (empty / "adapter_config.json").write_text(json.dumps({"r": 4, "lora_alpha": 8, "peft_type": "LORA",
                                                           "target_modules": ["q_proj"]}))
    with pytest.raises(CheckpointError, match=r"adapter_model.safetensors is missing .*copy"):
        load_live(llm_dir, empty, vision_hidden_size=16, encoder_id="", frame_num_tokens=2)
    with pytest.raises(CheckpointError, match=r"config.json is missing"):
        load_live(tmp_path / "nowhere", None, vision_hidden_size=16, encoder_id="", frame_num_tokens=2)
    plain = tmp_path / "plain_tokenizer"
    _tinycoder_tokenizer().save_pretrained(plain)  # a base LLM's tokenizer: no <v>
    with pytest.raises(CheckpointError, match=r"has no frame placeholder '<v>'.*tokenizer saved with the checkpoint"):
        load_tokenizer(plain, add=False)


def test_wrong_encoder_for_a_checkpoint_is_refused(tmp_path, monkeypatch):
    tok = tiny_tokenizer()
    model, tokens = tiny_model(tok)
    peft_model = add_lora(model, LoraSettings(r=2, alpha=4))
    ckpt = save_checkpoint(peft_model, tok, tmp_path / "ckpt", live_settings(
        model.config, {"backend": "open_clip"}, base_llm="x", encoder_id="open_clip/ViT-L-14@datacomp:1+3x3"))
    with pytest.raises(CheckpointError, match=r"live_config.json expects frame tokens from 'open_clip/ViT-L-14"):
        presets.load("embedded", adapter=str(ckpt))


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
        presets.load("videollm-online-8b-v1plus")
    with pytest.raises(presets.PresetError, match=r"--llm \(or \$LIVE_ROS_LLAMA3_8B\).*never downloads"):
        presets.resolve_paths("videollm-online-8b-v1plus")
    with pytest.raises(presets.PresetError, match="unknown preset 'nope'"):
        presets.get("nope")


def test_check_model_embedded_runs():
    out = subprocess.run([sys.executable, "-m", "live_ros.cli", "check-model", "embedded", "--max-new-tokens", "4"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    for line in ("parameters", "load time", "one frame", "answer", "memory"):
        assert line in out.stdout
    assert "SmolLM2" in out.stdout and "tf_efficientnet_lite0" in out.stdout
