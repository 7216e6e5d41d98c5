"""A synthetic streaming world with real images: photographed objects enter, move, change
and leave a scene, with timestamped annotations of every event.

The objects are cut-outs of the photos shipped with scikit-image (``skimage.data``; the
polygons and crops are in ``assets/objects.json``), varied per stream by crop, scale,
flip and colour jitter, over procedural backgrounds (gradients, sine waves, tinted
skimage textures, blurred crops of skimage photos). Everything is numpy; videos are
written with PyAV (H.264 mp4) and annotated in the project's format
(:mod:`live_ros.data.annotations`). A stream is a pure function of its seed and split.

Vocabulary (closed):

- nouns: cat, coffee cup, rocket, astronaut, space shuttle, horse, motorcycle,
  photographer (``named``: in every split, the model must name them); logo, colour wheel,
  coin, helmet (``unseen``: only in the ``eval-timing`` split).
- verbs (event ``kind``): ``appears`` (the first frame the object is visible),
  ``leaves`` (the first frame it is no longer visible), ``moves`` (to the left / right /
  up / down; ``end``: it stops), ``turns`` (turns around, a horizontal flip), ``grows``
  and ``shrinks`` (``end``: the size change is over).
- Texts: "The cat appears.", "The cat leaves.", "The cat moves to the left." (end: "The
  cat stops."), "The cat turns around.", "The cat gets bigger." / "The cat gets smaller."
  (end: "The cat stops growing." / "The cat stops shrinking.").

Visibility: an object is visible in a frame when the opacity-weighted mass of its cut-out
mask inside the frame is at least ``VISIBLE_FRACTION`` (20 %) of its full mask at its
nominal size (occlusion ignored: objects sit in three columns and only overlap at their
edges). ``appears``/``leaves`` come from this per-frame measure of the rendered frames;
``moves``/``turns``/``grows``/``shrinks`` are at the first frame whose pixels change.

Splits (what evaluation holds out; object identities are shared except in eval-timing):

=============  ===============================  ==================================
factor         train                            eval / eval-timing / long
=============  ===============================  ==================================
background     gradient, waves, brick, grass,   radial, stripes, gravel,
               blur-ihc                         blur-hubble, blur-retina
crop           the first crops of each object   the held-out (last) crop
scale          longest side 0.45-0.68 x height  0.35-0.45 or 0.68-0.80 x height
position       rest centre y 0.42-0.58 x height 0.28-0.42 or 0.58-0.72 x height,
               x jitter <= 0.03 x width         x jitter 0.03-0.08 x width
entry / exit   left, right, pop, fade           top, bottom, grow / shrink
timing         gaps 3-9 s, slides 0.8-2 s       gaps 1.5-3 or 9-16 s, slides
                                                0.4-0.8 or 2-3 s
objects        named                            named (eval-timing: unseen)
=============  ===============================  ==================================

``long`` streams (default 20 minutes, at least ``LONG_FACTOR`` times the engine's cache
budget in seconds) use the eval factors with sparse events, and hold back one named
object that first appears late (after 70 % of the stream); its reminder ("Tell me when
the rocket appears.") is asked early (in the first 20 s).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from live_ros.data.annotations import Event, VideoAnnotation, save_annotation

ASSETS = Path(__file__).resolve().parent / "assets"
OBJECTS_FILE = ASSETS / "objects.json"

DEFAULT_SIZE = (320, 240)       # width, height
DEFAULT_SOURCE_FPS = 10.0
VISIBLE_FRACTION = 0.2
SPLITS = ("train", "eval", "eval-timing", "long")
LONG_FACTOR = 10                # long streams: >= 10x the engine cache budget (seconds)
LONG_DEFAULT_MINUTES = 20.0
VERBS = ("appears", "leaves", "moves", "turns", "grows", "shrinks")
COLUMNS = 3
MAX_ON_SCREEN = 3

TRAIN_BACKGROUNDS = ("gradient", "waves", "brick", "grass", "blur-ihc")
EVAL_BACKGROUNDS = ("radial", "stripes", "gravel", "blur-hubble", "blur-retina")


# ------------------------------------------------------------------------------- objects


@dataclass(frozen=True)
class ObjectSpec:
    noun: str
    image: str
    split: str                      # "named" or "unseen"
    shape: object                   # {"polygon": [...]}, {"ellipse": [...]}, or "silhouette"
    crops: tuple                    # ((x0, y0, x1, y1), ...): the last is held out when > 1

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
    return {o["noun"]: ObjectSpec(o["noun"], o["image"], o["split"], o["shape"],
                                  tuple(tuple(c) for c in o["crops"])) for o in data["objects"]}


def named_objects() -> list[str]:
    return [n for n, o in object_catalog().items() if o.split == "named"]


def unseen_objects() -> list[str]:
    return [n for n, o in object_catalog().items() if o.split == "unseen"]


def article(noun: str) -> str:
    """'a cat', 'an astronaut'."""
    return ("an " if noun[:1].lower() in "aeiou" else "a ") + noun


@lru_cache(maxsize=None)
def _photo(name: str) -> np.ndarray:
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
    image = _photo(spec.image)
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
    mask = mask[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    rgb = rgb[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
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
    size: int = 120                 # longest side in pixels at scale 1
    brightness: float = 1.0
    contrast: float = 1.0
    saturation: float = 1.0
    hue: float = 0.0                # degrees
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
            rgb = np.asarray(Image.fromarray(rgb).resize(size, Image.BILINEAR, reducing_gap=2.0))
            alpha = np.asarray(Image.fromarray(alpha, mode="F").resize(size, Image.BILINEAR))
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
        rgb = np.asarray(Image.fromarray(self.rgb).resize(size, Image.BILINEAR, reducing_gap=2.0), np.float32)
        alpha = np.asarray(Image.fromarray(self.alpha, mode="F").resize(size, Image.BILINEAR), np.float32)
        alpha = np.clip(alpha, 0, 1)
        if flipped:
            rgb, alpha = rgb[:, ::-1], alpha[:, ::-1]
        item = (np.ascontiguousarray(rgb), np.ascontiguousarray(alpha)[..., None], float(alpha.sum()))
        if len(self._cache) > 256:
            self._cache.clear()
        self._cache[key] = item
        return item


# --------------------------------------------------------------------------- backgrounds


def _colour(rng: np.random.Generator, lo: float = 40, hi: float = 215) -> np.ndarray:
    return rng.uniform(lo, hi, 3).astype(np.float32)


def _texture(name: str) -> np.ndarray:
    import skimage.data as data

    return getattr(data, name)().astype(np.float32) / 255.0


def _resize_float(image: np.ndarray, width: int, height: int) -> np.ndarray:
    from PIL import Image

    if image.ndim == 2:
        return np.asarray(Image.fromarray(image.astype(np.float32), mode="F").resize((width, height), Image.BILINEAR))
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
        t = _resize_float(tex[y0:y0 + ch, x0:x0 + cw], width, height)
        t = (t - t.min()) / (np.ptp(t) + 1e-6)
        dark, light = _colour(rng, 20, 110), _colour(rng, 120, 230)
        img = dark * (1 - t[..., None]) + light * t[..., None]
    elif kind.startswith("blur-"):
        name = {"blur-ihc": "immunohistochemistry", "blur-hubble": "hubble_deep_field",
                "blur-retina": "retina"}[kind]
        photo = _photo(name).astype(np.float32)
        zoom = rng.uniform(0.5, 1.0)
        cw = int(min(photo.shape[1], photo.shape[0] * width / height) * zoom)
        ch = int(cw * height / width)
        x0, y0 = rng.integers(0, photo.shape[1] - cw + 1), rng.integers(0, photo.shape[0] - ch + 1)
        crop = _resize_float(photo[y0:y0 + ch, x0:x0 + cw], width, height)
        sigma = rng.uniform(3, 7)
        img = np.stack([gaussian_filter(crop[..., c], sigma) for c in range(3)], -1)
        img = 60 + (img - img.mean()) * rng.uniform(0.6, 1.0) + rng.uniform(0, 70)
    else:
        raise ValueError(f"unknown background kind {kind!r}: use one of "
                         f"{', '.join(TRAIN_BACKGROUNDS + EVAL_BACKGROUNDS)}")
    return np.clip(img, 0, 255).round().astype(np.uint8)


# --------------------------------------------------------------------------------- scenes


@dataclass
class Action:
    """One scripted change of an actor. Times are seconds on the source frame grid."""

    kind: str                       # enter | leave | move | turn | grow | shrink
    start: float
    end: float
    style: str = ""                 # enter: left|right|top|bottom|pop|fade|grow; leave: ...|shrink
    to: tuple[float, float] | None = None     # move: new centre (x, y)
    scale: float | None = None      # grow / shrink: new scale


@dataclass
class Actor:
    id: str
    noun: str
    look: Look
    rest: tuple[float, float]       # centre (x, y) once entered
    actions: list[Action] = field(default_factory=list)


@dataclass
class Scene:
    """A scripted scene: background, actors and their actions. ``render`` turns it into
    frames and an annotation."""

    video_id: str
    duration: float                 # seconds: time of the last frame
    width: int = DEFAULT_SIZE[0]
    height: int = DEFAULT_SIZE[1]
    fps: float = DEFAULT_SOURCE_FPS
    background: str = "gradient"
    background_seed: int = 0
    actors: list[Actor] = field(default_factory=list)
    split: str = "train"
    meta: dict = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return int(round(self.duration * self.fps)) + 1

    def grid(self, t: float) -> float:
        """``t`` rounded to the source frame grid."""
        return round(t * self.fps) / self.fps

    def add(self, noun: str, look: Look | None = None, rest: tuple[float, float] | None = None,
            id: str | None = None) -> Actor:
        if noun not in object_catalog():
            raise ValueError(f"unknown object {noun!r}: the vocabulary is {', '.join(object_catalog())}")
        ident = id or noun
        n = 2
        while any(a.id == ident for a in self.actors):
            ident, n = f"{noun}#{n}", n + 1
        actor = Actor(ident, noun, look or Look(size=int(0.55 * self.height)),
                      rest or (self.width / 2, self.height / 2))
        self.actors.append(actor)
        return actor

    def act(self, actor: Actor, kind: str, start: float, duration: float = 0.0, style: str = "",
            to: tuple[float, float] | None = None, scale: float | None = None) -> Action:
        start = self.grid(start)
        end = self.grid(start + duration) if duration > 0 else start
        action = Action(kind, start, end, style, to, scale)
        actor.actions.append(action)
        return action

    # ---- state of every actor at every frame (vectorised)
    def tracks(self) -> dict[str, dict[str, np.ndarray]]:
        """Per actor: arrays over frames of ``present``, ``cx``, ``cy``, ``scale``,
        ``opacity``, ``flipped``, from its actions (linear interpolation between them)."""
        times = np.arange(self.num_frames) / self.fps
        out = {}
        for actor in self.actors:
            sprite_dims = _dims_fn(actor)
            kf: list[tuple[float, float, float, float, float]] = []
            flips: list[float] = []
            cx, cy, sc, op = actor.rest[0], actor.rest[1], 1.0, 1.0
            for a in sorted(actor.actions, key=lambda a: a.start):
                w, h = sprite_dims(sc)
                if a.kind == "enter":
                    cx, cy, sc, op = actor.rest[0], actor.rest[1], 1.0, 1.0
                    w, h = sprite_dims(sc)
                    start = {"left": (-w / 2 - 1, cy, sc, op), "right": (self.width + w / 2 + 1, cy, sc, op),
                             "top": (cx, -h / 2 - 1, sc, op), "bottom": (cx, self.height + h / 2 + 1, sc, op),
                             "fade": (cx, cy, sc, 0.0), "grow": (cx, cy, 0.05, op)}.get(a.style)
                    if start is not None and a.end > a.start:
                        kf.append((a.start, *start))
                    kf.append((a.end, cx, cy, sc, op))
                elif a.kind == "leave":
                    stop = {"left": (-w / 2 - 1, cy, sc, op), "right": (self.width + w / 2 + 1, cy, sc, op),
                            "top": (cx, -h / 2 - 1, sc, op), "bottom": (cx, self.height + h / 2 + 1, sc, op),
                            "fade": (cx, cy, sc, 0.0), "shrink": (cx, cy, 0.05 * sc, op)}.get(a.style)
                    kf.append((a.start, cx, cy, sc, op))
                    if stop is not None and a.end > a.start:
                        kf.append((a.end, *stop))
                elif a.kind == "move":
                    kf.append((a.start, cx, cy, sc, op))
                    cx, cy = a.to
                    kf.append((a.end, cx, cy, sc, op))
                elif a.kind in ("grow", "shrink"):
                    kf.append((a.start, cx, cy, sc, op))
                    sc = float(a.scale)
                    kf.append((a.end, cx, cy, sc, op))
                elif a.kind == "turn":
                    flips.append(a.start)
                else:
                    raise ValueError(f"unknown action {a.kind!r}")
            if not kf:
                continue
            kt = np.array([k[0] for k in kf])
            # np.interp needs increasing xp: nudge equal keyframe times (a pop at a time
            # where another keyframe sits) by a hair, keeping the later value from then on.
            for i in range(1, len(kt)):
                if kt[i] <= kt[i - 1]:
                    kt[i] = kt[i - 1] + 1e-9
            vals = np.array([k[1:] for k in kf])
            state = {name: np.interp(times, kt, vals[:, i]) for i, name in enumerate(("cx", "cy", "scale", "opacity"))}
            present = np.zeros(len(times), bool)
            # presence: from each enter to the following leave
            spans = []
            for a in sorted(actor.actions, key=lambda a: a.start):
                if a.kind == "enter":
                    spans.append([a.start, math.inf])
                elif a.kind == "leave" and spans:
                    spans[-1][1] = a.end if a.end > a.start and a.style not in ("pop", "") else a.start
            for s, e in spans:
                present |= (times >= s - 1e-9) & (times < e - 1e-9)
            flip = np.zeros(len(times), bool)
            for f in flips:
                flip ^= times >= f - 1e-9
            state["flipped"] = flip ^ actor.look.flipped
            state["present"] = present
            out[actor.id] = state
        return out

    def render(self, sink: Callable[[int, np.ndarray], None] | None = None) -> "Rendered":
        """Render every frame (given to ``sink(index, frame)`` in order, the same array object
        repeated while nothing changes) and measure each actor's box and visibility."""
        rng = np.random.default_rng(self.background_seed)
        bg = render_background(self.background, self.width, self.height, rng)
        sprites = {a.id: Sprite(a.noun, a.look) for a in self.actors}
        state = self.tracks()
        n = self.num_frames
        ids = list(state)
        boxes = {i: [None] * n for i in ids}
        visible = {i: np.zeros(n, bool) for i in ids}
        frame, last_sig = bg.copy(), None
        W, H = self.width, self.height
        for j in range(n):
            draws, sig = [], []
            for i in ids:
                s = state[i]
                if not s["present"][j] or s["opacity"][j] <= 0.0:
                    continue
                sprite = sprites[i]
                longest = max(2, int(round(sprite.look.size * s["scale"][j])))
                rgb, alpha, mass = sprite.get(longest, bool(s["flipped"][j]))
                h, w = alpha.shape[:2]
                x0, y0 = int(round(s["cx"][j] - w / 2)), int(round(s["cy"][j] - h / 2))
                cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(W, x0 + w), min(H, y0 + h)
                if cx1 <= cx0 or cy1 <= cy0:
                    continue
                op = float(s["opacity"][j])
                inside = mass if (cx0, cy0, cx1, cy1) == (x0, y0, x0 + w, y0 + h) else \
                    float(alpha[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0].sum())
                visible[i][j] = inside * op >= VISIBLE_FRACTION * sprite.base_mass
                boxes[i][j] = (cx0, cy0, cx1, cy1)
                draws.append((rgb, alpha, op, x0, y0, cx0, cy0, cx1, cy1))
                sig.append((i, longest, bool(s["flipped"][j]), x0, y0, round(op * 255)))
            sig = tuple(sig)
            if sig != last_sig:
                frame = bg.copy()
                for rgb, alpha, op, x0, y0, cx0, cy0, cx1, cy1 in draws:
                    ys, xs = slice(cy0 - y0, cy1 - y0), slice(cx0 - x0, cx1 - x0)
                    a = alpha[ys, xs] if op >= 1.0 else alpha[ys, xs] * op
                    region = frame[cy0:cy1, cx0:cx1].astype(np.float32)
                    region += (rgb[ys, xs] - region) * a
                    frame[cy0:cy1, cx0:cx1] = (region + 0.5).astype(np.uint8)
                last_sig = sig
            if sink is not None:
                sink(j, frame)
        return Rendered(self, bg, boxes, visible)

    def to_dict(self) -> dict:
        return asdict(self)


