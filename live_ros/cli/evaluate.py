"""The ``evaluate``, ``evaluate-online`` and ``replay-eval`` verbs.

``add(sub)`` adds them to ``parser.add_subparsers()``, each with
``run=<callable(args) -> int>``. The implementations (:mod:`live_ros.evaluation`,
:mod:`live_ros.ros.replay_eval`), torch and rclpy are imported inside the callables, so
``--help`` stays instant.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ONLINE_DESCRIPTION = """\
Online evaluation through the streaming engine (paper section 3.4): a stream's frames go
through the engine with its bounded KV cache, its user turns are asked at their times, and
what the model says is scored against the stream's own assistant turns (one-to-one
matching in a time window). This is how long streams (many times the cache budget) are
checked: the offline metrics of `live-ros evaluate` need the whole stream in context.

    .venv/bin/live-ros evaluate-online data/world/long/streams.jsonl --features DIR \\
        [--checkpoint DIR] [--theta 0.725] [--cache-budget 1280] [--json OUT]

Per stream, first the words (live_ros/evaluation/truth.py, against the stream's
annotation): per event whether a response came within [-0.5, +1.5] s with the right object
and the right event, per response whether it matched, was spurious, named something not in
view (hallucinated) or repeated the one before with nothing changed; the totals over all
streams lead the summary. Then the timing against the stream's turns: online TimeDiff
(mean |response - turn time| over matched proactive turns), missed and spurious rates,
text similarity of the matched responses, and for each reminder ("tell me when ...")
whether a response within reminder_window of its event names the object.
"""


def add(sub) -> None:
    """Add ``evaluate``, ``evaluate-online`` and ``replay-eval`` to an argparse subparsers object."""
    add_evaluate(sub)
    add_evaluate_online(sub)
    add_replay_eval(sub)


def _nouns(text: str | None) -> tuple[str, ...] | None:
    """``--known-objects`` as nouns (None when not given)."""
    return tuple(n.strip() for n in text.split(",") if n.strip()) if text else None


def _err(verb: str, msg: str) -> int:
    print(f"live-ros {verb}: {msg}", file=sys.stderr)
    return 1


# -- evaluate ---------------------------------------------------------------------------
def add_evaluate(sub) -> None:
    from live_ros.evaluation.offline import DEFAULT_THETA, MODES
    from live_ros.model.presets import PRESETS  # plain data, no torch

    p = sub.add_parser(
        "evaluate",
        help="the paper's metrics (LM-PPL, TimeDiff, Fluency, LM-Correctness) on timed streams",
        description="Evaluate a model on streams (JSON Lines from `live-ros generate`) with their pre-extracted "
        "features: one teacher-forced forward per stream; LM-PPL, TimeDiff (argmax and with the "
        "threshold theta), Fluency and LM-Correctness as defined in the paper and its release. "
        "Streams longer than the model's context are truncated (noted).",
    )
    p.add_argument("streams", metavar="STREAMS_JSONL", help="the streams, one StreamSample per line")
    p.add_argument("--features", required=True, metavar="DIR", help="folder of <video_id>.safetensors features")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--preset", choices=list(PRESETS), help="model preset (default: embedded)")
    src.add_argument("--checkpoint", metavar="DIR", help="a live_ros checkpoint folder (from live-ros train)")
    p.add_argument("--llm", help="local base LLM folder (8B preset, or a checkpoint's base LLM)")
    p.add_argument("--vision", help="local vision weights (8B preset)")
    p.add_argument("--adapter", help="adapter folder (8B preset)")
    p.add_argument(
        "--theta",
        type=float,
        default=DEFAULT_THETA,
        help=f"threshold of the silent token for TimeDiff@theta, 0 = off (default: {DEFAULT_THETA})",
    )
    p.add_argument("--fps", type=float, default=None, help="frames per second for TimeDiff (default: each stream's)")
    p.add_argument(
        "--mode",
        choices=MODES,
        default="streaming",
        help="sequence format the model was trained in (default: streaming)",
    )
    p.add_argument(
        "--max-positions",
        type=int,
        default=None,
        help="truncate streams at this many positions (default: the model's context)",
    )
    p.add_argument(
        "--future",
        choices=("continue", "sequence"),
        default="continue",
        help="how a silent turn looks ahead: continue from its last frame without the response, as "
        "the release (default), or read the next frames in the sequence",
    )
    p.add_argument("--json", metavar="OUT", help="also write the full results (per stream and per turn) as JSON")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N streams")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument("--dtype", default=None, help="float32, bfloat16 or float16 (default: float32)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    p.add_argument("--force", action="store_true", help="run an 8B preset on a CPU anyway")
    p.set_defaults(run=run_evaluate)


def load_for_eval(args):
    """(model, StreamTokenizer, description) from --preset / --checkpoint, through the one loader."""
    from live_ros.model.checkpoint import load_checkpoint

    name = args.preset or "embedded"
    source = args.checkpoint or args.adapter or name
    loaded = load_checkpoint(
        source,
        llm=args.llm,
        vision=args.vision,
        device=args.device,
        dtype=args.dtype,
        force=args.force,
        with_encoder=False,
        preset=None if args.checkpoint else name,
    )
    if args.checkpoint:
        return loaded.model, loaded.tokens, f"checkpoint {args.checkpoint}"
    notes = "; ".join(loaded.notes)
    return loaded.model, loaded.tokens, f"preset {name}" + (f" ({notes})" if notes else "")


def run_evaluate(args) -> int:
    """The ``evaluate`` verb: print the table, write JSON if asked. 0 ok, 1 failed."""
    from live_ros.data.streams import load_samples
    from live_ros.evaluation.offline import evaluate, format_table, write_json
    from live_ros.model.checkpoint import CheckpointError
    from live_ros.model.presets import PresetError

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        samples = load_samples(Path(args.streams))
        if args.limit is not None:
            samples = samples[: max(0, args.limit)]
        if not samples:
            raise ValueError(f"{args.streams} holds no streams")
        features = Path(args.features)
        if not features.is_dir():
            raise FileNotFoundError(f"--features {features} is not a folder: extract features with `live-ros extract`")
        model, tokens, what = load_for_eval(args)
        print(f"evaluating {len(samples)} streams with {what}, mode {args.mode}", file=sys.stderr)
        result = evaluate(
            model,
            tokens,
            samples,
            features,
            theta=args.theta,
            fps=args.fps,
            mode=args.mode,
            max_positions=args.max_positions,
            future=args.future,
            progress=lambda msg: print(msg, file=sys.stderr),
        )
        result["settings"]["model"] = what
    except (FileNotFoundError, ValueError, PresetError, CheckpointError) as err:
        return _err("evaluate", str(err))
    print(format_table(result))
    if args.json:
        print(f"wrote {write_json(result, args.json)}")
    return 0


# -- evaluate-online --------------------------------------------------------------------
def add_evaluate_online(sub) -> None:
    from live_ros.model.presets import PRESETS

    p = sub.add_parser(
        "evaluate-online",
        help="run streams through the streaming engine (bounded cache) and score what it says against their turns",
        description=ONLINE_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("streams", metavar="STREAMS_JSONL")
    p.add_argument("--features", required=True, metavar="DIR")
    p.add_argument("--preset", choices=list(PRESETS), default="embedded")
    p.add_argument("--checkpoint", metavar="DIR", help="a checkpoint folder (default: the preset's)")
    p.add_argument(
        "--theta",
        type=float,
        default=None,
        help="keep silent while P(interval) >= theta (default: the engine's, the release's 0.725)",
    )
    p.add_argument(
        "--cache-budget", type=int, default=None, help="KV cache budget in tokens, 0: unbounded (default: the engine's)"
    )
    p.add_argument(
        "--frame-gate",
        type=float,
        default=None,
        help="skip frames whose tokens changed by less than this (relative; default 0: no gate); "
        "prints the frames fed and skipped",
    )
    p.add_argument("--max-new-tokens", type=int, default=None, help="response length limit (default: the engine's)")
    p.add_argument(
        "--instruction",
        default=None,
        help="the standing instruction of every stream ('' for none; default: each stream's own)",
    )
    p.add_argument(
        "--no-questions", action="store_true", help="leave the streams' questions out (narration with nobody asking)"
    )
    p.add_argument(
        "--known-objects",
        default=None,
        metavar="NOUNS",
        help="comma-separated nouns the model was trained on; events of other objects expect the generic "
        "answer (default: the checkpoint's recorded vocabulary, else every object counts as known)",
    )
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--json", metavar="OUT")
    p.set_defaults(run=run_evaluate_online)


def load_for_online(args):
    """The model (a preset, or --checkpoint over it) of ``evaluate-online``, through the one loader."""
    from live_ros.model.checkpoint import load_checkpoint

    return load_checkpoint(args.checkpoint or args.preset, preset=args.preset, with_encoder=False)


def run_evaluate_online(args) -> int:
    """The ``evaluate-online`` verb: print the table, write JSON if asked. 0 ok, 1 failed."""
    import torch

    from live_ros.data.streams import load_samples
    from live_ros.engine import EngineConfig, StreamEngine
    from live_ros.engine.weights import stream_only
    from live_ros.evaluation.online import REMINDER_WINDOW, WINDOW, evaluate_online, format_online, without_questions

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        samples = load_samples(Path(args.streams))[: args.limit or None]
        system = load_for_online(args)
    except (OSError, ValueError) as err:
        return _err("evaluate-online", str(err))
    if args.no_questions:
        samples = [without_questions(s) for s in samples]
    if args.instruction is not None:
        for s in samples:
            s.instruction = args.instruction
    known = _nouns(args.known_objects) or system.config.vocabulary or None
    overrides = {k: v for k, v in (("theta", args.theta), ("max_new_tokens", args.max_new_tokens)) if v is not None}
    if args.cache_budget is not None:
        overrides["cache_budget"] = args.cache_budget  # 0: unbounded (EngineConfig's rule)
    if args.frame_gate is not None:
        overrides["frame_gate"] = args.frame_gate
    config = EngineConfig(partials=False, **overrides)
    stream_only(system.model)  # the model only streams here: one copy of its weights
    engine = StreamEngine(system.model, system.tokens, config)
    result = evaluate_online(
        engine, samples, args.features, progress=lambda m: print(m, file=sys.stderr, flush=True), known_objects=known
    )
    result["settings"] = {
        "theta": config.theta,
        "cache_budget": config.cache_budget,
        "frame_gate": config.frame_gate,
        "checkpoint": args.checkpoint,
        "questions": not args.no_questions,
        "instruction": args.instruction,
        "window": list(WINDOW),
        "reminder_window": list(REMINDER_WINDOW),
    }
    st = engine.stats
    result["forwards"] = {"frames_fed": st.frames_taken, "frames_gated": st.frames_gated}
    print(format_online(result))
    print(f"frames fed to the model {st.frames_taken}, skipped by the frame gate {st.frames_gated}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


# -- replay-eval ------------------------------------------------------------------------
def _positive(value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not x > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return x


def _window(value: str) -> tuple[float, float]:
    try:
        lo, hi = (float(x) for x in value.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"window must be 'BEFORE,AFTER' in seconds, e.g. -0.5,3; got {value!r}"
        ) from None
    if lo > 0 or hi < 0:
        raise argparse.ArgumentTypeError(f"window must contain 0 (before <= 0 <= after), got {value!r}")
    return lo, hi


def _set(value: str) -> tuple[str, str, str]:
    if "=" not in value or "." not in value.split("=", 1)[0]:
        raise argparse.ArgumentTypeError(f"--set takes NODE.PARAM=VALUE (e.g. live_llm.theta=0.8), got {value!r}")
    key, val = value.split("=", 1)
    node, name = key.split(".", 1)
    return node, name, val


def add_replay_eval(sub) -> None:
    from live_ros.evaluation.score import DEFAULT_WINDOW, FUZZY_THRESHOLD

    p = sub.add_parser(
        "replay-eval",
        help="replay a camera bag into the graph and score it against ground truth",
        description="Replay a bag's camera images into the graph (started from the launch file with "
        "use_sim_time, or --attach), publishing /clock. Lockstep by default: after each "
        "image the sampling rule picks, wait for live_llm's decision, so the scores do not "
        "depend on machine load; --realtime plays at bag speed (x --speed) and reports "
        "drops and latency. Questions are asked at their bag times. Prints online "
        "TimeDiff per annotated event (one-to-one matching within --window), missed "
        "events, spurious responses, answer correctness, and the offline TimeDiff of "
        "`live-ros evaluate` on the same stream; writes report.json, table.txt and "
        "timeline.png.",
    )
    p.add_argument(
        "bag",
        nargs="+",
        help="a rosbag2 bag folder (or .mcap file) with a camera topic; several (e.g. a held-out split): each "
        "replayed in turn into a fresh graph, its report in OUT/<bag name>, the word scores summed at the end",
    )
    p.add_argument("--annotations", help="live_ros.annotation/1 file (default: the one stored in the bag, if any)")
    p.add_argument(
        "--questions",
        help="JSON/YAML list of {time, text, expected?, expected_at?} (video seconds; "
        "expected_at: when a reminder's answer is due)",
    )
    p.add_argument("--out", help="output folder (default: ./<bag name>-eval)")
    p.add_argument("--topic", help="the bag's camera topic (default: its only image topic)")
    mode = p.add_argument_group("mode")
    mode.add_argument("--realtime", action="store_true", help="play at the bag's timing instead of lockstep")
    mode.add_argument("--speed", type=_positive, default=1.0, help="real time: k times faster (default 1)")
    graph = p.add_argument_group("graph")
    graph.add_argument(
        "--attach",
        action="store_true",
        help="replay into a running graph (use_sim_time:=true, camera qos reliable) instead of "
        "starting one; --set then changes its dynamic parameters",
    )
    graph.add_argument("--namespace", default="live")
    graph.add_argument("--preset", default="embedded", help="model preset of the graph started (default embedded)")
    graph.add_argument("--launch-file", default="live_ros.launch.xml")
    graph.add_argument("--params-file", help="parameter file for the graph started (default: the package's)")
    graph.add_argument(
        "--set",
        type=_set,
        action="append",
        default=[],
        metavar="NODE.PARAM=VALUE",
        help="a node parameter, e.g. --set live_llm.theta=0.8 (repeatable)",
    )
    graph.add_argument(
        "--fps", type=_positive, default=None, help="model fps of the graph started (default: its checkpoint's)"
    )
    graph.add_argument(
        "--camera-qos",
        choices=("sensor_data", "reliable"),
        help="camera QoS (default: reliable in lockstep, sensor_data in real time)",
    )
    graph.add_argument("--camera-topic", help="publish the images on this topic instead of the bag's")
    graph.add_argument("--timeout", type=_positive, default=300.0, help="seconds for the graph to come up")
    graph.add_argument(
        "--frame-timeout",
        type=_positive,
        default=120.0,
        help="lockstep: seconds to wait for one frame's decision or an answer",
    )
    graph.add_argument("--log", help="the started graph's output (default: OUT/graph.log)")
    sc = p.add_argument_group("scoring")
    sc.add_argument(
        "--window",
        type=_window,
        default=DEFAULT_WINDOW,
        metavar="BEFORE,AFTER",
        help=f"a response matches an event within [event+BEFORE, event+AFTER] s "
        f"(default {DEFAULT_WINDOW[0]:g},{DEFAULT_WINDOW[1]:g})",
    )
    sc.add_argument(
        "--any-text",
        action="store_true",
        help="match by time only (default: prefer responses that name the event's object)",
    )
    sc.add_argument(
        "--fuzzy-threshold",
        type=float,
        default=FUZZY_THRESHOLD,
        help=f"fuzzy answer ratio counted correct (default {FUZZY_THRESHOLD:g})",
    )
    sc.add_argument(
        "--known-objects",
        help="comma-separated nouns the model was trained to name; events of other objects expect the "
        "generic answer (default: the vocabulary recorded in the graph's checkpoint)",
    )
    sc.add_argument("--no-offline", action="store_true", help="skip the offline evaluation column")
    sc.add_argument("--no-png", action="store_true", help="do not draw timeline.png")
    p.set_defaults(run=run_replay_eval)


def run_replay_eval(args) -> int:
    """The ``replay-eval`` verb: replay each bag, score, print the tables (and the word
    scores over all bags). 0 ok, 1 failed."""

    bags = [Path(b) for b in args.bag]
    if len(bags) > 1 and args.annotations:
        return _err("replay-eval", "--annotations names one video's events: give one bag, or bags that store theirs")
    if len(bags) > 1 and args.log:
        return _err(
            "replay-eval", "--log names one file: leave it out with several bags (each writes OUT/<bag>/graph.log)"
        )
    reports: list[dict] = []
    for bag in bags:
        name = bag.name.removesuffix(".mcap")
        out = Path(args.out) if args.out else Path(f"{name}-eval")
        if len(bags) > 1:
            out = (Path(args.out) if args.out else Path("replay-eval")) / name
        code = _replay_one(args, bag, out, reports)
        if code:
            return code
    if len(bags) > 1:
        from live_ros.evaluation.truth import format_totals, merge_scores

        totals = merge_scores([r["words"] for r in reports])
        root = Path(args.out) if args.out else Path("replay-eval")
        (root / "words.json").write_text(json.dumps(totals, indent=1))
        print(
            f"\n== {len(bags)} bags: the words over all of them ==\n{format_totals(totals)}\nwrote {root / 'words.json'}"
        )
    return 0


def _replay_one(args, bag: Path, out: Path, reports: list) -> int:
    """One bag of ``replay-eval``: replay, score, print; its report appended to ``reports``."""
    from live_ros.bags.bagio import BagError
    from live_ros.bags.schedule import QuestionsError
    from live_ros.evaluation.score import format_report
    from live_ros.ros.graph import GraphError
    from live_ros.ros.replay import ReplayError
    from live_ros.ros.replay_eval import ReplayOptions, run

    opts = ReplayOptions(
        bag=bag,
        out=out,
        topic=args.topic,
        annotations=args.annotations,
        questions=args.questions,
        realtime=args.realtime,
        speed=args.speed,
        attach=args.attach,
        namespace=args.namespace,
        preset=args.preset,
        launch_file=args.launch_file,
        params_file=args.params_file,
        sets=list(args.set),
        fps=args.fps,
        camera_qos=args.camera_qos,
        publish_topic=args.camera_topic,
        window=args.window,
        prefer_object=not args.any_text,
        fuzzy_threshold=args.fuzzy_threshold,
        offline=not args.no_offline,
        png=not args.no_png,
        timeout=args.timeout,
        frame_timeout=args.frame_timeout,
        log=None if args.attach else Path(args.log) if args.log else out / "graph.log",
        known_objects=_nouns(args.known_objects),
    )
    try:
        report = run(opts)  # checks the inputs before it creates the output folder
    except (BagError, QuestionsError, GraphError, ReplayError, FileNotFoundError, ValueError) as err:
        return _err("replay-eval", str(err))
    print(format_report(report))
    print(f"\nwrote {', '.join(report['outputs'].values())}", flush=True)
    reports.append(report)
    return 0
