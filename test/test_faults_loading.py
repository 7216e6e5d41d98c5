"""A node serves while its model loads (live_ros/nodes/base.py: ``load`` runs in a thread of
its own): frame_encoder and live_llm as real processes publish ``live/status`` with state
``loading`` before ``active``, answer ``get_parameters`` while their status still says
``loading``, and live_llm's ``live/query`` exists from the start and refuses at once, saying
why, until the node is active.

No wall-clock bound is asserted: a reply that arrives before a later status still says
``loading`` proves that the executor was not blocked by the load, on a fast or a loaded
machine alike. Loading the embedded model (reading its weights, building the encoder or the
LLM and prefilling the system prompt) takes seconds, a local service round trip
milliseconds, so there is always room for several replies while loading."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from rcl_interfaces.srv import GetParameters
from ros_helpers import ros_node, spin_until

pytestmark = pytest.mark.ros

LIB = Path(sys.executable).parent.parent / "lib" / "live_ros"


@pytest.mark.parametrize("name", ["frame_encoder", "live_llm"])
def test_services_and_status_answer_while_the_model_loads(processes, name):
    from live_ros.msg import Status
    from live_ros.ros import qos
    from live_ros.srv import Query

    ns = f"/loading_{name}"
    proc = processes.start(LIB / name, "--ros-args", "-p", "status_period:=0.2", "-r", f"__ns:={ns}")
    with ros_node(f"loading_probe_{name}") as (node, executor):
        states: list[str] = []
        proof = {"param_reply_then_loading": False}
        waiting_for_status = [False]

        def on_status(msg: Status) -> None:
            if msg.node != name:
                return
            states.append(msg.state)
            if waiting_for_status[0] and msg.state == "loading":
                proof["param_reply_then_loading"] = True  # replied, and still loading after that

        profile = qos.status()
        profile.depth = 50
        node.create_subscription(Status, f"{ns}/status", on_status, profile)
        params = node.create_client(GetParameters, f"{ns}/{name}/get_parameters")
        query = node.create_client(Query, f"{ns}/query") if name == "live_llm" else None
        refusals: list[Query.Response] = []
        served: list[Query.Response] = []

        def call(client, request):
            future = client.call_async(request)
            spin_until(executor, future.done, 60, f"a reply from {name}", proc)
            return future.result()

        spin_until(executor, params.service_is_ready, 60, f"{name}'s parameter service", proc)
        if query is not None:
            # the query service exists from the start, not only once the model is in
            spin_until(executor, query.service_is_ready, 60, "live/query", proc)
        deadline = time.monotonic() + 240
        while "active" not in states:
            assert time.monotonic() < deadline, f"{name} did not become active: {states[-5:]}"
            assert proc.poll() is None, proc.stdout.read()
            reply = call(params, GetParameters.Request(names=["num_threads"]))
            assert reply.values and reply.values[0].integer_value == 1
            waiting_for_status[0] = True
            if query is not None and not served and states and states[-1] == "loading":
                answer = call(query, Query.Request(text="What do you see?"))
                # accepted only when the node became active since its last status
                (served if answer.accepted else refusals).append(answer)
            executor.spin_once(timeout_sec=0.05)
        assert "loading" in states and states.index("loading") < states.index("active"), states
        assert proof["param_reply_then_loading"], (
            f"get_parameters never replied while {name}'s status said loading: {states}"
        )
        if query is not None:
            assert any("loading its model" in r.message for r in refusals), (
                f"no query was refused as loading while live_llm loaded: {[r.message for r in refusals]}"
            )
            assert all(r.query_id == 0 and "ask again" in r.message for r in refusals), [r.message for r in refusals]
            served = served or [call(query, Query.Request(text="What do you see?"))]
            assert served[0].accepted and served[0].query_id > 0, served[0].message  # and it serves once active


def test_manual_lifecycle_without_autostart_loads_on_configure(processes):
    """autostart false: the node waits unconfigured; configure loads (status ``loading`` is
    published first) and activate starts it, as lifecycle transitions do."""
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState

    from live_ros.msg import Status
    from live_ros.ros import qos

    ns = "/manual_frame_encoder"
    proc = processes.start(
        LIB / "frame_encoder", "--ros-args", "-p", "autostart:=false", "-p", "status_period:=0.2", "-r", f"__ns:={ns}"
    )
    with ros_node("manual_probe") as (node, executor):
        states: list[str] = []
        profile = qos.status()
        profile.depth = 50
        node.create_subscription(Status, f"{ns}/status", lambda m: states.append(m.state), profile)
        change = node.create_client(ChangeState, f"{ns}/frame_encoder/change_state")
        spin_until(
            executor,
            lambda: "unconfigured" in states and change.service_is_ready(),
            60,
            "the unconfigured frame_encoder",
            proc,
        )
        time.sleep(1.0)
        executor.spin_once(timeout_sec=0.2)
        assert set(states) == {"unconfigured"}, states  # nothing happens without autostart
        for transition, state in (
            (Transition.TRANSITION_CONFIGURE, "inactive"),
            (Transition.TRANSITION_ACTIVATE, "active"),
        ):
            future = change.call_async(ChangeState.Request(transition=Transition(id=transition)))
            spin_until(executor, future.done, 120, f"the transition to {state}", proc)
            assert future.result().success, f"{state}: {states[-3:]}"
            spin_until(executor, lambda: states[-1] == state, 30, f"status {state}", proc)
        assert "loading" in states and states.index("loading") < states.index("inactive"), states


def test_a_failed_load_leaves_the_node_up_and_says_why(processes):
    """A model that cannot load: the node stays alive, ``unconfigured``, with a last_error that
    names the problem and the fix, and keeps answering its services."""
    from live_ros.msg import Status
    from live_ros.ros import qos

    ns = "/failed_load"
    proc = processes.start(
        LIB / "frame_encoder",
        "--ros-args",
        "-p",
        "preset:=videollm-online-8b-v1plus",
        "-p",
        "vision_path:=/nonexistent/siglip",
        "-p",
        "status_period:=0.2",
        "-r",
        f"__ns:={ns}",
    )
    with ros_node("failed_load_probe") as (node, executor):
        seen: list[Status] = []
        profile = qos.status()
        profile.depth = 50
        node.create_subscription(Status, f"{ns}/status", seen.append, profile)
        spin_until(
            executor,
            lambda: any(s.state == "unconfigured" and s.last_error for s in seen),
            120,
            "the failed load in status",
            proc,
        )
        error = seen[-1].last_error
        assert "loading failed" in error and "/nonexistent/siglip" in error and "configure" in error, error
        params = node.create_client(GetParameters, f"{ns}/frame_encoder/get_parameters")
        spin_until(executor, params.service_is_ready, 30, "the parameter service", proc)
        future = params.call_async(GetParameters.Request(names=["preset"]))
        spin_until(executor, future.done, 30, "a parameter reply", proc)
        assert future.result().values[0].string_value == "videollm-online-8b-v1plus"
        assert proc.poll() is None
