"""A synthetic streaming world with real images: photographed objects enter, move, change
and leave a scene, with timestamped annotations of every event. A stream is a pure
function of its seed and split.

The objects are cut-outs of the photos shipped with scikit-image, varied per stream by
crop, scale, flip and colour jitter (:mod:`live_ros.data.world_objects`), over procedural
backgrounds, tinted skimage textures and blurred crops of skimage photos
(:mod:`live_ros.data.world_backgrounds`). A :class:`~live_ros.data.world_scene.Scene`
scripts their actions and renders them, measuring what is visible and deriving the
annotated events (:mod:`live_ros.data.world_scene`); each split draws its scenes at random
from its own factors (:mod:`live_ros.data.world_splits`). Everything is numpy.

This module writes the world to disk: videos with PyAV (H.264 mp4) annotated in the
project's format (:mod:`live_ros.data.annotations`), the bundled demo and end-to-end check
clips, and whole data sets of a split with their dialogues (:func:`generate_world`).
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import numpy as np

from live_ros.data.annotations import VideoAnnotation, save_annotation
from live_ros.data.world_objects import Look
from live_ros.data.world_scene import DEFAULT_SIZE, DEFAULT_SOURCE_FPS, Rendered, Scene
from live_ros.data.world_splits import (
    LONG_DEFAULT_MINUTES,
    LONG_FACTOR,
    SPLITS,
    long_min_seconds,
    random_scene,
    stream_seed,
)


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


def render_video(scene: Scene, video_path: Path, annotation_path: Path | None = None, crf: int = 26) -> VideoAnnotation:
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
    appears, the rocket appears, the cat turns around and leaves, a helmet fades in, the cup
    moves, the helmet fades out, the astronaut comes in, the rocket leaves, the astronaut
    grows.

    The helmet (52-66 s) is one of the world's ``unseen`` objects
    (:func:`live_ros.data.world_objects.unseen_objects`): no training split has it, so the
    model cannot name it, and the right narration is the generic one ("Something I can't
    name appears.", :mod:`live_ros.data.generic`); the scorer expects that answer for an
    object outside the model's vocabulary (:mod:`live_ros.evaluation.truth`). The annotation
    keeps its true noun."""
    W, H = DEFAULT_SIZE
    scene = Scene(
        "demo",
        duration=90.0,
        background="gradient",
        background_seed=20240617,
        split="demo",
        meta={"about": "live_ros demo scene (world.demo_scene)"},
    )
    cat = scene.add("cat", Look(crop=0, size=130), rest=(W * 0.2, H * 0.52))
    cup = scene.add("coffee cup", Look(crop=0, size=110), rest=(W * 0.5, H * 0.55))
    rocket = scene.add("rocket", Look(crop=0, size=190), rest=(W * 0.84, H * 0.5))
    # the helmet is a solid dome (the horse it replaces was a thin silhouette): 120 px wide it
    # covers more of the frame than the 140 px horse did, and the cup stays in front of it
    helmet = scene.add("helmet", Look(crop=0, size=120), rest=(W * 0.22, H * 0.55))
    astro = scene.add("astronaut", Look(crop=1, size=130), rest=(W * 0.22, H * 0.5))
    scene.act(cat, "enter", 4.0, 1.5, "left")
    scene.act(cup, "enter", 15.0, 0.0, "pop")
    scene.act(rocket, "enter", 27.0, 1.5, "bottom")
    scene.act(cat, "turn", 36.0)
    scene.act(cat, "leave", 44.0, 1.5, "left")
    scene.act(helmet, "enter", 52.0, 1.2, "fade")
    scene.act(cup, "move", 58.0, 1.5, "down", to=(W * 0.5, H * 0.68))
    scene.act(helmet, "leave", 66.0, 1.0, "fade")
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
    scene = Scene(
        "check",
        duration=30.0,
        background="radial",
        background_seed=7,
        split="demo",
        meta={"about": "live_ros end-to-end check clip (world.check_scene)"},
    )
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
    seed, split, index, duration, out_dir, size, fps, reuse = job
    out_dir = Path(out_dir)
    scene = random_scene(seed, split, index, duration=duration, size=size, fps=fps)
    video = out_dir / "videos" / f"{scene.video_id}.mp4"
    annotation = out_dir / "annotations" / f"{scene.video_id}.json"
    if reuse and video.is_file() and annotation.is_file():
        return {"annotation": str(annotation), "video": str(video)}
    ann = render_video(
        scene, out_dir / "videos" / f"{scene.video_id}.mp4", out_dir / "annotations" / f"{scene.video_id}.json"
    )
    return {"annotation": str(out_dir / "annotations" / f"{scene.video_id}.json"), "video": ann.video}


def generate_world(
    out_dir: Path,
    streams: int,
    seed: int = 0,
    split: str = "train",
    minutes: float | None = None,
    fps: float = 2.0,
    jobs: int = 1,
    size: tuple[int, int] = DEFAULT_SIZE,
    source_fps: float = DEFAULT_SOURCE_FPS,
    budget_tokens: int = 2048,
    tokens_per_frame: int = 10,
    progress: bool = True,
    reuse_videos: bool = False,
) -> Path:
    """Render ``streams`` videos of ``split`` into ``out_dir/videos``, their annotations into
    ``out_dir/annotations`` and the dialogues into ``out_dir/streams.jsonl``. Returns the
    JSONL path. ``minutes`` fixes every stream's length (``long``: default 20, and at least
    ``long_min_seconds(budget_tokens, tokens_per_frame, fps)``). ``reuse_videos``: a video
    whose mp4 and annotation are already there is not rendered again (the dialogues are
    written afresh: rendering is a pure function of the seed, so only a change of the
    scene code calls for a new render)."""
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
            raise ValueError(
                f"long streams must last at least {LONG_FACTOR}x the cache budget: {need:.0f} s "
                f"({need / 60:.1f} min) for {budget_tokens} tokens at {tokens_per_frame} tokens/frame "
                f"and {fps:g} fps; got {duration:.0f} s. Raise --minutes"
            )
    jobs_list = [
        (seed, split, i, duration, str(out_dir), tuple(size), source_fps, reuse_videos) for i in range(streams)
    ]
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
        rng = np.random.default_rng(stream_seed(seed, split, i).spawn(1)[0])
        sample = dialogue.world_stream(ann, fps=fps, rng=rng, fixed=split != "train")
        sample.meta["annotation"] = str(Path(res["annotation"]).resolve())
        samples.append(sample)
    return save_samples(samples, out_dir / "streams.jsonl")
