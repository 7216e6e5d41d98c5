"""Frame sampling and preprocessing: the one path every frame takes into the model.

Feature extraction, the camera node, bag-from-video and replay evaluation all call these
functions, so a frame seen live and the same frame seen offline give the same pixels.

Sampling (VideoLLM-online samples streams at a fixed rate, 2 fps by default, paper section
3.4): the grid of ticks ``t0 + k / fps`` starts at the stream's first stamp ``t0``. A frame
is taken when it is the first frame at or after the next tick. After a frame at stamp ``s``
is taken, the next tick is the first grid tick *strictly greater* than ``s``: after a gap of
several ticks only one frame is taken, and the grid continues from the tick after it (it is
never re-anchored to the late frame, and missed ticks are not made up).

Preprocessing (release ``videollm-online-8b-v1plus``): letterbox to ``size`` x ``size``
(longer side to ``size``, aspect kept, centred, black padding), RGB, ``x / 255``, then
``(x - mean) / std``.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

# Float tolerance (seconds) when comparing a stamp with a tick: 15 / 30 is a tick of 2 fps
# even when the stamps carry rounding errors.
EPSILON = 1e-6


class FrameSampler:
    """Streaming form of the sampling rule: ``accept(stamp)`` says whether to take a frame.

    Stamps must not decrease (equal stamps are allowed; the second one is not taken).
    ``sample_indices`` runs this same object over a whole video, so both always agree.
    """

    def __init__(self, fps: float):
        try:
            self.fps = float(fps)
        except (TypeError, ValueError):
            self.fps = math.nan
        if not (math.isfinite(self.fps) and self.fps > 0):
            raise ValueError(f"fps must be a finite number > 0, got {fps!r}")
        self.reset()

    def reset(self) -> None:
        """Forget the stream: the next stamp starts a new grid."""
        self.start: float | None = None  # t0, the first stamp
        self.last: float | None = None  # the last stamp seen (taken or not)
        self._next_tick = 0  # index k of the next tick t0 + k / fps

    @property
    def next_tick(self) -> float | None:
        """Stamp of the next tick (None before the first frame)."""
        return None if self.start is None else self.start + self._next_tick / self.fps

    def accept(self, stamp: float) -> bool:
        """True when the frame at ``stamp`` (seconds) is taken."""
        stamp = float(stamp)
        if not math.isfinite(stamp):
            raise ValueError(f"frame stamp must be a finite number of seconds, got {stamp!r}")
        if self.last is not None and stamp < self.last:
            raise ValueError(
                f"frame stamps went backwards: {stamp:.6f} s after {self.last:.6f} s. Stamps must not "
                f"decrease; call reset() when a new stream (or a seek) starts"
            )
        self.last = stamp
        if self.start is None:
            self.start = stamp
        elif stamp < self.start + self._next_tick / self.fps - EPSILON:  # before next_tick
            return False
        # Taken: the next tick is the first grid tick strictly after this stamp (a stamp
        # within EPSILON of a tick counts as on that tick).
        self._next_tick = math.floor((stamp - self.start) * self.fps + EPSILON * self.fps) + 1
        return True


def sample_indices(stamps: Sequence[float], fps: float) -> list[int]:
    """Indices of the frames taken from a whole video with stamps ``stamps`` (seconds, not
    decreasing) at ``fps`` frames per second; the same rule as ``FrameSampler``."""
    sampler = FrameSampler(fps)
    return [i for i, stamp in enumerate(stamps) if sampler.accept(stamp)]


def stamp_ahead_error(stamp: float, now: float, max_ahead: float, where: str = "frame") -> str | None:
    """Why a frame stamped too far ahead of the receiving node's clock is refused, or None.

    A stream's stamps must not decrease, so one frame stamped in the future would make
    every later real frame look like it went backwards. Nodes therefore refuse a frame
    whose stamp is more than ``max_ahead`` seconds after ``now`` (the node's ROS clock,
    which follows ``/clock`` under ``use_sim_time``) *before* it becomes the stream's
    newest stamp; stamps in the past (replays, old bags) are never refused here.
    ``max_ahead`` <= 0 turns the check off; ``now`` <= 0 means the clock has not started
    (sim time before the first ``/clock``), when nothing can be judged."""
    if max_ahead <= 0 or now <= 0 or not stamp - now > max_ahead:
        return None
    return (
        f"{where}: stamp {stamp:.3f} s is {stamp - now:.3f} s ahead of this node's clock ({now:.3f} s), more "
        f"than max_stamp_ahead={max_ahead:g} s: refused, and later frames are still taken. Check the camera's "
        f"clock (time sync between machines), use_sim_time and /clock on replays, or raise max_stamp_ahead "
        f"(0 turns the check off)"
    )


def _writable(array: np.ndarray) -> np.ndarray:
    """A contiguous array torch can wrap: frames from ROS messages (``np.frombuffer``) are
    read-only, and torch warns on those."""
    array = np.ascontiguousarray(array)
    return array if array.flags.writeable else array.copy()


def _check_image(image: np.ndarray, what: str = "image") -> None:
    if not isinstance(image, np.ndarray):
        raise ValueError(f"{what} must be a numpy array (HxWx3 uint8 RGB), got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"{what} must have shape HxWx3 (RGB), got {image.shape}: convert grayscale or RGBA images "
            f"to RGB first (e.g. np.stack([g] * 3, -1) or rgba[..., :3])"
        )
    if image.dtype != np.uint8:
        raise ValueError(
            f"{what} must be uint8 RGB, got {image.dtype}: convert float images in [0, 1] with "
            f"(x * 255).round().astype(np.uint8)"
        )
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"{what} is empty ({image.shape[0]}x{image.shape[1]}): skip empty frames before preprocessing")


def letterbox(image: np.ndarray, size: int) -> np.ndarray:
    """Scale ``image`` (HxWx3 uint8 RGB) so its longer side is ``size`` (aspect kept; bilinear
    with antialiasing, deterministic) and centre it on a black ``size`` x ``size`` canvas.

    Odd padding puts the extra row/column at the bottom/right.
    """
    _check_image(image)
    if not (isinstance(size, (int, np.integer)) and not isinstance(size, bool) and size > 0):
        raise ValueError(f"letterbox size must be a positive int, got {size!r}")
    size = int(size)
    h, w = image.shape[:2]
    scale = size / max(h, w)
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    if (new_h, new_w) == (h, w):
        resized = image
    else:
        x = torch.from_numpy(_writable(image)).permute(2, 0, 1)[None].float()
        x = F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=True)
        resized = x[0].permute(1, 2, 0).round_().clamp_(0, 255).to(torch.uint8).numpy()
    out = np.zeros((size, size, 3), dtype=np.uint8)
    top, left = (size - new_h) // 2, (size - new_w) // 2
    out[top : top + new_h, left : left + new_w] = resized
    return out


def to_pixels(frames: np.ndarray | Sequence[np.ndarray], mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Letterboxed uint8 frames ``[T, S, S, 3]`` (array or list) -> float32 ``[T, 3, S, S]``,
    ``(x / 255 - mean) / std`` per channel."""
    if isinstance(frames, np.ndarray):
        if frames.ndim != 4:
            raise ValueError(f"frames must have shape [T, S, S, 3], got {frames.shape}")
        batch = frames
    else:
        if len(frames) == 0:
            raise ValueError("no frames given")
        for i, frame in enumerate(frames):
            _check_image(frame, f"frame {i}")
        shapes = {frame.shape for frame in frames}
        if len(shapes) != 1:
            raise ValueError(f"frames have different sizes {sorted(shapes)}: letterbox them first (preprocess())")
        batch = np.stack(frames)
    if batch.shape[0] == 0:
        raise ValueError("no frames given")
    _check_image(batch[0], "frames[0]")
    if batch.shape[1] != batch.shape[2]:
        raise ValueError(
            f"frames must be square (letterboxed), got {batch.shape[1]}x{batch.shape[2]}: use preprocess()"
        )
    if len(mean) != 3 or len(std) != 3:
        raise ValueError(f"mean and std need 3 values (RGB), got {tuple(mean)} and {tuple(std)}")
    x = torch.from_numpy(_writable(batch)).permute(0, 3, 1, 2).float().div_(255)
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return (x - mean_t) / std_t


def preprocess(
    frames: np.ndarray | Sequence[np.ndarray], size: int, mean: Sequence[float], std: Sequence[float]
) -> torch.Tensor:
    """Frames of any size (HxWx3 uint8 RGB each, or one [T, H, W, 3] array) -> model pixels
    float32 ``[T, 3, size, size]``: ``letterbox`` each, then ``to_pixels``."""
    if isinstance(frames, np.ndarray) and frames.ndim == 4:
        frames = list(frames)
    if isinstance(frames, np.ndarray) or len(frames) == 0:
        got = f"an array of shape {frames.shape}" if isinstance(frames, np.ndarray) else "none"
        raise ValueError(f"preprocess takes a list of HxWx3 frames or a [T, H, W, 3] array, got {got}")
    return to_pixels([letterbox(frame, size) for frame in frames], mean, std)
