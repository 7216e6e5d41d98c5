"""Bags in and out without ROS (live_ros.bags.bagio, videobag, schedule): bag-from-video,
clear errors for truncated bags, bags without the image topic and unknown types, gaps
and reordered stamps reported, and the replay plan following the core's sampling rule."""

from __future__ import annotations

import json

import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from live_ros.bag_types import typestore
from live_ros.bags import bagio
from live_ros.bags.bagio import BagError
from live_ros.bags.schedule import QuestionsError, load_questions, plan_frames, question_slots
from live_ros.bags.videobag import bag_from_video, write_camera_bag
from live_ros.model.frames import sample_indices


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A 3 s synthetic clip (10 fps) with its annotation."""
    from live_ros.data.world import render_video
    from live_ros.data.world_objects import Look
    from live_ros.data.world_scene import DEFAULT_SIZE, Scene

    folder = tmp_path_factory.mktemp("clip")
    W, H = DEFAULT_SIZE
    scene = Scene("tiny", duration=3.0, background="gradient", background_seed=3, split="demo")
    cat = scene.add("cat", Look(crop=0, size=120), rest=(W * 0.5, H * 0.5))
    scene.act(cat, "enter", 1.0, 0.0, "pop")
    ann = render_video(scene, folder / "tiny.mp4", folder / "tiny.json")
    return folder / "tiny.mp4", folder / "tiny.json", ann


def frames_of(video):
    import av

    with av.open(str(video)) as c:
        return [(f.time, f.to_ndarray(format="rgb24")) for f in c.decode(c.streams.video[0])]


def test_bag_from_video_keeps_timing_pixels_and_annotation(clip, tmp_path):
    video, ann_path, ann = clip
    info = bag_from_video(video, tmp_path / "bag", annotations=ann_path, start_stamp=1700000000.25)
    decoded = frames_of(video)
    assert info["images"] == len(decoded) == 31 and info["topic"] == "/camera/image_raw"
    scan = bagio.scan_camera(tmp_path / "bag")
    assert scan.topic == "/camera/image_raw" and scan.msgtype == bagio.IMAGE and not scan.compressed
    t_first = decoded[0][0]
    for im, (t, _) in zip(scan.images, decoded):
        assert im.sec * 10**9 + im.nanosec == 1700000000_250000000 + round((t - t_first) * 1e9)
        assert im.log_ns == im.sec * 10**9 + im.nanosec and im.frame_id == "camera"
    assert scan.annotation["events"][0]["text"] == ann.events[0].text
    assert scan.report.lines() == [] and scan.report.median_step == pytest.approx(0.1)
    ((img, raw),) = [x for x in bagio.iter_camera(scan) if x[0].order == 12]
    np.testing.assert_array_equal(bagio.decode_rgb(raw, scan.msgtype), decoded[12][1])


def test_bag_from_video_compressed(clip, tmp_path):
    video, _, _ = clip
    info = bag_from_video(video, tmp_path / "bag", compressed="jpeg", start_stamp=5.0)
    assert info["topic"] == "/camera/image_raw/compressed" and info["type"] == bagio.COMPRESSED
    scan = bagio.scan_camera(tmp_path / "bag")
    assert scan.compressed and scan.annotation is None and scan.images[0].stamp == 5.0
    rgb = bagio.decode_rgb(next(bagio.iter_camera(scan))[1], scan.msgtype)
    assert np.abs(rgb.astype(int) - frames_of(video)[0][1]).mean() < 4  # jpeg
    with pytest.raises(BagError, match="already exists"):
        bag_from_video(video, tmp_path / "bag")


def _bag(path, topics, store=None):
    """A bag with {topic: (type, [messages])}; message = (log_ns, msg object)."""
    store = store or typestore()
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        for topic, (msgtype, msgs) in topics.items():
            conn = writer.add_connection(topic, msgtype, typestore=store)
            for log_ns, msg in msgs:
                writer.write(conn, log_ns, bytes(store.serialize_cdr(msg, msgtype)))
    return path


def _camera_bag(path, stamps):
    """Images received in this order (log time 0.1 s apart) with these header stamps."""
    frames = [
        (int(round(s * 1e9)), np.full((24, 32, 3), 10 * i % 255, np.uint8), 10**9 + i * 10**8)
        for i, s in enumerate(stamps)
    ]
    write_camera_bag(path, frames, frame_id="cam")
    return path


def test_truncated_bag_is_a_clear_error(tmp_path):
    bag = _camera_bag(tmp_path / "bag", [0.1 * i for i in range(40)])
    mcap = next(bag.glob("*.mcap"))
    data = mcap.read_bytes()
    mcap.write_bytes(data[: len(data) * 2 // 3])  # a recorder killed mid-write
    with pytest.raises(BagError) as err:
        bagio.scan_camera(bag)  # the camera topic is named from metadata.yaml
    text = str(err.value)
    assert str(bag) in text and "topic /camera/image_raw" in text and "truncated" in text
    # the bare .mcap file too
    with pytest.raises(BagError, match="truncated"):
        bagio.scan_camera(mcap)


def test_bag_without_image_topic_names_bag_and_topics(tmp_path):
    store = typestore()
    Response = store.types["live_ros/msg/Response"]
    Header = store.types["std_msgs/msg/Header"]
    Time = store.types["builtin_interfaces/msg/Time"]
    msg = Response(
        header=Header(stamp=Time(sec=1, nanosec=0), frame_id="camera"),
        response_id=1,
        query_id=0,
        kind="narration",
        text="hi",
        final=True,
        video_time=0.0,
        latency=np.float32(0.1),
    )
    bag = _bag(tmp_path / "bag", {"/live/response": ("live_ros/msg/Response", [(10**9, msg)])})
    with pytest.raises(BagError) as err:
        bagio.scan_camera(bag)
    text = str(err.value)
    assert str(bag) in text and "no image topic" in text and "/live/response (live_ros/msg/Response)" in text
    assert "bag-from-video" in text
    with pytest.raises(BagError, match=r"no topic /camera/image_raw; its topics: /live/response"):
        bagio.scan_camera(bag, "/camera/image_raw")
    with pytest.raises(BagError, match="cannot be played as a camera"):
        bagio.scan_camera(bag, "/live/response")


def test_unknown_type_is_named(tmp_path):
    store = get_typestore(Stores.ROS2_KILTED)
    store.register(get_types_from_msg("int32 value\nstring label", "my_msgs/msg/Thing"))
    Thing = store.types["my_msgs/msg/Thing"]
    bag = _bag(tmp_path / "bag", {"/thing": ("my_msgs/msg/Thing", [(10**9, Thing(value=3, label="x"))])}, store)
    with pytest.raises(BagError) as err:
        bagio.scan_camera(bag)
    assert str(bag) in str(err.value) and "/thing (my_msgs/msg/Thing)" in str(err.value)
    with pytest.raises(BagError) as err:
        bagio.scan_camera(bag, "/thing")
    assert "/thing has type my_msgs/msg/Thing" in str(err.value) and str(bag) in str(err.value)


def test_gaps_reordered_and_repeated_stamps_are_reported(tmp_path):
    stamps = [0.0, 0.1, 0.2, 0.3, 0.8, 0.7, 0.9, 0.9, 1.0]
    scan = bagio.scan_camera(_camera_bag(tmp_path / "bag", stamps))
    assert [im.stamp for im in scan.images] == pytest.approx(stamps)  # bag order kept, nothing dropped
    r = scan.report
    assert [g[0] for g in r.gaps] == [4] and r.gaps[0][3] == pytest.approx(0.5)
    assert [x[0] for x in r.reordered] == [5] and [x[0] for x in r.repeated] == [7]
    lines = "\n".join(r.lines())
    assert "gap" in lines and "backwards" in lines and "repeated" in lines


def test_warmup_images_of_an_earlier_replay_are_left_out(tmp_path):
    """A bag recorded during a replay holds the player's warm-up images: readers skip them."""
    from live_ros.bags.videobag import image_message

    store = typestore()
    images = [(99.0, bagio.WARMUP_FRAME_ID), (1.0, "cam"), (1.5, "cam")]
    with Writer(tmp_path / "mixed", version=9, storage_plugin=StoragePlugin.MCAP) as w:
        conn = w.add_connection("/camera/image_raw", bagio.IMAGE, typestore=store)
        for i, (stamp, frame_id) in enumerate(images):
            _, msg = image_message(np.zeros((8, 8, 3), np.uint8), int(stamp * 1e9), frame_id)
            w.write(conn, i, bytes(store.serialize_cdr(msg, bagio.IMAGE)))
    scan = bagio.scan_camera(tmp_path / "mixed")
    assert [im.stamp for im in scan.images] == [1.0, 1.5] and scan.report.skipped_warmup == 1
    assert [img.order for img, _ in bagio.iter_camera(scan)] == [0, 1]
    raw = next(bagio.iter_camera(scan))[1]
    again = store.deserialize_cdr(bagio.restamp(raw, bagio.IMAGE, 7_250_000_000, "x"), bagio.IMAGE)
    assert (again.header.stamp.sec, again.header.stamp.nanosec, again.header.frame_id) == (7, 250_000_000, "x")