def _dims_fn(actor: Actor):
    """``dims(scale) -> (width, height)`` of the actor's sprite (the size ``Sprite.get``
    gives), without building the sprite."""
    h, w = cutout(actor.noun, actor.look.crop)[1].shape

    def dims(scale: float) -> tuple[int, int]:
        longest = max(2, int(round(actor.look.size * scale)))
        k = longest / max(h, w)
        return max(1, round(w * k)), max(1, round(h * k))

    return dims


@dataclass
class Rendered:
    scene: Scene
    background: np.ndarray
    boxes: dict[str, list]          # actor id -> per frame (x0, y0, x1, y1) drawn, or None
    visible: dict[str, np.ndarray]  # actor id -> per frame bool

    def events(self) -> list[Event]:
        """The annotated events, from the measured visibility and the scripted actions."""
        scene = self.scene
        fps = scene.fps
        out: list[Event] = []
        for actor in scene.actors:
            vis = self.visible.get(actor.id)
            if vis is None:
                continue
            noun = actor.noun
            the = f"The {noun}"
            changes = np.flatnonzero(np.diff(np.concatenate([[False], vis]).astype(np.int8)))
            for k in changes:
                t = float(k) / fps
                if vis[k]:
                    style = _style_at(actor, t, "enter")
                    out.append(Event(t, "appears", noun, f"{the} appears.", meta={"actor": actor.id, "style": style}))
                else:
                    style = _style_at(actor, t, "leave")
                    out.append(Event(t, "leaves", noun, f"{the} leaves.", meta={"actor": actor.id, "style": style}))
            for a in actor.actions:
                if a.kind in ("enter", "leave"):
                    continue
                t = a.start if a.kind == "turn" else a.start + 1 / fps
                k = int(round(t * fps))
                if k >= len(vis) or not vis[k]:
                    continue
                if a.kind == "move":
                    out.append(Event(t, "moves", noun, f"{the} moves {a.style}.", end=a.end,
                                     end_text=f"{the} stops.", meta={"actor": actor.id, "direction": a.style}))
                elif a.kind == "turn":
                    out.append(Event(t, "turns", noun, f"{the} turns around.", meta={"actor": actor.id}))
                else:
                    word = "bigger" if a.kind == "grow" else "smaller"
                    ing = "growing" if a.kind == "grow" else "shrinking"
                    out.append(Event(t, a.kind + "s", noun, f"{the} gets {word}.", end=a.end,
                                     end_text=f"{the} stops {ing}.", meta={"actor": actor.id}))
        out.sort(key=lambda e: (e.time, VERBS.index(e.kind) if e.kind in VERBS else 99))
        for e in out:
            e.time = round(e.time, 6)
            if e.end is not None:
                e.end = round(e.end, 6)
        return out

    def track_rows(self) -> dict[str, list]:
        """Run-length tracks: actor id -> [[time, [x0, y0, x1, y1] or None, visible], ...],
        a row whenever the drawn box or the visibility changes (box None: nothing drawn)."""
        fps = self.scene.fps
        out = {}
        for i, boxes in self.boxes.items():
            rows, last = [], ("init",)
            for j, box in enumerate(boxes):
                cur = (box, bool(self.visible[i][j]))
                if cur != last:
                    rows.append([round(j / fps, 6), list(box) if box else None, cur[1]])
                    last = cur
            out[i] = rows
        return out

    def annotation(self, video: str = "") -> VideoAnnotation:
        scene = self.scene
        actor_nouns = {a.id: a.noun for a in scene.actors}
        return VideoAnnotation(
            video_id=scene.video_id, duration=round(scene.duration, 6), video=video, events=self.events(),
            source="world", domain="scene", online=False, fps=scene.fps, size=[scene.width, scene.height],
            objects=sorted({a.noun for a in scene.actors}), tracks=self.track_rows(),
            meta={"split": scene.split, "background": scene.background, "background_seed": scene.background_seed,
                  "actors": actor_nouns,
                  "looks": {a.id: asdict(a.look) for a in scene.actors}, **scene.meta})


