"""What a replay expects from the graph, decided before anything is published (pure).

:func:`plan_frames` runs the core's sampling rule (:class:`live_ros.model.frames.FrameSampler`)
over a bag's camera stamps exactly as camera_subscriber applies it (a stamp that goes
backwards restarts the grid; an image that cannot be converted is skipped without moving
the grid) and as live_llm takes frames in (a frame older than the newest it took is
refused), so the player knows which images will come back as a ``live/decision``.

Questions (``--questions FILE``, JSON or YAML): a list of ``{time, text, expected?}``
(``time`` in video seconds from the bag's first image, like the annotation's event
times), or ``{"questions": [...]}``. A question is asked once every image up to its time
was taken (lockstep), i.e. right before the first image whose video time is later.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

from live_ros.model.frames import EPSILON, FrameSampler


@dataclass
class FramePlan:
    order: int
    stamp: float
    video_time: float  # seconds from the bag's first image
    sampled: bool = False  # camera_subscriber publishes it
    acked: bool = False  # live_llm takes it in: a live/decision follows
    note: str = ""  # why not, or what happened (grid restart)

    def to_dict(self) -> dict:
        return asdict(self)


class CameraModel:
    """camera_subscriber's sampling and live_llm's intake, one image at a time."""

    def __init__(self, fps: float):
        self.sampler = FrameSampler(fps)
        self.t0: float | None = None
        self.llm_last: float | None = None
        self.count = 0

    def step(self, stamp: float, convertible: Callable[[], bool] | None = None) -> FramePlan:
        stamp = float(stamp)
        self.t0 = stamp if self.t0 is None else self.t0
        plan = FramePlan(self.count, stamp, stamp - self.t0)
        self.count += 1
        sampler = self.sampler
        next_tick = sampler.next_tick
        if sampler.last is not None and stamp < sampler.last:
            sampler.reset()
            next_tick = None
            plan.note = "stamp went backwards: camera_subscriber restarts its sampling grid here"
        if next_tick is not None and stamp < next_tick - EPSILON:
            sampler.accept(stamp)
            return plan
        if convertible is not None and not convertible():
            plan.note = "cannot be converted: camera_subscriber refuses it"
            return plan
        sampler.accept(stamp)
        plan.sampled = True
        if self.llm_last is not None and stamp < self.llm_last:
            plan.note = (plan.note + "; " if plan.note else "") + "older than the newest frame live_llm took: refused"
            return plan
        plan.acked = True
        self.llm_last = stamp
        return plan


def plan_frames(
    stamps: Sequence[float], fps: float, convertible: Callable[[int], bool] | None = None
) -> list[FramePlan]:
    """Per image (in bag order): will camera_subscriber sample it and live_llm take it?

    ``convertible(i)``: False when image i cannot be converted (the node then refuses it and
    its grid does not move); only asked for images that are due."""
    model = CameraModel(fps)
    return [model.step(s, None if convertible is None else partial(convertible, i)) for i, s in enumerate(stamps)]


@dataclass
class Question:
    time: float
    text: str
    expected: str | None = None
    expected_at: float | None = None  # when the expected answer is due (a reminder's event), video seconds

    def to_dict(self) -> dict:
        return asdict(self)


class QuestionsError(ValueError):
    """A questions file that cannot be used (the text names the file and the entry)."""


def parse_questions(data, where: str = "questions") -> list[Question]:
    if isinstance(data, dict):
        data = data.get("questions")
    if not isinstance(data, list):
        raise QuestionsError(
            f"{where}: expected a list of {{time, text, expected?, expected_at?}} (or {{questions: [...]}})"
        )
    out = []
    for n, item in enumerate(data, 1):
        if not isinstance(item, dict) or "time" not in item or "text" not in item:
            raise QuestionsError(f"{where}: entry {n} needs 'time' (video seconds) and 'text', got {item!r}")
        unknown = set(item) - {"time", "text", "expected", "expected_at"}
        if unknown:
            raise QuestionsError(
                f"{where}: entry {n} has unknown keys {sorted(unknown)} (time, text, expected, expected_at)"
            )
        try:
            t = float(item["time"])
        except (TypeError, ValueError):
            raise QuestionsError(f"{where}: entry {n}: time {item['time']!r} is not a number of seconds") from None
        if t < 0 or not str(item["text"]).strip():
            raise QuestionsError(f"{where}: entry {n}: time must be >= 0 and text not empty")
        expected, due = item.get("expected"), item.get("expected_at")
        if due is not None:
            try:
                due = float(due)
            except (TypeError, ValueError):
                raise QuestionsError(f"{where}: entry {n}: expected_at {due!r} is not a number of seconds") from None
            if due < t or expected is None:
                raise QuestionsError(
                    f"{where}: entry {n}: expected_at (when the expected answer is due, e.g. a "
                    f"reminder's event) needs 'expected' and must be >= time"
                )
        out.append(Question(t, str(item["text"]), None if expected is None else str(expected), due))
    return sorted(out, key=lambda q: q.time)


def load_questions(path: str | Path) -> list[Question]:
    path = Path(path)
    if not path.is_file():
        raise QuestionsError(f"questions file {path} does not exist")
    text = path.read_text()
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as err:  # noqa: BLE001 - json and yaml errors
        raise QuestionsError(f"questions file {path} cannot be parsed ({err})") from err
    return parse_questions(data, str(path))


def question_slots(video_times: Sequence[float], questions: Sequence[Question]) -> list[int]:
    """For each question (sorted by time): the index of the image it is asked before, the
    first image (in bag order) whose video time is later than the question's
    (``len(video_times)``: after the last image)."""
    slots = []
    for q in questions:
        slots.append(next((i for i, t in enumerate(video_times) if t > q.time + 1e-9), len(video_times)))
    return slots
