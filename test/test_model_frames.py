"""Frame sampling rule and preprocessing (live_ros.model.frames)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import skimage.data
import torch

from live_ros.model.frames import EPSILON, FrameSampler, letterbox, preprocess, sample_indices, to_pixels


def reference_indices(stamps, fps):
    """The rule restated as a plain loop: take the first frame at or after the next tick; the
    tick after a taken frame is the first grid tick strictly after its stamp."""
    taken, t0, k = [], None, 0
    for i, s in enumerate(stamps):
        if t0 is None:
            t0 = s
        elif s < t0 + k / fps - EPSILON:
            continue
        taken.append(i)
        while t0 + k / fps <= s + EPSILON:
            k += 1
    return taken


# ------------------------------------------------------------------------------ sampling


def test_30fps_to_2fps_takes_every_15th_frame():
    stamps = [i / 30 for i in range(91)]
    assert sample_indices(stamps, 2) == [0, 15, 30, 45, 60, 75, 90]
    # Stamps accumulated in float (rounding errors) give the same frames.
    assert sample_indices(np.cumsum([0.0] + [1 / 30] * 90).tolist(), 2) == [0, 15, 30, 45, 60, 75, 90]
    # A stream that does not start at 0: the grid starts at its first stamp.
    assert sample_indices([1000.2 + i / 30 for i in range(31)], 2) == [0, 15, 30]


def test_irregular_stamps_and_gaps_hand_checked():
    # Ticks at 0, 0.5, 1.0, ...; after a gap only one frame is taken and the grid goes on
    # from the first tick after it (2.35 -> next tick 2.5, not 2.85).
    stamps = [0.0, 0.1, 0.6, 0.7, 2.35, 2.4, 2.5, 2.9, 3.0, 3.01]
    assert sample_indices(stamps, 2) == [0, 2, 4, 6, 8]
    # Grid anchored at 100.25: 100.74 is just before the tick 100.75, 104.0 after a 3 s gap,
    # then the next tick is 104.25 (104.2 is before it, 104.76 after it).
    stamps = [100.25, 100.74, 100.75, 104.0, 104.2, 104.76]
    assert sample_indices(stamps, 2) == [0, 2, 3, 5]


def test_equal_stamps_take_one_frame():
    assert sample_indices([0.0, 0.0, 0.5, 0.5, 0.5, 1.0], 2) == [0, 2, 5]


def test_epsilon_tolerance_on_ticks():
    # 0.4999995 is within 1e-6 of the tick 0.5: taken, and counts as that tick (next is 1.0).
    assert sample_indices([0.0, 0.4999995, 0.5, 0.9999995], 2) == [0, 1, 3]
    assert sample_indices([0.0, 0.49999], 2) == [0]


def test_backwards_stamps_raise():
    sampler = FrameSampler(2)
    assert sampler.accept(1.0)
    with pytest.raises(ValueError, match=r"backwards: 0\.900000 s after 1\.000000 s.*reset\(\)"):
        sampler.accept(0.9)
    with pytest.raises(ValueError, match="backwards"):
        sample_indices([0.0, 0.6, 0.5], 2)
    sampler.reset()  # a new stream may start earlier
    assert sampler.accept(0.5) and sampler.next_tick == pytest.approx(1.0)


@pytest.mark.parametrize("fps", [0, -1, math.inf, math.nan, "x"])
def test_bad_fps_rejected(fps):
    with pytest.raises(ValueError, match="fps must be a finite number > 0"):
        FrameSampler(fps)


def test_bad_stamp_rejected():
    with pytest.raises(ValueError, match="finite"):
        FrameSampler(2).accept(math.nan)


@pytest.mark.parametrize("fps", [2, 1, 5, 0.7])
def test_sampler_agrees_with_sample_indices_on_irregular_stamps(fps):
    rng = np.random.default_rng(int(fps * 10))
    steps = rng.exponential(0.08, size=2000)
    steps[rng.random(2000) < 0.02] *= 60  # gaps of several ticks
    steps[rng.random(2000) < 0.05] = 0.0  # repeated stamps
    stamps = (12.345 + np.concatenate([[0.0], np.cumsum(steps)])).tolist()
    sampler = FrameSampler(fps)
    streamed = [i for i, s in enumerate(stamps) if sampler.accept(s)]
    whole = sample_indices(stamps, fps)
    assert streamed == whole == reference_indices(stamps, fps)
    # Never two frames within one tick interval; gaps give one frame, not a burst.
    taken = np.array(stamps)[whole]
    assert np.all(np.diff(taken) > 0)
    ticks = np.floor((taken - stamps[0]) * fps + EPSILON * fps)
    assert np.all(np.diff(ticks) >= 1)


def test_sampler_next_tick():
    sampler = FrameSampler(2)
    assert sampler.next_tick is None
    assert sampler.accept(10.0) and sampler.next_tick == pytest.approx(10.5)
    assert sampler.accept(11.3) and sampler.next_tick == pytest.approx(11.5)


# ------------------------------------------------------------------------------ letterbox


def test_letterbox_wide_image_gets_black_bands_top_and_bottom():
    image = np.full((272, 640, 3), (200, 100, 50), dtype=np.uint8)  # 640x272, as bikes.mp4
    out = letterbox(image, 224)
    assert out.shape == (224, 224, 3) and out.dtype == np.uint8
    # 272 * 224 / 640 = 95.2 -> 95 rows, centred: 64 black rows above, 65 below.
    assert not out[:64].any() and not out[64 + 95 :].any()
    assert (out[64 : 64 + 95] == (200, 100, 50)).all()


def test_letterbox_tall_image_gets_bands_left_and_right():
    out = letterbox(np.full((300, 100, 3), 255, dtype=np.uint8), 224)
    # 100 * 224 / 300 = 74.67 -> 75 columns at 74..148.
    assert not out[:, :74].any() and not out[:, 74 + 75 :].any() and (out[:, 74 : 74 + 75] == 255).all()


def test_letterbox_real_photo_keeps_aspect_and_is_deterministic():
    cat = skimage.data.chelsea()  # 300x451
    out = letterbox(cat, 224)
    rows = np.flatnonzero(out.any(axis=(1, 2)))
    assert (rows[0], rows[-1] + 1) == (37, 37 + 149)  # 300 * 224 / 451 = 149.0
    assert abs(149 / 224 - 300 / 451) < 0.01
    np.testing.assert_array_equal(out, letterbox(cat, 224))
    # The mean colour survives the resize.
    assert np.abs(out[37:186].reshape(-1, 3).mean(0) - cat.reshape(-1, 3).mean(0)).max() < 2


def test_read_only_frames_from_a_message_buffer(recwarn):
    image = skimage.data.coffee()
    frozen = np.frombuffer(image.tobytes(), np.uint8).reshape(image.shape)  # as from a ROS Image
    assert not frozen.flags.writeable
    np.testing.assert_array_equal(letterbox(frozen, 64), letterbox(image, 64))
    torch.testing.assert_close(
        to_pixels(frozen[None, :64, :64], (0.5,) * 3, (0.5,) * 3),
        to_pixels(image[None, :64, :64], (0.5,) * 3, (0.5,) * 3),
    )
    assert not [w for w in recwarn if "not writable" in str(w.message)]


def test_letterbox_sizes():
    assert letterbox(np.zeros((10, 20, 3), np.uint8), 224).shape == (224, 224, 3)  # upscale
    thin = letterbox(np.full((1, 1000, 3), 9, np.uint8), 64)  # 1 row survives,
    assert (thin[31] == 9).all() and thin.sum() == 9 * 64 * 3  # at (64 - 1) // 2
    square = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    np.testing.assert_array_equal(letterbox(square, 64), square)  # identity


@pytest.mark.parametrize(
    "image, message",
    [
        (np.zeros((8, 8, 3), np.float32), "must be uint8 RGB, got float32.*astype"),
        (np.zeros((8, 8), np.uint8), r"HxWx3.*convert grayscale"),
        (np.zeros((8, 8, 4), np.uint8), r"HxWx3.*rgba"),
        (np.zeros((0, 8, 3), np.uint8), "empty"),
        ([[0, 0, 0]], "must be a numpy array"),
    ],
)
def test_letterbox_rejects_bad_images(image, message):
    with pytest.raises(ValueError, match=message):
        letterbox(image, 224)


def test_letterbox_rejects_bad_size():
    with pytest.raises(ValueError, match="positive int"):
        letterbox(np.zeros((8, 8, 3), np.uint8), 0)


# ------------------------------------------------------------------------------ pixels


def test_to_pixels_values_and_layout():
    frames = np.zeros((2, 4, 4, 3), np.uint8)
    frames[0, ..., 0] = 255  # red
    x = to_pixels(frames, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert x.shape == (2, 3, 4, 4) and x.dtype == torch.float32
    assert (x[0, 0] == 1).all() and (x[0, 1:] == -1).all() and (x[1] == -1).all()
    assert x.min() >= -1 and x.max() <= 1
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    y = to_pixels(list(frames), mean, std)
    expected = (frames[0, 0, 0] / 255 - np.array(mean)) / np.array(std)
    np.testing.assert_allclose(y[0, :, 0, 0].numpy(), expected, rtol=1e-6)


def test_to_pixels_rejects_unletterboxed_frames():
    with pytest.raises(ValueError, match="different sizes.*letterbox"):
        to_pixels([np.zeros((4, 4, 3), np.uint8), np.zeros((5, 5, 3), np.uint8)], (0.5,) * 3, (0.5,) * 3)
    with pytest.raises(ValueError, match="square.*preprocess"):
        to_pixels(np.zeros((1, 4, 5, 3), np.uint8), (0.5,) * 3, (0.5,) * 3)
    with pytest.raises(ValueError, match="no frames"):
        to_pixels([], (0.5,) * 3, (0.5,) * 3)


def test_preprocess_mixed_sizes():
    frames = [skimage.data.chelsea(), skimage.data.coffee(), np.zeros((7, 3, 3), np.uint8)]
    x = preprocess(frames, 96, (0.5,) * 3, (0.5,) * 3)
    assert x.shape == (3, 3, 96, 96) and x.dtype == torch.float32
    torch.testing.assert_close(x[0], to_pixels([letterbox(frames[0], 96)], (0.5,) * 3, (0.5,) * 3)[0])
    assert preprocess(np.zeros((2, 5, 9, 3), np.uint8), 16, (0.5,) * 3, (0.5,) * 3).shape == (2, 3, 16, 16)


def test_stamp_ahead_of_the_clock_is_refused_and_past_stamps_are_not():
    from live_ros.model.frames import stamp_ahead_error

    now = 1_800_000_000.0
    assert stamp_ahead_error(now + 0.9, now, 1.0) is None  # within the allowance
    assert stamp_ahead_error(12.5, now, 1.0) is None  # a 1970 bag on the system clock
    assert stamp_ahead_error(now - 86400 * 365, now, 1.0) is None  # any past stamp
    err = stamp_ahead_error(now + 6.0, now, 1.0, "camera image 3")
    assert err.startswith("camera image 3: stamp") and "6.000 s ahead" in err and "max_stamp_ahead=1" in err
    assert stamp_ahead_error(now + 6.0, now, 0.0) is None  # 0: the check is off
    assert stamp_ahead_error(now + 6.0, 0.0, 1.0) is None  # sim time before the first /clock
    assert stamp_ahead_error(5.0, 2.0, 1.0) is not None  # sim time: replay clock near 0
