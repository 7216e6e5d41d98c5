"""``live-ros train``: LoRA + connector on the streaming EOS objective (paper section 3.3).

:func:`train` is the whole run, top to bottom: set up (config, data, model, optimizer),
resume, then for each optimizer step: draw the step's streams, forward and backward each
micro-batch, clip, step, log, checkpoint; at the end the final checkpoint and its
evaluation on the held-out streams.

A plain PyTorch loop: AdamW over the LoRA weights and the connector, cosine schedule with
linear warmup (5 %), gradient accumulation, gradient clipping; bf16 autocast on a GPU and
on CPUs with native bf16 (``run.precision: auto``), fp32 otherwise. The pieces it uses:
:mod:`~live_ros.training.config` (the YAML config), :mod:`~live_ros.training.data` (the
streams drawn per step), :mod:`~live_ros.training.model_setup` (LoRA + connector),
:mod:`~live_ros.training.state` (checkpoints, resume), :mod:`~live_ros.training.plots`.

Loss: the weighted cross-entropy of :func:`live_ros.model.live_model.streaming_loss`,
normalised over all labelled positions of the optimizer step (all micro-batches of the
accumulation together); logits are computed only where a label is.

Output folder (``--out``, default the config's ``out_dir``)::

    train_config.json         the resolved config
    log.jsonl                 one line per optimizer step (loss, lr, tokens, seconds)
    loss_curve.png            loss per step (and its moving average), learning rate
    checkpoint-STEP/          every ``run.save_every`` steps and at the end: adapter (fp32), tokenizer,
                              live_config.json, and training_state.pt (optimizer,
                              scheduler, step, RNG, loss history); ``--resume`` takes the
                              latest; the newest ``run.keep_checkpoints`` are kept
    final/                    the final checkpoint: adapter + connector (fp16), tokenizer
                              with <v>, live_config.json (encoder id, base LLM, fps, format)
    metrics.json              the evaluation on the held-out streams, with the training
                              statistics (tokens per stream, speed) under "train"

Resuming gives the same result as an uninterrupted run: data order, question draws and
augmentation are functions of (seed, epoch, stream); the RNG state (dropout) is restored.
Ctrl-C saves a checkpoint of the last completed step.
"""

from __future__ import annotations

import json
import math
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from live_ros.training.config import ConfigError, TrainConfig
from live_ros.training.data import Layout, StreamDataset
from live_ros.training.model_setup import ModelSpec, build_model, features_encoder_id, resolve_model
from live_ros.training.plots import plot_losses
from live_ros.training.state import (
    latest_checkpoint,
    load_training_checkpoint,
    prune_checkpoints,
    rng_state,
    save_final,
    save_training_checkpoint,
)

if TYPE_CHECKING:  # torch is imported inside the functions: --help stays instant
    import torch


@dataclass
class TrainResult:
    out_dir: Path
    final_dir: Path | None
    start_step: int
    steps: int  # optimizer steps done in all (total of the run)
    history: list  # [{step, epoch, loss, lr, tokens, streams, seconds}]
    stats: dict  # training tokens per stream, speed, ...
    metrics: dict | None
    model: Any = None  # the trained peft model (in memory)
    tokens: Any = None  # its StreamTokenizer
    tokenizer: Any = None
    interrupted: bool = False


