#!/usr/bin/env python
"""Object-name accuracy of a checkpoint on world streams, teacher forced: at every
response token that starts one of the world's nouns ("The cat appears.", "I see a coffee
cup."), is the model's most likely next token that noun's first token? Prints the
accuracy, per object, and the most common confusions.

    .venv/bin/python scripts/naming_accuracy.py CHECKPOINT STREAMS_JSONL FEATURES_DIR [--limit N]

e.g. ``live_ros/checkpoints/embedded data/world/eval/streams.jsonl data/world/eval/features``,
or the clips of ``live-ros generate grounding data/world/eval --out DIR`` (their features
paths are in the streams file) for recognition of what is on screen after 1-3 frames.
LM-PPL and LM-Correctness (``live-ros evaluate``) average over every response token, most
of them template words; this isolates the part that needs the frame tokens.
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("streams", type=Path)
    parser.add_argument("features", type=Path)
    parser.add_argument("--limit", type=int, default=None, help="only the first N streams")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    from live_ros import runtime

    runtime.prepare()  # the torchvision fix before transformers
    import torch

    from live_ros.assets import smollm2_dir
    from live_ros.data.streams import load_samples
    from live_ros.data.world_objects import object_catalog
    from live_ros.evaluation.offline import fit_context, load_stream_features
    from live_ros.model.checkpoint import load_checkpoint

    torch.set_num_threads(args.threads)
    loaded = load_checkpoint(args.checkpoint, llm=str(smollm2_dir()), with_encoder=False)
    model, tokens = loaded.model, loaded.tokens
    encoder_id = loaded.config.encoder_id
    model.eval()
    nouns = sorted(object_catalog())
    first = {token: noun for noun in nouns for token in tokens.first_token_ids([noun])}
    seen, right = collections.Counter(), collections.Counter()
    confusions = collections.Counter()
    for sample in load_samples(args.streams)[: args.limit]:
        feats, _, _ = load_stream_features(sample, args.features, expect_encoder=encoder_id)
        turns = sample.to_turns(min(int(feats.shape[0]), sample.num_frames))
        _, enc, _ = fit_context(tokens, turns, "streaming", 8192)
        with torch.inference_mode():
            logits = model(input_ids=torch.tensor([enc.input_ids]), frame_tokens=feats[: enc.num_frames]).logits[0]
        best = logits.argmax(-1).tolist()
        for role, start, end in enc.turn_spans:
            if role != "assistant":
                continue
            for pos in range(start + 1, end):
                truth = first.get(enc.input_ids[pos])
                if truth is None:
                    continue
                said = first.get(best[pos - 1], "other: " + tokens.decode([best[pos - 1]]))
                seen[truth] += 1
                right[truth] += said == truth
                if said != truth:
                    confusions[(truth, said)] += 1
    total = sum(seen.values())
    print(
        f"{args.checkpoint}: object-name accuracy {sum(right.values())}/{total} = "
        f"{sum(right.values()) / max(total, 1):.3f}"
    )
    print("per object:", ", ".join(f"{n} {right[n]}/{seen[n]}" for n in nouns if seen[n]))
    print(
        "most common confusions (truth -> said):",
        ", ".join(f"{t} -> {s} x{c}" for (t, s), c in confusions.most_common(8)),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
