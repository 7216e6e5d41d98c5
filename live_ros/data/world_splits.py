"""Random scenes of the synthetic world's splits (:mod:`live_ros.data.world`): what
evaluation holds out, and :func:`random_scene`, a random script that is a pure function of
its seed, split and index.

Splits (object identities are shared except in eval-timing):

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
objects        named + generic                  named + unseen (eval-timing: unseen
                                                only; long: named)
=============  ===============================  ==================================

Object groups (``assets/objects.json``): ``named`` objects are taught by name; ``generic``
ones appear in training but are always said generically ("Something I can't name
appears.", :mod:`live_ros.data.generic`); ``unseen`` ones are never trained on and appear
only in evaluation, where the generic answer is the right one.

``long`` streams (default 20 minutes, at least ``LONG_FACTOR`` times the engine's cache
budget in seconds) use the eval factors with sparse events, and hold back one named
object that first appears late (after 70 % of the stream); its reminder ("Tell me when
the rocket appears.") is asked early (in the first 20 s).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from live_ros.data import SPLITS
from live_ros.data.world_backgrounds import EVAL_BACKGROUNDS, TRAIN_BACKGROUNDS
from live_ros.data.world_objects import Look, cutout, object_catalog
from live_ros.data.world_scene import DEFAULT_SIZE, DEFAULT_SOURCE_FPS, Actor, Scene, actor_dims

LONG_FACTOR = 10  # long streams: >= 10x the engine cache budget (seconds)
LONG_DEFAULT_MINUTES = 20.0
COLUMNS = 3
MAX_ON_SCREEN = 3


@dataclass(frozen=True)
class SplitProfile:
    backgrounds: tuple
    heldout_crops: bool
    scales: tuple  # ((lo, hi), ...) of longest side / height
    y_bands: tuple  # ((lo, hi), ...) of rest centre y / height
    x_jitter: tuple  # (lo, hi) of |x offset| / width
    entries: tuple
    exits: tuple
    gaps: tuple  # ((lo, hi), ...) seconds between actions
    slides: tuple  # ((lo, hi), ...) seconds of a slide / fade / grow
    objects: tuple  # the object groups of its cast (``ObjectSpec.split``)
    durations: tuple = (45.0, 90.0)


TRAIN = SplitProfile(
    TRAIN_BACKGROUNDS,
    False,
    ((0.45, 0.68),),
    ((0.42, 0.58),),
    (0.0, 0.03),
    ("left", "right", "pop", "fade"),
    ("left", "right", "pop", "fade"),
    ((3.0, 9.0),),
    ((0.8, 2.0),),
    ("named", "generic"),
)
EVAL = SplitProfile(
    EVAL_BACKGROUNDS,
    True,
    ((0.35, 0.45), (0.68, 0.80)),
    ((0.28, 0.42), (0.58, 0.72)),
    (0.03, 0.08),
    ("top", "bottom", "grow"),
    ("top", "bottom", "shrink"),
    ((1.5, 3.0), (9.0, 16.0)),
    ((0.4, 0.8), (2.0, 3.0)),
    ("named", "unseen"),
)
PROFILES = {
    "train": TRAIN,
    "eval": EVAL,
    "eval-timing": EVAL.__class__(**{**asdict(EVAL), "objects": ("unseen",)}),
    "long": EVAL.__class__(**{**asdict(EVAL), "gaps": ((15.0, 60.0),), "objects": ("named",)}),
}


def long_min_seconds(
    budget_tokens: int = 2048, tokens_per_frame: int = 10, fps: float = 2.0, factor: int = LONG_FACTOR
) -> float:
    """Length a long stream needs: ``factor`` x the video time an engine cache of
    ``budget_tokens`` holds (tokens per frame includes the interval token in the paper's
    count, here the frame tokens: 2048 / 10 / 2 = 102.4 s, x 10 = 1024 s)."""
    return factor * budget_tokens / tokens_per_frame / fps


def stream_seed(seed: int, split: str, index: int) -> np.random.SeedSequence:
    return np.random.SeedSequence([int(seed) & 0xFFFFFFFF, SPLITS.index(split) if split in SPLITS else 99, int(index)])


def _uniform_bands(rng: np.random.Generator, bands: Sequence[tuple[float, float]]) -> float:
    lo, hi = bands[int(rng.integers(len(bands)))]
    return float(rng.uniform(lo, hi))


def random_look(rng: np.random.Generator, prof: SplitProfile, crop: int, height: int) -> Look:
    """A look drawn from ``prof``: its scales (of the frame ``height``), colour jitter and a
    mirror image half the time."""
    return Look(
        crop=crop,
        size=int(round(_uniform_bands(rng, prof.scales) * height)),
        brightness=float(rng.uniform(0.85, 1.15)),
        contrast=float(rng.uniform(0.85, 1.15)),
        saturation=float(rng.uniform(0.75, 1.25)),
        hue=float(rng.uniform(-12, 12)),
        flipped=bool(rng.random() < 0.5),
    )


def random_scene(
    seed: int,
    split: str = "train",
    index: int = 0,
    duration: float | None = None,
    size: tuple[int, int] = DEFAULT_SIZE,
    fps: float = DEFAULT_SOURCE_FPS,
    late_object: str | None = None,
) -> Scene:
    """A random scene of ``split`` (deterministic in ``seed``, ``split`` and ``index``).

    ``late_object`` (long streams): this object is kept out until after 70 % of the stream,
    then enters (its appearance is the target of the early reminder)."""
    if split not in PROFILES:
        raise ValueError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
    prof = PROFILES[split]
    ss = stream_seed(seed, split, index)
    rng = np.random.default_rng(ss)
    width, height = size
    if duration is None:
        duration = LONG_DEFAULT_MINUTES * 60 if split == "long" else float(rng.uniform(*prof.durations))
    duration = round(duration * fps) / fps
    video_id = f"world-{split}-s{seed}-{index:05d}"
    scene = Scene(
        video_id,
        duration,
        width,
        height,
        fps,
        background=str(rng.choice(prof.backgrounds)),
        background_seed=int(rng.integers(2**31)),
        split=split,
        meta={"seed": seed, "index": index},
    )
    pool = [n for n, o in object_catalog().items() if o.split in prof.objects]
    if split == "long" and late_object is None:
        late_object = str(rng.choice([n for n in pool if object_catalog()[n].split == "named"]))
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
        return random_look(rng, prof, crop, height)

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
            w, h = actor_dims(actor)(sc)
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
            w, h = actor_dims(actor)(new_sc)
            if w > width or h > height:
                grow, new_sc = False, round(sc / 1.35, 3)
            d = float(rng.uniform(1.0, 2.0))
            scene.act(actor, "grow" if grow else "shrink", t, d, scale=new_sc)
            on[noun] = (actor, col, new_sc)
            # keep it inside the frame after the size change
            w, h = actor_dims(actor)(new_sc)
            cx = min(max(cur[0], w / 2), width - w / 2)
            cy = min(max(cur[1], h / 2), height - h / 2)
            if (cx, cy) != cur:
                scene.act(
                    actor,
                    "move",
                    t + d + 0.5,
                    0.8,
                    "to the left"
                    if cx < cur[0]
                    else "to the right"
                    if cx > cur[0]
                    else ("up" if cy < cur[1] else "down"),
                    to=(round(cx, 2), round(cy, 2)),
                )
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
