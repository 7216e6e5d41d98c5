"""An MCAP written with rosbags reads back with mcap-ros2-support, with rosidl's type hashes."""

from __future__ import annotations

import json

import numpy as np
import yaml
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory
from rosbags.rosbag2 import StoragePlugin, Writer

from live_ros.bag_types import typestore
from live_ros.paths import share_dir


def rosidl_hash(name: str) -> str:
    """The type hash rosidl generated for live_ros/msg/<name> (share/live_ros/msg/<name>.json)."""
    data = json.loads((share_dir() / "msg" / f"{name}.json").read_text())
    return next(h["hash_string"] for h in data["type_hashes"] if h["type_name"] == f"live_ros/msg/{name}")


def test_rosbags_hashes_equal_rosidl():
    store = typestore()
    for name in ("FrameTokens", "Response", "Status"):
        assert store.hash_rihs01(f"live_ros/msg/{name}") == rosidl_hash(name)


def test_mcap_round_trip(tmp_path):
    store = typestore()
    FrameTokens = store.types["live_ros/msg/FrameTokens"]
    Response = store.types["live_ros/msg/Response"]
    Header = store.types["std_msgs/msg/Header"]
    Time = store.types["builtin_interfaces/msg/Time"]
    rng = np.random.default_rng(1)
    tokens = [rng.standard_normal((10, 8)).astype(np.float32) for _ in range(3)]

    bag = tmp_path / "bag"
    with Writer(bag, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        tok_conn = writer.add_connection("/live/frame_tokens", "live_ros/msg/FrameTokens", typestore=store)
        res_conn = writer.add_connection("/live/response", "live_ros/msg/Response", typestore=store)
        for i, t in enumerate(tokens):
            stamp = Time(sec=10 + i, nanosec=250)
            msg = FrameTokens(
                header=Header(stamp=stamp, frame_id="camera"),
                frame_index=i,
                encoder="enc@1",
                num_tokens=10,
                dim=8,
                data=t.reshape(-1),
            )
            writer.write(tok_conn, (10 + i) * 10**9 + 250, store.serialize_cdr(msg, "live_ros/msg/FrameTokens"))
        reply = Response(
            header=Header(stamp=Time(sec=12, nanosec=250), frame_id="camera"),
            response_id=1,
            query_id=7,
            kind="answer",
            text="A cat comes in from the left.",
            final=True,
            video_time=2.0,
            latency=np.float32(0.3),
        )
        writer.write(res_conn, 12 * 10**9 + 400, store.serialize_cdr(reply, "live_ros/msg/Response"))

    files = list(bag.glob("*.mcap"))
    assert len(files) == 1
    with files[0].open("rb") as stream:
        reader = make_reader(stream, decoder_factories=[DecoderFactory()])
        decoded = [(channel.topic, schema.name, msg) for schema, channel, _, msg in reader.iter_decoded_messages()]
        metadata = {m.name: m.metadata for m in reader.iter_metadata()}

    topics = [t for t, _, _ in decoded]
    assert topics == ["/live/frame_tokens"] * 3 + ["/live/response"]
    assert {s for _, s, _ in decoded} == {"live_ros/msg/FrameTokens", "live_ros/msg/Response"}
    for i, (_, _, msg) in enumerate(decoded[:3]):
        assert msg.frame_index == i and msg.encoder == "enc@1" and (msg.num_tokens, msg.dim) == (10, 8)
        assert (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id) == (10 + i, 250, "camera")
        np.testing.assert_array_equal(np.asarray(msg.data, np.float32).reshape(10, 8), tokens[i])
    last = decoded[3][2]
    assert (last.query_id, last.kind, last.text, last.final) == (7, "answer", "A cat comes in from the left.", True)

    # rosbag2's own metadata inside the MCAP names each topic's type hash: rosidl's.
    bag_meta = yaml.safe_load(metadata["rosbag2"]["serialized_metadata"])
    bag_meta = bag_meta.get("rosbag2_bagfile_information", bag_meta)
    hashes = {
        t["topic_metadata"]["name"]: t["topic_metadata"]["type_description_hash"]
        for t in bag_meta["topics_with_message_count"]
    }
    assert hashes == {"/live/frame_tokens": rosidl_hash("FrameTokens"), "/live/response": rosidl_hash("Response")}
