"""The synthetic world's objects: a closed vocabulary split into named and unseen nouns,
and a clean cut-out of every crop of every object."""

from __future__ import annotations

import numpy as np
import pytest

from live_ros.data import world_objects


def test_vocabulary_and_cutouts():
    named, unseen = world_objects.named_objects(), world_objects.unseen_objects()
    assert {"cat", "coffee cup", "rocket", "astronaut", "horse", "motorcycle"} <= set(named)
    assert unseen and not set(named) & set(unseen)
    for noun, spec in world_objects.object_catalog().items():
        for crop in range(len(spec.crops)):
            rgb, alpha = world_objects.cutout(noun, crop)
            assert rgb.dtype == np.uint8 and rgb.shape[:2] == alpha.shape
            assert 0.2 < alpha.mean() <= 1.0 and alpha.max() == pytest.approx(1.0, abs=0.01), (noun, crop)
    assert world_objects.article("astronaut") == "an astronaut" and world_objects.article("cat") == "a cat"