def test_plan_follows_the_sampling_rule():
    stamps = [1000 + 0.1 * i for i in range(50)]
    plans = plan_frames(stamps, 2.0)
    assert [p.order for p in plans if p.sampled] == sample_indices(stamps, 2.0)
    assert all(p.acked == p.sampled for p in plans)
    # backwards: camera_subscriber restarts its grid, live_llm refuses frames older than its newest
    back = plan_frames([10.0, 10.5, 11.0, 10.2, 10.7, 11.5], 2.0)
    assert [p.sampled for p in back] == [True, True, True, True, True, True]
    assert [p.acked for p in back] == [True, True, True, False, False, True]
    assert "restarts" in back[3].note and "refused" in back[3].note
    # an image camera_subscriber cannot convert does not move its grid: the next one is taken
    skip = plan_frames([0.0, 0.5, 0.6, 1.0], 2.0, convertible=lambda i: i != 1)
    assert [p.sampled for p in skip] == [True, False, True, True]


def test_questions_file_and_slots(tmp_path):
    path = tmp_path / "q.yaml"
    path.write_text(
        "- {time: 3.0, text: 'What now?'}\n- {time: 1.0, text: Tell me when the cat leaves., "
        "expected: The cat leaves.}\n"
    )
    qs = load_questions(path)
    assert [(q.time, q.expected) for q in qs] == [(1.0, "The cat leaves."), (3.0, None)]
    assert question_slots([0.0, 0.5, 1.0, 1.5, 2.0], qs) == [3, 5]
    (tmp_path / "bad.json").write_text(json.dumps([{"text": "no time"}]))
    with pytest.raises(QuestionsError, match="entry 1 needs 'time'"):
        load_questions(tmp_path / "bad.json")


