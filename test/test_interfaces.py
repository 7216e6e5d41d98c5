"""The generated interfaces cross a real process boundary over Fast DDS."""

from __future__ import annotations

import array

import numpy as np
import pytest
from conftest import PEERS
from ros_helpers import ros_node, spin_until

from live_ros.msg import FrameTokens, Response, Status
from live_ros.ros import qos
from live_ros.srv import Query

pytestmark = pytest.mark.ros


def test_message_fields_are_the_public_interface():
    """The fields of msg/ and srv/ as the README lists them ("Reference: nodes, topics,
    services, parameters", Interfaces): renaming or retyping one breaks clients."""
    assert FrameTokens.get_fields_and_field_types() == {
        "header": "std_msgs/Header",
        "frame_index": "uint64",
        "encoder": "string",
        "num_tokens": "uint32",
        "dim": "uint32",
        "data": "sequence<float>",
    }
    assert Response.get_fields_and_field_types() == {
        "header": "std_msgs/Header",
        "response_id": "uint64",
        "query_id": "uint64",
        "kind": "string",
        "text": "string",
        "final": "boolean",
        "video_time": "double",
        "latency": "float",
    }
    assert list(Status.get_fields_and_field_types()) == [
        "header",
        "node",
        "state",
        "fps",
        "lag",
        "cache_tokens",
        "frames_in",
        "frames_dropped",
        "queries_accepted",
        "queries_answered",
        "last_error",
    ]
    assert Query.Request.get_fields_and_field_types() == {"text": "string"}
    assert Query.Response.get_fields_and_field_types() == {
        "accepted": "boolean",
        "query_id": "uint64",
        "message": "string",
    }


def test_frame_tokens_response_and_query_between_two_processes(processes):
    peer = processes.python(PEERS / "interfaces_peer.py")
    assert peer.stdout.readline().strip() == "READY", "peer failed to start"
    rng = np.random.default_rng(0)
    frames = [rng.standard_normal((10, 576)).astype(np.float32) for _ in range(5)]
    received: dict[int, Response] = {}
    with ros_node("interfaces_test") as (node, executor):
        pub = node.create_publisher(FrameTokens, "/live/frame_tokens", qos.frames())
        node.create_subscription(
            Response, "/live/response", lambda m: received.__setitem__(m.response_id, m), qos.responses()
        )
        client = node.create_client(Query, "/live/query")
        spin_until(
            executor,
            lambda: pub.get_subscription_count() > 0 and client.service_is_ready(),
            20,
            "the peer's subscription and service",
            peer,
        )
        for index, tokens in enumerate(frames):
            msg = FrameTokens()
            msg.header.stamp.sec, msg.header.stamp.nanosec = 100 + index // 2, (index % 2) * 500_000_000
            msg.header.frame_id = "camera"
            msg.frame_index = index
            msg.encoder = "test-encoder@1"
            msg.num_tokens, msg.dim = tokens.shape
            msg.data = array.array("f", tokens.tobytes())
            pub.publish(msg)
        spin_until(executor, lambda: len(received) == len(frames), 20, "5 responses", peer)

        future = client.call_async(Query.Request(text="what just happened?"))
        spin_until(executor, future.done, 10, "the query reply", peer)
        reply = future.result()
        empty = client.call_async(Query.Request(text=""))
        spin_until(executor, empty.done, 10, "the second query reply", peer)

    for index, tokens in enumerate(frames):
        msg = received[index]
        assert msg.text == f"test-encoder@1|10x576|n=5760|sum={float(tokens.astype(np.float64).sum()):.4f}"
        assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (100 + index // 2, (index % 2) * 500_000_000)
        assert msg.header.frame_id == "camera" and msg.final and msg.kind == "narration"
        assert msg.video_time == pytest.approx(index * 0.5)
    assert reply.accepted and reply.query_id == len("what just happened?") and reply.message == ""
    assert not empty.result().accepted and "empty query" in empty.result().message


def test_late_subscriber_gets_recent_responses(processes):
    """live/response is transient local: a headset that joins late still sees the last 20."""
    peer = processes.python(PEERS / "interfaces_peer.py")
    assert peer.stdout.readline().strip() == "READY"
    with ros_node("late_publisher") as (node, executor):
        pub = node.create_publisher(FrameTokens, "/live/frame_tokens", qos.frames())
        spin_until(executor, lambda: pub.get_subscription_count() > 0, 20, "the peer", peer)
        for index in range(25):
            pub.publish(
                FrameTokens(frame_index=index, encoder="e", num_tokens=1, dim=1, data=array.array("f", [float(index)]))
            )
        # Let the peer answer all 25 before anyone listens.
        probe: list[int] = []
        node.create_subscription(Response, "/live/response", lambda m: probe.append(m.response_id), qos.responses())
        spin_until(executor, lambda: 24 in probe, 20, "the peer's last response", peer)
    late: list[int] = []
    with ros_node("late_headset") as (node, executor):
        node.create_subscription(Response, "/live/response", lambda m: late.append(m.response_id), qos.responses())
        spin_until(executor, lambda: len(late) >= 20, 20, "the 20 kept responses", peer)
    assert late[-20:] == list(range(5, 25))