def _style_at(actor: Actor, t: float, kind: str) -> str:
    """The style of the enter/leave action closest before ``t``."""
    best = ""
    for a in sorted(actor.actions, key=lambda a: a.start):
        if a.kind == kind and a.start <= t + 1e-6:
            best = a.style
    return best


# ------------------------------------------------------------------------- random scripts


@dataclass(frozen=True)
class SplitProfile:
    backgrounds: tuple
    heldout_crops: bool
    scales: tuple                   # ((lo, hi), ...) of longest side / height
    y_bands: tuple                  # ((lo, hi), ...) of rest centre y / height
    x_jitter: tuple                 # (lo, hi) of |x offset| / width
    entries: tuple
    exits: tuple
    gaps: tuple                     # ((lo, hi), ...) seconds between actions
    slides: tuple                   # ((lo, hi), ...) seconds of a slide / fade / grow
    objects: str                    # "named" or "unseen"
    durations: tuple = (45.0, 90.0)


TRAIN = SplitProfile(TRAIN_BACKGROUNDS, False, ((0.45, 0.68),), ((0.42, 0.58),), (0.0, 0.03),
                     ("left", "right", "pop", "fade"), ("left", "right", "pop", "fade"),
                     ((3.0, 9.0),), ((0.8, 2.0),), "named")