def test_bag_from_video_stamps_are_the_same_on_every_run(clip, tmp_path):
    """Without --start-stamp: the video's creation_time, else a fixed start far from 0 (a
    1970 creation time counts as none), so two runs write identical stamps."""
    import av

    from live_ros.bags.videobag import DEFAULT_START_STAMP

    video, _, _ = clip
    runs = []
    for name in ("a", "b"):
        info = bag_from_video(video, tmp_path / name)
        runs.append([(im.sec, im.nanosec, im.log_ns) for im in bagio.scan_camera(tmp_path / name).images])
        assert info["start_stamp"] == DEFAULT_START_STAMP and "no creation_time" in info["start_from"]
    assert runs[0] == runs[1] and runs[0][0][:2] == (int(DEFAULT_START_STAMP), 0)

    def with_creation_time(path, when):
        with av.open(str(video)) as src, av.open(str(path), "w") as dst:
            dst.metadata["creation_time"] = when
            stream = dst.add_stream_from_template(src.streams.video[0])
            for packet in src.demux(src.streams.video[0]):
                if packet.dts is not None:
                    packet.stream = stream
                    dst.mux(packet)
        with av.open(str(path)) as check:
            assert check.metadata.get("creation_time"), "the muxer dropped creation_time"
        return path

    dated = bag_from_video(with_creation_time(tmp_path / "dated.mp4", "2021-05-06T07:08:09.000000Z"), tmp_path / "c")
    assert dated["start_stamp"] == 1620284889.0 and "creation_time" in dated["start_from"]
    old = bag_from_video(with_creation_time(tmp_path / "old.mkv", "1970-01-01T00:00:00.000000Z"), tmp_path / "d")
    assert old["start_stamp"] == DEFAULT_START_STAMP and "not usable" in old["start_from"]
