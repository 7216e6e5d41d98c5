"""live_llm under faults, as a real process fed real FrameTokens messages: a frame stamped
far in the future is refused without blocking the real frames after it; a kill -9 loses no
query (each accepted one ends in an answer or a refusal, ids stay unique across the
restart), and frames sent while it was down are counted as dropped; the bound on waiting
queries refuses the excess with a reason."""

from __future__ import annotations

import array
import json
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
from ros_helpers import ros_node, spin_until

import live_ros
from live_ros.model.config import LiveConfig
from live_ros.msg import Decision, FrameTokens, Response, Status
from live_ros.ros import qos
from live_ros.ros.convert import seconds_to_stamp, stamp_to_seconds
from live_ros.srv import Query

pytestmark = [pytest.mark.ros, pytest.mark.slow]
EXE = Path(sys.executable).parent.parent / "lib" / "live_ros" / "live_llm"
LIVE = LiveConfig.from_pretrained(Path(live_ros.__file__).parent / "checkpoints" / "embedded")


def start_llm(processes, ns: str, state_dir: Path, *params: str):
    args = ["-p", f"state_dir:={state_dir}", "-p", "status_period:=0.25", "-p", "partial_responses:=false"]
    for p in params:
        args += ["-p", p]
    return processes.start(EXE, "--ros-args", "-r", f"__ns:=/{ns}", *args)


class Peer:
    """Publishes frame tokens to, asks, and listens to one live_llm."""

    def __init__(self, node, executor, ns: str):
        self.node, self.executor = node, executor
        self.status: Status | None = None
        self.errors: list[str] = []
        self.responses: list[Response] = []
        self.decisions: list[Decision] = []
        node.create_subscription(Status, f"/{ns}/status", self._on_status, qos.status())
        node.create_subscription(Response, f"/{ns}/response", self.responses.append, qos.responses())
        node.create_subscription(Decision, f"/{ns}/decision", self.decisions.append, qos.decisions())
        self.pub = node.create_publisher(FrameTokens, f"/{ns}/frame_tokens", qos.frames())
        self.query = node.create_client(Query, f"/{ns}/query")
        self.rng = np.random.default_rng(0)

    def _on_status(self, msg: Status) -> None:
        self.status = msg
        if not self.errors or self.errors[-1] != msg.last_error:
            self.errors.append(msg.last_error)

    def now(self) -> float:
        return self.node.get_clock().now().nanoseconds * 1e-9

    def wait_active(self, proc) -> None:
        spin_until(
            self.executor,
            lambda: self.status is not None and self.status.state == "active",
            180,
            "live_llm to be active",
            proc,
        )
        spin_until(self.executor, lambda: self.pub.get_subscription_count() > 0, 30, "live_llm's subscription")
        spin_until(self.executor, self.query.service_is_ready, 30, "the query service")

    def frame(self, index: int, stamp: float) -> None:
        n, d = LIVE.frame_num_tokens, LIVE.vision_hidden_size
        data = self.rng.standard_normal(n * d).astype(np.float32)
        msg = FrameTokens(
            frame_index=index, encoder=LIVE.encoder_id, num_tokens=n, dim=d, data=array.array("f", data.tobytes())
        )
        msg.header.stamp = seconds_to_stamp(stamp)
        self.pub.publish(msg)

    def decided(self, stamp: float) -> bool:
        return any(abs(stamp_to_seconds(d.header.stamp) - stamp) < 1e-6 for d in self.decisions)

    def ask(self, texts: list[str]) -> list[Query.Response]:
        futures = [self.query.call_async(Query.Request(text=t)) for t in texts]
        spin_until(self.executor, lambda: all(f.done() for f in futures), 30, "the query replies")
        return [f.result() for f in futures]

    def ends(self) -> dict[int, list[Response]]:
        """query id -> its final non-proactive responses (answer at once, or refusal)."""
        out: dict[int, list[Response]] = {}
        for r in self.responses:
            if r.final and r.query_id and r.kind in ("answer", "refusal"):
                out.setdefault(r.query_id, []).append(r)
        return out


def test_a_future_stamp_is_refused_and_later_frames_are_taken(processes, tmp_path):
    proc = start_llm(processes, "faults_stamp", tmp_path, "theta:=0.0")  # theta 0: never speaks, fast
    with ros_node("faults_stamp") as (node, executor):
        peer = Peer(node, executor, "faults_stamp")
        peer.wait_active(proc)
        now = peer.now()
        future = now + 7 * 365 * 86400.0  # about 2033 seen from 2026
        peer.frame(0, future)
        spin_until(
            executor,
            lambda: peer.status and "ahead of this node's clock" in peer.status.last_error,
            30,
            "the refusal of the future stamp",
            proc,
        )
        assert "max_stamp_ahead" in peer.status.last_error
        real = [now - 2.0 + 0.5 * k for k in range(1, 4)]  # the real video goes on: every frame taken
        for k, t in enumerate(real, 1):
            peer.frame(k, t)
        spin_until(
            executor,
            lambda: all(peer.decided(t) for t in real),
            60,
            "decisions for the real frames",
            proc,
            detail=lambda: f"status errors {peer.errors}, decisions {len(peer.decisions)}",
        )
        assert not peer.decided(future)
        spin_until(
            executor,
            lambda: peer.status.frames_in == 3 and peer.status.frames_dropped == 1,
            10,
            "frames_in 3 and the refused frame counted as dropped",
            proc,
        )


