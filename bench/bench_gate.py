#!/usr/bin/env python3
"""The frame gate (EngineConfig.frame_gate) against the ungated engine: forwards per minute
of video and time per frame, on real frame tokens, in one process per setting.

Frames: every video of a features folder (``live-ros extract``; default: the committed
demo video, extracted here), each a fresh stream of the committed embedded checkpoint with
its standing instruction. What the gate does to the words is measured by
``live-ros evaluate-online ... --frame-gate X`` on a held-out split (README, Figures).

    .venv/bin/python bench/bench_gate.py                                   # the demo video
    .venv/bin/python bench/bench_gate.py --features data/world34/eval/features --gates 0,0.05,0.1
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_engine import RESULT, ROOT  # noqa: E402


def job(args) -> dict:
    from live_ros import runtime

    runtime.prepare_torch()
    import torch

    torch.set_num_threads(args.threads)
    from live_ros.data.features import load_features
    from live_ros.engine import EngineConfig, StreamEngine, stream_only
    from live_ros.model.checkpoint import load_checkpoint
    from live_ros.model.format import DEFAULT_INSTRUCTION

    loaded = load_checkpoint("embedded", with_encoder=False)
    stream_only(loaded.model)
    config = EngineConfig(instruction=DEFAULT_INSTRUCTION, partials=False, frame_gate=args.gate)
    engine = StreamEngine(loaded.model, loaded.tokens, config)
    frames = seconds = wall = 0.0
    responses = 0
    for path in sorted(Path(args.features).glob("*.safetensors")):
        tokens, times, _ = load_features(path)
        engine.reset()
        t0 = time.perf_counter()
        for t, stamp in zip(tokens, times.tolist()):
            responses += sum(getattr(e, "final", False) for e in engine.take_frame(t.float(), stamp))
        wall += time.perf_counter() - t0
        frames += len(times)
        seconds += float(times[-1] - times[0]) + 0.5
    st = engine.stats
    return {
        "gate": args.gate,
        "frames": frames,
        "fed": st.frames_taken,
        "gated": st.frames_gated,
        "forwards_per_min": st.frames_taken / (seconds / 60.0),
        "ms_per_frame": 1000.0 * wall / frames,
        "responses": responses,
    }


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--features", default="", help="a features folder (default: media/demo.mp4, extracted here)")
    p.add_argument("--gates", default="0,0.05,0.1", help="frame_gate values (default 0,0.05,0.1)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--job", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--gate", type=float, default=0.0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.job:
        print(RESULT + json.dumps(job(args)), flush=True)
        return
    with tempfile.TemporaryDirectory() as tmp:
        features = args.features
        if not features:
            features = str(Path(tmp) / "features")
            cmd = [str(Path(sys.executable).parent / "live-ros"), "extract", str(ROOT / "media" / "demo.mp4")]
            subprocess.run(cmd + ["--out", features, "--quiet"], check=True, cwd=ROOT)
        rows = []
        for gate in [float(g) for g in args.gates.split(",")]:
            cmd = [sys.executable, __file__, "--job", "--gate", str(gate), "--features", features]
            out = subprocess.run(cmd + ["--threads", str(args.threads)], capture_output=True, text=True, cwd=ROOT)
            line = next((x for x in out.stdout.splitlines() if x.startswith(RESULT)), None)
            if line is None:
                sys.exit(f"frame_gate {gate} failed:\n{out.stderr[-3000:]}")
            rows.append(json.loads(line[len(RESULT) :]))
    base = rows[0]
    print(f"\nThe frame gate on {features} ({int(base['frames'])} frames), embedded checkpoint, {args.threads} threads")
    print(
        f"{'frame_gate':>10} {'fed':>6} {'skipped':>8} {'forwards/min':>13} {'ms/frame':>9} {'vs ungated':>11} {'said':>5}"
    )
    for r in rows:
        print(
            f"{r['gate']:>10g} {r['fed']:>6} {r['gated']:>8} {r['forwards_per_min']:>13.1f} {r['ms_per_frame']:>9.1f} "
            f"{base['ms_per_frame'] / r['ms_per_frame']:>10.2f}x {r['responses']:>5}"
        )


if __name__ == "__main__":
    main()
