"""The training config (live_ros/training/config.py): YAML with key=value overrides,
numbers written as text, unknown keys and impossible values refused with what to do; the
shipped recipe (config/train_embedded.yaml, scripts/train_embedded.sh)."""

from __future__ import annotations

import pytest
from training_helpers import ROOT, make_run

from live_ros.training.config import ConfigError, load_config


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny base LLM folder, 4 training streams and 1 held-out stream with features, and their config."""
    return make_run(tmp_path_factory.mktemp("train"))


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