def test_kill_9_every_accepted_query_ends_and_ids_stay_unique(processes, tmp_path):
    ns = "faults_kill"
    params = ("theta:=0.0", "max_new_tokens:=100", "min_new_tokens:=100", "max_pending_queries:=3")
    proc = start_llm(processes, ns, tmp_path, *params)
    with ros_node("faults_kill") as (node, executor):
        peer = Peer(node, executor, ns)
        peer.wait_active(proc)
        t0 = peer.now() - 60.0
        for k in range(3):
            peer.frame(k, t0 + 0.5 * k)
        spin_until(executor, lambda: peer.decided(t0 + 1.0), 60, "the decision for frame 2", proc)
        journal = tmp_path / f"{ns}.live_llm.domain{__import__('os').environ['ROS_DOMAIN_ID']}.json"
        spin_until(
            executor,
            lambda: journal.is_file() and json.loads(journal.read_text())["last_frame_index"] == 2,
            30,
            "the journal to hold frame_index 2",
            proc,
        )
        # each answer is 100 tokens (seconds on a CPU): the worker takes one, 3 wait, the rest are refused
        replies = peer.ask([f"question {k}?" for k in range(6)])
        accepted = [r.query_id for r in replies if r.accepted]
        refused = [r.message for r in replies if not r.accepted]
        assert len(accepted) >= 3 and refused, replies
        assert all("max_pending_queries=3" in m for m in refused), refused
        proc.send_signal(signal.SIGKILL)  # now, with queries pending
        proc.wait(timeout=30)
        unanswered = [q for q in accepted if q not in peer.ends()]
        assert unanswered, "every query was answered before the kill: the test proves nothing"

        proc = start_llm(processes, ns, tmp_path, *params)  # the launcher's respawn, by hand
        peer.status = None
        peer.wait_active(proc)
        spin_until(
            executor,
            lambda: all(q in peer.ends() for q in accepted),
            60,
            "an answer or a refusal for every accepted query",
            proc,
        )
        for q in unanswered:
            (end,) = peer.ends()[q]
            assert end.kind == "refusal" and "restarted before answering" in end.text
        # counters continue from the journal; ids continue after the highest given
        assert peer.status.queries_accepted >= len(accepted) and peer.status.frames_in == 3
        peer.frame(12, t0 + 10.0)  # 9 frames (3..11) sent while it was down
        spin_until(executor, lambda: peer.decided(t0 + 10.0), 60, "the decision for frame 12", proc)
        spin_until(executor, lambda: peer.status.frames_dropped >= 9, 10, "the lost frames counted", proc)
        assert any("9 frame(s) lost before reaching live_llm" in e for e in peer.errors), peer.errors
        (again,) = peer.ask(["one more?"])
        assert again.accepted and again.query_id > max(accepted)
        spin_until(executor, lambda: again.query_id in peer.ends(), 120, "the answer to the new query", proc)
    rids = [r.response_id for r in peer.responses if r.final]
    assert len(rids) == len(set(rids)), f"response ids collide across the restart: {sorted(rids)}"


def test_a_clean_stop_leaves_no_leftovers_and_counters_start_afresh(processes, tmp_path):
    ns = "faults_clean"
    proc = start_llm(processes, ns, tmp_path, "theta:=0.0")
    with ros_node("faults_clean") as (node, executor):
        peer = Peer(node, executor, ns)
        peer.wait_active(proc)
        peer.frame(0, peer.now() - 5.0)
        spin_until(executor, lambda: peer.status.frames_in == 1, 60, "frame 0 taken", proc)
        (first,) = peer.ask(["what is this?"])
        assert first.accepted
        spin_until(executor, lambda: first.query_id in peer.ends(), 120, "the answer", proc)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        journal = json.loads(next(tmp_path.glob(f"{ns}.live_llm.*.json")).read_text())
        assert journal["clean"] and not journal["pending"]
        proc = start_llm(processes, ns, tmp_path, "theta:=0.0")
        peer.status = None
        peer.wait_active(proc)
        assert peer.status.frames_in == 0 and peer.status.queries_accepted == 0
        (second,) = peer.ask(["and now?"])
        assert second.accepted and second.query_id > first.query_id
