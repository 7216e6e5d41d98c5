"""Timed dialogues on the model's frame grid: the one representation shared by data
generation, training, evaluation and the replay tools.

A :class:`StreamSample` is a video (or its pre-extracted features) plus timed turns: user
questions and assistant responses with their video times in seconds. Frames sit on the
fps grid of live_ros/model/frames.py: frame k has video time ``k / fps`` (the stream starts at its first
frame). A turn at time t is placed after the newest frame at or before t, i.e. after
frame ``floor(t * fps + eps)``, as the engine inserts a query after the newest frame it
has taken in. A stream's standing ``instruction`` (e.g. "Narrate what you see.") comes
before its first frame, right after the system prompt, as the engine holds it in the
prefix of its cache (live_ros/engine/config.py: ``EngineConfig.instruction``); an empty
instruction means the model stays silent until asked.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from live_ros.model.format import Turn

EPS = 1e-6


@dataclass
class TimedTurn:
    role: Literal["user", "assistant"]
    time: float
    text: str
    kind: str = ""  # e.g. "narration", "answer", "reminder" (metrics, reports)
    event: str = ""  # the annotated event a response belongs to, if any


@dataclass
class StreamSample:
    video_id: str
    duration: float  # seconds of video
    fps: float = 2.0
    turns: list[TimedTurn] = field(default_factory=list)
    video: str = ""  # path of the video file, if any
    features: str = ""  # path of the extracted features (safetensors), if any
    meta: dict = field(default_factory=dict)
    instruction: str = ""  # the standing instruction before the first frame ("": silent until asked)

    @property
    def num_frames(self) -> int:
        """Frames on the grid 0, 1/fps, ... up to the duration."""
        return int(math.floor(self.duration * self.fps + EPS)) + 1

    def frame_of(self, time: float) -> int:
        """The newest frame at or before `time`."""
        return min(self.num_frames - 1, max(0, int(math.floor(time * self.fps + EPS))))

    def to_turns(self, num_frames: int | None = None) -> list[Turn]:
        """The format's Turn list: the instruction (if any) first, then frame lists between
        the timed turns, each turn after the newest frame at or before its time. Turns are
        kept in time order (stable)."""
        total = self.num_frames if num_frames is None else num_frames
        out: list[Turn] = [Turn("user", self.instruction, time=0.0)] if self.instruction else []
        taken = 0  # frames already placed
        for turn in sorted(self.turns, key=lambda t: t.time):
            upto = min(total, self.frame_of(turn.time) + 1)
            if upto > taken:
                out.append(Turn("stream", num_frames=upto - taken, time=taken / self.fps))
                taken = upto
            out.append(Turn(turn.role, turn.text, time=turn.time))
        if total > taken:
            out.append(Turn("stream", num_frames=total - taken, time=taken / self.fps))
        return out

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "StreamSample":
        data = dict(data)
        data["turns"] = [TimedTurn(**t) for t in data.get("turns", [])]
        return cls(**data)


def save_samples(samples: list[StreamSample], path: Path) -> Path:
    """JSON Lines, one stream per line."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for sample in samples:
            f.write(json.dumps(sample.to_dict()) + "\n")
    return path


def load_samples(path: Path) -> list[StreamSample]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: write streams with `live-ros generate` first")
    samples = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                samples.append(StreamSample.from_dict(json.loads(line)))
            except (ValueError, TypeError) as err:
                raise ValueError(f"{path}:{n}: not a stream sample ({err})") from err
    return samples
