"""Offline evaluation of a LIVE model on timed streams: the paper's LM-PPL, TimeDiff,
Fluency and LM-correctness (section 4.2, the release's exact forms: see
:mod:`live_ros.evaluation.metrics`), plus TimeDiff with the inference threshold theta.

For each stream (a :class:`~live_ros.data.streams.StreamSample` and its pre-extracted
frame features ``<features_dir>/<video_id>.safetensors``): the turns are encoded in the
chosen format (streaming EOS, or the per-frame / interleaved baselines), the model runs
one teacher-forced forward over the whole sequence (logits only at the positions the
metrics read), and a turn where the model stays silent through all its frames is
continued from its last frame with the response left out, as the release does, to see
how late it would speak (a few frames on the KV cache, no second pass over the stream).

Streams longer than the model's context (``max_position_embeddings``, 8192 for SmolLM2
and Llama-3) are truncated at the context: the longest prefix of frames and turns that
fits is evaluated, and the stream's ``notes`` say how much was left out. (The streaming
engine handles long streams online with its bounded cache; offline metrics do not
evict.)

The module reads top to bottom as one sample goes through it: :func:`evaluate` (all
streams, their mean) -> :func:`evaluate_stream` (one stream) -> its features, fitting the
context, the model's forward and look-ahead -> the metrics of
:mod:`live_ros.evaluation.metrics` -> the table and the JSON.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from live_ros.data.streams import StreamSample
from live_ros.model.format import RELEASE_THETA, Mode, StreamTokenizer, Turn

if TYPE_CHECKING:  # torch is imported inside the functions: the CLI's --help stays instant
    import torch

    from live_ros.evaluation.metrics import FutureFn, StreamResult, TurnPlan

DEFAULT_THETA = RELEASE_THETA  # TimeDiff@theta's threshold: the engine's (live_ros/engine/config.py)
MODES = ("streaming", "per_frame", "interleaved")


# -- the evaluation: all streams, then one stream ------------------------------------------
def evaluate(
    model,
    tokens: StreamTokenizer,
    samples: Sequence[StreamSample],
    features_dir: str | Path | None,
    *,
    theta: float | None = DEFAULT_THETA,
    fps: float | None = None,
    mode: Mode = "streaming",
    max_positions: int | None = None,
    future: str = "continue",
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Evaluate ``model`` on ``samples`` (features in ``features_dir``).

    theta: the inference threshold for TimeDiff@theta (None/0: off). fps: frame rate that
    converts frame differences to seconds (default: each stream's own). mode: the format
    the model was trained in. max_positions: context limit (default: the model's).
    future: "continue" (the release's look-ahead on the KV cache) or "sequence" (read the
    following frames in the teacher-forced sequence; an approximation).

    Returns ``{"metrics": means over streams, "streams", "turns", "timed_turns", "missed",
    "settings", "per_stream": [...]}``.
    """
    from live_ros.evaluation.metrics import mean_over_streams

    if mode not in MODES:
        raise ValueError(f"unknown mode '{mode}': {', '.join(MODES)}")
    if future not in ("continue", "sequence"):
        raise ValueError(f"future must be 'continue' or 'sequence', got '{future}'")
    if theta is not None and not 0 <= theta <= 1:
        raise ValueError(f"theta must be in [0, 1], got {theta}")
    if fps is not None and fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    features_dir = Path(features_dir) if features_dir else None
    model.eval()
    records, results = [], []
    for n, sample in enumerate(samples, 1):
        record, result = evaluate_stream(
            model,
            tokens,
            sample,
            features_dir,
            theta=theta,
            fps=fps,
            mode=mode,
            max_positions=max_positions,
            future=future,
        )
        records.append(record)
        results.append(result)
        if progress:
            progress(
                f"[{n}/{len(samples)}] {sample.video_id}: {record['tokens']} tokens, {record['turns']} turns, "
                f"{record['seconds']:.1f} s" + "".join(f"; {note}" for note in record["notes"])
            )
    means = mean_over_streams(results)
    config = _model_config(model)
    return {
        "metrics": {
            k: means[k]
            for k in ("lm_ppl", "time_diff", "time_diff_theta", "fluency", "fluency_theta", "lm_correctness")
        },
        **{k: means[k] for k in ("streams", "turns", "timed_turns", "missed", "missed_theta")},
        "tokens": sum(r["tokens"] for r in records),
        "settings": {
            "theta": theta,
            "fps": fps,
            "mode": mode,
            "future": future,
            "max_positions": max_positions or getattr(config, "max_position_embeddings", None),
            "encoder_id": getattr(config, "encoder_id", ""),
        },
        "per_stream": records,
    }