def train(
    config: TrainConfig,
    *,
    out_dir: str | Path | None = None,
    resume: bool = False,
    max_steps: int | None = None,
    device: str | None = None,
    progress: bool = True,
    evaluate_at_end: bool | None = None,
    stop_after: int | None = None,
) -> TrainResult:
    """Train, checkpoint, save the final checkpoint and evaluate. ``stop_after``: stop
    (with a checkpoint) once this step is reached, as if interrupted (tests)."""
    import torch
    from tqdm import tqdm

    from live_ros.data.streams import load_samples
    from live_ros.model.format import collate

    # -- the run: config, device, output folder (a folder with checkpoints needs --resume)
    config.validate()
    out = Path(out_dir or config.out_dir)
    device = device or config.run.device
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda asked for, but torch sees no GPU (or is a CPU build)")
    if max_steps is not None:
        if int(max_steps) < 0:
            raise ConfigError(f"--max-steps must be >= 0, got {max_steps}")
        config.optim.max_steps = int(max_steps)
    existing = latest_checkpoint(out)
    if existing is not None and not resume:
        raise ConfigError(
            f"{out} already holds checkpoints ({existing.name}): pass --resume to continue that run, "
            f"or choose another --out"
        )
    out.mkdir(parents=True, exist_ok=True)
    if resume and existing is not None and (out / "train_config.json").is_file():
        changed = _changed_keys(json.loads((out / "train_config.json").read_text()), config.to_dict())
        if changed:
            _log(f"note: the config differs from the one {out} was started with: {', '.join(changed)}")
    (out / "train_config.json").write_text(json.dumps(config.to_dict(), indent=1))

    # -- data and model
    spec = resolve_model(config)
    assert config.data.train_streams and config.data.train_features  # TrainConfig.validate requires both
    samples = load_samples(Path(config.data.train_streams))[: config.data.limit or None]
    if config.data.extra_streams:
        samples += load_samples(Path(config.data.extra_streams))
    model, tokenizer, tokens = build_model(config, spec, device)
    dataset = StreamDataset(
        samples,
        config.data.train_features,
        tokens,
        mode=config.objective.mode,
        stream_weight=config.objective.stream_weight,
        max_length=config.objective.max_length,
        seed=config.seed,
        redraw=config.data.redraw_questions,
        augment=config.augment,
        encoder_id=features_encoder_id(config, spec),
        vision_hidden_size=spec.live.vision_hidden_size,
        fps=spec.live.frame_fps,
        name_weight=config.objective.name_weight,
    )

    # -- optimizer and schedule, laid out for the whole run
    opt = config.optim
    layout = Layout(len(dataset), opt.batch_size, opt.grad_accum, config.seed)
    total = opt.max_steps if opt.max_steps is not None else max(1, math.ceil(opt.epochs * layout.steps_per_epoch))
    trainable = [p for _, p in model.named_parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=opt.lr, weight_decay=opt.weight_decay)
    scheduler = cosine_schedule(optimizer, math.ceil(opt.warmup_ratio * total), total)
    live = spec.live  # the settings saved with every checkpoint (live_config.json)

    # -- resume: weights, optimizer, scheduler, RNG, history and statistics of the latest checkpoint
    history: list[dict] = []
    stats = {
        "streams": 0,
        "tokens": 0,
        "labelled": 0,
        "frames": 0,
        "truncated": 0,
        "augmented": 0,
        "steps": 0,
        "seconds": 0.0,
    }
    start = 0
    if resume and existing is not None:
        state = load_training_checkpoint(existing, model, optimizer, scheduler)
        start, history, stats = int(state["step"]), list(state["history"]), dict(state["stats"])
        _log(f"resuming from {existing} at step {start} of {total}")
    elif resume:
        _log(f"no checkpoint in {out}: starting from step 0")

    use_bf16 = bf16_autocast(config.run.precision, device)
    n_params = sum(p.numel() for p in trainable)
    _log(
        f"training {spec.live.base_llm} + connector ({n_params / 1e6:.2f}M trainable: LoRA r={config.lora.r} and the "
        f"connector) on {len(dataset)} streams, {config.objective.mode} format, w={config.objective.stream_weight}, "
        f"{total} steps of {opt.batch_size}x{opt.grad_accum} streams ({layout.steps_per_epoch} steps/epoch), "
        f"device {device}, {'bf16 autocast' if use_bf16 else 'fp32'}"
    )
    dev_type = "cuda" if str(device).startswith("cuda") else "cpu"

    def autocast():
        return torch.autocast(dev_type, dtype=torch.bfloat16, enabled=use_bf16)

    def checkpoint(step: int) -> Path:
        path = save_training_checkpoint(
            out / f"checkpoint-{step}", model, tokenizer, live, optimizer, scheduler, step, rng_next, history, stats
        )
        prune_checkpoints(out, config.run.keep_checkpoints)
        return path

    # -- the loop
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokens.eos_id
    log_file = (out / "log.jsonl").open("a")
    bar = tqdm(total=total, initial=start, desc="training", unit="step", disable=not progress, dynamic_ncols=True)
    model.train()
    step = start
    rng_next = rng_state()  # the RNG state at the start of the next step (what a checkpoint holds)
    interrupted = updating = False
    t_run = time.perf_counter()
    try:
        while step < total:
            t0 = time.perf_counter()
            # the batch: this step's streams, drawn (questions, augmentation) and encoded
            epoch, micro = layout.step(step)
            items = [[dataset.item(i, epoch) for i in mb] for mb in micro]
            flat = [it for mb in items for it in mb]
            n_labels = sum(sum(1 for y in it.encoded.labels if y != -100) for it in flat)
            n_tokens = sum(len(it.encoded.input_ids) for it in flat)

            # forward and backward, one micro-batch at a time; the loss of the step is the
            # sum over its micro-batches divided by all of its labelled positions
            loss_sum = 0.0
            optimizer.zero_grad(set_to_none=True)
            for mb in items:
                batch = collate([it.encoded for it in mb], [it.frame_tokens for it in mb], pad_id)
                part, count = micro_loss(model, batch, device, autocast)
                if count:
                    (part / max(1, n_labels)).backward()
                    loss_sum += float(part.detach())
            grad_norm = (
                float(torch.nn.utils.clip_grad_norm_(trainable, opt.max_grad_norm))
                if opt.max_grad_norm
                else float("nan")
            )
            lr = scheduler.get_last_lr()[0]
            loss = loss_sum / max(1, n_labels)
            record = {
                "step": step + 1,
                "epoch": epoch,
                "loss": loss,
                "lr": lr,
                "grad_norm": grad_norm,
                "streams": len(flat),
                "tokens": n_tokens,
                "labelled": n_labels,
            }

            # the update
            updating = True  # a Ctrl-C from here to the end of the update saves nothing
            optimizer.step()
            scheduler.step()
            step += 1
            seconds = time.perf_counter() - t0
            record["seconds"] = round(seconds, 3)
            history.append(record)
            _count(stats, flat, n_tokens, n_labels, seconds)
            rng_next = rng_state()
            updating = False

            # log and checkpoint
            if step % max(1, config.run.log_every) == 0 or step == total:
                log_file.write(json.dumps(record) + "\n")
                log_file.flush()
            bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", tok_s=f"{n_tokens / max(seconds, 1e-9):.0f}")
            bar.update()
            if (config.run.save_every and (step % config.run.save_every == 0 or step == total)) or (
                stop_after is not None and step >= stop_after
            ):
                checkpoint(step)
                plot_losses(history, out / "loss_curve.png", _title(config, spec))
            if stop_after is not None and step >= stop_after and step < total:
                interrupted = True
                break
    except KeyboardInterrupt:
        interrupted = True
        if not updating and step > start:
            path = checkpoint(step)
            _log(f"interrupted: saved {path} (step {step}); continue with --resume")
        plot_losses(history, out / "loss_curve.png", _title(config, spec))
        raise
    finally:
        bar.close()
        log_file.close()

    # -- the end: loss curve, final checkpoint, evaluation on the held-out streams
    plot_losses(history, out / "loss_curve.png", _title(config, spec))
    summary = {
        **_stats_summary(stats),
        "mode": config.objective.mode,
        "stream_weight": config.objective.stream_weight,
        "device": str(device),
        "precision": "bf16" if use_bf16 else "fp32",
        "steps_total": total,
    }
    result = TrainResult(out, None, start, step, history, summary, None, model, tokens, tokenizer, interrupted)
    if interrupted:
        return result
    _log(
        f"trained {step - start} steps (to step {step}) in {time.perf_counter() - t_run:.1f} s "
        f"({summary['steps_per_second']:.3f} steps/s, "
        f"{summary['tokens_per_second']:.0f} tokens/s); {stats['streams']} streams drawn: "
        f"{summary['tokens_per_stream']:.1f} tokens per stream ({summary['labelled_per_stream']:.1f} labelled, "
        f"{summary['frames_per_stream']:.1f} frames), {stats['truncated']} truncated"
    )
    result.final_dir = save_final(model, tokenizer, out / "final", live, config.run.save_dtype)
    _log(f"final checkpoint: {result.final_dir}")
    from live_ros.evaluation.offline import format_table, write_json

    if (config.eval.enabled if evaluate_at_end is None else evaluate_at_end) and config.data.eval_streams:
        result.metrics = evaluate_final(config, spec, result.final_dir, device)
        write_json({**result.metrics, "train": summary}, out / "metrics.json")
        print(format_table(result.metrics))
    else:
        write_json({"train": summary}, out / "metrics.json")
    print(
        f"training tokens per stream: {summary['tokens_per_stream']:.1f} ({config.objective.mode}; "
        f"{summary['labelled_per_stream']:.1f} labelled)"
    )
    return result


