"""One stream of live_llm: its topics, services, engine, journal and counters.

live_llm serves one or more camera streams with one model (live_ros/engine/batching.py).
The first stream is the node's default and keeps the names it always had
(``live/frame_tokens``, ``live/response``, ``live/response_json``, ``live/decision``,
``live/query``, ``live/reset``); every other stream ``<name>`` has the same six under
``live/<name>/``. A stream's queries, responses, decisions, resets, journal and KV cache
are its own: nothing crosses between streams.
"""

from __future__ import annotations

import json
import os
import time

import torch
from std_msgs.msg import String
from std_srvs.srv import Trigger

from live_ros.engine import EngineInputError, QueryInput, ResponseEvent, SilentEvent, ThreadedEngine
from live_ros.engine.journal import COUNTERS, QueryJournal, state_dir
from live_ros.model.frames import stamp_ahead_error
from live_ros.msg import Decision, FrameTokens, Response
from live_ros.ros import qos
from live_ros.ros.convert import ConversionError, msg_to_tokens, seconds_to_stamp, stamp_to_seconds
from live_ros.ros.tools import response_dict
from live_ros.srv import Query


class LLMStream:
    """A stream of the :class:`~live_ros.nodes.live_llm.LiveLLM` node ``node``: ``name`` ""
    for the default stream (the node's own names), else its names under ``<name>/``."""

    def __init__(self, node, name: str = ""):
        self.node = node
        self.name = name
        self.prefix = f"{name}/" if name else ""
        self.label = f"live_llm[{name}]" if name else "live_llm"
        self.core = None  # StreamEngine (load)
        self.engine: ThreadedEngine | None = None  # (activate)
        self.pub = self.pub_json = self.pub_decision = None
        self.sub = None
        self.journal: QueryJournal | None = None
        self.frame_ids: dict[int, str] = {}
        self.taken: list[float] = []
        self.frames_refused = 0
        self.frames_lost = 0  # frame_index gaps: frames that never reached this node
        self._last_index: int | None = None
        self._leftover_timer = None
        self._engine_error = ""
        self._engine_warning = ""
        # offered from the start, so a client never waits for them to appear: they refuse at
        # once, saying why, until the node is active (LiveLLM.not_active)
        self.query_srv = node.create_service(Query, self.prefix + "query", self.on_query)
        self.reset_srv = node.create_service(Trigger, self.prefix + "reset", self.on_reset)

    # -- lifecycle (called by the node) ----------------------------------------------------
    def configure(self) -> None:
        node = self.node
        self.pub = node.create_lifecycle_publisher(Response, self.prefix + "response", qos.responses())
        self.pub_json = node.create_lifecycle_publisher(String, self.prefix + "response_json", qos.responses())
        self.pub_decision = node.create_lifecycle_publisher(Decision, self.prefix + "decision", qos.decisions())

    def activate(self, changes: dict) -> None:
        if changes:
            self.core.configure(**changes)
        self.engine = ThreadedEngine(self.core, on_event=self.on_event)
        self.sub = self.node.create_subscription(
            FrameTokens, self.prefix + "frame_tokens", self.on_tokens, qos.frames()
        )
        self.open_journal()

    def deactivate(self) -> None:
        if self.sub is not None:
            self.node.destroy_subscription(self.sub)
            self.sub = None
        if self.engine is not None:
            self.engine.stop()  # waiting queries get their refusal (published by on_event)
            self.engine = None
        self.close_journal()

    def cleanup(self) -> None:
        self.core = None
        for pub in (self.pub, self.pub_json, self.pub_decision):
            if pub is not None:
                self.node.destroy_lifecycle_publisher(pub)
        self.pub = self.pub_json = self.pub_decision = None

    def configure_engine(self, **changes) -> None:
        """A live setting changed (theta, instruction, ...): tell this stream's engine."""
        if self.engine is not None:
            self.engine.configure(**changes)

    # -- callbacks: validate and enqueue ----------------------------------------------------
    def on_tokens(self, msg: FrameTokens) -> None:
        node = self.node
        where = f"{self.label}: frame {msg.frame_index} on {self.sub.topic_name}"
        if not node.encoder_settings.accepts(msg.encoder):
            self.frames_refused += 1
            node.report_error(
                f"{where}: tokens from encoder '{msg.encoder}' but this checkpoint expects "
                f"'{node.expected_encoder}': run frame_encoder with the same preset and checkpoint "
                f"as live_llm"
            )
            return
        self._count_gap(int(msg.frame_index))
        stamp = stamp_to_seconds(msg.header.stamp)
        ahead = stamp_ahead_error(stamp, node.get_clock().now().nanoseconds * 1e-9, node.p("max_stamp_ahead"), where)
        if ahead:  # refused before the engine sees it: its stamp never becomes the stream's newest
            self.frames_refused += 1
            node.report_error(ahead)
            return
        try:
            tokens = torch.from_numpy(msg_to_tokens(msg, where))
            index = self.engine.submit_frame(tokens, stamp)
        except (ConversionError, EngineInputError) as err:
            self.frames_refused += 1
            node.report_error(f"{where}: {err}" if isinstance(err, EngineInputError) else str(err))
            return
        self.frame_ids[index] = msg.header.frame_id
        if len(self.frame_ids) > 1024:
            self.frame_ids.pop(next(iter(self.frame_ids)))

    def on_query(self, request: Query.Request, response: Query.Response) -> Query.Response:
        why = self.node.not_active()
        if why:
            response.accepted, response.message = False, why
            self.node.report_error(f"{self.label}: query refused: {why}", log=False)
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
            self.node.report_error(f"{self.label}: query refused: {err}", log=False)
        return response

    def on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        why = self.node.not_active()
        if why:
            response.success, response.message = False, why
            return response
        self.engine.reset()
        self.frame_ids.clear()
        response.success, response.message = True, "stream reset: the next frame starts a new stream"
        self.node.get_logger().info(f"stream {self.name} reset" if self.name else "stream reset")
        return response

    # -- events (the engine's worker thread) --------------------------------------------------
    def _taken_now(self) -> None:
        now = time.monotonic()
        self.taken = [t for t in self.taken if now - t < 5.0] + [now]

    def on_event(self, event) -> None:
        if isinstance(event, SilentEvent):
            self._taken_now()
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
            self._taken_now()
        clock = self.node.get_clock()
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
            msg.latency = float(clock.now().nanoseconds * 1e-9 - event.stamp)
        else:
            msg.header.stamp = clock.now().to_msg()
        msg.header.frame_id = self.frame_ids.get(event.frame_index, "")
        if self.pub is not None:
            self.pub.publish(msg)
            self.pub_json.publish(String(data=json.dumps(self._as_json(msg))))
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

    def _as_json(self, msg: Response) -> dict:
        """live/response_json: the message as JSON (live_ros/ros/tools.py's fields), with the
        camera frame id, and the stream's name where it is not the default stream."""
        out = response_dict(msg)
        out.update(latency=round(msg.latency, 4), frame_id=msg.header.frame_id)
        if self.name:
            out["stream"] = self.name
        return out

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
        """This stream's counters, continued across restarts (the journal's totals of earlier
        processes plus this one's); frames_dropped = dropped by the engine (with the reason
        in last_error) + refused here + lost before reaching the node (frame_index gaps)."""
        node, journal = self.node, self.journal
        st = self.engine.stats() if self.engine is not None else (self.core.stats if self.core is not None else None)
        fields = {"frames_dropped": self.frames_refused + self.frames_lost}
        if st is not None:
            if st.last_error and st.last_error != self._engine_error:
                self._engine_error = st.last_error
                node.report_error(f"{self.label}: {st.last_error}")
            if st.last_warning and st.last_warning != self._engine_warning:
                self._engine_warning = st.last_warning
                node.get_logger().warning(f"{self.label}: {st.last_warning}")
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
                node.report_error(f"{self.label}: {journal.error}")
        return fields

    # -- the journal and frame_index gaps -----------------------------------------------------
    def open_journal(self) -> None:
        """Read what the previous process of this stream left (call at the end of activate,
        once the engine exists; again after a re-activation is harmless): query and response
        ids continue after the highest ever given, counters continue, and every query it
        accepted but never answered gets a refusal, published on the next executor turn
        (once the response publisher is active)."""
        node = self.node
        if self.journal is None:
            name = node.get_fully_qualified_name().strip("/").replace("/", ".") + (f".{self.name}" if self.name else "")
            domain = os.environ.get("ROS_DOMAIN_ID") or "0"
            self.journal = QueryJournal(state_dir(node.p("state_dir")) / f"{name}.domain{domain}.json")
            if self.journal.error:
                node.report_error(f"{self.label}: {self.journal.error}")
            if self._last_index is None and isinstance(self.journal.last_frame_index, int):
                self._last_index = self.journal.last_frame_index
            if self.journal.restarts:
                node.get_logger().warning(
                    f"{self.label} restarted (restart {self.journal.restarts} recorded in {self.journal.path}); "
                    f"{len(self.journal.leftovers)} query(ies) left unanswered by the previous process are refused"
                )
        self.journal.clean = False
        self.core.continue_ids(self.journal.next_query_id, self.journal.next_response_id)
        if self.journal.leftovers and self._leftover_timer is None:
            self._leftover_timer = node.create_timer(0.5, self._refuse_leftovers)

    def close_journal(self) -> None:
        """A clean stop (call from deactivate, after the engine stopped and refused what
        waited): the next process starts its counters afresh; ids still continue."""
        if self.journal is not None:
            self.journal.close()

    def _refuse_leftovers(self) -> None:
        """The previous process's unanswered queries: a refusal each, with their own ids."""
        if self.engine is None or not self.node.active:
            return  # not active yet (or any more): try again on the next turn
        self.node.destroy_timer(self._leftover_timer)
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
            topic = f"live/{self.prefix}frame_tokens"
            self.node.report_error(
                f"{self.label}: {lost} frame(s) lost before reaching live_llm (frame_index {last + 1} to "
                f"{index - 1}): sent while live_llm was not running (a restart, or loading) or "
                f"dropped in transport ({topic} keeps the last 30); counted in frames_dropped"
            )