def evaluate_stream(
    model,
    tokens: StreamTokenizer,
    sample: StreamSample,
    features_dir: Path | None,
    *,
    theta: float | None = DEFAULT_THETA,
    fps: float | None = None,
    mode: Mode = "streaming",
    max_positions: int | None = None,
    future: str = "continue",
) -> tuple[dict, StreamResult]:
    """Metrics of one stream: (its JSON-able record, the StreamResult)."""
    import torch

    from live_ros.evaluation.metrics import needed_positions, plan_turns, stream_metrics

    config = _model_config(model)
    notes: list[str] = []
    expect = getattr(config, "encoder_id", "") or None
    feats, _, meta = load_stream_features(sample, features_dir, expect_encoder=expect)
    if feats.ndim != 3:
        raise ValueError(f"features of '{sample.video_id}' have shape {tuple(feats.shape)}, expected [T, N, dim]")
    if feats.shape[1] != len(tokens.frame_ids) or feats.shape[2] != config.vision_hidden_size:
        raise ValueError(
            f"features of '{sample.video_id}' are {feats.shape[1]} tokens x {feats.shape[2]} per frame "
            f"but the model takes {len(tokens.frame_ids)} x {config.vision_hidden_size}: extract them "
            f"with the model's encoder"
        )
    if meta.get("fps") and abs(float(meta["fps"]) - sample.fps) > 1e-6:
        raise ValueError(
            f"features of '{sample.video_id}' are at {meta['fps']} fps but the stream's turns are on a "
            f"{sample.fps} fps grid: extract at the stream's fps"
        )
    if abs(getattr(config, "frame_fps", sample.fps) - sample.fps) > 1e-6:
        notes.append(f"stream at {sample.fps} fps, model trained at {config.frame_fps} fps")
    n_frames = min(int(feats.shape[0]), sample.num_frames)
    if feats.shape[0] < sample.num_frames:
        sample, dropped = _trim_to_frames(sample, n_frames)
        notes.append(
            f"features cover {feats.shape[0]} of {sample.num_frames} frames"
            + (f"; {dropped} turns after their end left out" if dropped else "")
        )
    turns = sample.to_turns(n_frames)
    limit = max_positions or getattr(config, "max_position_embeddings", None) or 8192
    kept, enc, truncated = fit_context(tokens, turns, mode, limit)
    total_turns = sum(t.role == "assistant" for t in turns)
    kept_turns = sum(t.role == "assistant" for t in kept)
    if truncated:
        notes.append(
            f"truncated at the context ({limit} positions): {enc.num_frames} of {n_frames} frames, "
            f"{kept_turns} of {total_turns} assistant turns evaluated"
        )

    silent = tokens.silent_id(mode)
    plans = plan_turns(enc, mode)
    if len(plans) < kept_turns:
        notes.append(
            f"{kept_turns - len(plans)} of {kept_turns} assistant turns are not in the {mode} encoding "
            f"(it keeps only responses that directly follow frames)"
        )
    in_sequence = future != "continue"
    positions = needed_positions(plans, future_in_sequence=in_sequence)
    need_cache = not in_sequence and silent is not None and any(p.future_frames for p in plans)
    used = enc.num_frames
    frame_tokens = feats[:used]
    device = model.get_input_embeddings().weight.device
    t0 = time.perf_counter()
    with torch.inference_mode():
        if positions:
            out = model(
                input_ids=torch.tensor(enc.input_ids, device=device)[None],
                frame_tokens=frame_tokens,
                use_cache=need_cache,
                logits_to_keep=torch.tensor(positions, device=device),
            )
            logits = out.logits[0]
            fut = continuation(model, tokens, mode, out.past_key_values, feats) if need_cache else None
        else:
            logits, fut = torch.zeros(0, 1), None
        result = stream_metrics(
            logits,
            enc,
            silent_id=silent,
            fps=fps or sample.fps,
            theta=theta,
            mode=mode,
            positions=positions,
            future=fut,
            plans=plans,
        )
    record = {
        "video_id": sample.video_id,
        "tokens": len(enc.input_ids),
        "frames": used,
        "frames_total": n_frames,
        "truncated": truncated,
        "seconds": round(time.perf_counter() - t0, 3),
        "notes": notes,
        **result.to_dict(),
    }
    return record, result


