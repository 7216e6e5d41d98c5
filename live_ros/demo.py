"""``live-ros demo``: the main job. The full graph (video_source -> camera_subscriber ->
frame_encoder -> live_llm) from the package's launch file, on the committed demo video with
the embedded default model. live_llm's standing instruction (its ``instruction`` parameter,
a narration request by default: the model was trained to narrate after one, paper section
3.2) opens the stream, so the model narrates from the first seconds unasked; a question is
asked partway and answered on top of the narration. Narration and answers are printed as
they arrive with their video time; a summary at the end (frames, fps, responses by kind,
latency percentiles).

All nodes start together; video_source plays once the three model nodes say active (the
launch file's wait_for_nodes), so the video's first frame is the LLM's first. Times are
video times as the LLM sees them: a question is asked once the LLM has taken the frame of
its second (its live/decision) and printed with that time, so it comes before its answer,
whose time is the frame after which the LLM inserted it."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from live_ros.launcher import Supervisor, parse, resolve_launch_file

MODEL_NODES = ("camera_subscriber", "frame_encoder", "live_llm")


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (NaN for no values)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def default_video() -> Path:
    from live_ros.paths import share_dir

    return share_dir() / "media" / "demo.mp4"


def video_seconds(path: Path) -> float:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if stream.duration is not None:
            return float(stream.duration * stream.time_base)
        return float(container.duration or 0) / 1e6


def run(args) -> int:
    from live_ros.msg import Decision, Response, Status
    from live_ros.ros import qos
    from live_ros.ros.tools import format_response, private_node, spin_for
    from live_ros.srv import Query

    video = Path(args.video) if args.video else default_video()
    if not video.is_file():
        print(f"live-ros demo: video {video} not found", file=sys.stderr)
        return 1
    length = video_seconds(video)
    play = min(length, args.seconds) if args.seconds else length
    ask_at = args.ask_at if args.ask_at is not None else play / 3
    nodes, _ = parse(
        resolve_launch_file("live_ros.launch.xml"),
        {
            "use_video": "true",
            "video": str(video),
            "preset": args.preset,
            "namespace": args.namespace,
            "cameras": str(args.cameras),
        },
    )
    if args.seconds:
        for source in (n for n in nodes if n.name == "video_source"):  # every camera's
            source.params.append(("max_seconds", str(args.seconds)))
    if args.instruction is not None:
        next(n for n in nodes if n.name == "live_llm").params.append(("instruction", args.instruction))
    log = open(args.log or "/dev/null", "w")  # noqa: SIM115 - closed below
    supervisor = Supervisor(nodes, out=log)  # video_source waits for the model nodes (wait_for_nodes)
    status: dict[str, Status] = {}
    finals: list[Response] = []  # camera 1's (the default stream's)
    others: dict[str, list[Response]] = {f"cam{k}": [] for k in range(2, args.cameras + 1)}  # the other cameras
    first_partial: dict[int, float] = {}
    asked_log: list[dict] = []  # the questions: video time, text, query id or refusal
    seen = {"video_time": None}  # video time of the newest frame the LLM has taken (live/decision)
    proactive: set[int] = set()  # responses a frame triggered (live/decision names them)
    ns = f"/{args.namespace.strip('/')}"
    print(
        f"live-ros demo: {video.name} ({play:.0f} of {length:.0f} s), preset {args.preset}; "
        + (
            "live_llm's default instruction (it narrates unasked); "
            if args.instruction is None
            else (
                f'instruction "{args.instruction}"; ' if args.instruction else "no instruction (silent until asked); "
            )
        )
        + f'question at {ask_at:.0f} s: "{args.question}"',
        flush=True,
    )
    supervisor.start()
    t_start = time.monotonic()
    try:
        with private_node("live_ros_demo") as (node, executor):

            def on_response(msg: Response) -> None:
                first_partial.setdefault(msg.response_id, msg.latency)
                if msg.final:
                    finals.append(msg)
                    print(format_response(msg), flush=True)

            node.create_subscription(Status, f"{ns}/status", lambda m: status.__setitem__(m.node, m), qos.status())
            node.create_subscription(Response, f"{ns}/response", on_response, qos.responses())
            for name, said in others.items():

                def on_other(msg: Response, name=name, said=said) -> None:
                    if msg.final:
                        said.append(msg)
                        print(f"{name:>5} {format_response(msg)}", flush=True)

                node.create_subscription(Response, f"{ns}/{name}/response", on_other, qos.responses())

            def on_decision(msg: Decision) -> None:
                seen["video_time"] = max(seen["video_time"] or 0.0, msg.video_time)
                if msg.spoke:
                    proactive.add(int(msg.response_id))

            node.create_subscription(Decision, f"{ns}/decision", on_decision, qos.decisions())
            client = node.create_client(Query, f"{ns}/query")
            ready = lambda: all(n in status and status[n].state == "active" for n in MODEL_NODES)  # noqa: E731
            if not spin_for(executor, args.timeout, ready):
                print(
                    f"live-ros demo: the nodes did not become active within {args.timeout:g} s: "
                    f"{ {n: (s.state, s.last_error) for n, s in status.items()} }",
                    file=sys.stderr,
                )
                return 1
            print(f"graph ready in {time.monotonic() - t_start:.1f} s; playing", flush=True)
            # video time 0 is the first frame: video_source waits for the model nodes and camera_subscriber
            playing = lambda: "video_source" in status and status["video_source"].frames_in > 0  # noqa: E731
            if not spin_for(executor, args.timeout, playing):
                print(
                    f"live-ros demo: video_source published no frame within {args.timeout:g} s: "
                    f"{status.get('video_source')}",
                    file=sys.stderr,
                )
                return 1
            t_play = time.monotonic()
            pending = [(ask_at, args.question)] if args.question else []
            calls: list = []
            while True:
                executor.spin_once(timeout_sec=0.05)
                elapsed = time.monotonic() - t_play
                llm_time = seen["video_time"]
                llm_active = "live_llm" in status and status["live_llm"].state == "active"
                while (
                    pending
                    and llm_time is not None
                    and llm_time >= pending[0][0]
                    and llm_active
                    and client.service_is_ready()
                ):
                    _, text = pending.pop(0)
                    calls.append((client.call_async(Query.Request(text=text)), llm_time, text))
                    print(f"[{llm_time:7.1f} s] user: {text}", flush=True)
                for call in [c for c in calls if c[0].done()]:
                    calls.remove(call)
                    reply = call[0].result()
                    asked_log.append(
                        {
                            "video_time": call[1],
                            "text": call[2],
                            "query_id": reply.query_id,
                            "accepted": reply.accepted,
                            "message": reply.message,
                        }
                    )
                    if not reply.accepted:
                        print(f'[{call[1]:7.1f} s] live_llm refused "{call[2]}": {reply.message}', flush=True)
                src = status.get("video_source")
                llm = status.get("live_llm")
                done_playing = (src is not None and src.state == "finished") or elapsed > play + 5
                if done_playing and llm is not None and llm.lag < 0.6 and elapsed > play:
                    spin_for(executor, 2.0)  # the last responses
                    break
                if elapsed > play + args.timeout:
                    print("live-ros demo: the model did not catch up with the video in time", file=sys.stderr)
                    break
            wall = time.monotonic() - t_play
            llm = status.get("live_llm")
    finally:
        supervisor.stop()
        log.close()
    by_kind = {k: sum(m.kind == k for m in finals) for k in ("narration", "answer", "refusal")}
    firsts = [first_partial[m.response_id] for m in finals if m.response_id in first_partial]
    records = [
        {
            "response_id": m.response_id,
            "video_time": m.video_time,
            "kind": m.kind,
            "query_id": m.query_id,
            "text": m.text,
            "latency": m.latency,
            "proactive": m.response_id in proactive,
        }
        for m in finals
    ]
    summary = {
        "video": str(video),
        "seconds": round(play, 1),
        "wall_seconds": round(wall, 1),
        "frames": int(llm.frames_in) if llm else 0,
        "frames_dropped": int(llm.frames_dropped) if llm else 0,
        "model_fps": round(llm.frames_in / wall, 2) if llm and wall else 0.0,
        "responses": len(finals),
        "narrations": by_kind["narration"],
        "answers": by_kind["answer"],
        "refusals": by_kind["refusal"],
        "first_partial_latency_p50": round(percentile(firsts, 50), 3),
        "first_partial_latency_p95": round(percentile(firsts, 95), 3),
        "final_latency_p50": round(percentile([m.latency for m in finals], 50), 3),
        "final_latency_p95": round(percentile([m.latency for m in finals], 95), 3),
    }
    print("\nsummary")
    print(
        f"  frames        {summary['frames']} taken by the LLM in {summary['wall_seconds']} s "
        f"({summary['model_fps']} fps), {summary['frames_dropped']} dropped"
    )
    print(
        f"  responses     {summary['responses']}: {summary['narrations']} narrations, {summary['answers']} answers"
        f" to {len(asked_log)} question(s), {summary['refusals']} refusals"
    )
    print(
        f"  latency       first partial p50 {summary['first_partial_latency_p50']} s, p95 "
        f"{summary['first_partial_latency_p95']} s; final p50 {summary['final_latency_p50']} s, p95 "
        f"{summary['final_latency_p95']} s"
    )
    for name, said in others.items():
        kinds = {k: sum(m.kind == k for m in said) for k in ("narration", "answer")}
        summary[name] = {"responses": len(said), **kinds}
        print(f"  {name:<13} {len(said)} responses: {kinds['narration']} narrations (live/{name}/response)")
    words = score_beside(video, records, play, _vocabulary(args.preset))
    if words is not None:
        summary["words"] = words.summary
        print(f"  the words     scored against {video.with_suffix('.json').name} (live-ros score; per event:)")
        from live_ros.evaluation.truth import format_words

        print("\n".join("    " + line for line in format_words(words, responses=False).splitlines()))
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "summary": summary,
                    "questions": asked_log,
                    "responses": records,
                    "words": words.to_dict() if words is not None else None,
                },
                indent=1,
            )
        )
    return 0 if finals or not args.require_responses else 1


def _vocabulary(preset: str) -> tuple[str, ...] | None:
    """The nouns the preset's checkpoint was trained to name (None: not recorded)."""
    from live_ros.model.presets import live_config

    try:
        return live_config(preset).vocabulary or None
    except (OSError, ValueError):
        return None


def score_beside(video: Path, records: list[dict], seconds: float, known_objects=None):
    """The words of the responses scored against the annotation beside the video
    (``<video>.json``, as media/demo.json beside media/demo.mp4), over the part played
    (``known_objects``: the nouns the model names, others expect the generic answer); None
    when there is none."""
    from live_ros.data.annotations import load_annotation
    from live_ros.evaluation.truth import said_from_records, score_words, truth_from_annotation, world_vocabulary

    path = video.with_suffix(".json")
    if not path.is_file():
        return None
    try:
        annotation = load_annotation(path).to_dict()
    except (OSError, ValueError, KeyError, TypeError):
        return None  # not an annotation: nothing to score against
    annotation["events"] = [
        {k: v for k, v in e.items() if k not in ("end", "end_text") or (e.get("end") or 0) <= seconds}
        for e in annotation["events"]
        if e["time"] <= seconds
    ]
    annotation["duration"] = min(float(annotation.get("duration") or seconds), seconds)
    truth = truth_from_annotation(annotation, known_objects, world_vocabulary())
    return score_words(truth, said_from_records(records))
