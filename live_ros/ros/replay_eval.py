"""``live-ros replay-eval``: replay a camera bag into the graph and score it.

1. Check the bag (:func:`live_ros.bags.bagio.scan_camera`: clear errors naming the bag and
   topic; gaps and reordered stamps reported), read the annotation (``--annotations`` or the
   bag's custom_data) and the questions.
2. Start camera_subscriber, frame_encoder and live_llm from the launch file with
   ``use_sim_time`` and a reliable camera QoS (or ``--attach`` to a running graph).
3. Play (:class:`live_ros.ros.replay.Player`: warm-up and reset, then lockstep or real time).
4. Stop the graph, run the offline evaluation on the same stream (the model in this
   process), score, print the table, write ``report.json``, ``table.txt``, ``timeline.png``.
"""

from __future__ import annotations

import collections
import functools
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from live_ros.bags import bagio
from live_ros.evaluation.score import DEFAULT_WINDOW, FUZZY_THRESHOLD


@dataclass
class ReplayOptions:
    bag: Path
    out: Path
    topic: str | None = None
    annotations: Path | None = None
    questions: Path | None = None
    realtime: bool = False
    speed: float = 1.0
    attach: bool = False
    namespace: str = "live"
    preset: str = "embedded"
    launch_file: str = "live_ros.launch.xml"
    params_file: str | None = None
    sets: list = field(default_factory=list)  # (node, name, value)
    fps: float | None = None  # None: the graph's (camera_subscriber's fps, else its checkpoint's)
    camera_qos: str | None = None
    publish_topic: str | None = None
    window: tuple = DEFAULT_WINDOW
    prefer_object: bool = True
    fuzzy_threshold: float = FUZZY_THRESHOLD
    offline: bool = True
    png: bool = True
    timeout: float = 300.0
    frame_timeout: float = 120.0
    drain: float = 5.0
    log: Path | None = None
    progress: bool = True
    known_objects: tuple | None = None  # None: the graph checkpoint's vocabulary (graph_vocabulary)


class DeathWatch:
    """Between the started graph's supervisor and its log: notes every node exit (the
    supervisor's "[live-ros launch] <node> exited with code N" / "killed by SIG...") with
    that node's last output lines, so the replay stops naming the node that died instead
    of waiting for a service that will not come."""

    EXIT = re.compile(r"^\[live-ros launch\] (\S+) (exited with code -?\d+|killed by [^:(]+)")
    LINES = 12

    def __init__(self, out):
        self.out = out
        self.recent: dict[str, collections.deque] = {}
        self.deaths: list[tuple[str, str, list[str]]] = []  # (node, how, its last lines)

    def write(self, text: str) -> None:
        for line in text.splitlines():
            m = self.EXIT.match(line)
            if m:
                node = m.group(1)
                self.deaths.append((node, m.group(2).strip(), list(self.recent.get(node, ()))))
            elif line.startswith("[") and "] " in line:
                node = line[1 : line.index("] ")]
                self.recent.setdefault(node, collections.deque(maxlen=self.LINES)).append(line)
        self.out.write(text)

    def flush(self) -> None:
        self.out.flush()

    def problem(self) -> str:
        """ "" while no node died; else which died, how, and its last output lines."""
        if not self.deaths:
            return ""
        parts = []
        for node, how, lines in self.deaths[:3]:
            shown = "\n".join(f"    {line}" for line in lines) or "    (no output)"
            parts.append(f"{node} {how} during the replay; its last output:\n{shown}")
        more = f"\n({len(self.deaths) - 3} more exits in the graph log)" if len(self.deaths) > 3 else ""
        return "a node of the graph died, so the replay cannot be scored:\n" + "\n".join(parts) + more


def _say(opts: ReplayOptions, text: str) -> None:
    if opts.progress:
        print(text, file=sys.stderr, flush=True)


def _make_folders(folders: list[Path]) -> list[Path]:
    """Create ``folders`` (and their parents); returns those that did not exist, deepest first."""
    made: list[Path] = []
    for folder in folders:
        missing = [f for f in [Path(folder), *Path(folder).parents] if not f.exists()]
        Path(folder).mkdir(parents=True, exist_ok=True)
        made += missing
    return made


def _remove_empty(folders: list[Path]) -> None:
    for folder in folders:
        try:
            folder.rmdir()  # only when empty
        except OSError:
            pass


def load_inputs(opts: ReplayOptions):
    """(scan, events, annotation source, questions, truth); raises BagError / ValueError."""
    from live_ros.evaluation.bag_streams import replay_inputs

    known = opts.known_objects if opts.known_objects is not None else graph_vocabulary(opts)
    return replay_inputs(opts.bag, opts.topic, opts.annotations, opts.questions, known or None)


