"""Feature pre-extraction: video files -> frame tokens, once per video (as the release
trains on pre-extracted features, not pixels).

Frames come from the DECODED video file (PyAV), sampled on the fps grid of live_ros/model/frames.py with
:class:`live_ros.model.frames.FrameSampler` over the decoded frames' real timestamps
(seconds from the first frame), and go through the encoder's ``encode`` (letterbox +
normalise, :mod:`live_ros.model.frames`): the one path live frames take too.

One safetensors file per video, ``<out_dir>/<video_id>.safetensors`` (``video_id`` = the
file name without extension):

- ``frame_tokens``: float16 ``[T, N, dim]`` (N = 1 pooled + s*s spatial tokens)
- ``frame_times``: float64 ``[T]``, video seconds of each sampled frame from the first frame
- metadata (strings): ``format`` (``live_ros.features/1``), ``encoder_id``, ``fps``,
  ``video`` (the source path), ``num_frames`` (T), ``num_tokens``, ``dim``

Resumable: a video whose file exists with the same encoder id and fps is skipped; files
are written to a temporary name and renamed, so an interrupted run leaves no half file.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from live_ros.model.frames import FrameSampler

FORMAT = "live_ros.features/1"
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v")


class FeaturesError(ValueError):
    """A features file that is missing, unreadable or from another encoder."""


def features_path(out_dir: Path, video_id: str) -> Path:
    return Path(out_dir) / f"{video_id}.safetensors"


def video_id_of(video: Path) -> str:
    return Path(video).stem


def video_files(paths: Sequence[str | Path]) -> list[Path]:
    """Video files from files and folders (folders: their video files, sorted, recursively)."""
    out: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            out.extend(
                sorted(
                    f
                    for f in p.rglob("*")
                    if f.suffix.lower() in VIDEO_EXTENSIONS and f.is_file() and not f.name.startswith(".")
                )
            )
        elif p.is_file():
            out.append(p)
        else:
            raise FileNotFoundError(f"{p} is neither a video file nor a folder")
    return out


def decode_sampled(video_path: str | Path, fps: float) -> Iterator[tuple[np.ndarray, float]]:
    """Decode ``video_path`` and yield (HxWx3 uint8 RGB frame, time) for the frames the
    sampler takes at ``fps``; times are seconds from the first decoded frame."""
    import av

    video_path = Path(video_path)
    if not video_path.is_file():
        raise FileNotFoundError(f"video {video_path} does not exist")
    sampler = FrameSampler(fps)
    try:
        container = av.open(str(video_path))
    except av.error.FFmpegError as err:
        raise FeaturesError(f"{video_path} cannot be opened as a video ({err})") from err
    with container:
        if not container.streams.video:
            raise FeaturesError(f"{video_path} has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = float(stream.average_rate or stream.guessed_rate or 25)
        first, last, index = None, -math.inf, 0
        for frame in container.decode(stream):
            t = frame.time if frame.time is not None else index / rate
            index += 1
            if first is None:
                first = t
            stamp = t - first
            if stamp <= last:  # a repeated or out-of-order stamp (broken files): skip the frame
                continue
            last = stamp
            if sampler.accept(stamp):
                yield frame.to_ndarray(format="rgb24"), stamp


def extract_video(video_path: str | Path, encoder, fps: float = 2.0, batch_size: int = 16, on_frames=None):
    """Frame tokens of one video: (tokens float16 ``[T, N, dim]``, times float64 ``[T]``).
    ``on_frames(n)`` is called after each encoded batch (progress)."""
    import torch

    chunks: list[torch.Tensor] = []
    times: list[float] = []
    batch: list[np.ndarray] = []
    encoder.reset()  # a new stream (frame-difference encoders)

    def flush():
        if batch:
            tokens = encoder.encode(batch, batch_size=batch_size)
            chunks.append(tokens.detach().to("cpu", torch.float16))
            if on_frames:
                on_frames(len(batch))
            batch.clear()

    for frame, stamp in decode_sampled(video_path, fps):
        batch.append(frame)
        times.append(stamp)
        if len(batch) >= batch_size:
            flush()
    flush()
    if not chunks:
        raise FeaturesError(f"{video_path}: no frames could be decoded")
    return torch.cat(chunks), torch.tensor(times, dtype=torch.float64)


def read_meta(path: str | Path) -> dict:
    """The metadata of a features file (without loading its tensors)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


def _done(path: Path, encoder_id: str, fps: float) -> bool:
    if not path.is_file():
        return False
    try:
        meta = read_meta(path)
    except Exception:
        return False
    try:
        return meta.get("encoder_id") == encoder_id and math.isclose(float(meta.get("fps", "nan")), fps)
    except ValueError:
        return False