EVAL = SplitProfile(EVAL_BACKGROUNDS, True, ((0.35, 0.45), (0.68, 0.80)), ((0.28, 0.42), (0.58, 0.72)),
                    (0.03, 0.08), ("top", "bottom", "grow"), ("top", "bottom", "shrink"),
                    ((1.5, 3.0), (9.0, 16.0)), ((0.4, 0.8), (2.0, 3.0)), "named")
PROFILES = {"train": TRAIN, "eval": EVAL, "eval-timing": EVAL.__class__(**{**asdict(EVAL), "objects": "unseen"}),
            "long": EVAL.__class__(**{**asdict(EVAL), "gaps": ((15.0, 60.0),)})}


def long_min_seconds(budget_tokens: int = 2048, tokens_per_frame: int = 10, fps: float = 2.0,
                     factor: int = LONG_FACTOR) -> float:
    """Length a long stream needs: ``factor`` x the video time an engine cache of
    ``budget_tokens`` holds (tokens per frame includes the interval token in the paper's
    count, here the frame tokens: 2048 / 10 / 2 = 102.4 s, x 10 = 1024 s)."""
    return factor * budget_tokens / tokens_per_frame / fps


def _seed(seed: int, split: str, index: int) -> np.random.SeedSequence:
    return np.random.SeedSequence([int(seed) & 0xFFFFFFFF, SPLITS.index(split) if split in SPLITS else 99,
                                   int(index)])