def graph_vocabulary(opts: ReplayOptions) -> tuple[str, ...]:
    """The nouns the graph's model was trained to name: the ``vocabulary`` of its checkpoint
    (``--set live_llm.checkpoint=DIR``, else the preset's); empty when it records none."""
    from live_ros.model.presets import live_config

    checkpoint = next((str(v) for n, k, v in opts.sets if n == "live_llm" and k == "checkpoint" and v), None)
    try:
        return live_config(opts.preset, checkpoint).vocabulary
    except (OSError, ValueError):
        return ()


def run(opts: ReplayOptions) -> dict:
    """Replay and score; returns the report (also written to ``opts.out``)."""
    from live_ros.evaluation.report import build_report, write_outputs
    from live_ros.ros.graph import OwnGraph, get_params, set_param
    from live_ros.ros.replay import Player
    from live_ros.ros.tools import private_node

    scan, events, source, questions, truth = load_inputs(opts)  # wrong inputs fail here, before any file is made
    mode = "realtime" if opts.realtime else "lockstep"
    camera_qos = opts.camera_qos or ("sensor_data" if opts.realtime else "reliable")
    topic = opts.publish_topic or (
        scan.topic if not scan.compressed or scan.topic.endswith("/compressed") else scan.topic + "/compressed"
    )
    base_topic = topic[: -len("/compressed")] if scan.compressed else topic
    _say(
        opts,
        f"bag {scan.bag}: {len(scan.images)} images on {scan.topic} ({scan.msgtype}), "
        f"{scan.images[-1].stamp - scan.images[0].stamp:.1f} s; {len(events)} annotated events "
        f"({source or 'no annotation'}), {len(questions)} questions",
    )
    for line in scan.report.lines():
        _say(opts, f"  {line}")
    graph = None
    notes: list[str] = []
    ns = "/" + opts.namespace.strip("/")
    if not opts.attach:
        made = _make_folders([Path(opts.log).parent] if opts.log else [])
        try:
            graph = OwnGraph(
                launch_file=opts.launch_file,
                namespace=opts.namespace,
                preset=opts.preset,
                camera_topic=base_topic,
                compressed=scan.compressed,
                fps=opts.fps,
                camera_qos=camera_qos,
                params_file=opts.params_file,
                sets=opts.sets,
                log=opts.log,
            )
        except Exception:
            _remove_empty(made)  # a wrong --launch-file / --set: leave nothing behind
            raise
        deaths = graph.supervisor.out = DeathWatch(graph.supervisor.out)
        graph.start()
        _say(opts, f"graph started ({', '.join(n.name for n in graph.nodes)}, use_sim_time, camera QoS {camera_qos})")
    try:
        with private_node("live_ros_replay") as (node, executor):
            player = None
            waited = [0.0]

            def on_wait(elapsed):
                if elapsed - waited[0] >= 15:
                    waited[0] = elapsed
                    _say(opts, f"  waiting for the graph ({elapsed:.0f} s)")

            try:
                if opts.attach:
                    for n, name, value in opts.sets:
                        set_param(node, executor, f"{ns}/{n}", name, value)
                    cam = get_params(
                        node,
                        executor,
                        f"{ns}/camera_subscriber",
                        ["fps", "qos", "compressed", "use_sim_time", "preset", "checkpoint"],
                    )
                    if cam["use_sim_time"] is False:
                        notes.append(
                            "attached graph does not use sim time (use_sim_time:=true): its latencies and "
                            "timers follow the wall clock, not the bag's /clock"
                        )
                    fps = model_fps(cam)
                    if cam["compressed"] is not None and bool(cam["compressed"]) != scan.compressed:
                        raise bagio.BagError(
                            f"bag {scan.bag}: topic {scan.topic} is {scan.msgtype} but the running "
                            f"camera_subscriber has compressed={cam['compressed']}: restart it with "
                            f"compressed:={str(scan.compressed).lower()}"
                        )
                    if cam["qos"] in ("reliable", "sensor_data") and not opts.camera_qos:
                        camera_qos = cam["qos"]  # a best-effort publisher never reaches a reliable subscriber
                    if mode == "lockstep" and cam["qos"] != "reliable":
                        notes.append(
                            f"attached camera_subscriber has qos {cam['qos']}: lockstep needs reliable "
                            f"(a lost image stops the replay)"
                        )
                else:
                    fps = opts.fps or model_fps(
                        get_params(
                            node,
                            executor,
                            f"{ns}/camera_subscriber",
                            ["fps", "preset", "checkpoint"],
                            timeout=opts.timeout,
                        )
                    )
                player = Player(node, executor, scan, namespace=opts.namespace, topic=topic, camera_qos=camera_qos)
                if graph is not None:
                    player.check = deaths.problem
                # a graph started here has seen no stamps: the warm-up can precede the bag's
                player.warm_up(fps, opts.timeout, opts.frame_timeout, on_wait, precede=graph is not None)
                llm = get_params(
                    node,
                    executor,
                    f"{ns}/live_llm",
                    [
                        "preset",
                        "theta",
                        "llm_path",
                        "vision_path",
                        "adapter_path",
                        "checkpoint",
                        "max_new_tokens",
                        "num_threads",
                        "instruction",
                    ],
                )
                _say(opts, f"graph ready; playing {mode}" + (f" x{opts.speed:g}" if opts.realtime else ""))
                play = player.play(
                    fps,
                    questions,
                    realtime=opts.realtime,
                    speed=opts.speed,
                    frame_timeout=opts.frame_timeout,
                    drain=opts.drain,
                )
            except Exception as err:
                if graph is not None and not isinstance(err, bagio.BagError) and not deaths.deaths:
                    tail = graph.tail()
                    if tail:
                        err.args = (f"{err.args[0] if err.args else err}\n--- graph log (last lines) ---\n{tail}",)
                raise
            finally:
                if graph is not None and player is not None:
                    stamp_ns = [scan.images[-1].log_ns]

                    def keep_clock():
                        stamp_ns[0] += 50_000_000
                        player.clock(stamp_ns[0])

                    graph.stop(keep_clock)
                    graph = None
    finally:
        if graph is not None:
            graph.stop()
    settings = {
        "fps": fps,
        "theta": llm.get("theta"),
        "preset": llm.get("preset"),
        "speed": opts.speed,
        "camera_qos": camera_qos,
        "window": list(opts.window),
        "prefer_object": opts.prefer_object,
        "fuzzy_threshold": opts.fuzzy_threshold,
        "graph": "attached" if opts.attach else "started",
        "namespace": ns,
        "max_new_tokens": llm.get("max_new_tokens"),
        "instruction": llm.get("instruction") or "",
    }
    report = build_report(
        scan=scan,
        play=play,
        mode=mode,
        settings=settings,
        events=events,
        asked=play.asked,
        annotation_source=source,
        notes=notes,
        truth=truth,
    )
    offline, offline_note = None, ""
    if not events:
        offline_note = "no annotated events (give --annotations, or a bag made with bag-from-video --annotations)"
    elif not opts.offline:
        offline_note = "skipped (--no-offline)"
    else:
        _say(opts, "offline evaluation on the same stream (live-ros evaluate) ...")
        try:
            offline = offline_eval(scan, play, report, events, llm, fps, opts.out)
        except Exception as err:  # noqa: BLE001 - the online scores stand on their own
            offline_note = f"failed: {type(err).__name__}: {err}"
    report["offline"], report["offline_note"] = offline, offline_note
    report["outputs"] = write_outputs(report, opts.out, png=opts.png)
    return report


