"""``live-ros record`` in a real process: raw CDR from live publishers into an MCAP that
mcap-ros2-support reads back, with rosidl's type hashes (in rosbag2's metadata and
recomputed from the schemas the file carries). No model here: the publishers are this
test's (test_bags_replay.py records a real graph)."""

from __future__ import annotations

import array
import json
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory
from ros_helpers import ros_node, spin_until
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from live_ros.paths import share_dir

pytestmark = [pytest.mark.ros]


def rosidl_hash(msgtype: str) -> str:
    """The RIHS01 hash rosidl generated for ``pkg/msg/Name`` (share/<pkg>/msg/<Name>.json)."""
    from ament_index_python.packages import get_package_share_directory

    pkg, _, name = msgtype.split("/")
    folder = share_dir() if pkg == "live_ros" else Path(get_package_share_directory(pkg))
    data = json.loads((folder / "msg" / f"{name}.json").read_text())
    return next(h["hash_string"] for h in data["type_hashes"] if h["type_name"] == msgtype)


def read_mcap(bag: Path):
    """(messages [(topic, schema name, decoded)], rosbag2 topic hashes, schemas {name: data})."""
    mcap = next(bag.glob("*.mcap"))
    with mcap.open("rb") as stream:
        reader = make_reader(stream, decoder_factories=[DecoderFactory()])
        decoded = [(ch.topic, sc.name, msg) for sc, ch, _, msg in reader.iter_decoded_messages()]
        summary = reader.get_summary()
        schemas = {s.name: s.data.decode() for s in summary.schemas.values()}
        meta = {m.name: m.metadata for m in reader.iter_metadata()}
    info = yaml.safe_load(meta["rosbag2"]["serialized_metadata"])
    info = info.get("rosbag2_bagfile_information", info)
    hashes = {
        t["topic_metadata"]["name"]: t["topic_metadata"]["type_description_hash"]
        for t in info["topics_with_message_count"]
    }
    return decoded, hashes, schemas


def schema_hash(name: str, text: str) -> str:
    """RIHS01 computed from the message definition an MCAP schema carries."""
    store = get_typestore(Stores.EMPTY)
    store.register(get_types_from_msg(text, name))
    return store.hash_rihs01(name)


def test_record_writes_raw_messages_readable_by_mcap_ros2(tmp_path, processes):
    from sensor_msgs.msg import Image

    from live_ros.msg import Decision, FrameTokens, Response
    from live_ros.ros import qos
    from live_ros.ros.convert import rgb_to_image, seconds_to_stamp

    out = tmp_path / "rec"
    rec = processes.start(Path(sys.executable).parent / "live-ros", "record", out, "--duration", "60")
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(rec.stdout.readline, "")), daemon=True).start()
    rng = np.random.default_rng(0)
    sent_tokens = [rng.standard_normal((10, 16)).astype(np.float32) for _ in range(3)]
    with ros_node("record_publisher") as (node, executor):
        pubs = {
            "camera": node.create_publisher(Image, "/camera/image_raw", qos.camera("reliable", 10)),
            "tokens": node.create_publisher(FrameTokens, "/live/frame_tokens", qos.frames()),
            "decision": node.create_publisher(Decision, "/live/decision", qos.decisions()),
            "response": node.create_publisher(Response, "/live/response", qos.responses()),
        }
        spin_until(
            executor,
            lambda: all(p.get_subscription_count() > 0 for p in pubs.values()),
            30,
            "the recorder's subscriptions",
            rec,
            detail=lambda: lines,
        )
        for i in range(3):
            stamp = seconds_to_stamp(100.0 + 0.5 * i)
            rgb = np.full((24, 32, 3), 40 * i, np.uint8)
            pubs["camera"].publish(rgb_to_image(rgb, stamp, "cam"))
            tok = FrameTokens(frame_index=i, encoder="enc@1", num_tokens=10, dim=16)
            tok.header.stamp, tok.header.frame_id = stamp, "cam"
            tok.data = array.array("f", sent_tokens[i].tobytes())
            pubs["tokens"].publish(tok)
            d = Decision(
                frame_index=i,
                video_time=0.5 * i,
                p_interval=0.9,
                theta=0.725,
                spoke=i == 2,
                batch=1,
                response_id=4 if i == 2 else 0,
            )
            d.header.stamp = stamp
            pubs["decision"].publish(d)
        r = Response(
            response_id=4,
            query_id=0,
            kind="narration",
            text="The cat appears.",
            final=True,
            video_time=1.0,
            latency=0.25,
        )
        r.header.stamp = seconds_to_stamp(101.0)
        pubs["response"].publish(r)
        end = time.monotonic() + 1.0  # reliable delivery of what was just published
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.05)
    rec.send_signal(signal.SIGINT)
    assert rec.wait(timeout=20) == 0, "".join(lines)
    assert any(line.startswith("wrote ") for line in lines), lines

    decoded, hashes, schemas = read_mcap(out)
    by_topic: dict[str, list] = {}
    for topic, schema, msg in decoded:
        by_topic.setdefault(topic, []).append((schema, msg))
    assert {t: len(v) for t, v in by_topic.items()} == {
        "/camera/image_raw": 3,
        "/live/frame_tokens": 3,
        "/live/decision": 3,
        "/live/response": 1,
    }
    for i, (schema, img) in enumerate(by_topic["/camera/image_raw"]):
        assert schema == "sensor_msgs/msg/Image" and (img.height, img.width, img.encoding) == (24, 32, "rgb8")
        assert bytes(img.data) == bytes([40 * i]) * (24 * 32 * 3) and img.header.frame_id == "cam"
    for i, (_, tok) in enumerate(by_topic["/live/frame_tokens"]):
        np.testing.assert_array_equal(np.asarray(tok.data, np.float32).reshape(10, 16), sent_tokens[i])
    assert [m.spoke for _, m in by_topic["/live/decision"]] == [False, False, True]
    ((_, resp),) = by_topic["/live/response"]
    assert (resp.text, resp.response_id, resp.final) == ("The cat appears.", 4, True)

    types = {
        "/camera/image_raw": "sensor_msgs/msg/Image",
        "/live/frame_tokens": "live_ros/msg/FrameTokens",
        "/live/decision": "live_ros/msg/Decision",
        "/live/response": "live_ros/msg/Response",
    }
    assert hashes == {topic: rosidl_hash(t) for topic, t in types.items()}
    assert set(schemas) == set(types.values())
    for name, text in schemas.items():
        assert schema_hash(name, text) == rosidl_hash(name), name


def test_record_topics():
    from live_ros.ros.record import topics_for

    full = topics_for("live", "/camera/image_raw", "sensor_msgs/msg/Image", tokens=True, status=False)
    assert [t for t, _ in full] == ["/camera/image_raw", "/live/frame_tokens", "/live/decision", "/live/response"]
    lean = topics_for("/robot/", None, "sensor_msgs/msg/Image", tokens=False, status=True)
    assert [t for t, _ in lean] == ["/robot/decision", "/robot/response", "/robot/status"]
