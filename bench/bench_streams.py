#!/usr/bin/env python3
"""Several cameras on one model: 1, 2, 4 and 8 streams at 2 fps each on this CPU, with
the streams' forwards joined (live_ros/engine/batching.py) and, as the baseline, each
stream forwarding alone (the same engines and shared weights, no batcher). Each setting
runs in its own process, in real time, as live_llm runs it: one ThreadedEngine per
stream, frames submitted at their ticks.

Frames are the committed demo video's real frame tokens (media/demo.mp4 through the
embedded encoder, 2 fps); stream k starts 20 k frames into it, so the streams see
different scenes and speak at different times. The model is the committed embedded
checkpoint with its deployed theta and standing instruction.

Prints per setting: frames taken per second (all streams), p50 / p95 frame arrival ->
decision, frames dropped (the backlog of 64 overflowing), responses, and the mean number
of streams per joined forward; then the ratio joined / alone.

    .venv/bin/python bench/bench_streams.py                  # 40 s per setting, about 8 minutes
    .venv/bin/python bench/bench_streams.py --seconds 15 --streams 1,4
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
from bench_engine import RESULT, ROOT, pct  # noqa: E402


def features(path: Path) -> None:
    from live_ros import runtime

    runtime.prepare_torch()
    from safetensors.torch import save_file

    from live_ros.data.features import extract_video
    from live_ros.model.checkpoint import load_checkpoint

    loaded = load_checkpoint("embedded")
    tokens, _ = extract_video(ROOT / "media" / "demo.mp4", loaded.encoder, fps=2.0)
    save_file({"frame_tokens": tokens.float().contiguous()}, str(path))


def job(args) -> dict:
    from live_ros import runtime

    runtime.prepare_torch()
    import torch
    from safetensors.torch import load_file

    torch.set_num_threads(args.threads)
    from live_ros.engine import EngineConfig, ResponseEvent, SilentEvent, ThreadedEngine, stream_group, stream_only
    from live_ros.model.checkpoint import load_checkpoint
    from live_ros.model.format import DEFAULT_INSTRUCTION

    tokens = load_file(args.features)["frame_tokens"]
    loaded = load_checkpoint("embedded", with_encoder=False)
    stream_only(loaded.model)
    names = [f"cam{k + 1}" for k in range(args.job)]
    config = EngineConfig(instruction=DEFAULT_INSTRUCTION, partials=False)
    engines, batcher = stream_group(loaded.model, loaded.tokens, names, config, window_s=args.window)
    if args.alone:
        for engine in engines.values():
            engine.runner.batcher = None
    threaded = [ThreadedEngine(e) for e in engines.values()]
    period = 1.0 / 2.0
    n = int(args.seconds * 2)
    t0 = time.perf_counter()
    for i in range(n):
        wait = t0 + i * period - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        for k, t in enumerate(threaded):
            t.submit_frame(tokens[(20 * k + i) % tokens.shape[0]], i * period)
    for t in threaded:
        t.wait_idle(120)
    wall = time.perf_counter() - t0
    delays, responses, dropped, taken = [], 0, 0, 0
    for t in threaded:
        while (ev := t.get_event(0)) is not None:
            if isinstance(ev, SilentEvent) or (
                isinstance(ev, ResponseEvent) and ev.final and ev.p_interval is not None
            ):
                delays.append(ev.timings.get("arrival_to_decision_s", float("nan")))
            responses += isinstance(ev, ResponseEvent) and ev.final
        st = t.stats()
        dropped += st.frames_dropped
        taken += st.frames_taken
        t.stop()
    st = batcher.stats
    return {
        "streams": args.job,
        "frames_per_s": taken / wall,
        "p50": pct(delays, 50),
        "p95": pct(delays, 95),
        "dropped": dropped,
        "taken": taken,
        "sent": n * args.job,
        "responses": responses,
        "mean_batch": (st.chunks / st.forwards) if st.forwards and not args.alone else 1.0,
    }


def run(args, streams: int, alone: bool, feats: Path) -> dict:
    cmd = [sys.executable, __file__, "--job", str(streams), "--features", str(feats), "--seconds", str(args.seconds)]
    cmd += ["--threads", str(args.threads), "--window", str(args.window)] + (["--alone"] if alone else [])
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    line = next((x for x in out.stdout.splitlines() if x.startswith(RESULT)), None)
    if line is None:
        sys.exit(f"{streams} streams failed:\n{out.stderr[-3000:]}")
    return json.loads(line[len(RESULT) :])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--streams", default="1,2,4,8", help="stream counts (default 1,2,4,8)")
    p.add_argument("--seconds", type=float, default=40.0, help="seconds of video per setting (default 40)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2: this machine's cores)")
    p.add_argument("--window", type=float, default=0.005, help="batch_window in seconds (default 0.005)")
    p.add_argument("--json", default="", help="also write every number to this file")
    p.add_argument("--job", type=int, help=argparse.SUPPRESS)
    p.add_argument("--alone", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--features", default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.job:
        print(RESULT + json.dumps(job(args)), flush=True)
        return
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        feats = Path(tmp) / "demo.safetensors"
        features(feats)
        for s in [int(x) for x in args.streams.split(",")]:
            for alone in (False, True):
                r = run(args, s, alone, feats)
                r["mode"] = "alone" if alone else "joined"
                results.append(r)
                print(f"  {s} stream(s), {r['mode']}: done", file=sys.stderr, flush=True)
    print(f"\nStreams at 2 fps each, {args.seconds:g} s, embedded checkpoint, fp32, {args.threads} threads")
    print(
        f"{'streams':>8} {'forwards':>8} {'frames/s':>9} {'p50 ms':>8} {'p95 ms':>8} {'dropped':>8} {'said':>5} {'batch':>6}"
    )
    for r in results:
        print(
            f"{r['streams']:>8} {r['mode']:>8} {r['frames_per_s']:>9.2f} {r['p50'] * 1000:>8.0f} {r['p95'] * 1000:>8.0f} "
            f"{r['dropped']:>4}/{r['sent']:<3} {r['responses']:>5} {r['mean_batch']:>6.2f}"
        )
    print("\nJoined vs alone (p95 arrival -> decision):")
    for s in sorted({r["streams"] for r in results}):
        j = next(r for r in results if r["streams"] == s and r["mode"] == "joined")
        a = next(r for r in results if r["streams"] == s and r["mode"] == "alone")
        print(f"  {s} stream(s): p95 {a['p95'] / j['p95']:.2f}x lower joined; dropped {j['dropped']} vs {a['dropped']}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
