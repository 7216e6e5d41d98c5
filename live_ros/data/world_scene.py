"""A scripted scene of the synthetic world (:mod:`live_ros.data.world`): a background,
actors and their actions (:class:`Scene`), rendered frame by frame with each actor's
drawn box and visibility measured (:class:`Rendered`), from which the annotated events
follow.

Verbs (event ``kind``): ``appears`` (the first frame the object is visible), ``leaves``
(the first frame it is no longer visible), ``moves`` (to the left / right / up / down;
``end``: it stops), ``turns`` (turns around, a horizontal flip), ``grows`` and
``shrinks`` (``end``: the size change is over). Texts: "The cat appears.", "The cat
leaves.", "The cat moves to the left." (end: "The cat stops."), "The cat turns around.",
"The cat gets bigger." / "The cat gets smaller." (end: "The cat stops growing." / "The cat
stops shrinking.").

Visibility: an object is visible in a frame when the opacity-weighted mass of its cut-out
mask inside the frame is at least ``VISIBLE_FRACTION`` (20 %) of its full mask at its
nominal size (occlusion ignored: objects sit in three columns and only overlap at their
edges). ``appears``/``leaves`` come from this per-frame measure of the rendered frames;
``moves``/``turns``/``grows``/``shrinks`` are at the first frame whose pixels change.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

from live_ros.data.annotations import Event, VideoAnnotation
from live_ros.data.world_backgrounds import render_background
from live_ros.data.world_objects import Look, Sprite, cutout, object_catalog

DEFAULT_SIZE = (320, 240)  # width, height
DEFAULT_SOURCE_FPS = 10.0
VISIBLE_FRACTION = 0.2
VERBS = ("appears", "leaves", "moves", "turns", "grows", "shrinks")


@dataclass
class Action:
    """One scripted change of an actor. Times are seconds on the source frame grid."""

    kind: str  # enter | leave | move | turn | grow | shrink
    start: float
    end: float
    style: str = ""  # enter: left|right|top|bottom|pop|fade|grow; leave: ...|shrink
    to: tuple[float, float] | None = None  # move: new centre (x, y)
    scale: float | None = None  # grow / shrink: new scale


@dataclass
class Actor:
    id: str
    noun: str
    look: Look
    rest: tuple[float, float]  # centre (x, y) once entered
    actions: list[Action] = field(default_factory=list)


@dataclass
class Scene:
    """A scripted scene: background, actors and their actions. ``render`` turns it into
    frames and an annotation."""

    video_id: str
    duration: float  # seconds: time of the last frame
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

    def add(
        self, noun: str, look: Look | None = None, rest: tuple[float, float] | None = None, id: str | None = None
    ) -> Actor:
        if noun not in object_catalog():
            raise ValueError(f"unknown object {noun!r}: the vocabulary is {', '.join(object_catalog())}")
        ident = id or noun
        n = 2
        while any(a.id == ident for a in self.actors):
            ident, n = f"{noun}#{n}", n + 1
        actor = Actor(
            ident, noun, look or Look(size=int(0.55 * self.height)), rest or (self.width / 2, self.height / 2)
        )
        self.actors.append(actor)
        return actor

    def act(
        self,
        actor: Actor,
        kind: str,
        start: float,
        duration: float = 0.0,
        style: str = "",
        to: tuple[float, float] | None = None,
        scale: float | None = None,
    ) -> Action:
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
            sprite_dims = actor_dims(actor)
            kf: list[tuple[float, float, float, float, float]] = []
            flips: list[float] = []
            cx, cy, sc, op = actor.rest[0], actor.rest[1], 1.0, 1.0
            for a in sorted(actor.actions, key=lambda a: a.start):
                w, h = sprite_dims(sc)
                if a.kind == "enter":
                    cx, cy, sc, op = actor.rest[0], actor.rest[1], 1.0, 1.0
                    w, h = sprite_dims(sc)
                    start = {
                        "left": (-w / 2 - 1, cy, sc, op),
                        "right": (self.width + w / 2 + 1, cy, sc, op),
                        "top": (cx, -h / 2 - 1, sc, op),
                        "bottom": (cx, self.height + h / 2 + 1, sc, op),
                        "fade": (cx, cy, sc, 0.0),
                        "grow": (cx, cy, 0.05, op),
                    }.get(a.style)
                    if start is not None and a.end > a.start:
                        kf.append((a.start, *start))
                    kf.append((a.end, cx, cy, sc, op))
                elif a.kind == "leave":
                    stop = {
                        "left": (-w / 2 - 1, cy, sc, op),
                        "right": (self.width + w / 2 + 1, cy, sc, op),
                        "top": (cx, -h / 2 - 1, sc, op),
                        "bottom": (cx, self.height + h / 2 + 1, sc, op),
                        "fade": (cx, cy, sc, 0.0),
                        "shrink": (cx, cy, 0.05 * sc, op),
                    }.get(a.style)
                    kf.append((a.start, cx, cy, sc, op))
                    if stop is not None and a.end > a.start:
                        kf.append((a.end, *stop))
                elif a.kind == "move":
                    kf.append((a.start, cx, cy, sc, op))
                    if a.to is None:  # what unpacking None raised
                        raise TypeError(f"actor {actor.id}: a move needs `to` (the new centre)")
                    cx, cy = a.to
                    kf.append((a.end, cx, cy, sc, op))
                elif a.kind in ("grow", "shrink"):
                    kf.append((a.start, cx, cy, sc, op))
                    if a.scale is None:  # what float(None) raised
                        raise TypeError(f"actor {actor.id}: a {a.kind} needs `scale` (the new scale)")
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
        boxes: dict[str, list[tuple[int, int, int, int] | None]] = {i: [None] * n for i in ids}
        visible = {i: np.zeros(n, bool) for i in ids}
        frame, last_sig = bg.copy(), None
        W, H = self.width, self.height
        for j in range(n):
            draws, parts = [], []
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
                inside = (
                    mass
                    if (cx0, cy0, cx1, cy1) == (x0, y0, x0 + w, y0 + h)
                    else float(alpha[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0].sum())
                )
                visible[i][j] = inside * op >= VISIBLE_FRACTION * sprite.base_mass
                boxes[i][j] = (cx0, cy0, cx1, cy1)
                draws.append((rgb, alpha, op, x0, y0, cx0, cy0, cx1, cy1))
                parts.append((i, longest, bool(s["flipped"][j]), x0, y0, round(op * 255)))
            sig = tuple(parts)
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


def actor_dims(actor: Actor):
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
    boxes: dict[str, list]  # actor id -> per frame (x0, y0, x1, y1) drawn, or None
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
                at = int(round(t * fps))
                if at >= len(vis) or not vis[at]:
                    continue
                if a.kind == "move":
                    out.append(
                        Event(
                            t,
                            "moves",
                            noun,
                            f"{the} moves {a.style}.",
                            end=a.end,
                            end_text=f"{the} stops.",
                            meta={"actor": actor.id, "direction": a.style},
                        )
                    )
                elif a.kind == "turn":
                    out.append(Event(t, "turns", noun, f"{the} turns around.", meta={"actor": actor.id}))
                else:
                    word = "bigger" if a.kind == "grow" else "smaller"
                    ing = "growing" if a.kind == "grow" else "shrinking"
                    out.append(
                        Event(
                            t,
                            a.kind + "s",
                            noun,
                            f"{the} gets {word}.",
                            end=a.end,
                            end_text=f"{the} stops {ing}.",
                            meta={"actor": actor.id},
                        )
                    )
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
            rows = []
            last: tuple[object, ...] = ("init",)
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
            video_id=scene.video_id,
            duration=round(scene.duration, 6),
            video=video,
            events=self.events(),
            source="world",
            domain="scene",
            online=False,
            fps=scene.fps,
            size=[scene.width, scene.height],
            objects=sorted({a.noun for a in scene.actors}),
            tracks=self.track_rows(),
            meta={
                "split": scene.split,
                "background": scene.background,
                "background_seed": scene.background_seed,
                "actors": actor_nouns,
                "looks": {a.id: asdict(a.look) for a in scene.actors},
                **scene.meta,
            },
        )


def _style_at(actor: Actor, t: float, kind: str) -> str:
    """The style of the enter/leave action closest before ``t``."""
    best = ""
    for a in sorted(actor.actions, key=lambda a: a.start):
        if a.kind == kind and a.start <= t + 1e-6:
            best = a.style
    return best