def _model_config(model):
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.config


# -- features ---------------------------------------------------------------------------
def load_stream_features(sample: StreamSample, features_dir: Path | None, expect_encoder: str | None = None):
    """(tokens [T, N, dim], times [T], meta) of a stream: ``<features_dir>/<video_id>.safetensors``,
    else the sample's own ``features`` path."""
    candidates = []
    if features_dir is not None:
        candidates.append(Path(features_dir) / f"{sample.video_id}.safetensors")
    if sample.features:
        candidates.append(Path(sample.features))
    path = next((c for c in candidates if c.is_file()), None)
    if path is None:
        raise FileNotFoundError(
            f"no features for stream '{sample.video_id}' (looked for "
            f"{', '.join(map(str, candidates)) or 'nothing: no --features folder'}): extract them "
            f"with `live-ros extract` into the --features folder"
        )
    from live_ros.data.features import load_features

    return load_features(path, expect_encoder=expect_encoder)


# -- fitting a stream -------------------------------------------------------------------
def _units(turns: Sequence[Turn]) -> int:
    return sum(t.num_frames if t.role == "stream" else 1 for t in turns)


def _prefix(turns: Sequence[Turn], units: int) -> list[Turn]:
    """The first ``units`` frames and text turns."""
    out: list[Turn] = []
    for turn in turns:
        if units <= 0:
            break
        if turn.role == "stream":
            k = min(turn.num_frames, units)
            out.append(Turn("stream", num_frames=k, time=turn.time))
            units -= k
        else:
            out.append(turn)
            units -= 1
    return out


def fit_context(tokens: StreamTokenizer, turns: Sequence[Turn], mode: Mode, max_positions: int):
    """(turns, encoded, truncated): the whole stream if it fits ``max_positions``, else its
    longest prefix (whole frames and turns) that does."""
    enc = tokens.encode(turns, mode)
    if len(enc.input_ids) <= max_positions:
        return list(turns), enc, False
    lo, hi = 0, _units(turns)  # lo fits (or is 0), hi does not
    best = None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        cand = tokens.encode(_prefix(turns, mid), mode)
        if len(cand.input_ids) <= max_positions:
            lo, best = mid, cand
        else:
            hi = mid
    if best is None:
        raise ValueError(f"not even the first frame fits {max_positions} positions")
    return _prefix(turns, lo), best, True


def _trim_to_frames(sample: StreamSample, n_frames: int) -> tuple[StreamSample, int]:
    """The sample with only the turns that fall within its first ``n_frames`` frames."""
    kept = [t for t in sample.turns if sample.frame_of(t.time) < n_frames]
    trimmed = StreamSample(
        sample.video_id, sample.duration, sample.fps, kept, sample.video, sample.features, sample.meta
    )
    return trimmed, len(sample.turns) - len(kept)


# -- the model side ---------------------------------------------------------------------
def _prefix_cache(cache, length: int):
    """A new cache holding the first ``length`` positions of ``cache`` (the original stays)."""
    from transformers import DynamicCache

    return DynamicCache([(layer.keys[..., :length, :], layer.values[..., :length, :]) for layer in cache.layers])


