"""Conversions between ROS messages and arrays (cv_bridge is not available here).

Every refusal raises :class:`ConversionError` whose message names the problem, where it
came from, and how to fix it; nodes put that text into ``Status.last_error``.
"""

from __future__ import annotations

import array
import io
import struct

import numpy as np

# encoding -> channels of the stored layout
ENCODINGS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1,
             "yuv422": 2, "uyvy": 2, "yuv422_yuy2": 2, "yuyv": 2}
SUPPORTED = tuple(ENCODINGS)


class ConversionError(ValueError):
    """A message that cannot be converted; the text says what, where, and how to fix it."""


def _yuv422_to_rgb(raw: np.ndarray, height: int, width: int, order: str) -> np.ndarray:
    """Packed 4:2:2 (two pixels in 4 bytes) to RGB, BT.601 limited range."""
    px = raw.reshape(height, width // 2, 4).astype(np.float32)
    if order == "uyvy":
        u, y0, v, y1 = px[..., 0], px[..., 1], px[..., 2], px[..., 3]
    else:  # yuyv
        y0, u, y1, v = px[..., 0], px[..., 1], px[..., 2], px[..., 3]
    y = np.stack([y0, y1], axis=-1).reshape(height, width) - 16.0
    u = np.repeat(u, 2, axis=1) - 128.0
    v = np.repeat(v, 2, axis=1) - 128.0
    rgb = np.stack([1.164 * y + 1.596 * v, 1.164 * y - 0.392 * u - 0.813 * v, 1.164 * y + 2.017 * u], axis=-1)
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)


def image_to_rgb(msg, max_pixels: int = 0, where: str = "image") -> np.ndarray:
    """``sensor_msgs/Image`` -> HxWx3 uint8 RGB (a copy), for the encodings in SUPPORTED."""
    enc = msg.encoding.lower()
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if enc not in ENCODINGS:
        raise ConversionError(f"{where}: encoding '{msg.encoding}' is not supported; publish one of "
                              f"{', '.join(SUPPORTED)} (or CompressedImage jpeg/png)")
    if h == 0 or w == 0:
        raise ConversionError(f"{where}: empty image ({w}x{h}); check the camera driver")
    if max_pixels and h * w > max_pixels:
        raise ConversionError(f"{where}: {w}x{h} = {h * w} pixels is over max_image_pixels={max_pixels}; resize at "
                              f"the camera (or raise max_image_pixels)")
    ch = ENCODINGS[enc]
    if ch == 2 and w % 2:
        raise ConversionError(f"{where}: {enc} needs an even width, got {w}")
    row = w * ch
    if step < row:
        raise ConversionError(f"{where}: step {step} is smaller than width x bytes per pixel = {row}; the message "
                              f"header does not match its encoding '{msg.encoding}'")
    data = np.frombuffer(msg.data, dtype=np.uint8) if not isinstance(msg.data, np.ndarray) else msg.data
    if data.size < step * h:
        raise ConversionError(f"{where}: {data.size} bytes of data but step x height = {step * h}; the image is "
                              f"truncated or its step is wrong")
    pixels = data[: step * h].reshape(h, step)[:, :row]
    if enc in ("rgb8", "bgr8", "rgba8", "bgra8"):
        img = pixels.reshape(h, w, ch)[..., :3]
        return np.ascontiguousarray(img[..., ::-1] if enc.startswith("bgr") else img)
    if enc == "mono8":
        return np.repeat(pixels.reshape(h, w, 1), 3, axis=2)
    return _yuv422_to_rgb(pixels, h, w, "uyvy" if enc in ("yuv422", "uyvy") else "yuyv")


def compressed_to_rgb(msg, max_pixels: int = 0, where: str = "image") -> np.ndarray:
    """``sensor_msgs/CompressedImage`` (jpeg, png) -> HxWx3 uint8 RGB."""
    from PIL import Image as PILImage

    try:
        with PILImage.open(io.BytesIO(bytes(msg.data))) as img:
            if max_pixels and img.width * img.height > max_pixels:
                raise ConversionError(f"{where}: {img.width}x{img.height} is over max_image_pixels={max_pixels}; "
                                      f"resize at the camera (or raise max_image_pixels)")
            return np.asarray(img.convert("RGB"))
    except ConversionError:
        raise
    except Exception as err:  # PIL raises many kinds
        raise ConversionError(f"{where}: cannot decode CompressedImage (format '{msg.format}'): {err}; publish "
                              f"jpeg or png") from err


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
    data = np.frombuffer(msg.data, dtype=np.float32) if isinstance(msg.data, array.array) else \
        np.asarray(msg.data, dtype=np.float32)
    if n == 0 or d == 0 or data.size != n * d:
        raise ConversionError(f"{where}: frame {msg.frame_index} has {data.size} values for num_tokens x dim = "
                              f"{n} x {d}; the publisher must fill data with num_tokens x dim floats")
    if not np.isfinite(data).all():
        raise ConversionError(f"{where}: frame {msg.frame_index} contains NaN or inf; check the encoder "
                              f"(weights, input normalisation)")
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
        raise ConversionError(f"{where}: {len(data)} bytes are too short for an Image (frame_id length {id_len}); "
                              f"is the publisher's type sensor_msgs/Image?")
    height, width = struct.unpack_from(order + "II", data, offset)
    return int(width), int(height)


def stamp_to_seconds(stamp) -> float:
    return float(stamp.sec) + float(stamp.nanosec) * 1e-9


def seconds_to_stamp(t: float):
    from builtin_interfaces.msg import Time

    sec = int(np.floor(t))
    return Time(sec=sec, nanosec=int(round((t - sec) * 1e9)) % 1_000_000_000)
