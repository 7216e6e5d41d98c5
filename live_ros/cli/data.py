"""The ``live-ros generate`` and ``live-ros extract`` verbs.

``add(sub)`` adds both to ``parser.add_subparsers()``, each with
``run=<callable(args) -> int>``. Heavy modules (numpy, torch, PyAV) are imported
inside the callables, so ``--help`` stays instant.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from live_ros.data import SPLITS


def _fps(value: str) -> float:
    try:
        fps = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}")
    if not fps > 0:
        raise argparse.ArgumentTypeError(f"fps must be > 0, got {value}")
    return fps


def _positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {value!r}")
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return n


def _err(msg: str) -> int:
    print(f"live-ros: {msg}", file=sys.stderr)
    return 1


# ------------------------------------------------------------------------------ generate


def _run_world(args) -> int:
    from live_ros.data.world import generate_world

    try:
        path = generate_world(
            Path(args.out),
            args.streams,
            seed=args.seed,
            split=args.split,
            minutes=args.minutes,
            fps=args.fps,
            jobs=args.jobs,
            budget_tokens=args.budget_tokens,
            tokens_per_frame=args.tokens_per_frame,
            progress=not args.quiet,
            reuse_videos=args.reuse_videos,
        )
    except ValueError as err:
        return _err(str(err))
    print(
        f"wrote {args.streams} {args.split} streams: {path} (videos in {Path(args.out) / 'videos'}, "
        f"annotations in {Path(args.out) / 'annotations'})"
    )
    return 0


def _write_streams(samples, out: Path, what: str) -> int:
    from live_ros.data.streams import save_samples

    if not samples:
        return _err(f"no streams came out of {what}: no video had usable annotations")
    path = save_samples(samples, Path(out) / "streams.jsonl")
    turns = sum(len(s.turns) for s in samples)
    print(f"wrote {len(samples)} streams ({turns} turns) from {what}: {path}")
    return 0


def _responder(args):
    from live_ros.data.dialogue_responders import build_responder

    return build_responder(args.responder, args.llm, max_new_tokens=args.max_new_tokens)


def _run_ego4d(args) -> int:
    from live_ros.data.annotations import load_ego4d_narrations
    from live_ros.data.dialogue import streams_from_annotations

    try:
        anns = load_ego4d_narrations(Path(args.file), video_dir=args.videos)
    except (OSError, ValueError) as err:
        return _err(str(err))
    samples = streams_from_annotations(anns, fps=args.fps, seed=args.seed, window=args.window)
    return _write_streams(samples, Path(args.out), args.file)


def _run_coin(args) -> int:
    from live_ros.data.annotations import load_coin
    from live_ros.data.dialogue import streams_from_annotations

    try:
        anns = load_coin(Path(args.file), subset=args.subset, video_dir=args.videos)
        responder = _responder(args)
    except (OSError, ValueError) as err:
        return _err(str(err))
    samples = streams_from_annotations(anns, fps=args.fps, seed=args.seed, responder=responder, fixed=args.fixed)
    return _write_streams(samples, Path(args.out), args.file)


def _run_annotations(args) -> int:
    from live_ros.data.annotations import load_annotation
    from live_ros.data.dialogue import streams_from_annotations

    try:
        files = []
        for p in args.files:
            p = Path(p)
            files.extend(sorted(p.glob("*.json")) if p.is_dir() else [p])
        anns = [load_annotation(f) for f in files]
        responder = _responder(args)
    except (OSError, ValueError) as err:
        return _err(str(err))
    samples = streams_from_annotations(anns, fps=args.fps, seed=args.seed, responder=responder, fixed=args.fixed)
    return _write_streams(samples, Path(args.out), f"{len(files)} annotation files")


def _run_demo(args) -> int:
    from live_ros.data.world import render_demo

    ann = render_demo(Path(args.out))
    size = (Path(args.out) / "demo.mp4").stat().st_size
    print(
        f"wrote {Path(args.out) / 'demo.mp4'} ({size / 1e6:.2f} MB, {ann.duration:.0f} s, "
        f"{len(ann.events)} events) and {Path(args.out) / 'demo.json'}"
    )
    return 0


def _default_media() -> str:
    from live_ros.paths import checkout_root

    root = checkout_root()
    return str(root / "media") if root else "media"


def _common(p: argparse.ArgumentParser, responder: bool = False) -> None:
    p.add_argument("--out", required=True, help="output folder (streams.jsonl is written there)")
    p.add_argument("--fps", type=_fps, default=2.0, help="model frame rate of the streams (default: 2)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    if responder:
        p.add_argument(
            "--responder",
            choices=("template", "llm"),
            default="template",
            help="who writes the responses: deterministic templates (default) or a local LLM",
        )
        p.add_argument(
            "--llm",
            default=None,
            help="local causal LM folder for --responder llm (default: the converted SmolLM2 in the cache)",
        )
        p.add_argument("--max-new-tokens", type=_positive_int, default=40, help="LLM response length limit")
        p.add_argument(
            "--fixed",
            action="store_true",
            help="evaluation streams: fix the question insertions (no redraw in training)",
        )


def _add_generate(sub) -> None:
    p = sub.add_parser(
        "generate",
        help="make training/evaluation streams (synthetic world, Ego4D, COIN, demo)",
        description="Generate streaming dialogues (VideoLLM-online section 3.2): render the synthetic "
        "world, or turn Ego4D narrations / COIN steps / live_ros annotation files into "
        "streams.jsonl; `generate demo` re-renders media/demo.mp4 and media/demo.json.",
    )
    gen = p.add_subparsers(dest="source", metavar="SOURCE")
    p.set_defaults(run=lambda a: (p.print_help(), 2)[1])

    w = gen.add_parser(
        "world",
        help="render synthetic videos + annotations + streams.jsonl",
        description="Render videos of photographed objects entering, moving and leaving a scene "
        "(H.264 mp4 in OUT/videos, annotations in OUT/annotations, dialogues in "
        "OUT/streams.jsonl). Splits: train; eval (held-out backgrounds, crops, scales, "
        "positions, entry styles, timings); eval-timing (eval + unseen objects); long "
        "(>= 10x the engine cache budget, a reminder asked early).",
    )
    _common(w)
    w.add_argument("--streams", type=_positive_int, default=10, help="number of videos (default: 10)")
    w.add_argument("--split", choices=SPLITS, default="train", help="which split (default: train)")
    w.add_argument(
        "--minutes",
        type=float,
        default=None,
        help="length of every stream in minutes (default: 0.75-1.5 random; long: 20)",
    )
    w.add_argument(
        "--budget-tokens",
        type=_positive_int,
        default=2048,
        help="long split: the engine's cache budget in tokens (default: 2048)",
    )
    w.add_argument(
        "--tokens-per-frame",
        type=_positive_int,
        default=10,
        help="long split: tokens per frame of the model (default: 10)",
    )
    w.add_argument("--jobs", type=_positive_int, default=1, help="parallel rendering processes (default: 1)")
    w.add_argument(
        "--reuse-videos",
        action="store_true",
        help="keep videos already rendered in OUT (with their annotation) and write the dialogues afresh",
    )
    w.add_argument("--quiet", action="store_true", help="no progress bar")
    w.set_defaults(run=_run_world)

    e = gen.add_parser("ego4d", help="Ego4D narrations (all_narrations_redacted.json) -> narration streams")
    e.add_argument("file", help="all_narrations_redacted.json")
    _common(e)
    e.add_argument("--videos", default=None, help="folder of the videos (<video_uid>.mp4)")
    e.add_argument(
        "--window",
        type=float,
        default=None,
        help="cut videos into windows of this many seconds (default: whole videos)",
    )
    e.set_defaults(run=_run_ego4d)

    c = gen.add_parser("coin", help="COIN steps (COIN.json) -> question/answer streams")
    c.add_argument("file", help="COIN.json")
    _common(c, responder=True)
    c.add_argument("--videos", default=None, help="folder of the videos (<video_id>.mp4)")
    c.add_argument("--subset", choices=("training", "testing"), default=None, help="only this COIN subset")
    c.set_defaults(run=_run_coin)

    a = gen.add_parser("annotations", help="live_ros annotation files (JSON, or folders of them) -> streams")
    a.add_argument("files", nargs="+", help="annotation JSON files or folders")
    _common(a, responder=True)
    a.set_defaults(run=_run_annotations)

    g = gen.add_parser(
        "grounding",
        help="short 'what do you see?' clips cut from a world dataset (alignment stage)",
        description="From WORLD_DIR (streams.jsonl, annotations/, features/ of `generate world` + "
        "`extract`): clips of --context frames ending at random frames, a present-tense "
        "question and the objects visible then as the answer; OUT/streams.jsonl and "
        "OUT/features/ (slices of the videos' features).",
    )
    _cut_args(g, "clips", 24)
    g.add_argument("--context", type=_positive_int, default=2, help="frames per clip (default: 2)")
    g.set_defaults(run=_run_cut, cut="grounding", what="grounding clips")

    w = gen.add_parser(
        "windows",
        help="short event windows cut from a world dataset's plans (naming signal)",
        description="From WORLD_DIR (streams.jsonl with plans, features/): per video, --per-video "
        "short streams, each a question of the plan inserted a few frames before one of "
        "its updates, the update and a few silent frames; OUT/streams.jsonl and "
        "OUT/features/ (slices of the videos' features).",
    )
    _cut_args(w, "windows", 8)
    w.set_defaults(run=_run_cut, cut="windows", what="event windows")

    d = gen.add_parser("demo", help="re-render the bundled demo (media/demo.mp4 + media/demo.json)")
    d.add_argument("--out", default=_default_media(), help="output folder (default: media/ of the checkout)")
    d.set_defaults(run=_run_demo)


def _cut_args(p, noun: str, per_video: int) -> None:
    """The arguments of the verbs that cut short streams from a world dataset."""
    p.add_argument("world_dir", help="a `generate world` output folder with its features/ extracted")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--per-video", type=_positive_int, default=per_video, help=f"{noun} per video (default: {per_video})"
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")


def _run_cut(args) -> int:
    from live_ros.data.grounding import build_grounding, build_windows

    try:
        if args.cut == "grounding":
            path = build_grounding(
                args.world_dir, args.out, per_video=args.per_video, context=args.context, seed=args.seed
            )
        else:
            path = build_windows(args.world_dir, args.out, per_video=args.per_video, seed=args.seed)
    except (OSError, ValueError) as err:
        return _err(str(err))
    n = sum(1 for _ in path.open())
    print(f"wrote {n} {args.what}: {path} (features in {Path(args.out) / 'features'})")
    return 0


# ------------------------------------------------------------------------------- extract


def _run_extract(args) -> int:
    from live_ros.data.features import FeaturesError, extract_all, pooled_only, video_files

    if args.pooled_from:
        try:
            paths = pooled_only(args.pooled_from, args.out, keep_delta=args.keep_delta)
        except (OSError, FeaturesError) as err:
            return _err(str(err))
        print(f"{len(paths)} pooled-token feature files in {args.out} (from {args.pooled_from})")
        return 0
    if not args.videos:
        return _err("give the video files or folders to extract (or --pooled-from FEATURES_DIR)")
    try:
        videos = video_files(args.videos)
    except FileNotFoundError as err:
        return _err(str(err))
    if not videos:
        return _err(f"no video files in {' '.join(args.videos)}")
    try:
        import torch

        from live_ros.model.sources import load_encoder

        if args.threads:
            torch.set_num_threads(args.threads)
        encoder = load_encoder(args.preset, vision=args.vision, device=args.device)
        paths = extract_all(
            videos,
            encoder,
            fps=args.fps,
            out_dir=Path(args.out),
            progress=not args.quiet,
            force=args.force,
            batch_size=args.batch_size,
        )
    except (OSError, ValueError) as err:
        return _err(str(err))
    print(f"{len(paths)} feature files in {args.out} (encoder {encoder.encoder_id}, {args.fps:g} fps)")
    return 0


def _add_extract(sub) -> None:
    from live_ros.model.presets import PRESETS

    p = sub.add_parser(
        "extract",
        help="pre-extract frame tokens of videos (one safetensors file per video)",
        description="Decode videos, sample them on the fps grid, encode the frames with a preset's "
        "vision encoder and write OUT/<video_id>.safetensors (frame_tokens [T, N, dim] "
        "float16, frame_times [T] seconds). Resumable: videos already extracted with "
        "the same encoder and fps are skipped.",
    )
    p.add_argument("videos", nargs="*", help="video files or folders of videos")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--pooled-from",
        default=None,
        metavar="FEATURES_DIR",
        help="instead of encoding videos: keep only the pooled token of the features in FEATURES_DIR "
        "(1 token per frame, encoder id ending in ':1'; the small-scale ablation uses it)",
    )
    p.add_argument(
        "--keep-delta",
        action="store_true",
        help="with --pooled-from: keep the pooled token's frame difference (id ending in ':1+delta')",
    )
    p.add_argument("--preset", choices=list(PRESETS), default="embedded", help="model preset (default: embedded)")
    p.add_argument("--vision", default=None, help="local vision weights (8B preset: the SigLIP folder)")
    p.add_argument("--fps", type=_fps, default=2.0, help="frames per second to sample (default: 2)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument("--batch-size", type=_positive_int, default=16, help="frames per encoder batch (default: 16)")
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch threads (default 0: torch's choice; on a busy shared machine 1 can be several "
        "times faster than oversubscribed threads)",
    )
    p.add_argument("--force", action="store_true", help="extract again even when a file exists")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_run_extract)


def add(sub) -> None:
    _add_generate(sub)
    _add_extract(sub)