def _uniform_bands(rng: np.random.Generator, bands: Sequence[tuple[float, float]]) -> float:
    lo, hi = bands[rng.integers(len(bands))]
    return float(rng.uniform(lo, hi))


def random_scene(seed: int, split: str = "train", index: int = 0, duration: float | None = None,
                 size: tuple[int, int] = DEFAULT_SIZE, fps: float = DEFAULT_SOURCE_FPS,
                 late_object: str | None = None) -> Scene:
    """A random scene of ``split`` (deterministic in ``seed``, ``split`` and ``index``).

    ``late_object`` (long streams): this object is kept out until after 70 % of the stream,
    then enters (its appearance is the target of the early reminder)."""
    if split not in PROFILES:
        raise ValueError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
    prof = PROFILES[split]
    ss = _seed(seed, split, index)
    rng = np.random.default_rng(ss)
    width, height = size
    if duration is None:
        duration = LONG_DEFAULT_MINUTES * 60 if split == "long" else float(rng.uniform(*prof.durations))
    duration = round(duration * fps) / fps
    video_id = f"world-{split}-s{seed}-{index:05d}"
    scene = Scene(video_id, duration, width, height, fps, background=str(rng.choice(prof.backgrounds)),
                  background_seed=int(rng.integers(2**31)), split=split, meta={"seed": seed, "index": index})
    pool = named_objects() if prof.objects == "named" else unseen_objects()
    if split == "long" and late_object is None:
        late_object = str(rng.choice(pool))
    if late_object is not None:
        scene.meta["late_object"] = late_object
    others = [p for p in pool if p != late_object]
    cast = [str(x) for x in rng.choice(others, size=min(len(others), int(rng.integers(3, 6))), replace=False)]
    late_time = duration * float(rng.uniform(0.7, 0.85)) if late_object else math.inf

    columns: list[Actor | None] = [None] * COLUMNS
    col_x = [width * (2 * c + 1) / (2 * COLUMNS) for c in range(COLUMNS)]
    on: dict[str, tuple[Actor, int, float]] = {}  # noun -> (actor, column, current scale)

    def new_look(noun: str) -> Look:
        spec = object_catalog()[noun]
        crop = spec.heldout_crop if (prof.heldout_crops and len(spec.crops) > 1) else int(rng.choice(spec.train_crops))
        return Look(crop=crop, size=int(round(_uniform_bands(rng, prof.scales) * height)),
                    brightness=float(rng.uniform(0.85, 1.15)), contrast=float(rng.uniform(0.85, 1.15)),
                    saturation=float(rng.uniform(0.75, 1.25)), hue=float(rng.uniform(-12, 12)),
                    flipped=bool(rng.random() < 0.5))

    def rest_for(look: Look, noun: str, column: int) -> tuple[float, float]:
        rgb, alpha = cutout(noun, look.crop)
        h, w = alpha.shape
        k = look.size / max(h, w)
        w, h = w * k, h * k
        lo, hi = prof.x_jitter
        dx = float(rng.uniform(lo, hi)) * width * (1 if rng.random() < 0.5 else -1)
        cy = _uniform_bands(rng, prof.y_bands) * height
        cx = min(max(col_x[column] + dx, w / 2), width - w / 2)
        cy = min(max(cy, h / 2), height - h / 2)
        return (round(cx, 2), round(cy, 2))

    def slide_time() -> float:
        return _uniform_bands(rng, prof.slides)

    def path_free(column: int, side: str) -> bool:
        if side == "left":
            return all(columns[c] is None for c in range(column))
        if side == "right":
            return all(columns[c] is None for c in range(column + 1, COLUMNS))
        return True

    def enter(noun: str, t: float, style: str | None = None, column: int | None = None) -> float:
        free = [c for c in range(COLUMNS) if columns[c] is None]
        column = column if column is not None else int(rng.choice(free))
        styles = [s for s in prof.entries if s in ("pop", "fade", "grow", "top", "bottom") or path_free(column, s)]
        style = style or str(rng.choice(styles))
        look = new_look(noun)
        actor = scene.add(noun, look, rest_for(look, noun, column))
        d = 0.0 if style in ("pop", "start") else slide_time()
        scene.act(actor, "enter", t, d, style)
        columns[column] = actor
        on[noun] = (actor, column, 1.0)
        return d

    t = 0.0
    if rng.random() < 0.2 and cast:  # something is on screen from the first frame (style "start")
        enter(cast[0], 0.0, "start")
    t = float(rng.uniform(0.5, 5.0))
    while True:
        gap = _uniform_bands(rng, prof.gaps)
        if t > duration - 2.0:
            break
        if t >= late_time and late_object not in on and late_object is not None:
            if all(c is not None for c in columns):  # make room first
                noun = str(rng.choice(list(on)))
                actor, col, sc = on.pop(noun)
                scene.act(actor, "leave", t, 0.0, "pop")
                columns[col] = None
                t += 2.0
            d = enter(late_object, t)
            late_time = math.inf
            t += d + gap
            continue
        available = [n for n in cast if n not in on]
        options = []
        if available and len(on) < MAX_ON_SCREEN:
            options += ["enter"] * (6 if not on else 3)
        if on:
            options += ["leave"] * 2 + ["move"] * 2 + ["turn"] + ["resize"]
        if not options:
            t += gap
            continue
        choice = str(rng.choice(options))
        d = 0.0
        if choice == "enter":
            d = enter(str(rng.choice(available)), t)
        elif choice == "leave":
            noun = str(rng.choice(list(on)))
            actor, col, sc = on[noun]
            styles = [s for s in prof.exits if s in ("pop", "fade", "shrink", "top", "bottom") or path_free(col, s)]
            style = str(rng.choice(styles))
            d = 0.0 if style == "pop" else slide_time()
            scene.act(actor, "leave", t, d, style)
            columns[col] = None
            del on[noun]
        elif choice == "move":
            noun = str(rng.choice(list(on)))
            actor, col, sc = on[noun]
            cur = _current_centre(actor)
            moves = []
            for dc, name in ((-1, "to the left"), (1, "to the right")):
                c2 = col + dc
                if 0 <= c2 < COLUMNS and columns[c2] is None:
                    moves.append((name, c2))
            moves += [("up", col), ("down", col)]
            name, c2 = moves[int(rng.integers(len(moves)))]
            w, h = _dims_fn(actor)(sc)
            if name in ("up", "down"):
                dy = float(rng.uniform(0.12, 0.22)) * height * (-1 if name == "up" else 1)
                new = (cur[0], min(max(cur[1] + dy, h / 2), height - h / 2))
                if abs(new[1] - cur[1]) < 0.08 * height:
                    name = "down" if name == "up" else "up"
                    new = (cur[0], min(max(cur[1] - dy, h / 2), height - h / 2))
                if abs(new[1] - cur[1]) < 0.05 * height:
                    t += 1.0
                    continue
            else:
                new = (min(max(col_x[c2] + (cur[0] - col_x[col]), w / 2), width - w / 2), cur[1])
                columns[col], columns[c2] = None, actor
                on[noun] = (actor, c2, sc)
            d = float(rng.uniform(1.0, 2.5))
            scene.act(actor, "move", t, d, name, to=(round(new[0], 2), round(new[1], 2)))
        elif choice == "turn":
            noun = str(rng.choice(list(on)))
            scene.act(on[noun][0], "turn", t)
        else:
            noun = str(rng.choice(list(on)))
            actor, col, sc = on[noun]
            grow = sc < 1.0 or (sc < 1.3 and rng.random() < 0.5)
            new_sc = round(sc * (float(rng.uniform(1.25, 1.45)) if grow else 1 / float(rng.uniform(1.25, 1.45))), 3)
            cur = _current_centre(actor)
            w, h = _dims_fn(actor)(new_sc)
            if w > width or h > height:
                grow, new_sc = False, round(sc / 1.35, 3)
            d = float(rng.uniform(1.0, 2.0))
            scene.act(actor, "grow" if grow else "shrink", t, d, scale=new_sc)
            on[noun] = (actor, col, new_sc)
            # keep it inside the frame after the size change
            w, h = _dims_fn(actor)(new_sc)
            cx = min(max(cur[0], w / 2), width - w / 2)
            cy = min(max(cur[1], h / 2), height - h / 2)
            if (cx, cy) != cur:
                scene.act(actor, "move", t + d + 0.5, 0.8, "to the left" if cx < cur[0] else
                          "to the right" if cx > cur[0] else ("up" if cy < cur[1] else "down"),
                          to=(round(cx, 2), round(cy, 2)))
                d += 1.3
        t += d + gap
        if split == "long" and late_object is not None and late_time < math.inf and t > late_time - 5:
            t = max(t, late_time)
    return scene


