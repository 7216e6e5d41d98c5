"""live_llm: the streaming video LLM (paper section 3.4) as a ROS 2 node.

Subscribes ``live/frame_tokens``, keeps one continuous KV cache through the core's
:class:`~live_ros.engine.ThreadedEngine`, and publishes every response on
``live/response`` (partial text while decoding, then final) and its JSON mirror
``live/response_json``, and one ``live/decision`` per frame taken in (the streaming
decision, published once the frame is fully handled). ``live/query`` (``Query``) takes a question and replies at once
with its id (the answer follows on the response topic); ``live/reset`` (``Trigger``)
starts a new stream. Callbacks only validate and enqueue; the engine's worker decodes.

With ``cameras`` > 1 the one model serves several camera streams: camera k > 1 is stream
``cam<k>``, with the same topics and services under ``live/cam<k>/`` (names from ``stream_names``), its
own KV cache and journal; frames of different streams due at the same time are decided
in one batched forward (live_ros/engine/batching.py, live_ros/nodes/llm_stream.py).
"""

from __future__ import annotations

import re
import time

import torch

from live_ros.engine import EngineConfig, EngineInputError
from live_ros.model import presets
from live_ros.model.format import DEFAULT_INSTRUCTION
from live_ros.nodes.base import MAX_STAMP_AHEAD, LiveNode, Param, main as run_main
from live_ros.nodes.llm_stream import LLMStream

# ROS parameter -> EngineConfig field, for the settings that change while running.
LIVE_SETTINGS = {
    "theta": "theta",
    "max_new_tokens": "max_new_tokens",
    "min_new_tokens": "min_new_tokens",
    "system_prompt": "system_prompt",
    "instruction": "instruction",
    "cache_budget": "cache_budget",
    "mute": "mute",
    "min_response_interval": "min_response_interval",
    "frame_gate": "frame_gate",
}


