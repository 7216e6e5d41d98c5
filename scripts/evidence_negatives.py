"""Outlier exposure for the object evidence head (live_ros/model/evidence.py): does showing
the classifier real photos that hold none of the trained objects (people, streets, rooms,
patterns) as "something I can't name" stop it from naming a trained object on real footage?

The head is refitted on the training frames plus views of such photos (random crops, each
labelled generic + "something", nothing named), and swapped into a trained checkpoint in
place of its classifier (the LLM, its LoRA and the class names stay as trained: the classes
mean the same, only their calibration changes). Then score the new folder like any other:

    .venv/bin/python scripts/evidence_negatives.py --checkpoint runs/world34e/stage5/final \\
        --out runs/world34e-neg/final
    scripts/real_clips.sh data/real34-neg -- --set live_llm.checkpoint=runs/world34e-neg/final

The photos come from Debian's opencv-doc examples (`live_ros/assets.py`); none is a source of
the world catalog (live_ros/data/assets/objects.json) or of the real test clips
(media/real/).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np

NEGATIVES = (
    "basketball1.png",
    "basketball2.png",
    "leuvenA.jpg",
    "leuvenB.jpg",
    "aero1.jpg",
    "aero3.jpg",
    "box_in_scene.png",
    "graf1.png",
    "left01.jpg",
    "right01.jpg",
    "blox.jpg",
    "cards.png",
    "Blender_Suzanne1.jpg",
    "ela_original.jpg",
    "pic1.png",
    "pic3.png",
)


def views(image: np.ndarray, count: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``count`` random crops (20-100 % of each side) of an RGB image, half of them mirrored."""
    h, w = image.shape[:2]
    out = []
    for _ in range(count):
        ch, cw = int(h * rng.uniform(0.2, 1.0)), int(w * rng.uniform(0.2, 1.0))
        y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        crop = image[y : y + ch, x : x + cw]
        out.append(np.ascontiguousarray(crop[:, ::-1] if rng.random() < 0.5 else crop))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="a checkpoint folder trained with the evidence head")
    parser.add_argument("--out", required=True, help="the new checkpoint folder (a copy, its classifier refitted)")
    parser.add_argument("--train", default="data/world34/train", help="the training split (streams.jsonl, features)")
    parser.add_argument("--val", default="data/world34/eval", help="a held-out split to report on")
    parser.add_argument("--views", type=int, default=40, help="crops per photo (default 40)")
    parser.add_argument("--weight", type=int, default=10, help="times each negative view is repeated in the fit")
    args = parser.parse_args()

    from live_ros.runtime import prepare_torch

    prepare_torch()
    import torch
    from safetensors.torch import load_file, save_file

    from live_ros.data.world_objects import source_image
    from live_ros.model.config import LiveConfig
    from live_ros.model.sources import load_encoder
    from live_ros.training.evidence import FrameSet, fit, load_frames, report

    torch.set_num_threads(2)
    config = LiveConfig.from_pretrained(args.checkpoint)
    settings = config.evidence
    if settings is None:
        raise SystemExit(f"{args.checkpoint} has no evidence head: train one with model.evidence")
    encoder = load_encoder("embedded")
    rng = np.random.default_rng(0)
    tokens = []
    for name in NEGATIVES:
        encoder.reset()
        tokens.append(encoder.encode(views(source_image(f"opencv:{name}"), args.views, rng)).float())
    negatives = torch.cat(tokens)[..., : settings.input_dim]
    targets = torch.zeros(len(negatives), len(settings.classes))
    targets[:, -2:] = 1.0  # generic + "something": an object, not one of ours
    print(f"{len(negatives)} negative views of {len(NEGATIVES)} photos")

    train, _, _ = load_frames(args.train, settings.classes)
    both = FrameSet(
        torch.cat([train.features, negatives.repeat(args.weight, 1, 1)]),
        torch.cat([train.targets, targets.repeat(args.weight, 1)]),
        train.streams,
    )
    head = fit(both, settings)
    val, _, _ = load_frames(args.val, settings.classes)
    print(report(head, val, settings, f"held out ({args.val})"))
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(args.checkpoint, out)
    state = load_file(str(out / "adapter_model.safetensors"))
    replaced = 0
    for key in state:
        if ".evidence." in key and ".classifier." in key:
            part = key.rsplit(".", 1)[1]
            state[key] = head.state_dict()[part].to(state[key].dtype)
            replaced += 1
    save_file(state, str(out / "adapter_model.safetensors"), metadata={"format": "pt"})
    print(f"{out}: {replaced} classifier tensors replaced")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
