"""The model a run trains (live_ros/training/model_setup.py): the LiveConfig resolved from
the training config over the preset's named config (no torch: the settings come from
presets, never from building the encoder), each setting the config gives replacing the
preset's, contradictions and missing values refused with what to do."""

from __future__ import annotations

from dataclasses import replace

import pytest
from training_helpers import DIM, ENC, NTOK, ROOT, make_run

from live_ros.model import presets
from live_ros.model.config import EncoderSettings, LoraSettings
from live_ros.training.config import ConfigError, TrainConfig, load_config
from live_ros.training.model_setup import features_encoder_id, resolve_model


def _config(tmp_path, **model) -> TrainConfig:
    """A config over the embedded preset with a base LLM folder given (so that no cache is needed)."""
    data = {"train_streams": "s.jsonl", "train_features": "f"}
    return TrainConfig.from_dict({"model": {"llm": str(tmp_path), **model}, "data": data}).validate()


def test_the_shipped_recipe_resolves_to_the_committed_checkpoints_settings(tmp_path):
    """config/train_embedded.yaml trained live_ros/checkpoints/embedded: the same LiveConfig,
    its encoder filled from the preset's named config."""
    config = load_config(ROOT / "config" / "train_embedded.yaml", [f"model.llm={tmp_path}"])
    spec = resolve_model(config)
    committed = presets.live_config("embedded")
    assert spec.llm == tmp_path
    # the recipe now teaches the world's 24 named objects; the committed checkpoint records the
    # 8 it was trained on (it predates the real-photo vocabulary): every other setting is the same
    assert set(committed.vocabulary) <= set(spec.live.vocabulary)
    assert spec.live == replace(committed, base_llm=str(tmp_path.resolve()), vocabulary=spec.live.vocabulary)
    assert spec.live.encoder == presets.EMBEDDED_CONFIG.encoder
    assert features_encoder_id(config, spec) == committed.encoder_id


def test_the_training_config_replaces_the_presets_values(tmp_path):
    config = _config(tmp_path, fps=4.0)
    config.lora.r, config.lora.dropout = 8, 0.1
    config.objective.stream_weight, config.objective.mode = 2.5, "per_frame"
    live = resolve_model(config).live
    assert (live.frame_fps, live.stream_weight, live.mode) == (4.0, 2.5, "per_frame")
    assert live.lora == LoraSettings(r=8, alpha=32, dropout=0.1)
    # tokens per frame without an id: the preset's encoder with the pooled token and its difference
    live = resolve_model(_config(tmp_path, frame_num_tokens=1)).live
    assert live.encoder == replace(presets.EMBEDDED_CONFIG.encoder, num_tokens=1)
    assert live.encoder_id == "timm/tf_efficientnet_lite0@57934424:224px:1+delta"
    assert live.format.frame_num_tokens == 1


def test_an_encoder_id_names_the_encoder(tmp_path):
    """config/train_ablation.yaml's pooled features: the id gives the encoder (the preset's
    normalisation kept); a contradicting token count or resolution is refused."""
    ablation = load_config(ROOT / "config" / "train_ablation.yaml", [f"model.llm={tmp_path}"])
    spec = resolve_model(ablation)
    assert spec.live.encoder_id == ablation.model.encoder_id == features_encoder_id(ablation, spec)
    assert (spec.live.frame_num_tokens, spec.live.vision_hidden_size, spec.live.encoder.frame_delta) == (1, 1280, False)
    assert spec.live.encoder.mean == presets.EMBEDDED_CONFIG.encoder.mean
    with pytest.raises(ConfigError, match="model.frame_num_tokens is 10 but model.encoder_id"):
        resolve_model(_config(tmp_path, encoder_id=ablation.model.encoder_id, frame_num_tokens=10))
    with pytest.raises(ConfigError, match="model.frame_resolution is 320"):
        resolve_model(_config(tmp_path, encoder_id=ablation.model.encoder_id, frame_resolution=320))
    with pytest.raises(ConfigError, match="model: .*not 1 \\+ s x s"):
        resolve_model(_config(tmp_path, frame_num_tokens=3))


def test_without_a_preset(tmp_path):
    root, path = make_run(tmp_path)
    config = load_config(path)
    spec = resolve_model(config)
    assert spec.llm == root / "llm" and spec.live.base_llm == str((root / "llm").resolve())
    assert spec.live.encoder_id == ENC and spec.live.encoder.backend == "test"
    assert (spec.live.vision_hidden_size, spec.live.frame_num_tokens, spec.live.frame_resolution) == (DIM, NTOK, 32)
    assert (spec.live.stream_weight, spec.live.lora.r, spec.live.lora.dropout) == (2.0, 4, 0.1)
    # features of an encoder no id form describes: no encoder in the LiveConfig, the features
    # still checked against the id as written
    odd = load_config(path, ["model.encoder_id=features from elsewhere"])
    spec = resolve_model(odd)
    assert spec.live.encoder == EncoderSettings(image_size=32, num_tokens=NTOK) and spec.live.encoder_id == ""
    assert features_encoder_id(odd, spec) == "features from elsewhere"
    config.model.vision_hidden_size = None  # validate() refuses this first; resolve_model says the same
    with pytest.raises(ConfigError, match="without model.preset, give model.encoder_id"):
        resolve_model(config)
    config = load_config(path, ["model.preset=nonesuch"])
    with pytest.raises(presets.PresetError, match="unknown preset 'nonesuch'"):
        resolve_model(config)