def _current_centre(actor: Actor) -> tuple[float, float]:
    cx, cy = actor.rest
    for a in sorted(actor.actions, key=lambda a: a.start):
        if a.kind == "move" and a.to is not None:
            cx, cy = a.to
    return (cx, cy)


# ------------------------------------------------------------------------------ writing


class VideoWriter:
    """H.264 mp4 through PyAV: ``write(frame)`` takes HxWx3 uint8 RGB frames at a constant
    rate; frame k has pts k in time base 1/fps (exact timestamps after decoding)."""

    def __init__(self, path: Path, width: int, height: int, fps: float, crf: int = 26, preset: str = "veryfast"):
        import av

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(f".{self.path.stem}.{os.getpid()}.tmp.mp4")
        self.container = av.open(str(self.tmp), mode="w")
        rate = Fraction(fps).limit_denominator(1001)
        self.stream = self.container.add_stream("libx264", rate=rate)
        self.stream.width, self.stream.height = width, height
        self.stream.pix_fmt = "yuv420p"
        self.stream.options = {"crf": str(crf), "preset": preset, "threads": "1"}
        self.count = 0

    def write(self, frame: np.ndarray) -> None:
        import av

        vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
        vf.pts = self.count
        for packet in self.stream.encode(vf):
            self.container.mux(packet)
        self.count += 1

    def close(self) -> Path:
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        try:
            self.container.close()
        finally:
            self.tmp.unlink(missing_ok=True)


