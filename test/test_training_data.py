"""The training data (live_ros/training/data.py): questions drawn afresh per epoch,
long streams cut to a prefix, object-name targets weighted, every stream once per epoch."""

from __future__ import annotations

import json

import pytest
from model_helpers import smollm2_tokenizer, tiny_model
from training_helpers import DIM, ENC, NTOK, make_run, streams, write_features

from live_ros.training.config import ConfigError, load_config
from live_ros.training.data import Layout, StreamDataset


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny base LLM folder, 4 training streams and 1 held-out stream with features, and their config."""
    return make_run(tmp_path_factory.mktemp("train"))


def test_name_weight_scales_only_the_targets_that_start_an_object_name(setup):
    tokens = tiny_model(smollm2_tokenizer(), vision_dim=DIM, frame_num_tokens=NTOK)[1]
    _, path = setup
    features = load_config(path).data.train_features
    plain = StreamDataset(streams(), features, tokens, stream_weight=2.0, encoder_id=ENC, vision_hidden_size=DIM)
    named = StreamDataset(
        streams(), features, tokens, stream_weight=2.0, encoder_id=ENC, vision_hidden_size=DIM, name_weight=4.0
    )
    (cup,) = tokens.first_token_ids(["coffee cup"])  # "desk": "A cup appears." has no " coffee"
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

    ann = VideoAnnotation(
        "scene",
        20.0,
        events=[
            Event(3.2, "appears", "cat", "The cat appears."),
            Event(10.3, "appears", "rocket", "The rocket appears."),
            Event(15.0, "leaves", "cat", "The cat leaves."),
        ],
        source="world",
        domain="scene",
    )
    sample = dialogue.offline_stream(ann, 2.0, rng=0)
    write_features(tmp_path, "scene", sample.num_frames)
    tokens = tiny_model(smollm2_tokenizer(), vision_dim=DIM, frame_num_tokens=NTOK)[1]
    ds = StreamDataset([sample], tmp_path, tokens, seed=1, encoder_id=ENC, vision_hidden_size=DIM)
    texts = [[(t.role, t.time, t.text) for t in ds.draw(0, epoch).turns] for epoch in range(6)]
    assert texts[0] == [(t.role, t.time, t.text) for t in ds.draw(0, 0).turns]  # deterministic
    assert len({json.dumps(t) for t in texts}) > 1  # fresh per epoch
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
