"""A tiny training run's inputs for the training tests: a random base LLM folder (the real
SmolLM2 tokenizer), 4 training streams and 1 held-out stream with random features, and the
YAML config that trains on them (augmentation and dropout on)."""

from __future__ import annotations

from pathlib import Path

import torch
import yaml
from model_helpers import smollm2_tokenizer, tiny_model

from live_ros.data.features import FORMAT, save_features
from live_ros.data.streams import StreamSample, TimedTurn, save_samples

DIM, NTOK, ENC = 16, 2, "test/encoder@0:32px:1+1x1"  # 1 pooled + a 1x1 grid: 2 tokens per frame
ROOT = Path(__file__).resolve().parent.parent


def write_features(folder, video_id, num_frames, fps=2.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randn(num_frames, NTOK, DIM, generator=g).half()
    save_features(
        folder / f"{video_id}.safetensors",
        tokens,
        torch.arange(num_frames, dtype=torch.float64) / fps,
        {
            "format": FORMAT,
            "encoder_id": ENC,
            "fps": fps,
            "video": f"{video_id}.mp4",
            "num_frames": num_frames,
            "num_tokens": NTOK,
            "dim": DIM,
        },
    )


def streams():
    return [
        StreamSample(
            "kitchen",
            6.0,
            2.0,
            [
                TimedTurn("user", 0.0, "Narrate what I do."),
                TimedTurn("assistant", 1.5, "You pick up the knife."),
                TimedTurn("assistant", 3.5, "You cut the tomato."),
                TimedTurn("user", 4.0, "What is on the board?"),
                TimedTurn("assistant", 4.0, "A tomato."),
                TimedTurn("assistant", 5.5, "You put the knife down."),
            ],
        ),
        StreamSample(
            "garden",
            4.0,
            2.0,
            [TimedTurn("assistant", 1.0, "You open the gate."), TimedTurn("assistant", 3.0, "You water the plants.")],
        ),
        StreamSample(
            "desk",
            5.0,
            2.0,
            [
                TimedTurn("user", 0.0, "Tell me what happens."),
                TimedTurn("assistant", 2.0, "A cup appears."),
                TimedTurn("assistant", 4.5, "The cup leaves."),
            ],
        ),
        StreamSample(
            "door",
            3.0,
            2.0,
            [TimedTurn("assistant", 0.5, "The door opens."), TimedTurn("assistant", 2.5, "The door closes.")],
        ),
    ]


def make_run(root: Path) -> tuple[Path, Path]:
    """The inputs in ``root``: (root, the config file)."""
    tok = smollm2_tokenizer()
    model, _ = tiny_model(tok, vision_dim=DIM, frame_num_tokens=NTOK)
    model.save_pretrained(root / "llm")
    tok.save_pretrained(root / "llm")
    train_samples = streams()
    save_samples(train_samples, root / "train" / "streams.jsonl")
    for k, s in enumerate(train_samples):
        write_features(root / "train" / "features", s.video_id, s.num_frames, seed=k)
    held_out = [
        StreamSample(
            "porch",
            4.0,
            2.0,
            [TimedTurn("assistant", 1.5, "A dog runs by."), TimedTurn("assistant", 3.0, "The dog sits.")],
        )
    ]
    save_samples(held_out, root / "eval" / "streams.jsonl")
    write_features(root / "eval" / "features", "porch", held_out[0].num_frames, seed=9)
    config = {
        "seed": 3,
        "model": {
            "preset": None,
            "llm": str(root / "llm"),
            "encoder_id": ENC,
            "vision_hidden_size": DIM,
            "frame_num_tokens": NTOK,
            "frame_resolution": 32,
            "fps": 2.0,
        },
        "lora": {"r": 4, "alpha": 8, "dropout": 0.1},
        "objective": {"mode": "streaming", "stream_weight": 2.0, "max_length": 512},
        "data": {
            "train_streams": str(root / "train" / "streams.jsonl"),
            "train_features": str(root / "train" / "features"),
            "eval_streams": str(root / "eval" / "streams.jsonl"),
            "eval_features": str(root / "eval" / "features"),
        },
        "optim": {"lr": "3e-2", "epochs": 2, "batch_size": 2, "grad_accum": 1, "warmup_ratio": 0.0},
        "run": {"save_every": 2, "keep_checkpoints": 5, "threads": 2},
        "augment": {"enabled": True, "p_wrong": 0.2, "p_empty": 0.1, "p_delay": 0.2, "p_drop": 0.1},
    }
    path = root / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    return root, path
