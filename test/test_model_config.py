"""LiveConfig: the one model configuration. save_pretrained / from_pretrained round trip,
the committed checkpoint's file stores each setting once, format_version 1 files still
read, presets are named configs, and reading one costs no torch."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import pytest

from live_ros.model import presets
from live_ros.model.config import (
    CONFIG_NAME,
    RELEASE_LORA,
    ConfigError,
    EncoderSettings,
    EvidenceSettings,
    LiveConfig,
    LoraSettings,
    override_note,
    parse_encoder_id,
)
from live_ros.model.format import FormatSpec

EMBEDDED_ID = "timm/tf_efficientnet_lite0@57934424:224px:1+3x3+delta"

# The committed checkpoint's live_config.json as format_version 1 wrote it (every value at
# top level, several twice): kept here verbatim so that old checkpoints keep loading.
V1 = {
    "base_llm": "HuggingFaceTB/SmolLM2-135M-Instruct",
    "encoder": {
        "backend": "timm",
        "dim": 2560,
        "frame_delta": True,
        "id": EMBEDDED_ID,
        "image_size": 224,
        "mean": [0.5, 0.5, 0.5],
        "model_name": "tf_efficientnet_lite0",
        "num_tokens": 10,
        "preset": "embedded",
        "spatial": 3,
        "std": [0.5, 0.5, 0.5],
    },
    "encoder_id": EMBEDDED_ID,
    "format_version": 1,
    "frame_fps": 2.0,
    "frame_num_tokens": 10,
    "frame_resolution": 224,
    "live_format": {
        "assistant_prefix": "Assistant:",
        "frame_num_tokens": 10,
        "frame_token": "<v>",
        "interval": ",",
        "stream_close": "]\n",
        "stream_open": "[",
        "system_prompt": "A multimodal AI assistant is helping users with some activities. Below is "
        "their conversation, interleaved with the list of video frames received by "
        "the assistant.",
        "text_space": " ",
        "turn_separator": "\n",
        "user_prefix": "User:",
    },
    "lora": {
        "alpha": 32,
        "r": 16,
        "target_modules": "model.*(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)",
    },
    "mode": "streaming",
    "preset": "embedded",
    "stream_weight": 1.0,
    "vision_hidden_size": 2560,
}


def _leaves(data, prefix=""):
    """Every (key path, value) of a nested dict."""
    for key, value in data.items():
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def test_round_trip(tmp_path):
    config = LiveConfig(
        base_llm="some/llm",
        encoder=EncoderSettings("siglip", "google/siglip-large-patch16-384", "abc", 384, 5, False, (0.1, 0.2, 0.3)),
        vision_hidden_size=1024,
        frame_fps=4.0,
        format=FormatSpec(interval=";", user_prefix="U:"),
        lora=LoraSettings(r=8, alpha=16, dropout=0.0),
        stream_weight=0.5,
        mode="per_frame",
    )
    path = config.save_pretrained(tmp_path / "ckpt")
    assert path.name == CONFIG_NAME
    again = LiveConfig.from_pretrained(tmp_path / "ckpt")
    assert again == config
    assert again.format.frame_num_tokens == 5 and again.encoder.spatial == 2 and again.encoder_id.endswith("1+2x2")
    assert json.loads(path.read_text())["format_version"] == 2


def test_committed_checkpoint_stores_each_setting_once():
    raw = json.loads((presets.EMBEDDED_CHECKPOINT / CONFIG_NAME).read_text())
    assert raw["format_version"] == 2
    leaves = dict(_leaves(raw))
    # no key twice at any depth, and none of the values format_version 1 repeated
    names = [key.rsplit(".", 1)[-1] for key in leaves]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
    assert not {"frame_num_tokens", "encoder_id", "frame_resolution", "preset", "id", "dim", "spatial"} & set(names)
    assert EMBEDDED_ID not in json.dumps(raw)  # the id is derived, not stored
    config = LiveConfig.from_pretrained(presets.EMBEDDED_CHECKPOINT)
    assert (
        config.encoder_id,
        config.frame_num_tokens,
        config.frame_resolution,
        config.frame_fps,
        config.vision_hidden_size,
        config.format.frame_num_tokens,
    ) == (EMBEDDED_ID, 10, 224, 2.0, 2560, 10)
    # the preset's named config is the committed checkpoint's (training settings aside)
    named = presets.get("embedded").config
    assert (named.encoder, named.vision_hidden_size, named.frame_fps, named.format, named.base_llm) == (
        config.encoder,
        config.vision_hidden_size,
        config.frame_fps,
        config.format,
        config.base_llm,
    )
    # and it describes the adapter stored beside it
    adapter = json.loads((presets.EMBEDDED_CHECKPOINT / "adapter_config.json").read_text())
    assert (config.lora.r, config.lora.alpha, config.lora.target_modules) == (
        adapter["r"],
        adapter["lora_alpha"],
        adapter["target_modules"],
    )


def test_format_version_1_reads(tmp_path):
    (tmp_path / CONFIG_NAME).write_text(json.dumps(V1))
    old = LiveConfig.from_pretrained(tmp_path)
    # v1 never recorded the vocabulary: every other setting is the committed checkpoint's
    assert old == replace(LiveConfig.from_pretrained(presets.EMBEDDED_CHECKPOINT), vocabulary=())
    assert old.encoder == EncoderSettings("timm", "tf_efficientnet_lite0", "57934424", 224, 10, True)
    # an id the current form cannot name keeps its sizes; the encoder is then unchecked
    odd = dict(V1, encoder_id="test/encoder@0:32px:1+1", frame_num_tokens=2, frame_resolution=32, encoder={})
    (tmp_path / CONFIG_NAME).write_text(json.dumps(odd))
    config = LiveConfig.from_pretrained(tmp_path)
    assert (config.encoder_id, config.frame_num_tokens, config.frame_resolution) == ("", 2, 32)


def test_bad_files_say_what_is_wrong(tmp_path):
    with pytest.raises(FileNotFoundError, match="live_config.json is missing.*preset"):
        LiveConfig.from_pretrained(tmp_path)
    data = LiveConfig().to_dict()
    (tmp_path / CONFIG_NAME).write_text(json.dumps(dict(data, frame_num_tokens=10)))
    with pytest.raises(ConfigError, match=r"unknown live_config keys \['frame_num_tokens'\]"):
        LiveConfig.from_pretrained(tmp_path)
    (tmp_path / CONFIG_NAME).write_text(json.dumps(dict(data, format_version=3)))
    with pytest.raises(ConfigError, match="newer than this live_ros"):
        LiveConfig.from_pretrained(tmp_path)
    with pytest.raises(ConfigError, match="not 1 \\+ s x s"):
        EncoderSettings(backend="timm", model_name="x", num_tokens=3)


def test_presets_are_named_configs():
    release = presets.get("videollm-online-8b-v1plus").config
    assert release.format == presets.RELEASE_SPEC and release.lora == RELEASE_LORA
    assert (
        release.frame_resolution,
        release.frame_num_tokens,
        release.frame_fps,
        release.vision_hidden_size,
        release.encoder.backend,
    ) == (384, 10, 2.0, 1024, "siglip")
    assert presets.frame_size("videollm-online-8b-v1plus") == 384 and presets.frame_size("embedded") == 224
    # any local SigLIP copy fits the release (it names no weights); another layout does not
    assert release.encoder.accepts("siglip/google/siglip-large-patch16-384@siglip-large:384px:1+3x3")
    assert not release.encoder.accepts("siglip/google/siglip-large-patch16-384@x:224px:1+3x3")
    assert parse_encoder_id(EMBEDDED_ID).encoder_id == EMBEDDED_ID
    assert override_note("fps", 4.0, 2.0) == "fps 4.0 overrides the checkpoint's 2.0: the model was trained at 2.0"


def test_reading_a_config_imports_no_torch():
    code = (
        "import sys; from live_ros.model import presets; c = presets.live_config('embedded'); "
        "print(c.frame_fps, c.frame_resolution, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["2.0", "224", "False"], out.stderr


def test_evidence_settings_round_trip(tmp_path):
    """An evidence head (live_ros/model/evidence.py) is stored in live_config.json as its own
    section; the classes come back as a tuple."""
    evidence = EvidenceSettings(classes=["cat", "dog", "object I can't name"], input_dim=1280, token=3, pooling="token")
    assert evidence.classes == ("cat", "dog", "object I can't name")
    config = LiveConfig(
        encoder=EncoderSettings(num_tokens=5), vision_hidden_size=2560, vocabulary=("cat", "dog"), evidence=evidence
    )
    data = config.to_dict()
    assert data["evidence"] == {
        "classes": ["cat", "dog", "object I can't name"],
        "input_dim": 1280,
        "token": 3,
        "pooling": "token",
    }
    assert LiveConfig.from_dict(json.loads(json.dumps(data))) == config
    path = config.save_pretrained(tmp_path / "ckpt")
    again = LiveConfig.from_pretrained(tmp_path / "ckpt")
    assert again == config and again.evidence == evidence
    assert json.loads(path.read_text())["evidence"]["classes"][-1] == "object I can't name"
    # the defaults: token 0, max over the frame's tokens
    assert EvidenceSettings(classes=("cat",), input_dim=8).to_dict() == {
        "classes": ["cat"],
        "input_dim": 8,
        "token": 0,
        "pooling": "max",
    }


def test_a_config_without_evidence_writes_no_evidence_key(tmp_path):
    config = LiveConfig()
    assert config.evidence is None and "evidence" not in config.to_dict()
    path = config.save_pretrained(tmp_path)
    assert "evidence" not in json.loads(path.read_text())
    assert LiveConfig.from_pretrained(tmp_path).evidence is None


@pytest.mark.parametrize(
    "values, field",
    [
        ({"classes": ()}, "evidence.classes"),
        ({"input_dim": 0}, "evidence.input_dim"),
        ({"input_dim": 8.0}, "evidence.input_dim"),
        ({"token": -1}, "evidence.token"),
        ({"pooling": "mean"}, "evidence.pooling"),
    ],
)
def test_bad_evidence_settings_name_the_field(values, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        EvidenceSettings(**{"classes": ("cat",), "input_dim": 8, **values})


def test_the_evidence_token_must_be_one_of_the_frames_tokens(tmp_path):
    evidence = EvidenceSettings(classes=("cat",), input_dim=8, token=10)
    with pytest.raises(ConfigError, match=r"evidence\.token 10 is not one of the 10 tokens per frame"):
        LiveConfig(encoder=EncoderSettings(num_tokens=10), evidence=evidence)
    LiveConfig(encoder=EncoderSettings(num_tokens=11), evidence=evidence)  # the last of 11: fine
    # a file that says otherwise is refused with its path; so are unknown and bad evidence keys
    good = LiveConfig(encoder=EncoderSettings(num_tokens=11), evidence=evidence).to_dict()
    for evidence_data, message in (
        (dict(good["evidence"], token=11), r"evidence\.token 11 is not one of the 11"),
        (dict(good["evidence"], pooling="mean"), r"evidence\.pooling must be 'max' or 'token'"),
        (dict(good["evidence"], names=[]), r"unknown evidence keys \['names'\]"),
    ):
        (tmp_path / CONFIG_NAME).write_text(json.dumps(dict(good, evidence=evidence_data)))
        with pytest.raises(ConfigError, match=f"{CONFIG_NAME}: .*{message}"):
            LiveConfig.from_pretrained(tmp_path)


def test_an_evidence_head_wider_than_the_frame_tokens_is_refused():
    """A head fitted on other features (input_dim above the tokens' width) is refused when the
    settings are built, not at the first frame."""
    with pytest.raises(ConfigError, match=r"evidence.input_dim 32 exceeds the frame tokens' width 16"):
        LiveConfig(vision_hidden_size=16, evidence=EvidenceSettings(classes=("cat",), input_dim=32))
