"""The ``check-model`` verb: load a preset, run one frame and one short answer."""

from __future__ import annotations


def add(sub) -> None:
    from live_ros.model.presets import PRESETS  # no torch import: the registry is plain data

    p = sub.add_parser(
        "check-model",
        help="load a model preset, run one frame and one short answer",
        description="Load a preset or a checkpoint folder (encoder + LLM + adapter, from its "
        "live_config.json), run one real photo through it and answer one question; "
        "print its settings, parameter counts, load time, memory and one-frame time. "
        "Presets: " + "; ".join(f"{p.name}: {p.describe()}" for p in PRESETS.values()),
    )
    p.add_argument("preset", help=f"model preset ({', '.join(PRESETS)}) or checkpoint folder")
    p.add_argument("--llm", help="local LLM folder (8B preset: Meta-Llama-3-8B-Instruct)")
    p.add_argument("--vision", help="local vision weights (8B preset: siglip-large-patch16-384 folder)")
    p.add_argument("--adapter", help="checkpoint folder (8B preset: videollm-online-8b-v1plus)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument("--dtype", default=None, help="float32, bfloat16 or float16 (default: float32)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    p.add_argument("--max-new-tokens", type=int, default=16, help="answer length limit (default: 16)")
    p.add_argument("--force", action="store_true", help="run an 8B preset on a CPU anyway")
    p.set_defaults(run=_run)


def _run(args) -> int:
    from live_ros.model.check import main

    return main(args)
