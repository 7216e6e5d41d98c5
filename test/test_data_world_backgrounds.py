"""The world's backgrounds: every kind renders, the same generator gives the same pixels,
training and evaluation kinds are disjoint, and an unknown kind is refused by name."""

from __future__ import annotations

import numpy as np
import pytest

from live_ros.data.world_backgrounds import EVAL_BACKGROUNDS, TRAIN_BACKGROUNDS, render_background


def test_every_kind_renders_deterministically():
    assert not set(TRAIN_BACKGROUNDS) & set(EVAL_BACKGROUNDS)
    for kind in TRAIN_BACKGROUNDS + EVAL_BACKGROUNDS:
        a = render_background(kind, 64, 48, np.random.default_rng(3))
        b = render_background(kind, 64, 48, np.random.default_rng(3))
        c = render_background(kind, 64, 48, np.random.default_rng(4))
        assert a.shape == (48, 64, 3) and a.dtype == np.uint8, kind
        assert np.array_equal(a, b) and not np.array_equal(a, c), kind
        assert a.std() > 1.0, f"{kind}: a flat background"


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="gradient"):
        render_background("plaid", 64, 48, np.random.default_rng(0))
