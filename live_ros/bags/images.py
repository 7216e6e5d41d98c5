"""Camera images as arrays: ``sensor_msgs/Image`` and ``CompressedImage`` (any object with
their fields: rclpy messages, or rosbags' deserialized ones) to HxWx3 uint8 RGB. Pure
numpy and PIL, no rclpy: the camera nodes (through :mod:`live_ros.ros.convert`) and the
bag reader (:func:`live_ros.bags.bagio.decode_rgb`) convert with the same functions.

Every refusal raises :class:`ConversionError` whose message names the problem, where it
came from, and how to fix it; nodes put that text into ``Status.last_error``.
"""

from __future__ import annotations

import io

import numpy as np

# encoding -> channels of the stored layout
ENCODINGS = {
    "rgb8": 3,
    "bgr8": 3,
    "rgba8": 4,
    "bgra8": 4,
    "mono8": 1,
    "yuv422": 2,
    "uyvy": 2,
    "yuv422_yuy2": 2,
    "yuyv": 2,
}
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
        raise ConversionError(
            f"{where}: encoding '{msg.encoding}' is not supported; publish one of "
            f"{', '.join(SUPPORTED)} (or CompressedImage jpeg/png)"
        )
    if h == 0 or w == 0:
        raise ConversionError(f"{where}: empty image ({w}x{h}); check the camera driver")
    if max_pixels and h * w > max_pixels:
        raise ConversionError(
            f"{where}: {w}x{h} = {h * w} pixels is over max_image_pixels={max_pixels}; resize at "
            f"the camera (or raise max_image_pixels)"
        )
    ch = ENCODINGS[enc]
    if ch == 2 and w % 2:
        raise ConversionError(f"{where}: {enc} needs an even width, got {w}")
    row = w * ch
    if step < row:
        raise ConversionError(
            f"{where}: step {step} is smaller than width x bytes per pixel = {row}; the message "
            f"header does not match its encoding '{msg.encoding}'"
        )
    data = np.frombuffer(msg.data, dtype=np.uint8) if not isinstance(msg.data, np.ndarray) else msg.data
    if data.size < step * h:
        raise ConversionError(
            f"{where}: {data.size} bytes of data but step x height = {step * h}; the image is "
            f"truncated or its step is wrong"
        )
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
                raise ConversionError(
                    f"{where}: {img.width}x{img.height} is over max_image_pixels={max_pixels}; "
                    f"resize at the camera (or raise max_image_pixels)"
                )
            return np.asarray(img.convert("RGB"))
    except ConversionError:
        raise
    except Exception as err:  # PIL raises many kinds
        raise ConversionError(
            f"{where}: cannot decode CompressedImage (format '{msg.format}'): {err}; publish jpeg or png"
        ) from err