class LiveLLM(LiveNode):
    PARAMS = (
        Param("preset", "embedded", "Model preset (live_ros.model.presets).", choices=tuple(presets.PRESETS)),
        Param("llm_path", "", "Local LLM folder (8B preset: Meta-Llama-3-8B-Instruct; empty: the preset's)."),
        Param("vision_path", "", "Local vision weights (only to name the expected encoder; empty: the preset's)."),
        Param(
            "checkpoint",
            "",
            "Checkpoint folder (empty: the preset's; 8B: videollm-online-8b-v1plus); its "
            "live_config.json sets the model's settings.",
        ),
        Param(
            "adapter_path",
            "",
            "Checkpoint folder, as checkpoint (kept for existing parameter files; checkpoint wins when both are set).",
        ),
        Param("device", "cpu", "cpu or cuda.", choices=("cpu", "cuda")),
        Param("dtype", "float32", "LLM dtype (bfloat16 on a GPU).", choices=("float32", "bfloat16", "float16")),
        Param(
            "theta",
            EngineConfig.theta,
            "Stay silent while P(interval token) >= theta (paper 3.4; release 0.725). Higher speaks more often.",
            (0.0, 1.0),
            dynamic=True,
        ),
        Param(
            "max_new_tokens", EngineConfig.max_new_tokens, "Response length limit in tokens.", (1, 1024), dynamic=True
        ),
        Param(
            "min_new_tokens",
            EngineConfig.min_new_tokens,
            "End of response banned before this many tokens (benchmarks that need responses of a fixed length; "
            "0 for normal use).",
            (0, 1024),
            dynamic=True,
        ),
        Param(
            "system_prompt", "", "System prompt (empty: the checkpoint's). Changing it resets the stream.", dynamic=True
        ),
        Param(
            "instruction",
            DEFAULT_INSTRUCTION,
            "Standing instruction that opens every stream, after a reset too (a narration request: the model "
            "narrates unasked, answers questions on top of it and goes on narrating; responses are kind "
            "'narration' with query_id 0). Empty: silent until asked.",
            dynamic=True,
        ),
        Param(
            "cache_budget",
            EngineConfig.cache_budget,
            "KV cache budget in tokens (system prompt, sinks, recent frames and dialogue are kept; 0: unbounded).",
            (0, 1_000_000),
            dynamic=True,
        ),
        Param("mute", False, "No proactive narration: speak only when asked.", dynamic=True),
        Param(
            "min_response_interval",
            0.0,
            "Seconds of video between two proactive responses.",
            (0.0, 3600.0),
            dynamic=True,
        ),
        Param(
            "frame_gate",
            EngineConfig.frame_gate,
            "Skip frames whose tokens changed by less than this since the last frame taken in (relative L2; "
            "0: off, every frame is fed). Skipped frames get a decision marked suppressed 'gate'; at most "
            f"{EngineConfig.frame_gate_max_skip} in a row.",
            (0.0, 9.99),
            dynamic=True,
        ),
        Param("max_query_chars", 2000, "Longer questions are refused.", (1, 100_000)),
        Param("max_backlog", 64, "Frames waiting while the model speaks; past it the oldest is dropped.", (1, 10_000)),
        Param("partial_responses", True, "Publish partial text while a response decodes."),
        MAX_STAMP_AHEAD,
        Param(
            "max_pending_queries",
            8,
            "Queries waiting for the model at most; more are refused (accepted false) so the video keeps its share.",
            (1, 1000),
        ),
        Param(
            "no_video_timeout",
            10.0,
            "A question asked before the stream's first frame waits this long (s) "
            "for it, then is refused (no video since the stream (re)started).",
            (0.0, 3600.0),
        ),
        Param(
            "state_dir",
            "",
            "Folder of the journal of pending queries, ids and counters, kept across restarts "
            "(empty: $ROS_HOME/live_ros, ROS_HOME defaulting to ~/.ros).",
        ),
        Param(
            "cameras",
            1,
            "Camera streams this one model serves. Stream 1 uses live/frame_tokens, live/response, "
            "live/query, ...; stream k > 1 the same names under live/<its name>/, with its own KV cache.",
            (1, 64),
        ),
        Param(
            "stream_names",
            "",
            "Comma-separated names of streams 2.. (empty: cam2, cam3, ...), e.g. 'left,right' for cameras:=3.",
        ),
        Param(
            "batch_window",
            0.005,
            "Seconds a stream's forward waits for the other streams' to join it in one batched forward (cameras > 1).",
            (0.0, 1.0),
        ),
    )

    def __init__(self, **kwargs):  # kwargs: rclpy Node's (context, parameter_overrides, ...)
        super().__init__("live_llm", namespace="live", **kwargs)
        self.expected_encoder = ""
        self.encoder_settings = None  # the checkpoint's encoder (load)
        self.batcher = None  # ForwardBatcher of the streams (load, cameras > 1)
        self.streams = [LLMStream(self, name) for name in self.stream_names()]

    def stream_names(self) -> list[str]:
        """ "" (the default stream) and the names of streams 2.. (``cameras``, ``stream_names``)."""
        extra = self.p("cameras") - 1
        given = [n.strip() for n in self.p("stream_names").split(",") if n.strip()]
        if given and len(given) != extra:
            raise ValueError(
                f"stream_names names {len(given)} stream(s) ({', '.join(given)}) but cameras={self.p('cameras')} "
                f"needs {extra}: give one name per camera after the first, or leave stream_names empty"
            )
        names = given or [f"cam{k}" for k in range(2, extra + 2)]
        for n in names:
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", n):
                raise ValueError(f"stream name {n!r} is not a ROS name token: use letters, digits and '_'")
        if len(set(names)) != len(names):
            raise ValueError(f"stream_names has duplicates: {', '.join(names)}")
        return [""] + names

    # the default stream's parts, as the node had them before it served several streams
    @property
    def engine(self):
        return self.streams[0].engine

    @property
    def core(self):
        return self.streams[0].core

    @property
    def pub(self):
        return self.streams[0].pub

    @property
    def sub(self):
        return self.streams[0].sub

    @property
    def journal(self):
        return self.streams[0].journal

    # -- lifecycle -----------------------------------------------------------------------
    def _engine_config(self) -> EngineConfig:
        return EngineConfig(
            theta=self.p("theta"),
            max_new_tokens=self.p("max_new_tokens"),
            min_new_tokens=self.p("min_new_tokens"),
            system_prompt=self.p("system_prompt") or None,
            instruction=self.p("instruction"),
            cache_budget=self.p("cache_budget"),
            mute=self.p("mute"),
            min_response_interval=self.p("min_response_interval"),
            frame_gate=self.p("frame_gate"),
            max_query_chars=self.p("max_query_chars"),
            max_backlog=self.p("max_backlog"),
            partials=self.p("partial_responses"),
            max_pending_queries=self.p("max_pending_queries"),
            no_video_timeout=self.p("no_video_timeout"),
        )

    def load(self) -> None:
        """The model and one engine per stream (system prompts prefilled): in the load
        thread with autostart."""
        from live_ros.model.checkpoint import load_checkpoint

        t0 = time.perf_counter()
        folder = self.p("checkpoint") or self.p("adapter_path") or None
        loaded = load_checkpoint(
            folder or self.p("preset"),
            llm=self.p("llm_path") or None,
            vision=self.p("vision_path") or None,
            device=self.p("device"),
            dtype=self.p("dtype"),
            with_encoder=False,
            preset=self.p("preset"),
        )
        self.encoder_settings = loaded.config.encoder
        self.expected_encoder = loaded.config.encoder_id
        for note in loaded.notes:
            self.get_logger().warning(f"{folder or self.p('preset')}: {note}")
        from live_ros.engine import stream_group, stream_only

        stream_only(loaded.model)  # one copy of the weights: the engine's (live_ros/engine/weights.py)
        engines, self.batcher = stream_group(
            loaded.model,
            loaded.tokens,
            [s.name for s in self.streams],
            self._engine_config(),
            window_s=self.p("batch_window"),
        )
        if len(self.streams) == 1:  # one stream forwards alone
            engines[""].runner.batcher = None
            self.batcher = None
        for stream in self.streams:
            stream.core = engines[stream.name]
        c = loaded.config
        names = ", ".join(f"live/{s.prefix}" for s in self.streams)
        self.get_logger().info(
            f"{folder or self.p('preset')} loaded in {time.perf_counter() - t0:.1f} s; expects "
            f"frame tokens from {self.expected_encoder or 'any encoder'} ({c.frame_num_tokens} "
            f"tokens x {c.vision_hidden_size}, {c.frame_resolution} px, trained at "
            f"{c.frame_fps:g} fps); {len(self.streams)} stream(s): {names}"
        )

    def configure(self) -> None:
        for stream in self.streams:
            stream.configure()

    def activate(self) -> None:
        # live settings changed while loading or inactive (on_parameter had no engine to tell)
        wanted = self._engine_config()
        for stream in self.streams:
            changes = {
                field: getattr(wanted, field)
                for field in LIVE_SETTINGS.values()
                if getattr(wanted, field) != getattr(stream.core.cfg, field)
            }
            stream.activate(changes)

    def deactivate(self) -> None:
        for stream in self.streams:
            stream.deactivate()

    def cleanup(self) -> None:
        for stream in self.streams:
            stream.cleanup()
        self.batcher = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # -- services: refused at once while not active -----------------------------------------
    def not_active(self) -> str:
        """Why the streams' query and reset services refuse now ('' when active)."""
        if self.engine is not None:
            return ""
        if self.state == "loading":
            return (
                f"live_llm is loading its model ({self.loading_seconds:.0f} s so far); ask again once "
                f"`live-ros status` shows it active"
            )
        if self.state == "unconfigured" and self._load_error:
            return f"live_llm is unconfigured: its model did not load ({self._load_error}); fix that and restart it"
        return (
            f"live_llm is {self.state}, not active: wait for autostart, or activate it (ros2 lifecycle set "
            f"{self.get_fully_qualified_name()} activate)"
        )

    def on_parameter(self, name: str, value) -> None:
        if name not in LIVE_SETTINGS:
            return
        if name == "system_prompt":
            value = value or None
        for stream in self.streams:
            try:
                stream.configure_engine(**{LIVE_SETTINGS[name]: value})
            except EngineInputError as err:
                self.report_error(f"{stream.label}: {name} not applied: {err}")
                return

    def status_fields(self) -> dict:
        """The streams' counters summed (lag: the largest); see LLMStream.status_fields."""
        per = [stream.status_fields() for stream in self.streams]
        fields: dict = {}
        for f in per:
            for key, value in f.items():
                fields[key] = max(fields.get(key, 0), value) if key == "lag" else fields.get(key, 0) + value
        return fields


def main(argv=None) -> int:
    return run_main(LiveLLM, argv)
