#!/usr/bin/env python3
"""Speed benchmark of the streaming engine, on the embedded default
(SmolLM2-135M-Instruct, fp32, 2 threads) unless told otherwise.

Prints, in one run:
  1. silent-frame FPS: frames taken one at a time, LoRA merged, cache at its budget
     (and a plain transformers forward with a DynamicCache at the same size, for scale);
  2. streaming vs per-frame vs interleaved dialogue (paper Table 1d: 13.5 / 7.5 / 1.5 FPS):
     FPS and peak memory at 1 and 10 tokens per frame, unbounded caches as in the paper,
     the same frames and the same response frames and lengths in every mode;
  3. time per frame over the stream: unbounded cache to frame 1,000 (its curve), bounded
     cache to frame 1,000 (7,200 with --long): median, p95, max around frames 100, 1,000
     (7,200), and memory;
  4. the eviction spike: re-compaction vs re-prefill at the budget;
  5. latency in real time (ThreadedEngine, 2 fps): a frame's arrival to the first partial
     response token and to the final one; a query's arrival to its first token.

Every measurement runs in its own process (clean peak memory). Frame tokens are random
(the vision encoder is separate); decisions that must be equal across modes are scripted.

    .venv/bin/python bench/bench_engine.py                 # default, < 10 minutes
    .venv/bin/python bench/bench_engine.py --quick         # a smoke run, ~3 minutes
    .venv/bin/python bench/bench_engine.py --long          # + the one-hour stream (7,200 frames)
    .venv/bin/python bench/bench_engine.py --llama3-8b --device cuda   # Llama-3-8B shape, random bf16
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULT = "BENCH_RESULT "


# -- helpers ---------------------------------------------------------------------------------
def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def pct(values, q) -> float:
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, int(round(q / 100 * (len(v) - 1))))]


def ms(x) -> str:
    return "-" if x is None or x != x else f"{x * 1000:.1f}"


def stats_ms(values) -> dict:
    return {
        "median": pct(values, 50),
        "p95": pct(values, 95),
        "max": max(values) if values else float("nan"),
        "n": len(values),
    }


# -- the worker side (one measurement per process) ---------------------------------------------
def load(args, tokens_per_frame: int, lora: bool = True):
    """The model: the embedded SmolLM2 (LoRA merged) or a random Llama-3-8B-shaped one."""
    from live_ros import runtime

    runtime.prepare_torch()  # the torchvision fix, before transformers
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.llama3_8b:
        return load_llama3_8b(args, tokens_per_frame)
    from dataclasses import replace

    from live_ros.assets import smollm2_dir
    from live_ros.model.checkpoint import LoraSettings, add_lora, load_llm
    from live_ros.model.config import EncoderSettings
    from live_ros.model.presets import EMBEDDED_CONFIG

    # the embedded preset's frame tokens (EfficientNet-Lite0, frame and difference: 2 x 1280),
    # tokens_per_frame of them, over the base SmolLM2 with a fresh connector
    live = replace(EMBEDDED_CONFIG, encoder=EncoderSettings(num_tokens=tokens_per_frame), vision_hidden_size=2560)
    model, tokens, _, _ = load_llm(smollm2_dir(), None, live)
    if lora:  # a LoRA with non-zero weights, merged for inference (section 3.4)
        peft_model = add_lora(model, LoraSettings(r=16, alpha=32, dropout=0.0))
        with torch.no_grad():
            for name, p in peft_model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 1e-3)
        model = peft_model.merge_and_unload().eval()
    return model, tokens, 2560


def load_llama3_8b(args, tokens_per_frame: int):
    """Llama-3-8B's shape (random bf16 weights: speed only) with the SmolLM2 tokenizer for
    the stream's text tokens (ids below Llama-3's vocabulary)."""
    import torch

    from live_ros.assets import smollm2_dir
    from live_ros.model.checkpoint import load_tokenizer
    from live_ros.model.format import FormatSpec, StreamTokenizer
    from live_ros.model.config import EncoderSettings, LiveConfig
    from live_ros.model.live_model import LiveLlamaConfig, LiveLlamaForCausalLM

    tok = load_tokenizer(smollm2_dir())
    spec = FormatSpec(frame_num_tokens=tokens_per_frame)
    tokens = StreamTokenizer(tok, spec)
    cfg = LiveLlamaConfig(
        vocab_size=128256,
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=args.layers or 32,
        num_attention_heads=32,
        num_key_value_heads=8,
        max_position_embeddings=8192,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        rope_parameters={"rope_type": "default", "rope_theta": 500000.0},  # Llama-3 (not 3.1)
        live=LiveConfig(encoder=EncoderSettings(num_tokens=tokens_per_frame), vision_hidden_size=1024, format=spec),
        v_placeholder_id=tokens.frame_token_id,
    )
    dtype = torch.bfloat16 if args.device.startswith("cuda") else torch.float32
    torch.set_default_dtype(dtype)
    with torch.device(args.device):
        model = LiveLlamaForCausalLM(cfg)
    torch.set_default_dtype(torch.float32)
    return model.eval(), tokens, 1024


def frames_for(n: int, tokens_per_frame: int, dim: int, seed: int = 0):
    import torch

    g = torch.Generator().manual_seed(seed)
    pool = [torch.randn(tokens_per_frame, dim, generator=g) for _ in range(min(n, 97))]
    return [pool[i % len(pool)] for i in range(n)]


def sync(args):
    if args.device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def device_peak_mb(args) -> float | None:
    if args.device.startswith("cuda"):
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    return None


def job_silent(args) -> dict:
    """Silent-frame FPS at the budget (LoRA merged), a plain HF forward for scale, and the
    eviction spike of both methods."""
    import torch
    from transformers import DynamicCache

    from live_ros.engine import EngineConfig, StreamEngine

    model, tokens, dim = load(args, 10)
    frames = frames_for(400, 10, dim)
    out = {}
    for method in ("recompact", "reprefill"):
        eng = StreamEngine(model, tokens, EngineConfig(theta=0.0, cache_budget=args.budget, eviction=method))
        n_fill = 0
        while eng.stats.evictions < 2:  # to the budget, past the first evictions
            eng.take_frame(frames[n_fill % 400])
            n_fill += 1
        times, spikes = [], []
        n = args.silent_frames if method == "recompact" else args.spike_frames
        for i in range(n):
            before = eng.stats.evictions
            t0 = time.perf_counter()
            eng.take_frame(frames[(n_fill + i) % 400])
            sync(args)
            dt = time.perf_counter() - t0
            if eng.stats.evictions > before:
                spikes.append(eng.stats.last_eviction_s)
            else:
                times.append(dt)
        out[method] = {
            "frame_s": stats_ms(times),
            "eviction_s": stats_ms(spikes),
            "cache_tokens": eng.runner.length,
            "evictions": len(spikes),
        }
        if method == "recompact":
            out["fps"] = 1.0 / pct(times, 50)
            out["fps_all"] = n / (sum(times) + sum(spikes) + 1e-9)
            out["attn_implementation"] = eng.runner.attn_implementation
        del eng
    # transformers' own forward (DynamicCache, logits_to_keep=1) at the same cache size
    if not args.llama3_8b:
        with torch.inference_mode():
            k = (out["recompact"]["cache_tokens"] - len(tokens.prefix_ids) - 2) // 11
            ids = (
                tokens.prefix_ids
                + tokens.open_ids()
                + tokens.frame_ids
                + ([tokens.interval_id] + tokens.frame_ids) * (k - 1)
            )
            cache = DynamicCache(config=model.config)
            model(
                input_ids=torch.tensor([ids]),
                frame_tokens=torch.stack(frames_for(k, 10, dim, 5)),
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=1,
            )
            step = torch.tensor([[tokens.interval_id] + tokens.frame_ids])
            times = []
            for i in range(40):
                t0 = time.perf_counter()
                model(
                    input_ids=step,
                    frame_tokens=frames[i][None],
                    past_key_values=cache,
                    use_cache=True,
                    logits_to_keep=1,
                )
                times.append(time.perf_counter() - t0)
                cache.crop(-step.shape[1])
            out["hf_fps"] = 1.0 / pct(times, 50)
            out["hf_frame_s"] = stats_ms(times)
            out["hf_cache_tokens"] = len(ids)
    out["peak_mb"] = peak_mb()
    return out


def job_mode(args) -> dict:
    """One mode of Table 1d over the same frames: FPS and peak memory."""
    from live_ros.engine import EngineConfig, InterleavedDialogue, PerFrameDialogue, StreamEngine

    mode, tpf = args.mode, args.tpf
    model, tokens, dim = load(args, tpf)
    n, every, r = args.mode_frames, args.respond_every, args.response_tokens
    frames = frames_for(n, tpf, dim)
    per_frame_tokens = 2 * (tpf + 1) + 4 * n
    cfg = EngineConfig(cache_budget=None, max_new_tokens=r, min_new_tokens=r, max_batch=1, partials=False)

    def speak(i, p):
        return i % every == every - 1

    if mode == "streaming":
        eng = StreamEngine(model, tokens, cfg)
    elif mode == "per_frame":
        eng = PerFrameDialogue(model, tokens, cfg)
    elif mode == "per_frame_2fwd":
        eng = PerFrameDialogue(model, tokens, cfg, eos_with_next_frame=False)
    else:
        eng = InterleavedDialogue(model, tokens, cfg)
        speak = None
    eng.script = speak
    # the whole stream fits without re-allocating (tokens per frame of the mode, plus responses)
    eng.runner.reserve(len(tokens.prefix_ids) + n * (tpf + 12 + r + 2) + per_frame_tokens)
    # warm-up on a throwaway stream
    for f in frames[:3]:
        eng.take_frame(f)
    eng.reset()
    sync(args)
    silent_times = []
    t0 = time.perf_counter()
    for i, f in enumerate(frames):
        t1 = time.perf_counter()
        events = eng.take_frame(f, i * 0.5)
        sync(args)
        if events and events[-1].kind == "silent":
            silent_times.append(time.perf_counter() - t1)
    total = time.perf_counter() - t0
    kv_bytes_per_token = eng.runner.nbytes() / eng.runner.capacity
    return {
        "mode": mode,
        "tpf": tpf,
        "frames": n,
        "seconds": total,
        "fps": n / total,
        "silent_frame_s": stats_ms(silent_times),
        "cache_tokens": eng.runner.length,
        "kv_mb": eng.runner.length * kv_bytes_per_token / 2**20,
        "peak_mb": peak_mb(),
        "device_peak_mb": device_peak_mb(args),
        "responses": eng.stats.responses,
    }


def job_curve(args) -> dict:
    """Time per frame over one stream (silent frames, one at a time); bounded or not."""
    from live_ros.engine import EngineConfig, StreamEngine

    model, tokens, dim = load(args, 10)
    bounded = args.curve == "bounded"
    n = args.curve_frames
    every, r = args.narrate_every, args.response_tokens
    cfg = EngineConfig(
        cache_budget=args.budget if bounded else None, max_new_tokens=r, min_new_tokens=r, theta=0.0, partials=False
    )
    eng = StreamEngine(model, tokens, cfg)
    if bounded:  # a narration now and then: dialogue text is kept longer than frames
        eng.script = lambda i, p: every > 0 and i % every == every - 1
    else:
        eng.runner.reserve(len(tokens.prefix_ids) + 11 * n + 64)
    frames = frames_for(n, 10, dim)
    times, cache, rss = [], [], {}
    for i, f in enumerate(frames):
        t0 = time.perf_counter()
        events = eng.take_frame(f, i * 0.5)
        sync(args)
        dt = time.perf_counter() - t0
        times.append(dt if events[-1].kind == "silent" else None)
        cache.append(eng.runner.length)
        if (i + 1) % 100 == 0 or i + 1 == n:
            rss[i + 1] = rss_mb()
    return {
        "curve": args.curve,
        "frames": n,
        "times": times,
        "cache": cache,
        "rss": rss,
        "peak_mb": peak_mb(),
        "device_peak_mb": device_peak_mb(args),
        "evictions": eng.stats.evictions,
        "max_eviction_s": eng.stats.max_eviction_s,
        "budget": args.budget if bounded else None,
    }


def job_latency(args) -> dict:
    """Real time: frames at 2 fps into a ThreadedEngine; arrival -> first token -> final."""
    from live_ros.engine import EngineConfig, ResponseEvent, StreamEngine, ThreadedEngine

    model, tokens, dim = load(args, 10)
    every, r = args.respond_every, args.response_tokens
    core = StreamEngine(model, tokens, EngineConfig(cache_budget=args.budget, max_new_tokens=r, min_new_tokens=r))
    core.script = lambda i, p: i % every == every - 1
    finals = []
    lock = threading.Lock()

    def listen(ev):
        if isinstance(ev, ResponseEvent) and ev.final:
            with lock:
                finals.append(ev)

    n = int(args.latency_seconds * 2)
    frames = frames_for(n, 10, dim)
    eng = ThreadedEngine(core, listen)
    for f in frames[:4]:  # warm-up
        eng.submit_frame(f)
    eng.wait_idle(60)
    eng.reset()
    eng.wait_idle(60)
    finals.clear()
    taken_before, dropped_before = eng.stats().frames_taken, eng.stats().frames_dropped
    start = time.perf_counter()
    query_at = {n // 4, n // 2, 3 * n // 4}
    for i, f in enumerate(frames):
        target = start + i * 0.5
        time.sleep(max(0.0, target - time.perf_counter()))
        eng.submit_frame(f, i * 0.5)
        if i in query_at:
            time.sleep(0.2)
            eng.submit_query("What is happening right now?")
    eng.wait_idle(120)
    st = eng.stats()
    eng.stop()
    pro = [e.timings for e in finals if e.proactive]
    ans = [e.timings for e in finals if e.response_kind == "answer" and not e.proactive]
    return {
        "frames": n,
        "proactive": len(pro),
        "answers": len(ans),
        "first_s": stats_ms([t["arrival_to_first_token_s"] for t in pro]),
        "final_s": stats_ms([t["arrival_to_final_s"] for t in pro]),
        "query_first_s": stats_ms([t["arrival_to_first_token_s"] for t in ans]),
        "query_final_s": stats_ms([t["arrival_to_final_s"] for t in ans]),
        "dropped": st.frames_dropped - dropped_before,
        "taken": st.frames_taken - taken_before,
    }


JOBS = {"silent": job_silent, "mode": job_mode, "curve": job_curve, "latency": job_latency}


# -- the orchestrator ----------------------------------------------------------------------------
def run_job(args, job: str, extra: list[str], log) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--job", job, *extra, *args.passthrough]
    t0 = time.perf_counter()
    env = {**os.environ, "OMP_WAIT_POLICY": args.omp_wait_policy}
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=str(ROOT), env=env)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT)), None)
    if proc.returncode != 0 or line is None:
        raise SystemExit(f"job {job} {' '.join(extra)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result = json.loads(line[len(RESULT) :])
    log(
        f"  [{time.perf_counter() - t0:5.1f} s] {job} {' '.join(extra)}  (machine load {result['loadavg'][0]:.1f}"
        f" -> {result['loadavg'][1]:.1f})"
    )
    return result


def window(times, end, width):
    w = [t for t in times[max(0, end - width) : end] if t is not None]
    return stats_ms(w)


def around(times, frame, width=50):
    """The frames centred on ``frame`` (frame numbers count from 1)."""
    lo = max(0, frame - 1 - width // 2)
    return stats_ms([t for t in times[lo : lo + width] if t is not None])


def orchestrate(args) -> None:
    t_start = time.perf_counter()
    say = lambda s: print(s, flush=True)  # noqa: E731
    what = "Llama-3-8B shape, random bf16" if args.llama3_8b else "embedded SmolLM2-135M-Instruct fp32"
    say(
        f"# bench_engine: {what}, device {args.device}, {args.threads} threads (OMP_WAIT_POLICY="
        f"{args.omp_wait_policy}), budget {args.budget} tokens{' (--long)' if args.long else ''}"
        f"{' (--quick)' if args.quick else ''}; machine load at start {os.getloadavg()[0]:.1f}"
    )
    say("running (each line: one process):")
    silent = run_job(args, "silent", [], say)
    modes = {}
    for tpf in (1, 10):
        for mode in ("streaming", "per_frame", "per_frame_2fwd", "interleaved"):
            modes[(tpf, mode)] = run_job(args, "mode", ["--mode", mode, "--tpf", str(tpf)], say)
    unb = run_job(args, "curve", ["--curve", "unbounded", "--curve-frames", str(args.unbounded_frames)], say)
    bnd = run_job(args, "curve", ["--curve", "bounded", "--curve-frames", str(args.bounded_frames)], say)
    lat = run_job(args, "latency", [], say)

    say("")
    say("## 1. Silent frames, one at a time, LoRA merged, cache at its budget")
    say(
        f"runner attention: transformers' '{silent.get('attn_implementation', '?')}' "
        f"(config._attn_implementation, ALL_ATTENTION_FUNCTIONS)"
    )
    s = silent["recompact"]
    say("| engine | median ms/frame | p95 | FPS |")
    say("|---|---|---|---|")
    say(
        f"| streaming engine ({s['cache_tokens']} tokens in cache) | {ms(s['frame_s']['median'])} | "
        f"{ms(s['frame_s']['p95'])} | **{silent['fps']:.1f}** |"
    )
    if "hf_fps" in silent:
        say(
            f"| plain transformers forward (DynamicCache, logits_to_keep=1) | {ms(silent['hf_frame_s']['median'])} | "
            f"{ms(silent['hf_frame_s']['p95'])} | {silent['hf_fps']:.1f} |"
        )
    say("")
    say(
        f"## 2. Streaming vs per-frame vs interleaved ({args.mode_frames} frames, unbounded caches, a "
        f"{args.response_tokens}-token response every {args.respond_every} frames; interleaved: after every frame)"
    )
    say("| tokens/frame | mode | FPS | vs streaming | peak RSS MB | KV cache MB (tokens) | silent ms/frame |")
    say("|---|---|---|---|---|---|---|")
    for tpf in (1, 10):
        base = modes[(tpf, "streaming")]["fps"]
        for mode, label in (
            ("streaming", "streaming (LIVE)"),
            ("per_frame", "per-frame, EOS turns"),
            ("per_frame_2fwd", "per-frame, EOS fed at once (2 fwd)"),
            ("interleaved", "interleaved"),
        ):
            m = modes[(tpf, mode)]
            dev = f" / GPU {m['device_peak_mb']:.0f}" if m.get("device_peak_mb") else ""
            say(
                f"| {tpf} | {label} | {m['fps']:.2f} | {base / m['fps']:.2f}x | {m['peak_mb']:.0f}{dev} | "
                f"{m['kv_mb']:.1f} ({m['cache_tokens']}) | {ms(m['silent_frame_s']['median'])} |"
            )
    say("(vs streaming: how many times faster streaming is; paper Table 1d, A100: 13.5 / 7.5 / 1.5 FPS = 1.8x and 9x)")
    say("")
    say("## 3. Time per frame over the stream (silent frames; ms)")
    say("Unbounded cache (the release), curve:")
    say("| frame | " + " | ".join(str(k) for k in curve_points(unb["frames"])) + " |")
    say("|---|" + "---|" * len(curve_points(unb["frames"])))
    say(
        "| median ms (10 frames before) | "
        + " | ".join(ms(window(unb["times"], k, 10)["median"]) for k in curve_points(unb["frames"]))
        + " |"
    )
    say("| cache tokens | " + " | ".join(str(unb["cache"][k - 1]) for k in curve_points(unb["frames"])) + " |")
    say("")
    last = bnd["frames"] - 25
    marks = [k for k in (100, 1000, 7200) if k <= last] + ([last] if last not in (100, 1000, 7200) else [])
    width = 50
    say(
        f"Bounded cache ({args.budget} tokens, re-compaction, a narration every {args.narrate_every} frames), "
        f"the {width} frames centred on:"
    )
    say("| frame | median | p95 | max | cache tokens | RSS MB |")
    say("|---|---|---|---|---|---|")
    for k in marks:
        w = around(bnd["times"], k, width)
        say(
            f"| {k} | {ms(w['median'])} | {ms(w['p95'])} | {ms(w['max'])} | {bnd['cache'][k - 1]} | "
            f"{bnd['rss'].get(str(k), bnd['rss'].get(k, float('nan'))):.0f} |"
        )
    wu = window(unb["times"], min(1000, unb["frames"]), width)
    say(
        f"| unbounded, frame {min(1000, unb['frames'])} | {ms(wu['median'])} | {ms(wu['p95'])} | {ms(wu['max'])} | "
        f"{unb['cache'][min(1000, unb['frames']) - 1]} | {unb['rss'].get(str(min(1000, unb['frames'])), 0):.0f} |"
    )
    all_b = [t for t in bnd["times"] if t is not None]
    say(
        f"whole bounded stream: median {ms(pct(all_b, 50))}, p95 {ms(pct(all_b, 95))}, max {ms(max(all_b))} ms; "
        f"{bnd['evictions']} evictions; peak RSS {bnd['peak_mb']:.0f} MB (RSS at frame 100: "
        f"{bnd['rss'].get('100', float('nan')):.0f} MB)"
    )
    say("")
    say(f"## 4. Eviction spike at the budget ({args.budget} tokens, down to budget - budget/8)")
    say("| method | median ms | max ms | evictions seen |")
    say("|---|---|---|---|")
    for method in ("recompact", "reprefill"):
        e = silent[method]["eviction_s"]
        say(f"| {method} | {ms(e['median'])} | {ms(e['max'])} | {e['n']} |")
    say("")
    say(
        f"## 5. Latency in real time (ThreadedEngine, 2 fps, {lat['frames']} frames, a {args.response_tokens}-token "
        f"response every {args.respond_every} frames, 3 queries)"
    )
    say("| from arrival to | p50 ms | p95 ms | max ms | n |")
    say("|---|---|---|---|---|")
    for key, label in (
        ("first_s", "first partial token (proactive)"),
        ("final_s", "final token (proactive)"),
        ("query_first_s", "first token of an answer (query)"),
        ("query_final_s", "final token of an answer (query)"),
    ):
        v = lat[key]
        say(f"| {label} | {ms(v['median'])} | {ms(v['p95'])} | {ms(v['max'])} | {v['n']} |")
    say(f"frames taken {lat['taken']}/{lat['frames']}, dropped {lat['dropped']}")
    say("")
    say("## Targets (embedded default, 10 tokens per frame)")
    f100 = around(bnd["times"], 100, width)
    checks = [
        ("silent-frame FPS >= 12 (stretch 15)", silent["fps"] >= 12, f"{silent['fps']:.1f}"),
        (
            "streaming >= 2x per-frame (EOS turns, 1 fwd)",
            modes[(10, "streaming")]["fps"] >= 2 * modes[(10, "per_frame")]["fps"],
            f"{modes[(10, 'streaming')]['fps'] / modes[(10, 'per_frame')]['fps']:.2f}x",
        ),
        (
            "streaming >= 2x per-frame (EOS fed at once, 2 fwd)",
            modes[(10, "streaming")]["fps"] >= 2 * modes[(10, "per_frame_2fwd")]["fps"],
            f"{modes[(10, 'streaming')]['fps'] / modes[(10, 'per_frame_2fwd')]['fps']:.2f}x",
        ),
        (
            "streaming >= 9x interleaved",
            modes[(10, "streaming")]["fps"] >= 9 * modes[(10, "interleaved")]["fps"],
            f"{modes[(10, 'streaming')]['fps'] / modes[(10, 'interleaved')]['fps']:.2f}x",
        ),
    ]
    for k in marks[1:]:
        w = around(bnd["times"], k, width)
        checks.append(
            (
                f"bounded: median at frame {k} <= 1.2x frame 100",
                w["median"] <= 1.2 * f100["median"],
                f"{w['median'] / f100['median']:.2f}x",
            )
        )
        checks.append(
            (
                f"bounded: p95 at frame {k} <= 2x frame 100",
                w["p95"] <= 2 * f100["p95"],
                f"{w['p95'] / f100['p95']:.2f}x",
            )
        )
    rss100 = bnd["rss"].get("100", float("nan"))
    checks.append(
        (
            "bounded: peak memory within 10 % of frame 100",
            bnd["peak_mb"] <= 1.1 * rss100,
            f"{bnd['peak_mb'] / rss100:.3f}x",
        )
    )
    checks.append(
        (
            "arrival -> first partial token p50 <= 300 ms",
            lat["first_s"]["median"] <= 0.3,
            f"{ms(lat['first_s']['median'])} ms",
        )
    )
    say("| target | met | measured |")
    say("|---|---|---|")
    for name, ok, val in checks:
        say(f"| {name} | {'yes' if ok else 'NO'} | {val} |")
    say("")
    say(f"total {time.perf_counter() - t_start:.0f} s")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "silent": silent,
                    "modes": {f"{k[0]}:{k[1]}": v for k, v in modes.items()},
                    "unbounded": unb,
                    "bounded": bnd,
                    "latency": lat,
                },
                indent=1,
            )
        )


def _default_budget() -> int:
    from live_ros import runtime

    runtime.prepare_torch()  # the torchvision fix, before transformers
    from live_ros.engine import EngineConfig

    return EngineConfig().cache_budget


def curve_points(n: int) -> list[int]:
    pts = [10, 100, 200, 300, 400, 500, 600, 700, 800, 900, 1000]
    return [p for p in pts if p <= n] or [n]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--long", action="store_true", help="bounded stream to frame 7,200 (one hour at 2 fps)")
    p.add_argument("--quick", action="store_true", help="a reduced smoke run (fewer frames everywhere)")
    p.add_argument("--llama3-8b", action="store_true", help="Llama-3-8B shape with random weights (speed only)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--layers", type=int, default=0, help="with --llama3-8b: fewer layers (plumbing checks)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2: this machine's cores)")
    p.add_argument(
        "--budget", type=int, default=_default_budget(), help="cache budget in tokens (default: the engine's)"
    )
    p.add_argument("--json", default="", help="also write every number to this file")
    p.add_argument(
        "--omp-wait-policy",
        default=os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
        help="OpenMP wait policy of the measuring processes (default PASSIVE: on a shared machine,\n"
        "spinning threads make 2-thread forwards 5-40x slower whenever another process\n"
        "takes a core; ACTIVE is the OpenMP default)",
    )
    # internal: one job per process
    p.add_argument("--job", choices=sorted(JOBS), help=argparse.SUPPRESS)
    p.add_argument("--mode", default="streaming", help=argparse.SUPPRESS)
    p.add_argument("--tpf", type=int, default=10, help=argparse.SUPPRESS)
    p.add_argument("--curve", default="bounded", help=argparse.SUPPRESS)
    p.add_argument("--curve-frames", type=int, default=1000, help=argparse.SUPPRESS)
    p.add_argument("--mode-frames", type=int, default=0, help="frames per mode comparison (default 120, long 600)")
    p.add_argument("--respond-every", type=int, default=8, help="a response every N frames (default 8 = 4 s)")
    p.add_argument("--response-tokens", type=int, default=12, help="tokens per response (default 12)")
    p.add_argument("--narrate-every", type=int, default=40, help="bounded curve: a narration every N frames")
    p.add_argument("--latency-seconds", type=float, default=0, help="real-time latency run (default 40 s)")
    args = p.parse_args(argv)
    quick = args.quick
    args.mode_frames = args.mode_frames or (40 if quick else 600 if args.long else 120)
    args.latency_seconds = args.latency_seconds or (15 if quick else 40)
    args.unbounded_frames = 300 if quick else 1000
    args.bounded_frames = 25 + (300 if quick else 7200 if args.long else 1000)  # windows centred on the marks
    args.silent_frames = 60 if quick else 200
    args.spike_frames = 120 if quick else 250
    args.passthrough = [a for a in ("--llama3-8b",) if getattr(args, "llama3_8b")]
    args.passthrough += [
        "--device",
        args.device,
        "--threads",
        str(args.threads),
        "--budget",
        str(args.budget),
        "--layers",
        str(args.layers),
        "--mode-frames",
        str(args.mode_frames),
        "--respond-every",
        str(args.respond_every),
        "--response-tokens",
        str(args.response_tokens),
        "--narrate-every",
        str(args.narrate_every),
        "--latency-seconds",
        str(args.latency_seconds),
    ]
    if args.quick:
        args.passthrough.append("--quick")
    if args.long:
        args.passthrough.append("--long")
    if args.job:
        sys.path.insert(0, str(ROOT))
        load_before = os.getloadavg()[0]
        result = JOBS[args.job](args)
        result["loadavg"] = [load_before, os.getloadavg()[0]]
        print(RESULT + json.dumps(result), flush=True)
        return
    orchestrate(args)


if __name__ == "__main__":
    main()