def render_video(scene: Scene, video_path: Path, annotation_path: Path | None = None,
                 crf: int = 26) -> VideoAnnotation:
    """Render ``scene`` to an H.264 mp4 at ``video_path`` and return its annotation (also
    written to ``annotation_path`` when given; the video path is stored relative to it)."""
    video_path = Path(video_path)
    writer = VideoWriter(video_path, scene.width, scene.height, scene.fps, crf=crf)
    try:
        rendered = scene.render(lambda j, frame: writer.write(frame))
        writer.close()
    except BaseException:
        writer.abort()
        raise
    video = str(video_path)
    if annotation_path is not None:
        annotation_path = Path(annotation_path)
        video = os.path.relpath(video_path.resolve(), annotation_path.resolve().parent)
    ann = rendered.annotation(video)
    if annotation_path is not None:
        save_annotation(ann, annotation_path)
        ann.video = str(video_path.resolve())
    return ann


def render_frames(scene: Scene) -> tuple[np.ndarray, Rendered]:
    """All frames as one array ``[T, H, W, 3]`` (tests, small scenes) and the measurements."""
    frames = np.empty((scene.num_frames, scene.height, scene.width, 3), np.uint8)

    def sink(j, frame):
        frames[j] = frame

    rendered = scene.render(sink)
    return frames, rendered


# --------------------------------------------------------------------------- the demo


def demo_scene() -> Scene:
    """The bundled demo (90 s, media/demo.mp4): a cat comes in from the left, a coffee cup
    appears, the rocket appears, the cat turns around and leaves, a horse fades in, the cup
    moves, the astronaut comes in, the rocket leaves."""
    W, H = DEFAULT_SIZE
    scene = Scene("demo", duration=90.0, background="gradient", background_seed=20240617,
                  split="demo", meta={"about": "live_ros demo scene (world.demo_scene)"})
    cat = scene.add("cat", Look(crop=0, size=130), rest=(W * 0.2, H * 0.52))
    cup = scene.add("coffee cup", Look(crop=0, size=110), rest=(W * 0.5, H * 0.55))
    rocket = scene.add("rocket", Look(crop=0, size=190), rest=(W * 0.84, H * 0.5))
    horse = scene.add("horse", Look(crop=0, size=140), rest=(W * 0.22, H * 0.55))
    astro = scene.add("astronaut", Look(crop=1, size=130), rest=(W * 0.22, H * 0.5))
    scene.act(cat, "enter", 4.0, 1.5, "left")
    scene.act(cup, "enter", 15.0, 0.0, "pop")
    scene.act(rocket, "enter", 27.0, 1.5, "bottom")
    scene.act(cat, "turn", 36.0)
    scene.act(cat, "leave", 44.0, 1.5, "left")
    scene.act(horse, "enter", 52.0, 1.2, "fade")
    scene.act(cup, "move", 58.0, 1.5, "down", to=(W * 0.5, H * 0.68))
    scene.act(horse, "leave", 66.0, 1.0, "fade")
    scene.act(astro, "enter", 71.0, 1.5, "left")
    scene.act(rocket, "leave", 80.0, 1.5, "top")
    scene.act(astro, "grow", 85.0, 1.5, scale=1.25)
    return scene