def continuation(model, tokens: StreamTokenizer, mode: Mode, cache, frame_tokens: torch.Tensor) -> FutureFn:
    """The release's look-ahead for a silent turn: from the turn's last frame decision,
    with the response left out, feed its next frames (each after a silent decision) and
    return the logits at their decision positions [k, V]."""
    import torch

    chunk = tokens.next_frame_ids(mode)  # a silent decision, then the next frame
    device = model.get_input_embeddings().weight.device

    def run(plan: TurnPlan) -> torch.Tensor:
        k = len(plan.future_frames)
        ids = torch.tensor(chunk * k, dtype=torch.long, device=device)[None]
        keep = torch.arange(len(chunk) - 1, len(chunk) * k, len(chunk), device=device)
        past = _prefix_cache(cache, plan.decision_positions[-1] + 1)
        out = model(
            input_ids=ids,
            frame_tokens=frame_tokens[plan.future_frames],
            past_key_values=past,
            use_cache=True,
            logits_to_keep=keep,
        )
        return out.logits[0]

    return run


# -- output -----------------------------------------------------------------------------
def _fmt(value, kind: str | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if kind == "pct":
        return f"{100 * value:.1f}%"
    if kind == "s":
        return f"{value:.2f}s"
    if kind == "ppl":
        return f"{value:.2f}" if value < 1e5 else f"{value:.3g}"
    return str(value)


def format_table(result: dict, max_rows: int = 30) -> str:
    """The per-stream metrics (up to ``max_rows`` streams) and their mean, as text."""
    theta = result["settings"].get("theta")
    cols = [
        ("stream", None, "<"),
        ("tokens", None, ">"),
        ("turns", None, ">"),
        ("LM-PPL", "ppl", ">"),
        ("TimeDiff", "s", ">"),
        (f"TimeDiff@{theta:g}" if theta else "TimeDiff@theta", "s", ">"),
        ("Fluency", "pct", ">"),
        ("LM-Correctness", "pct", ">"),
    ]
    keys = ["video_id", "tokens", "turns", "lm_ppl", "time_diff", "time_diff_theta", "fluency", "lm_correctness"]
    rows = []
    for rec in result["per_stream"][:max_rows]:
        rows.append([_fmt(rec[k], kind) for k, (_, kind, _) in zip(keys, cols)])
    m = result["metrics"]
    mean = [f"mean of {result['streams']}", str(result["tokens"]), str(result["turns"])] + [
        _fmt(m[k], kind) for k, (_, kind, _) in zip(keys[3:], cols[3:])
    ]
    widths = [max(len(c[0]), *(len(r[i]) for r in rows + [mean])) for i, c in enumerate(cols)]

    def line(cells):
        return "  ".join(f"{c:{a}{w}}" for c, w, (_, _, a) in zip(cells, widths, cols))

    out = [line([c[0] for c in cols]), line(["-" * w for w in widths])]
    out += [line(r) for r in rows]
    if len(result["per_stream"]) > max_rows:
        out.append(f"... {len(result['per_stream']) - max_rows} more streams")
    out += [line(["-" * w for w in widths]), line(mean)]
    s = result["settings"]
    out.append(
        f"streams: {result['streams']}  turns: {result['turns']} (timed: {result['timed_turns']}; "
        f"never spoke: {result['missed']} argmax, {result['missed_theta']} theta)  mode: {s['mode']}  "
        f"theta: {theta}  fps: {s['fps'] or 'per stream'}"
    )
    notes = [f"{r['video_id']}: {n}" for r in result["per_stream"] for n in r["notes"]]
    out += [f"note: {n}" for n in notes]
    return "\n".join(out)


def finite(value):
    """JSON has no inf/nan: a non-finite number (a perplexity past 1e304) becomes null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def write_json(result: dict, path: str | Path) -> Path:
    """Write the result as JSON (atomically: written aside, then renamed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(finite(result), indent=1, allow_nan=False))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


__all__ = [
    "DEFAULT_THETA",
    "MODES",
    "evaluate",
    "evaluate_stream",
    "load_stream_features",
    "fit_context",
    "continuation",
    "format_table",
    "write_json",
    "finite",
]
