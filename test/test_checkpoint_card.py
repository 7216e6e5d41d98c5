"""The committed embedded checkpoint against its model card: the first held-out streams of
the card's evaluation (same generator, split and seed, so the same videos and turns) are
rendered and extracted here, and `live-ros evaluate` gives the card's per-stream metrics
for them."""

from __future__ import annotations

import json
import math

import pytest

from live_ros.model.presets import EMBEDDED_CHECKPOINT

pytestmark = pytest.mark.slow

CARD = EMBEDDED_CHECKPOINT / "metrics.json"
STREAMS = 2


def _cli(argv) -> int:
    from live_ros.cli import main

    return main([str(a) for a in argv])


@pytest.mark.xfail(
    strict=False,
    reason="the eval split now draws from 24 named objects plus the never-trained ones "
    "(live_ros/data/world_splits.py): the generator no longer gives the 8-object streams the "
    "committed card was measured on, until the checkpoint is retrained on the new vocabulary",
)
def test_evaluate_reproduces_the_model_card(tmp_path, capsys):
    card = json.loads(CARD.read_text())
    rows = card["per_stream"][:STREAMS]
    assert (
        _cli(
            [
                "generate",
                "world",
                "--split",
                "eval",
                "--streams",
                STREAMS,
                "--seed",
                1,
                "--out",
                tmp_path / "eval",
                "--quiet",
            ]
        )
        == 0
    )
    ids = [json.loads(line)["video_id"] for line in (tmp_path / "eval" / "streams.jsonl").read_text().splitlines()]
    assert ids == [r["video_id"] for r in rows], "the generator no longer gives the card's held-out streams"
    assert _cli(["extract", tmp_path / "eval" / "videos", "--out", tmp_path / "features", "--quiet"]) == 0
    out = tmp_path / "metrics.json"
    assert (
        _cli(
            [
                "evaluate",
                tmp_path / "eval" / "streams.jsonl",
                "--features",
                tmp_path / "features",
                "--preset",
                "embedded",
                "--theta",
                card["settings"]["theta"],
                "--json",
                out,
            ]
        )
        == 0
    )
    got = {r["video_id"]: r for r in json.loads(out.read_text())["per_stream"]}
    for want in rows:
        have = got[want["video_id"]]
        assert have["tokens"] == want["tokens"] and have["frames"] == want["frames"]
        # fp16 features and fp32 vs. merged-LoRA arithmetic: small drift. A frame decision can
        # sit within a hundredth of a logit of the threshold (world-eval-s1-00001 has one) and
        # flip from run to run; that changes one turn's timing, so one turn per stream may
        # differ, and the stream's timing metrics are compared only when none does.
        keys = ("frame_diff", "frame_diff_theta", "lm_correct")
        flipped = [
            (w["turn"], [(k, h[k], w[k]) for k in keys if h[k] != w[k]])
            for h, w in zip(have["per_turn"], want["per_turn"], strict=True)
            if any(h[k] != w[k] for k in keys)
        ]
        assert len(flipped) <= 1, (want["video_id"], flipped)
        compare = ("lm_ppl",) if flipped else ("lm_ppl", "time_diff", "time_diff_theta", "fluency", "lm_correctness")
        for key in compare:
            a, b = have[key], want[key]
            if a is None or b is None:
                assert a is b, (want["video_id"], key, a, b)
                continue
            assert math.isclose(a, b, rel_tol=0.03, abs_tol=0.02), (want["video_id"], key, a, b)


def test_the_card_describes_its_live_config():
    """The card's "Settings" paragraph and base-weights lines match live_config.json."""
    from live_ros.model.config import LiveConfig

    card = " ".join((EMBEDDED_CHECKPOINT / "README.md").read_text().split())  # line breaks as spaces
    config = LiveConfig.from_pretrained(EMBEDDED_CHECKPOINT)
    for fact in (
        f"encoder id `{config.encoder_id}`",
        "`live_config.json` (`live_ros/model/config.py: LiveConfig`, format_version 2)",
        f"weights tag `{config.encoder.weights_tag}`, {config.frame_resolution} px, "
        f"{config.frame_num_tokens} tokens per frame",
        f"{config.vision_hidden_size}-d frame tokens, {config.frame_fps:g} fps",
        f"stream weight {config.stream_weight}",
        f"r={config.lora.r}, alpha={config.lora.alpha}",
    ):
        assert fact in card, fact