def check_scene() -> Scene:
    """The end-to-end check clip (30 s, not the demo): on a held-out background, five
    events 5-6 s apart that the demo's narration must name in time: the rocket comes in
    from the left, a coffee cup appears, the rocket turns around, the cup leaves to the
    right, a horse fades in."""
    W, H = DEFAULT_SIZE
    scene = Scene("check", duration=30.0, background="radial", background_seed=7,
                  split="demo", meta={"about": "live_ros end-to-end check clip (world.check_scene)"})
    rocket = scene.add("rocket", Look(crop=0, size=180), rest=(W * 0.25, H * 0.5))
    cup = scene.add("coffee cup", Look(crop=0, size=110), rest=(W * 0.62, H * 0.55))
    horse = scene.add("horse", Look(crop=0, size=140), rest=(W * 0.78, H * 0.5))
    scene.act(rocket, "enter", 3.0, 1.5, "left")
    scene.act(cup, "enter", 9.5, 0.0, "pop")
    scene.act(rocket, "turn", 15.0)
    scene.act(cup, "leave", 19.5, 1.5, "right")
    scene.act(horse, "enter", 25.0, 1.2, "fade")
    return scene


def render_demo(out_dir: Path) -> VideoAnnotation:
    """Render the demo to ``out_dir/demo.mp4`` and ``out_dir/demo.json``."""
    out_dir = Path(out_dir)
    return render_video(demo_scene(), out_dir / "demo.mp4", out_dir / "demo.json", crf=20)


# ------------------------------------------------------------------------- datasets


def _render_one(job: tuple) -> dict:
    seed, split, index, duration, out_dir, size, fps = job
    out_dir = Path(out_dir)
    scene = random_scene(seed, split, index, duration=duration, size=size, fps=fps)
    ann = render_video(scene, out_dir / "videos" / f"{scene.video_id}.mp4",
                       out_dir / "annotations" / f"{scene.video_id}.json")
    return {"annotation": str(out_dir / "annotations" / f"{scene.video_id}.json"), "video": ann.video}


def generate_world(out_dir: Path, streams: int, seed: int = 0, split: str = "train", minutes: float | None = None,
                   fps: float = 2.0, jobs: int = 1, size: tuple[int, int] = DEFAULT_SIZE,
                   source_fps: float = DEFAULT_SOURCE_FPS, budget_tokens: int = 2048, tokens_per_frame: int = 10,
                   progress: bool = True) -> Path:
    """Render ``streams`` videos of ``split`` into ``out_dir/videos``, their annotations into
    ``out_dir/annotations`` and the dialogues into ``out_dir/streams.jsonl``. Returns the
    JSONL path. ``minutes`` fixes every stream's length (``long``: default 20, and at least
    ``long_min_seconds(budget_tokens, tokens_per_frame, fps)``)."""
    from live_ros.data import dialogue
    from live_ros.data.annotations import load_annotation
    from live_ros.data.streams import save_samples

    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
    out_dir = Path(out_dir)
    duration = None if minutes is None else float(minutes) * 60
    if split == "long":
        need = long_min_seconds(budget_tokens, tokens_per_frame, fps)
        duration = duration or LONG_DEFAULT_MINUTES * 60
        if duration < need:
            raise ValueError(f"long streams must last at least {LONG_FACTOR}x the cache budget: {need:.0f} s "
                             f"({need / 60:.1f} min) for {budget_tokens} tokens at {tokens_per_frame} tokens/frame "
                             f"and {fps:g} fps; got {duration:.0f} s. Raise --minutes")
    jobs_list = [(seed, split, i, duration, str(out_dir), tuple(size), source_fps) for i in range(streams)]
    results = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=streams, desc=f"rendering {split}", unit="video")
    if jobs > 1 and streams > 1:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(jobs) as pool:
            for res in pool.imap(_render_one, jobs_list):
                results.append(res)
                if bar:
                    bar.update()
    else:
        for job in jobs_list:
            results.append(_render_one(job))
            if bar:
                bar.update()
    if bar:
        bar.close()
    samples = []
    for i, res in enumerate(results):
        ann = load_annotation(res["annotation"])
        rng = np.random.default_rng(_seed(seed, split, i).spawn(1)[0])
        sample = dialogue.world_stream(ann, fps=fps, rng=rng, fixed=split != "train")
        sample.meta["annotation"] = str(Path(res["annotation"]).resolve())
        samples.append(sample)
    return save_samples(samples, out_dir / "streams.jsonl")