def save_features(path: Path, tokens, times, meta: dict) -> Path:
    """Write a features file atomically (a temporary file beside it, then a rename)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        save_file(
            {"frame_tokens": tokens.contiguous(), "frame_times": times.contiguous()},
            str(tmp),
            metadata={k: str(v) for k, v in meta.items()},
        )
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def extract_all(
    videos: Sequence[str | Path],
    encoder,
    fps: float = 2.0,
    out_dir: str | Path = "features",
    progress: bool = True,
    force: bool = False,
    batch_size: int = 16,
) -> list[Path]:
    """Extract every video into ``out_dir`` (one file per video, in the order given);
    videos already extracted with this encoder and fps are skipped unless ``force``."""
    from tqdm import tqdm

    paths = [Path(v) for v in videos]
    out_dir = Path(out_dir)
    seen: dict[str, Path] = {}
    for v in paths:
        vid = video_id_of(v)
        if vid in seen and seen[vid].resolve() != v.resolve():
            raise FeaturesError(
                f"two videos share the id {vid!r} ({seen[vid]} and {v}): features are stored by "
                f"file name; rename one or extract them into different --out folders"
            )
        seen[vid] = v
    encoder_id = encoder.encoder_id
    out: list[Path] = []
    bar = tqdm(paths, desc="extracting", unit="video", disable=not progress)
    skipped = frames_done = 0
    for video in bar:
        target = features_path(out_dir, video_id_of(video))
        out.append(target)
        if not force and _done(target, encoder_id, fps):
            skipped += 1
            bar.set_postfix(skipped=skipped, frames=frames_done)
            continue

        def count(n):
            nonlocal frames_done
            frames_done += n
            bar.set_postfix(skipped=skipped, frames=frames_done)

        tokens, times = extract_video(video, encoder, fps, batch_size=batch_size, on_frames=count)
        save_features(
            target,
            tokens,
            times,
            {
                "format": FORMAT,
                "encoder_id": encoder_id,
                "fps": repr(float(fps)),
                "video": str(video),
                "num_frames": tokens.shape[0],
                "num_tokens": tokens.shape[1],
                "dim": tokens.shape[2],
            },
        )
    return out


def pooled_only(src_dir: str | Path, out_dir: str | Path, keep_delta: bool = False) -> list[Path]:
    """Derive 1-token features (the pooled token alone) from ``1+SxS`` features: every
    backend puts its pooled token first, so ``tokens[:, :1]`` equals what the same encoder
    with no spatial grid gives, and its id ends in ``:1`` instead of ``:1+SxS``; from
    frame-difference features (``:1+SxS+delta``) the difference is left out unless
    ``keep_delta`` (then ``:1+delta``, the pooled token and its difference). Used for the
    small-scale ablation (1 token per frame) without encoding the videos again."""
    src_dir, out_dir = Path(src_dir), Path(out_dir)
    files = sorted(src_dir.glob("*.safetensors"))
    if not files:
        raise FeaturesError(
            f"no features files in {src_dir}: extract them first with `live-ros extract VIDEOS --out {src_dir}`"
        )
    out = []
    for path in files:
        tokens, times, meta = load_features(path)
        layout = meta.get("encoder_id", "").rsplit(":", 1)
        if len(layout) != 2 or not layout[1].startswith("1"):
            raise FeaturesError(
                f"{path}: encoder id {meta.get('encoder_id')!r} does not end in a token layout "
                f"(':1+3x3'): it was not written by live-ros extract"
            )
        pooled, delta = tokens[:, :1], layout[1].endswith("+delta")
        if delta and not keep_delta:  # keep the frame's own half: the pooled token as the paper has it
            pooled = pooled[..., : pooled.shape[-1] // 2]
        pooled_layout = "1+delta" if delta and keep_delta else "1"
        meta.update(
            encoder_id=f"{layout[0]}:{pooled_layout}", num_tokens=1, dim=pooled.shape[-1], derived_from=str(path)
        )
        out.append(save_features(out_dir / path.name, pooled.clone(), times, meta))
    return out


def load_features(path: str | Path, expect_encoder: str | None = None, expect_fps: float | None = None):
    """(tokens ``[T, N, dim]`` float16, times ``[T]`` float64, meta dict) of a features file.
    Raises naming the file and the fix when it is missing, unreadable, or from another
    encoder (``expect_encoder``) or fps (``expect_fps``)."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"features file {path} does not exist: extract it with `live-ros extract VIDEO --out {path.parent}`"
        )
    try:
        meta = read_meta(path)
        tensors = load_file(str(path))
    except Exception as err:
        raise FeaturesError(
            f"{path} is not a readable features file ({err}): delete it and extract again "
            f"with `live-ros extract VIDEO --out {path.parent}`"
        ) from err
    if "frame_tokens" not in tensors or "frame_times" not in tensors:
        raise FeaturesError(
            f"{path} lacks frame_tokens/frame_times: it was not written by live_ros; "
            f"extract again with `live-ros extract VIDEO --out {path.parent}`"
        )
    if expect_encoder is not None and meta.get("encoder_id") != expect_encoder:
        raise FeaturesError(
            f"{path} holds tokens of encoder '{meta.get('encoder_id')}', expected '{expect_encoder}': "
            f"extract again with the model's encoder (`live-ros extract VIDEO --out {path.parent} "
            f"--preset ...`; the old file is replaced)"
        )
    if expect_fps is not None and not math.isclose(float(meta.get("fps", "nan")), float(expect_fps)):
        raise FeaturesError(
            f"{path} was sampled at {meta.get('fps')} fps, expected {expect_fps:g}: extract again "
            f"with `live-ros extract VIDEO --out {path.parent} --fps {expect_fps:g}`"
        )
    out = dict(meta)
    for key in ("num_frames", "num_tokens", "dim"):
        if key in out:
            out[key] = int(out[key])
    if "fps" in out:
        out["fps"] = float(out["fps"])
    return tensors["frame_tokens"], tensors["frame_times"], out
