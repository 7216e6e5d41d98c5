"""The baselines of the paper's Table 1 (live_ros/engine/baselines.py) feed the sequences
of the grammar (live_ros/model/format.py), on the tiny models of test_engine.py."""

from __future__ import annotations

from test_engine import SILENT, finals, one_thread, steer, tiny  # noqa: F401  (one_thread: autouse fixture)

from live_ros.engine import EngineConfig, InterleavedDialogue, PerFrameDialogue, SilentEvent
from live_ros.model.format import Turn


def test_baselines_feed_the_paper_sequences():
    model, tokens = tiny()
    steer(model, tokens)
    frames = [SILENT] * 4
    cfg = EngineConfig(record_ids=True, cache_budget=None)
    per_frame = PerFrameDialogue(model, tokens, cfg)
    events = [e for f in frames for e in per_frame.take_frame(f)]
    assert all(isinstance(e, SilentEvent) for e in events)  # every turn decoded eos
    per_frame._feed([])  # the last eos turn, pending
    expected = tokens.encode([Turn("stream", num_frames=4), Turn("assistant", "")], mode="per_frame").input_ids
    assert per_frame.fed_ids == expected
    inter = InterleavedDialogue(model, tokens, cfg)
    events = [e for f in frames for e in inter.take_frame(f)]
    assert len(finals(events)) == 4
    inter._feed([])
    assert (
        inter.fed_ids
        == tokens.encode([Turn("stream", num_frames=4), Turn("assistant", "")], mode="interleaved").input_ids
    )
    two = PerFrameDialogue(model, tokens, cfg, eos_with_next_frame=False)
    for f in frames:
        two.take_frame(f)
    assert two.fed_ids == expected
