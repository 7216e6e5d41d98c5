"""The ``live-ros train`` verb (:func:`live_ros.training.loop.train`) and ``live-ros
fit-evidence`` (:func:`live_ros.training.evidence.fit_evidence`).

``add(sub)`` adds it to ``parser.add_subparsers()`` with ``run=<callable(args) -> int>``;
torch and the model are imported inside the callable, so ``--help`` stays instant.
"""

from __future__ import annotations

import sys


def add(sub) -> None:
    """Add the ``train`` verb to an argparse subparsers object."""
    p = sub.add_parser(
        "train",
        help="train LoRA + connector on the streaming EOS objective (resumable)",
        description="Train a LIVE model (LoRA on the LLM's linear layers + the vision connector) on timed streams "
        "and their pre-extracted features, with the streaming EOS objective (or a baseline format). "
        "Writes checkpoints (resumable), a loss curve, the final checkpoint and its evaluation on the "
        "held-out streams into the output folder.",
        epilog="Overrides: section.key=value, e.g. optim.lr=1e-4 objective.mode=per_frame objective.stream_weight=2 "
        "augment.enabled=true data.limit=100 (values are YAML).",
    )
    p.add_argument("--config", required=True, metavar="FILE", help="YAML config (e.g. config/train_embedded.yaml)")
    p.add_argument("--out", metavar="DIR", help="output folder (default: the config's out_dir)")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint-STEP in the folder")
    p.add_argument(
        "--max-steps",
        type=int,
        default=None,
        metavar="N",
        help="optimizer steps in all (overrides optim.epochs; the schedule is laid out for N)",
    )
    p.add_argument("--device", default=None, help="cpu or cuda (default: the config's run.device)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: the config's run.threads, 2)")
    p.add_argument("--no-eval", action="store_true", help="skip the evaluation at the end")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    p.set_defaults(run=run)

    e = sub.add_parser(
        "fit-evidence",
        help="fit the object evidence head on a split's frames (model.evidence of a training run)",
        description="Fit the object evidence head (live_ros/model/evidence.py): a multi-label linear "
        "classifier over each frame token's features, maxed over the frame's tokens, that scores the "
        "trained nouns, the generic noun and 'something' (any object in view), on every frame of "
        "TRAIN_DIR (streams.jsonl, features/, annotations), and print its per-class recall and "
        "precision there and on --val.",
    )
    e.add_argument("train_dir", metavar="TRAIN_DIR", help="a split folder, e.g. data/world/train")
    e.add_argument("--out", required=True, metavar="FILE", help="the head file to write (safetensors)")
    e.add_argument("--val", metavar="DIR", help="a held-out split folder to report on")
    e.add_argument(
        "--vocabulary", default="world", help='the trained nouns: "world" (the world\'s named objects) or a comma list'
    )
    e.add_argument("--steps", type=int, default=300, help="full-batch optimizer steps (default 300)")
    e.add_argument(
        "--pooling",
        choices=("max", "token"),
        default="max",
        help="max: the classifier on every token of a frame, maxed (default); token: on the pooled token only",
    )
    e.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    e.set_defaults(run=run_fit_evidence)


def run(args) -> int:
    """The ``train`` verb. 0 ok, 1 failed (the message says why), 130 interrupted."""
    from live_ros.data.features import FeaturesError
    from live_ros.model.checkpoint import CheckpointError
    from live_ros.model.presets import PresetError
    from live_ros.training.config import ConfigError, load_config
    from live_ros.training.loop import train

    try:
        config = load_config(args.config, args.overrides)
        import torch

        torch.set_num_threads(args.threads or config.run.threads or 2)
        train(
            config,
            out_dir=args.out,
            resume=args.resume,
            max_steps=args.max_steps,
            device=args.device,
            progress=not args.quiet,
            evaluate_at_end=False if args.no_eval else None,
        )
    except (ConfigError, CheckpointError, PresetError, FeaturesError, FileNotFoundError) as err:
        print(f"live-ros train: {err}", file=sys.stderr)
        return 1
    return 0


def run_fit_evidence(args) -> int:
    """The ``fit-evidence`` verb. 0 ok, 1 failed (the message says why)."""
    from live_ros.data.features import FeaturesError
    from live_ros.training.model_setup import vocabulary_of

    try:
        import torch

        from live_ros.training.evidence import fit_evidence

        torch.set_num_threads(args.threads)
        fit_evidence(
            args.train_dir,
            args.out,
            vocabulary_of(args.vocabulary),
            val_dir=args.val,
            steps=args.steps,
            pooling=args.pooling,
        )
    except (FeaturesError, FileNotFoundError, ValueError) as err:
        print(f"live-ros fit-evidence: {err}", file=sys.stderr)
        return 1
    return 0
