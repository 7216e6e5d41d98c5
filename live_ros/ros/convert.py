"""Conversions between ROS messages and arrays (cv_bridge is not available here).

The camera images' pixel conversions (:func:`image_to_rgb`, :func:`compressed_to_rgb`)
need no rclpy and live in :mod:`live_ros.bags.images`, shared with the bag reader.
Every refusal raises :class:`ConversionError` whose message names the problem, where it
came from, and how to fix it; nodes put that text into ``Status.last_error``.
"""

from __future__ import annotations

import array
import struct

import numpy as np

from live_ros.bags.images import ConversionError, compressed_to_rgb, image_to_rgb

__all__ = [
    "ConversionError",
    "image_to_rgb",
    "compressed_to_rgb",
    "rgb_to_image",
    "tokens_to_msg",
    "msg_to_tokens",
    "cdr_header_stamp",
    "cdr_image_size",
    "stamp_to_seconds",
    "seconds_to_stamp",
]


def rgb_to_image(rgb: np.ndarray, stamp=None, frame_id: str = ""):
    """HxWx3 uint8 RGB -> ``sensor_msgs/Image`` rgb8 (bytes assigned in one go: fast)."""
    from sensor_msgs.msg import Image

    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    msg = Image(height=rgb.shape[0], width=rgb.shape[1], encoding="rgb8", is_bigendian=0, step=rgb.shape[1] * 3)
    msg.data = rgb.tobytes()
    if stamp is not None:
        msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    return msg


def tokens_to_msg(tokens, header, frame_index: int, encoder: str):
    """Frame tokens [N, D] -> ``live_ros/FrameTokens``."""
    from live_ros.msg import FrameTokens

    arr = np.ascontiguousarray(np.asarray(tokens, dtype=np.float32))
    msg = FrameTokens(frame_index=int(frame_index), encoder=encoder, num_tokens=arr.shape[0], dim=arr.shape[1])
    msg.header = header
    msg.data = array.array("f", arr.tobytes())
    return msg


def msg_to_tokens(msg, where: str = "frame_tokens") -> np.ndarray:
    """``live_ros/FrameTokens`` -> float32 [N, D], checked for shape and finite values."""
    n, d = int(msg.num_tokens), int(msg.dim)
    data = (
        np.frombuffer(msg.data, dtype=np.float32)
        if isinstance(msg.data, array.array)
        else np.asarray(msg.data, dtype=np.float32)
    )
    if n == 0 or d == 0 or data.size != n * d:
        raise ConversionError(
            f"{where}: frame {msg.frame_index} has {data.size} values for num_tokens x dim = "
            f"{n} x {d}; the publisher must fill data with num_tokens x dim floats"
        )
    if not np.isfinite(data).all():
        raise ConversionError(
            f"{where}: frame {msg.frame_index} contains NaN or inf; check the encoder (weights, input normalisation)"
        )
    return data.reshape(n, d).copy()


def cdr_header_stamp(data: bytes, where: str = "message") -> float:
    """The ``header.stamp`` (seconds) of a serialized message whose first field is a
    ``std_msgs/Header`` (Image, CompressedImage), read from the CDR bytes without
    deserializing the rest: the 4-byte encapsulation header, then int32 sec, uint32 nanosec."""
    if len(data) < 12 or data[0] != 0 or data[1] not in (0, 1):
        raise ConversionError(f"{where}: {len(data)} bytes are not a CDR-serialized message with a header")
    sec, nanosec = struct.unpack_from("<iI" if data[1] == 1 else ">iI", data, 4)
    return sec + nanosec * 1e-9


def cdr_image_size(data: bytes, where: str = "image") -> tuple[int, int]:
    """``(width, height)`` of a serialized ``sensor_msgs/Image``, read from the CDR bytes
    without deserializing its pixels (so an oversize image can be refused before it is
    copied): after the encapsulation header, ``header`` (int32 sec, uint32 nanosec, string
    frame_id as uint32 length + bytes), then uint32 height and uint32 width, aligned to 4
    bytes from the end of the encapsulation header."""
    if len(data) < 16 or data[0] != 0 or data[1] not in (0, 1):
        raise ConversionError(f"{where}: {len(data)} bytes are not a CDR-serialized message with a header")
    order = "<" if data[1] == 1 else ">"
    (id_len,) = struct.unpack_from(order + "I", data, 12)
    offset = 16 + id_len
    offset += -(offset - 4) % 4  # alignment counts from the end of the 4-byte encapsulation header
    if offset + 8 > len(data):
        raise ConversionError(
            f"{where}: {len(data)} bytes are too short for an Image (frame_id length {id_len}); "
            f"is the publisher's type sensor_msgs/Image?"
        )
    height, width = struct.unpack_from(order + "II", data, offset)
    return int(width), int(height)


def stamp_to_seconds(stamp) -> float:
    return float(stamp.sec) + float(stamp.nanosec) * 1e-9


def seconds_to_stamp(t: float):
    from builtin_interfaces.msg import Time

    sec = int(np.floor(t))
    return Time(sec=sec, nanosec=int(round((t - sec) * 1e9)) % 1_000_000_000)
