#!/usr/bin/env python3
"""Memory and speed of one stream against the paper's public loop, on the committed
embedded checkpoint (SmolLM2-135M, fp32), each method in its own process.

Methods:
  release loop     test/release_loop.py: the model's transformers forward with a growing
                   DynamicCache, no eviction (the release's way; the parity test checks
                   the engine gives its tokens and decisions)
  engine           StreamEngine, budget 1,280 tokens and unbounded (0), one copy of the
                   weights (live_ros/engine/weights.py: stream_only)
  engine, copies   the same with the model's own projection weights kept beside the
                   engine's packed ones (what every process held before stream_only)

Every frame stays silent (theta 0: the interval token is always kept), so every method
feeds the same tokens; frame tokens are random (the vision encoder runs elsewhere).
Prints RSS at frames 10 and N (default 1,000), the peak, ms per frame around frames 10,
100, 500 and 1,000, and ratios against the release loop and against "copies".

    .venv/bin/python bench/bench_memory.py               # 1,000 frames, about 8 minutes
    .venv/bin/python bench/bench_memory.py --frames 200  # a quick look
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_engine import RESULT, ROOT, pct, peak_mb, rss_mb  # noqa: E402

METHODS = {
    "release loop": ("release", 0, False),
    "engine, budget 1280": ("engine", 1280, False),
    "engine, budget 1280, copies": ("engine", 1280, True),
    "engine, unbounded": ("engine", 0, False),
    "engine, unbounded, copies": ("engine", 0, True),
}
MARKS = (10, 100, 500, 1000)


def job(args) -> dict:
    from live_ros import runtime

    runtime.prepare_torch()
    import torch

    torch.set_num_threads(args.threads)
    from live_ros.engine import EngineConfig, StreamEngine, stream_only
    from live_ros.model.checkpoint import load_checkpoint
    from live_ros.model.format import DEFAULT_INSTRUCTION

    loaded = load_checkpoint("embedded", with_encoder=False)
    model, tokens = loaded.model, loaded.tokens
    c = loaded.config
    gen = torch.Generator().manual_seed(0)
    frames = torch.randn(args.frames, c.frame_num_tokens, c.vision_hidden_size, generator=gen).abs()
    if args.method == "release":
        sys.path.insert(0, str(ROOT / "test"))
        from release_loop import ReleaseLoop

        ref = ReleaseLoop(model, tokens.tokenizer, c.format, theta=0.0, instruction=DEFAULT_INSTRUCTION)
        step = ref.frame
    else:
        if not args.copies:
            stream_only(model)
        engine = StreamEngine(
            model, tokens, EngineConfig(theta=0.0, cache_budget=args.budget, instruction=DEFAULT_INSTRUCTION)
        )

        def step(f):
            return engine.take_frame(f)

    rss, times = {}, []
    rss[0] = rss_mb()
    for i in range(args.frames):
        t0 = time.perf_counter()
        step(frames[i])
        times.append(time.perf_counter() - t0)
        if i + 1 in (10, args.frames):
            rss[i + 1] = rss_mb()
    return {"rss": rss, "peak": peak_mb(), "times": times}


def around(times: list[float], frame: int, width: int = 10) -> float:
    lo = max(0, frame - width // 2)
    window = times[lo : lo + width]
    return pct(window, 50) * 1000 if window else float("nan")


def orchestrate(args) -> None:
    results = {}
    for name, (method, budget, copies) in METHODS.items():
        cmd = [sys.executable, __file__, "--job", method, "--budget", str(budget), "--frames", str(args.frames)]
        cmd += ["--threads", str(args.threads)] + (["--copies"] if copies else [])
        t0 = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        line = next((x for x in out.stdout.splitlines() if x.startswith(RESULT)), None)
        if line is None:
            sys.exit(f"{name} failed:\n{out.stderr[-3000:]}")
        results[name] = json.loads(line[len(RESULT) :])
        print(f"  {name}: done in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    n = args.frames
    marks = [m for m in MARKS if m <= n]
    print(f"\nOne stream, {n} silent frames, embedded checkpoint, fp32, {args.threads} thread(s)")
    head = f"{'method':<30}{'RSS@10':>9}{f'RSS@{n}':>10}{'peak':>8}" + "".join(f"{f'ms@{m}':>9}" for m in marks)
    print(head)
    for name, r in results.items():
        row = f"{name:<30}{r['rss']['10']:>9.0f}{r['rss'][str(n)]:>10.0f}{r['peak']:>8.0f}"
        print(row + "".join(f"{around(r['times'], m):>9.1f}" for m in marks))
    ref = results["release loop"]
    print("\nRatios (MB in RSS, per-frame speed-ups):")
    for name in ("engine, budget 1280", "engine, unbounded"):
        r, before = results[name], results[name + ", copies"]
        smaller = ref["rss"][str(n)] - r["rss"][str(n)]
        speed = " ".join(f"{around(ref['times'], m) / around(r['times'], m):.1f}x@{m}" for m in marks)
        print(f"  {name}: vs the release loop {smaller:+.0f} MB smaller at frame {n}, faster {speed}")
        print(
            f"  {name}: one copy vs copies kept: {before['rss'][str(n)] - r['rss'][str(n)]:+.0f} MB at frame {n}; "
            f"peak / RSS@{n} = {r['peak'] / r['rss'][str(n)]:.2f}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=1000, help="frames per method (default 1,000)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--json", default="", help="also write every number to this file")
    p.add_argument("--job", choices=("release", "engine"), help=argparse.SUPPRESS)
    p.add_argument("--budget", type=int, default=1280, help=argparse.SUPPRESS)
    p.add_argument("--copies", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.job:
        args.method = args.job
        print(RESULT + json.dumps(job(args)), flush=True)
    else:
        orchestrate(args)


if __name__ == "__main__":
    main()
