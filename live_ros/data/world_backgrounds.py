"""The synthetic world's backgrounds (:mod:`live_ros.data.world`): procedural ones
(gradients, radial gradients, sine waves, stripes), tinted scikit-image textures (brick,
grass, gravel) and blurred crops of scikit-image photos. Training and evaluation draw
from disjoint kinds (:data:`TRAIN_BACKGROUNDS`, :data:`EVAL_BACKGROUNDS`); a background
is a pure function of its kind, size and random generator.
"""

from __future__ import annotations

import math

import numpy as np

from live_ros.data.world_objects import skimage_photo

TRAIN_BACKGROUNDS = ("gradient", "waves", "brick", "grass", "blur-ihc")
EVAL_BACKGROUNDS = ("radial", "stripes", "gravel", "blur-hubble", "blur-retina")


def _colour(rng: np.random.Generator, lo: float = 40, hi: float = 215) -> np.ndarray:
    return rng.uniform(lo, hi, 3).astype(np.float32)


def _texture(name: str) -> np.ndarray:
    import skimage.data as data

    return getattr(data, name)().astype(np.float32) / 255.0


def _resize_float(image: np.ndarray, width: int, height: int) -> np.ndarray:
    from PIL import Image

    if image.ndim == 2:
        return np.asarray(
            Image.fromarray(image.astype(np.float32), mode="F").resize((width, height), Image.Resampling.BILINEAR)
        )
    return np.stack([_resize_float(image[..., c], width, height) for c in range(image.shape[2])], -1)


def render_background(kind: str, width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A static background ``[height, width, 3]`` uint8 of one of the background kinds."""
    from scipy.ndimage import gaussian_filter

    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    c1, c2 = _colour(rng), _colour(rng)
    if kind == "gradient":
        ang = rng.uniform(0, 2 * math.pi)
        t = xx * math.cos(ang) + yy * math.sin(ang)
        t = (t - t.min()) / (np.ptp(t) + 1e-6)
        img = c1 * (1 - t[..., None]) + c2 * t[..., None]
    elif kind == "radial":
        cx, cy = rng.uniform(0.2, 0.8) * width, rng.uniform(0.2, 0.8) * height
        t = np.hypot(xx - cx, yy - cy)
        t = t / t.max()
        img = c1 * (1 - t[..., None]) + c2 * t[..., None]
    elif kind == "waves":
        img = np.empty((height, width, 3), np.float32)
        for c in range(3):
            v = np.zeros((height, width), np.float32)
            for _ in range(3):
                fx, fy = rng.uniform(-3, 3) / width, rng.uniform(-3, 3) / height
                v += np.sin(2 * math.pi * (fx * xx + fy * yy) + rng.uniform(0, 2 * math.pi))
            img[..., c] = c1[c] + (v / 3) * rng.uniform(20, 50)
    elif kind == "stripes":
        ang = rng.uniform(0, math.pi)
        period = rng.uniform(24, 64)
        t = 0.5 + 0.5 * np.sin(2 * math.pi * (xx * math.cos(ang) + yy * math.sin(ang)) / period)
        c2 = c1 + rng.uniform(-50, 50, 3).astype(np.float32)
        img = c1 * (1 - t[..., None]) + c2 * t[..., None]
    elif kind in ("brick", "grass", "gravel"):
        tex = _texture(kind)
        zoom = rng.uniform(0.8, 1.6)
        cw, ch = min(tex.shape[1], int(width / zoom)), min(tex.shape[0], int(height / zoom))
        x0, y0 = rng.integers(0, tex.shape[1] - cw + 1), rng.integers(0, tex.shape[0] - ch + 1)
        t = _resize_float(tex[y0 : y0 + ch, x0 : x0 + cw], width, height)
        t = (t - t.min()) / (np.ptp(t) + 1e-6)
        dark, light = _colour(rng, 20, 110), _colour(rng, 120, 230)
        img = dark * (1 - t[..., None]) + light * t[..., None]
    elif kind.startswith("blur-"):
        name = {"blur-ihc": "immunohistochemistry", "blur-hubble": "hubble_deep_field", "blur-retina": "retina"}[kind]
        photo = skimage_photo(name).astype(np.float32)
        zoom = rng.uniform(0.5, 1.0)
        cw = int(min(photo.shape[1], photo.shape[0] * width / height) * zoom)
        ch = int(cw * height / width)
        x0, y0 = rng.integers(0, photo.shape[1] - cw + 1), rng.integers(0, photo.shape[0] - ch + 1)
        crop = _resize_float(photo[y0 : y0 + ch, x0 : x0 + cw], width, height)
        sigma = rng.uniform(3, 7)
        img = np.stack([gaussian_filter(crop[..., c], sigma) for c in range(3)], -1)
        img = 60 + (img - img.mean()) * rng.uniform(0.6, 1.0) + rng.uniform(0, 70)
    else:
        raise ValueError(
            f"unknown background kind {kind!r}: use one of {', '.join(TRAIN_BACKGROUNDS + EVAL_BACKGROUNDS)}"
        )
    return np.clip(img, 0, 255).round().astype(np.uint8)
