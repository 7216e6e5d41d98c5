"""live_llm: the streaming video LLM (paper section 3.4) as a ROS 2 node.

Subscribes ``live/frame_tokens``, keeps one continuous KV cache through the core's
:class:`~live_ros.engine.ThreadedEngine`, and publishes every response on
``live/response`` (partial text while decoding, then final) and its JSON mirror
``live/response_json``, and one ``live/decision`` per frame taken in (the streaming
decision, published once the frame is fully handled). ``live/query`` (``Query``) takes a question and replies at once
with its id (the answer follows on the response topic); ``live/reset`` (``Trigger``)
starts a new stream. Callbacks only validate and enqueue; the engine's worker decodes.
"""

from __future__ import annotations

import json
import os
import time

import torch
from std_msgs.msg import String
from std_srvs.srv import Trigger

from live_ros.engine import EngineConfig, EngineInputError, QueryInput, ResponseEvent, SilentEvent, ThreadedEngine
from live_ros.engine.journal import COUNTERS, QueryJournal, state_dir
from live_ros.model import presets
from live_ros.model.format import DEFAULT_INSTRUCTION
from live_ros.model.frames import stamp_ahead_error
from live_ros.msg import Decision, FrameTokens, Response
from live_ros.nodes.base import MAX_STAMP_AHEAD, LiveNode, Param, main as run_main
from live_ros.ros import qos
from live_ros.ros.convert import ConversionError, msg_to_tokens, seconds_to_stamp, stamp_to_seconds
from live_ros.srv import Query

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
    )

    def __init__(self, **kwargs):  # kwargs: rclpy Node's (context, parameter_overrides, ...)
        super().__init__("live_llm", namespace="live", **kwargs)
        self.engine: ThreadedEngine | None = None
        self.expected_encoder = ""
        self.encoder_settings = None  # the checkpoint's encoder (load)
        self.frame_ids: dict[int, str] = {}
        self.taken: list[float] = []
        self.frames_refused = 0
        self._engine_error = ""
        self._engine_warning = ""
        self.pub = self.pub_json = self.pub_decision = None
        self.sub = None
        self.core = None
        self.journal: QueryJournal | None = None  # set up by open_journal (activate)
        self.frames_lost = 0  # frame_index gaps: frames that never reached this node
        self._last_index: int | None = None
        self._leftover_timer = None
        # offered from the start, so a client never waits for them to appear: they refuse at
        # once, saying why, until the node is active (see _not_active)
        self.query_srv = self.create_service(Query, "query", self.on_query)
        self.reset_srv = self.create_service(Trigger, "reset", self.on_reset)

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
            max_query_chars=self.p("max_query_chars"),
            max_backlog=self.p("max_backlog"),
            partials=self.p("partial_responses"),
            max_pending_queries=self.p("max_pending_queries"),
            no_video_timeout=self.p("no_video_timeout"),
        )

    def load(self) -> None:
        """The model and the engine (its system prompt prefilled): in the load thread with autostart."""
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
        from live_ros.engine import StreamEngine
        from live_ros.engine.weights import stream_only

        stream_only(loaded.model)  # one copy of the weights: the engine's (live_ros/engine/weights.py)
        self.core = StreamEngine(loaded.model, loaded.tokens, self._engine_config())
        c = loaded.config
        self.get_logger().info(
            f"{folder or self.p('preset')} loaded in {time.perf_counter() - t0:.1f} s; expects "
            f"frame tokens from {self.expected_encoder or 'any encoder'} ({c.frame_num_tokens} "
            f"tokens x {c.vision_hidden_size}, {c.frame_resolution} px, trained at "
            f"{c.frame_fps:g} fps)"
        )

    def configure(self) -> None:
        self.pub = self.create_lifecycle_publisher(Response, "response", qos.responses())
        self.pub_json = self.create_lifecycle_publisher(String, "response_json", qos.responses())
        self.pub_decision = self.create_lifecycle_publisher(Decision, "decision", qos.decisions())

    def activate(self) -> None:
        # live settings changed while loading or inactive (on_parameter had no engine to tell)
        wanted = self._engine_config()
        changes = {
            field: getattr(wanted, field)
            for field in LIVE_SETTINGS.values()
            if getattr(wanted, field) != getattr(self.core.cfg, field)
        }
        if changes:
            self.core.configure(**changes)
        self.engine = ThreadedEngine(self.core, on_event=self.on_event)
        self.sub = self.create_subscription(FrameTokens, "frame_tokens", self.on_tokens, qos.frames())
        self.open_journal()

    def deactivate(self) -> None:
        if self.sub is not None:
            self.destroy_subscription(self.sub)
            self.sub = None
        if self.engine is not None:
            self.engine.stop()  # waiting queries get their refusal (published by on_event)
            self.engine = None
        self.close_journal()

    def cleanup(self) -> None:
        self.core = None
        for pub in (self.pub, self.pub_json, self.pub_decision):
            if pub is not None:
                self.destroy_lifecycle_publisher(pub)
        self.pub = self.pub_json = self.pub_decision = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # -- services: refused at once while not active -----------------------------------------
    def _not_active(self) -> str:
        """Why live/query and live/reset refuse now ('' when active)."""
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

    # -- callbacks: validate and enqueue ----------------------------------------------------
    def on_tokens(self, msg: FrameTokens) -> None:
        where = f"live_llm: frame {msg.frame_index} on {self.sub.topic_name}"
        if not self.encoder_settings.accepts(msg.encoder):
            self.frames_refused += 1
            self.report_error(
                f"{where}: tokens from encoder '{msg.encoder}' but this checkpoint expects "
                f"'{self.expected_encoder}': run frame_encoder with the same preset and checkpoint "
                f"as live_llm"
            )
            return
        self._count_gap(int(msg.frame_index))
        stamp = stamp_to_seconds(msg.header.stamp)
        ahead = stamp_ahead_error(stamp, self.get_clock().now().nanoseconds * 1e-9, self.p("max_stamp_ahead"), where)
        if ahead:  # refused before the engine sees it: its stamp never becomes the stream's newest
            self.frames_refused += 1
            self.report_error(ahead)
            return
        try:
            tokens = torch.from_numpy(msg_to_tokens(msg, where))
            index = self.engine.submit_frame(tokens, stamp)
        except (ConversionError, EngineInputError) as err:
            self.frames_refused += 1
            self.report_error(f"{where}: {err}" if isinstance(err, EngineInputError) else str(err))
            return
        self.frame_ids[index] = msg.header.frame_id
        if len(self.frame_ids) > 1024:
            self.frame_ids.pop(next(iter(self.frame_ids)))

    def on_query(self, request: Query.Request, response: Query.Response) -> Query.Response:
        why = self._not_active()
        if why:
            response.accepted, response.message = False, why
            self.report_error(f"live_llm: query refused: {why}", log=False)
            return response
        try:
            journal = self.journal
            if journal is None:
                response.query_id = self.engine.submit_query(request.text)
            else:
                with journal.lock:  # journaled before the worker can end it (ended() takes the lock)
                    response.query_id = self.engine.submit_query(request.text)
                    journal.accepted(response.query_id, request.text)
            response.accepted = True
        except EngineInputError as err:
            response.accepted, response.message = False, str(err)
            self.report_error(f"live_llm: query refused: {err}", log=False)
        return response

    def on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        why = self._not_active()
        if why:
            response.success, response.message = False, why
            return response
        self.engine.reset()
        self.frame_ids.clear()
        response.success, response.message = True, "stream reset: the next frame starts a new stream"
        self.get_logger().info("stream reset")
        return response

    def on_parameter(self, name: str, value) -> None:
        if name not in LIVE_SETTINGS or self.engine is None:
            return
        if name == "system_prompt":
            value = value or None
        try:
            self.engine.configure(**{LIVE_SETTINGS[name]: value})
        except EngineInputError as err:
            self.report_error(f"live_llm: {name} not applied: {err}")

    # -- events (engine worker thread) -----------------------------------------------------
    def on_event(self, event) -> None:
        if isinstance(event, SilentEvent):
            now = time.monotonic()
            self.taken = [t for t in self.taken if now - t < 5.0] + [now]
            self.publish_decision(
                event.frame_index,
                event.stamp,
                event.video_time,
                event.p_interval,
                suppressed=event.suppressed,
                batch=event.batch,
            )
            return
        if not isinstance(event, ResponseEvent):
            return
        if event.final and event.response_kind != "refusal":
            now = time.monotonic()
            self.taken = [t for t in self.taken if now - t < 5.0] + [now]
        clock = self.get_clock().now().nanoseconds * 1e-9
        msg = Response(
            response_id=event.response_id,
            query_id=event.query_id,
            kind=event.response_kind,
            text=event.text,
            final=event.final,
            video_time=float(event.video_time or 0.0),
        )
        if event.stamp is not None:
            msg.header.stamp = seconds_to_stamp(event.stamp)
            msg.latency = float(clock - event.stamp)
        else:
            msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = self.frame_ids.get(event.frame_index, "")
        if self.pub is not None:
            self.pub.publish(msg)
            self.pub_json.publish(
                String(
                    data=json.dumps(
                        {
                            "response_id": msg.response_id,
                            "query_id": msg.query_id,
                            "kind": msg.kind,
                            "text": msg.text,
                            "final": msg.final,
                            "video_time": msg.video_time,
                            "latency": round(msg.latency, 4),
                            "stamp": stamp_to_seconds(msg.header.stamp),
                            "frame_id": msg.header.frame_id,
                        }
                    )
                )
            )
        if event.final and self.journal is not None:  # after publishing: a query ends once its end is out
            self.journal.ended(
                0 if event.proactive else event.query_id,
                event.response_id,
                answered=event.response_kind == "answer" and not event.proactive,
            )
        if event.final and event.proactive and event.stamp is not None:
            self.publish_decision(
                event.frame_index,
                event.stamp,
                event.video_time,
                event.p_interval,
                response_id=event.response_id,
                batch=int(event.timings.get("batch", 1)),
            )

    def publish_decision(
        self,
        index: int,
        stamp: float,
        video_time,
        p_interval,
        *,
        suppressed: str = "",
        batch: int = 1,
        response_id: int = 0,
    ) -> None:
        if self.pub_decision is None:
            return
        msg = Decision(
            frame_index=max(0, int(index)),
            video_time=float(video_time or 0.0),
            p_interval=float("nan") if p_interval is None else float(p_interval),
            theta=float(self.core.cfg.theta) if self.core is not None else float("nan"),
            spoke=bool(response_id),
            suppressed=suppressed,
            batch=int(batch),
            response_id=response_id,
        )
        msg.header.stamp = seconds_to_stamp(stamp)
        msg.header.frame_id = self.frame_ids.get(index, "")
        self.pub_decision.publish(msg)

    def status_fields(self) -> dict:
        """Counters continue across restarts (the journal's totals of earlier processes plus
        this one's); frames_dropped = dropped by the engine (with the reason in last_error) +
        refused here + lost before reaching this node (frame_index gaps)."""
        journal = self.journal
        st = self.engine.stats() if self.engine is not None else (self.core.stats if self.core is not None else None)
        fields = {"frames_dropped": self.frames_refused + self.frames_lost}
        if st is not None:
            if st.last_error and st.last_error != self._engine_error:
                self._engine_error = st.last_error
                self.report_error(f"live_llm: {st.last_error}")
            if st.last_warning and st.last_warning != self._engine_warning:
                self._engine_warning = st.last_warning
                self.get_logger().warning(st.last_warning)
            fields.update(
                {
                    "fps": st.frames_taken and len([t for t in self.taken if time.monotonic() - t < 5.0]) / 5.0,
                    "lag": st.lag_s,
                    "cache_tokens": st.cache_tokens,
                    "frames_in": st.frames_in,
                    "frames_dropped": st.frames_dropped + self.frames_refused + self.frames_lost,
                    "queries_accepted": st.queries_accepted,
                    "queries_answered": st.queries_answered,
                }
            )
        if journal is not None:
            for key in COUNTERS:
                fields[key] = journal.base[key] + fields.get(key, 0)
            with journal.lock:
                counters = {key: fields[key] for key in COUNTERS}
                if counters != journal.counters or journal.last_frame_index != self._last_index:
                    journal.counters, journal.last_frame_index = counters, self._last_index
                    journal.write()
            if journal.error:
                self.report_error(f"live_llm: {journal.error}")
        return fields

    # -- the journal and frame_index gaps -----------------------------------------------------
    def open_journal(self) -> None:
        """Read what the previous process of this node left (call at the end of activate,
        once the engine exists; again after a re-activation is harmless): query and response
        ids continue after the highest ever given, counters continue, and every query it
        accepted but never answered gets a refusal, published on the next executor turn
        (once the response publisher is active)."""
        if self.journal is None:
            name = self.get_fully_qualified_name().strip("/").replace("/", ".")
            domain = os.environ.get("ROS_DOMAIN_ID") or "0"
            self.journal = QueryJournal(state_dir(self.p("state_dir")) / f"{name}.domain{domain}.json")
            if self.journal.error:
                self.report_error(f"live_llm: {self.journal.error}")
            if self._last_index is None and isinstance(self.journal.last_frame_index, int):
                self._last_index = self.journal.last_frame_index
            if self.journal.restarts:
                self.get_logger().warning(
                    f"live_llm restarted (restart {self.journal.restarts} recorded in {self.journal.path}); "
                    f"{len(self.journal.leftovers)} query(ies) left unanswered by the previous process are refused"
                )
        self.journal.clean = False
        self.core.continue_ids(self.journal.next_query_id, self.journal.next_response_id)
        if self.journal.leftovers and self._leftover_timer is None:
            self._leftover_timer = self.create_timer(0.5, self._refuse_leftovers)

    def close_journal(self) -> None:
        """A clean stop (call from deactivate, after the engine stopped and refused what
        waited): the next process starts its counters afresh; ids still continue."""
        if self.journal is not None:
            self.journal.close()

    def _refuse_leftovers(self) -> None:
        """The previous process's unanswered queries: a refusal each, with their own ids."""
        if self.engine is None or not self.active:
            return  # not active yet (or any more): try again on the next turn
        self.destroy_timer(self._leftover_timer)
        self._leftover_timer = None
        for query_id, info in sorted(self.journal.leftovers.items()):
            text = info.get("text", "") if isinstance(info, dict) else ""
            self.core.refuse(
                QueryInput(query_id, text, None, time.perf_counter()),
                "live_llm restarted before answering this query (its process ended: killed or crashed); ask again",
            )

    def _count_gap(self, index: int) -> None:
        """frame_encoder numbers its frames consecutively: a gap is frames that never reached
        this node (lost in transport, or sent while it was not running). A lower index is a
        restarted encoder, not a loss."""
        last, self._last_index = self._last_index, index
        if last is not None and index > last + 1:
            lost = index - last - 1
            self.frames_lost += lost
            self.report_error(
                f"live_llm: {lost} frame(s) lost before reaching live_llm (frame_index {last + 1} to "
                f"{index - 1}): sent while live_llm was not running (a restart, or loading) or "
                f"dropped in transport (live/frame_tokens keeps the last 30); counted in "
                f"frames_dropped"
            )


def main(argv=None) -> int:
    return run_main(LiveLLM, argv)