def model_fps(camera: dict) -> float:
    """The frame rate a graph samples at: camera_subscriber's ``fps`` parameter, or when it
    is 0 its checkpoint's (live_config.json, read without torch)."""
    from live_ros.model.presets import live_config

    if camera.get("fps"):
        return float(camera["fps"])
    return live_config(camera.get("preset") or "embedded", camera.get("checkpoint") or None).frame_fps


@functools.lru_cache(maxsize=1)
def load_system(preset: str, llm: str | None, vision: str | None, checkpoint: str | None):
    """The graph's model in this process (the offline side), loaded once per settings, through
    the loader the nodes use."""
    from live_ros.model.checkpoint import load_checkpoint

    return load_checkpoint(checkpoint or preset, llm=llm, vision=vision, preset=preset)


def offline_eval(scan, play, report: dict, events, llm: dict, fps: float, out: Path) -> dict:
    """Encode the frames the LLM took (from the bag), build the stream, run live-ros evaluate;
    with the graph's torch threads (num_threads), so the numbers are the nodes' own."""
    import torch

    from live_ros.evaluation.bag_streams import replay_offline

    threads = torch.get_num_threads()
    torch.set_num_threads(int(llm.get("num_threads") or 1))
    try:
        system = load_system(
            llm.get("preset") or "embedded",
            llm.get("llm_path") or None,
            llm.get("vision_path") or None,
            llm.get("checkpoint") or llm.get("adapter_path") or None,
        )
        return replay_offline(
            system,
            scan,
            [p for p in play.plans if p.acked],
            report["score"]["answers"],
            events,
            fps,
            out,
            theta=report["settings"].get("theta"),
            instruction=report["settings"].get("instruction") or "",
        )
    finally:
        torch.set_num_threads(threads)