# ----------------------------------------------------------------------------- the loop's pieces
def micro_loss(model, batch: dict, device: str, autocast) -> tuple[torch.Tensor, int]:
    """(sum of weighted cross-entropy over the labelled positions, their count) of one
    micro-batch; the logits are computed only at the labelled positions."""
    import torch

    from live_ros.model.format import IGNORE
    from live_ros.model.live_model import streaming_loss

    labels = batch["labels"]
    keep = (labels != IGNORE).any(0).nonzero().squeeze(1)
    count = int((labels != IGNORE).sum())
    if count == 0:
        return torch.zeros((), device=device), 0
    frames = batch["frame_tokens"]
    with autocast():
        out = model(
            input_ids=batch["input_ids"].to(device),
            attention_mask=batch["attention_mask"].to(device),
            frame_tokens=None if frames is None else frames.to(device),
            logits_to_keep=keep.to(device),
            use_cache=False,
        )
    loss = streaming_loss(out.logits, labels[:, keep].to(device), batch["loss_weights"][:, keep].to(device))
    return loss * count, count


def cosine_schedule(optimizer, warmup_steps: int, total_steps: int):
    """Linear warmup from 0, then cosine decay to 0 (the Hugging Face schedule)."""
    import torch

    def factor(step: int) -> float:
        if step < warmup_steps:
            return step / max(1, warmup_steps)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def bf16_autocast(precision: str, device: str) -> bool:
    """Whether to compute in bf16 (autocast; the weights and the optimizer stay fp32).
    ``auto``: on a GPU with bf16, and on a CPU with native bf16 (AVX512-BF16 / AMX, where
    it is about twice as fast as fp32); fp32 elsewhere."""
    import torch

    if precision in ("bf16", "fp32"):
        return precision == "bf16"
    if str(device).startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def evaluate_final(config: TrainConfig, spec: ModelSpec, folder: Path, device: str) -> dict:
    """``evaluate`` on the held-out streams with the saved final checkpoint (LoRA merged)."""
    from live_ros.data.streams import load_samples
    from live_ros.evaluation.offline import evaluate
    from live_ros.model.checkpoint import load_checkpoint

    assert config.data.eval_streams  # train() evaluates only when they are given
    samples = load_samples(Path(config.data.eval_streams))[: config.data.eval_limit or None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        loaded = load_checkpoint(folder, llm=str(spec.llm), device=device, with_encoder=False)
    _log(f"evaluating {folder} on {len(samples)} held-out streams")
    return evaluate(
        loaded.model,
        loaded.tokens,
        samples,
        config.data.eval_features or config.data.train_features,
        theta=config.eval.theta or None,
        mode=config.objective.mode,
        future=config.eval.future,
        max_positions=config.eval.max_positions,
        progress=_log,
    )


def _count(stats: dict, items: list, n_tokens: int, n_labels: int, seconds: float) -> None:
    """Add one optimizer step's streams to the run's statistics."""
    for key, value in (
        ("streams", len(items)),
        ("tokens", n_tokens),
        ("labelled", n_labels),
        ("frames", sum(it.encoded.num_frames for it in items)),
        ("truncated", sum(it.truncated for it in items)),
        ("augmented", sum(bool(it.augmented) for it in items)),
        ("steps", 1),
        ("seconds", seconds),
    ):
        stats[key] += value


def _stats_summary(stats: dict) -> dict:
    n = max(1, stats["streams"])
    secs = max(1e-9, stats["seconds"])
    return {
        **stats,
        "tokens_per_stream": stats["tokens"] / n,
        "labelled_per_stream": stats["labelled"] / n,
        "frames_per_stream": stats["frames"] / n,
        "steps_per_second": stats["steps"] / secs,
        "tokens_per_second": stats["tokens"] / secs,
    }


def _changed_keys(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ (the run section aside: devices and threads may change)."""
    out = []
    for key in sorted(set(old) | set(new)):
        if not prefix and key in ("run", "out_dir"):
            continue
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _changed_keys(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}")
    return out


def _title(config: TrainConfig, spec: ModelSpec) -> str:
    return (
        f"{Path(spec.live.base_llm).name} LoRA r={config.lora.r}, {config.objective.mode}, "
        f"w={config.objective.stream_weight:g}, lr={config.optim.lr:g}"
    )


def _log(msg: str) -> None:
    from tqdm import tqdm

    tqdm.write(msg, file=sys.stderr)
