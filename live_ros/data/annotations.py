"""Video annotations in and out: Ego4D narrations, COIN steps and the project's own format.

Everything is read into :class:`VideoAnnotation` (a video plus timestamped
:class:`Event` s), which :mod:`live_ros.data.dialogue` turns into streaming dialogues.

The project's annotation format (written by the synthetic world, one JSON file per video)::

    {
      "format": "live_ros.annotation/1",
      "video_id": "world-train-s0-00000",
      "video": "../videos/world-train-s0-00000.mp4",  # relative to this file, or absolute
      "duration": 59.9,           # seconds: video time of the last frame (first frame = 0)
      "fps": 10.0,                # source frame rate (optional)
      "size": [320, 240],         # width, height (optional)
      "source": "world",          # world | ego4d | coin | ... (who wrote it)
      "domain": "scene",          # scene (objects come and go) | procedure (steps) | narration
      "online": false,            # true: events are narrations said at their time
      "objects": ["cat", "rocket"],
      "events": [                 # sorted by time
        {"time": 3.2, "kind": "appears", "object": "cat", "text": "The cat appears."},
        {"time": 10.1, "end": 12.0, "kind": "moves", "object": "cat",
         "text": "The cat moves to the left.", "end_text": "The cat stops."}
      ],
      "tracks": {"cat": [[3.0, [0, 60, 41, 190], false], [3.2, [0, 60, 75, 190], true], ...]},
      "meta": {}
    }

- ``time``/``end`` are video seconds from the first frame. ``end`` (optional) closes a
  segment (a COIN step, a move); ``end_text`` (optional) is what is said then.
- ``kind`` is a verb of the world's closed vocabulary (``appears``, ``leaves``, ``moves``,
  ``turns``, ``grows``, ``shrinks``), ``step`` (a COIN segment) or ``narration`` (Ego4D).
- ``object`` is the plain noun the event is about (world), the step label (COIN) or empty.
- ``tracks`` (optional, world): per actor id, run-length rows ``[time, box, visible]``
  (``box`` = ``[x0, y0, x1, y1]`` pixels drawn, ``null`` when nothing is drawn), valid
  from ``time`` until the next row.

Ego4D: ``all_narrations_redacted.json`` (``videos -> {video_uid: {narration_pass_1:
{narrations: [{timestamp_sec, narration_text}]}}}``). COIN: ``COIN.json`` (``database ->
{video_id: {annotation: [{segment: [start, end], label}], class, subset, duration}}``).
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

FORMAT = "live_ros.annotation/1"
DOMAINS = ("scene", "procedure", "narration")


@dataclass
class Event:
    time: float
    kind: str
    object: str = ""
    text: str = ""
    end: float | None = None
    end_text: str = ""
    meta: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        out: dict = {"time": self.time}
        if self.end is not None:
            out["end"] = self.end
        out.update(kind=self.kind, object=self.object, text=self.text)
        if self.end_text:
            out["end_text"] = self.end_text
        if self.meta:
            out["meta"] = self.meta
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "Event":
        unknown = set(data) - {"time", "end", "kind", "object", "text", "end_text", "meta"}
        if unknown:
            raise ValueError(f"unknown event keys {sorted(unknown)}")
        if "time" not in data or "kind" not in data:
            raise ValueError("an event needs 'time' and 'kind'")
        end = data.get("end")
        return cls(
            float(data["time"]),
            str(data["kind"]),
            str(data.get("object", "")),
            str(data.get("text", "")),
            None if end is None else float(end),
            str(data.get("end_text", "")),
            dict(data.get("meta", {})),
        )


def visible_objects(events: Iterable[Event]) -> list[str]:
    """Objects on screen after ``events`` (in time order): appeared and not left since, in
    order of appearance."""
    count: dict[str, int] = {}
    for e in events:
        if e.kind == "appears":
            count[e.object] = count.get(e.object, 0) + 1
        elif e.kind == "leaves" and count.get(e.object):
            count[e.object] -= 1
    return [o for o, n in count.items() if n > 0]


@dataclass
class VideoAnnotation:
    video_id: str
    duration: float
    video: str = ""
    events: list[Event] = field(default_factory=list)
    source: str = "live_ros"
    domain: str = "scene"
    online: bool = False
    fps: float | None = None
    size: list[int] | None = None
    objects: list[str] = field(default_factory=list)
    tracks: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        data: dict = {"format": FORMAT}
        for key, value in asdict(self).items():
            data[key] = value
        data["events"] = [e.to_dict() for e in self.events]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "VideoAnnotation":
        data = dict(data)
        fmt = data.pop("format", FORMAT)
        if fmt != FORMAT:
            raise ValueError(f"format {fmt!r} is not {FORMAT!r}")
        for key in ("video_id", "duration"):
            if key not in data:
                raise ValueError(f"missing key {key!r}")
        data["events"] = [Event.from_dict(e) for e in data.get("events", [])]
        data["duration"] = float(data["duration"])
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown keys {sorted(unknown)}")
        return cls(**data)

    # --- queries
    def critical_times(self) -> list[float]:
        """Sorted distinct event times and segment ends (the paper's critical timestamps)."""
        times = {e.time for e in self.events}
        times |= {e.end for e in self.events if e.end is not None}
        return sorted(t for t in times if 0 <= t <= self.duration + 1e-9)

    def on_screen(self, time: float) -> list[str]:
        """Objects visible at ``time`` (scene domain): appeared at or before, not left since.
        In order of appearance."""
        return visible_objects(e for e in sorted(self.events, key=lambda e: e.time) if e.time <= time + 1e-9)

    def box_at(self, actor: str, time: float) -> tuple[list[int] | None, bool]:
        """(drawn box or None, visible) of ``actor`` at ``time`` from ``tracks``."""
        rows = self.tracks.get(actor, [])
        box, vis = None, False
        for t, b, v in rows:
            if t > time + 1e-9:
                break
            box, vis = b, v
        return box, vis


class AnnotationError(ValueError):
    pass


def save_annotation(annotation: VideoAnnotation, path: Path) -> Path:
    """Write ``annotation`` as JSON (atomically: a temporary file, then a rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(annotation.to_dict(), indent=1) + "\n")
    os.replace(tmp, path)
    return path


def load_annotation(path: Path) -> VideoAnnotation:
    """Read a ``live_ros.annotation/1`` JSON file; a relative ``video`` is resolved against
    the file's folder."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file {path} does not exist (write one with `live-ros generate world`)")
    try:
        ann = VideoAnnotation.from_dict(json.loads(path.read_text()))
    except (ValueError, TypeError) as err:
        raise AnnotationError(
            f"{path}: not a live_ros annotation ({err}); see live_ros/data/annotations.py for the format"
        ) from err
    if ann.video and not os.path.isabs(ann.video):
        ann.video = str((path.parent / ann.video).resolve())
    return ann


# ------------------------------------------------------------------------------- Ego4D

_TAG = re.compile(r"#\s*(?:unsure|summary|C|O)\b", re.IGNORECASE)


def clean_narration(text: str) -> str:
    """``"#C C picks up the knife #unsure"`` -> ``"C picks up the knife."``: remove the
    ``#C``/``#O``/``#unsure`` tags, squeeze spaces, capitalise, end with a period."""
    text = _TAG.sub(" ", text)
    text = re.sub(r"\s+", " ", text).strip().strip(" .,;")
    if not text:
        return ""
    text = text[0].upper() + text[1:]
    if text[-1] not in ".!?":
        text += "."
    return text


def _read_json(path: Path, what: str, hint: str) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist: {hint}")
    try:
        return json.loads(path.read_text())
    except ValueError as err:
        raise AnnotationError(f"{path} is not valid JSON ({err}): {hint}") from err


def _video_path(video_dir: Path | None, video_id: str) -> str:
    if video_dir is None:
        return ""
    video_dir = Path(video_dir)
    for ext in (".mp4", ".mkv", ".webm", ".avi", ".mov"):
        candidate = video_dir / f"{video_id}{ext}"
        if candidate.is_file():
            return str(candidate.resolve())
    return str((video_dir / f"{video_id}.mp4").resolve())


def _read_mapping(path, what: str, key: str, hint: str) -> dict:
    """The top-level ``key`` mapping of a public annotation file, or an error naming the fix."""
    data = _read_json(path, what, hint)
    mapping = data.get(key) if isinstance(data, dict) else None
    if not isinstance(mapping, dict):
        raise AnnotationError(f"{path}: no '{key}' mapping: {hint}")
    return mapping


def load_ego4d_narrations(
    path: Path,
    passes: Iterable[str] = ("narration_pass_1",),
    video_dir: Path | None = None,
    durations: dict[str, float] | None = None,
    tail: float = 2.0,
) -> list[VideoAnnotation]:
    """Ego4D ``all_narrations_redacted.json`` -> one online annotation per video (its
    narrations of the first pass found in ``passes``, cleaned, sorted by time).

    The narration file has no durations: ``durations`` (video_uid -> seconds, e.g. from
    ``ego4d.json``) gives them, else the last narration time + ``tail`` seconds."""
    hint = "give Ego4D's all_narrations_redacted.json (videos -> {uid: {narration_pass_1: {narrations: [...]}}})"
    videos = _read_mapping(path, "Ego4D narration file", "videos", hint)
    out = []
    for uid, entry in videos.items():
        narrations = None
        for name in passes:
            block = (entry or {}).get(name)
            if isinstance(block, dict) and block.get("narrations"):
                narrations = block["narrations"]
                break
        if not narrations:
            continue
        events = []
        for n in narrations:
            text = clean_narration(str(n.get("narration_text", "")))
            t = n.get("timestamp_sec")
            if text and t is not None and math.isfinite(float(t)) and float(t) >= 0:
                events.append(Event(float(t), "narration", "", text))
        if not events:
            continue
        events.sort(key=lambda e: e.time)
        duration = float((durations or {}).get(uid, events[-1].time + tail))
        out.append(
            VideoAnnotation(
                uid, duration, _video_path(video_dir, uid), events, source="ego4d", domain="narration", online=True
            )
        )
    return out


# -------------------------------------------------------------------------------- COIN


def coin_step_text(label: str) -> str:
    return re.sub(r"\s+", " ", label).strip().rstrip(".")


def load_coin(path: Path, subset: str | None = None, video_dir: Path | None = None) -> list[VideoAnnotation]:
    """COIN ``COIN.json`` -> one offline (procedure) annotation per video: each segment a
    ``step`` event with ``time``/``end`` and its label. ``subset``: ``training`` or
    ``testing`` (None: all)."""
    hint = "give COIN's COIN.json (database -> {video_id: {annotation: [{segment, label}], ...}})"
    database = _read_mapping(path, "COIN annotation file", "database", hint)
    out = []
    for vid, entry in database.items():
        if subset and entry.get("subset") != subset:
            continue
        events = []
        for seg in entry.get("annotation", []):
            start, end = (float(x) for x in seg["segment"])
            label = coin_step_text(str(seg["label"]))
            if end < start:
                start, end = end, start
            events.append(Event(start, "step", label, label, end=end))
        if not events:
            continue
        events.sort(key=lambda e: e.time)
        duration = float(entry.get("duration") or max(e.end for e in events if e.end is not None))
        out.append(
            VideoAnnotation(
                vid,
                duration,
                _video_path(video_dir, vid),
                events,
                source="coin",
                domain="procedure",
                online=False,
                meta={"task": entry.get("class", ""), "subset": entry.get("subset", "")},
            )
        )
    return out


def timeline_text(annotation: VideoAnnotation, upto: float | None = None) -> str:
    """The timeline as text, one line per event (the paper's step (2)):
    ``"12.0-20.5 s: pour water"`` or ``"3.2 s: The cat appears."``."""
    lines = []
    for e in annotation.events:
        if upto is not None and e.time > upto + 1e-9:
            break
        what = e.text or f"{e.object} {e.kind}".strip()
        if e.end is not None:
            lines.append(f"{e.time:.1f}-{e.end:.1f} s: {what}")
        else:
            lines.append(f"{e.time:.1f} s: {what}")
    return "\n".join(lines)
