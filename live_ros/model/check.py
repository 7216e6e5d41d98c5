"""``live-ros check-model <preset or checkpoint folder>``: load it
(:func:`live_ros.model.checkpoint.load_checkpoint`), run one frame and one short answer,
and print its settings, parameter counts, load time, memory and one-frame time."""

from __future__ import annotations

import resource
import sys
import time

import torch


def _params(module) -> int:
    return sum(p.numel() for p in module.parameters())


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@torch.inference_mode()
def run(system, question: str = "What do you see?", max_new_tokens: int = 16) -> dict:
    """One frame through encoder and LLM (its silence probability), then one answer."""
    from skimage import data

    model, tokens = system.model, system.tokens
    device = next(model.parameters()).device
    frame = data.chelsea()  # a real photo (a cat), shipped by scikit-image

    t0 = time.perf_counter()
    frame_tokens = system.encoder.encode([frame])
    t_encode = time.perf_counter() - t0
    prefix = torch.tensor([tokens.prefix_ids], device=device)
    out = model(input_ids=prefix, use_cache=True, logits_to_keep=1)
    cache = out.past_key_values
    ids = torch.tensor([tokens.open_ids() + tokens.frame_ids], device=device)
    t0 = time.perf_counter()
    out = model(input_ids=ids, frame_tokens=frame_tokens, past_key_values=cache, use_cache=True, logits_to_keep=1)
    p_silent = torch.softmax(out.logits[0, -1].float(), -1)[tokens.interval_id].item()
    t_llm = time.perf_counter() - t0

    ids = torch.tensor(
        [tokens.close_ids + tokens.user_ids(question, after_close=True) + tokens.assistant_prefix_ids()], device=device
    )
    t0 = time.perf_counter()
    out = model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
    answer: list[int] = []
    for _ in range(max_new_tokens):
        next_id = int(out.logits[0, -1].argmax())
        if next_id == tokens.eos_id:
            break
        answer.append(next_id)
        out = model(
            input_ids=torch.tensor([[next_id]], device=device), past_key_values=cache, use_cache=True, logits_to_keep=1
        )
    t_answer = time.perf_counter() - t0
    return {
        "encode_s": t_encode,
        "llm_frame_s": t_llm,
        "p_silent": p_silent,
        "answer": tokens.decode(answer),
        "answer_tokens": len(answer),
        "answer_s": t_answer,
    }


def main(args) -> int:
    from live_ros.model import presets
    from live_ros.model.checkpoint import CheckpointError, load_checkpoint
    from live_ros.model.config import ConfigError

    torch.set_num_threads(args.threads) if args.threads else None
    try:
        t0 = time.perf_counter()
        preset = args.preset if args.preset in presets.PRESETS else None
        system = load_checkpoint(
            args.adapter or args.preset,
            llm=args.llm,
            vision=args.vision,
            device=args.device,
            dtype=args.dtype,
            force=args.force,
            preset=preset,
        )
        load_s = time.perf_counter() - t0
    except (presets.PresetError, CheckpointError, ConfigError, FileNotFoundError) as err:
        print(f"live-ros check-model: {err}", file=sys.stderr)
        return 1
    model, config = system.model, system.config
    connector = _params(model.connector)
    llm = _params(model) - connector
    encoder = system.encoder
    if encoder is None:  # a checkpoint on feature files: what _params(None) raised
        raise AttributeError("the checkpoint has no vision encoder (it was trained on feature files)")
    vision = _params(encoder)
    adapter = system.adapter
    what = f"{system.preset.name}: {system.preset.description}" if system.preset else "checkpoint"
    print(f"preset        {what}" if args.preset in presets.PRESETS else f"checkpoint    {args.preset} ({what})")
    print(
        f"encoder       {encoder.encoder_id}: {encoder.num_tokens} tokens x {encoder.dim} "
        f"per frame, {encoder.image_size} px"
    )
    print(
        f"settings      {config.frame_fps:g} fps, {config.frame_resolution} px, {config.frame_num_tokens} "
        f"tokens/frame, base LLM {config.base_llm}, LoRA r={config.lora.r}, mode {config.mode}"
    )
    print(
        f"adapter       {adapter.path.parent if adapter else 'none'}"
        + (f" ({adapter.loaded} tensors, LoRA merged)" if adapter else "")
    )
    for note in system.notes:
        print(f"note          {note}")
    cfg = system.model_config
    print(
        f"parameters    vision {vision / 1e6:.1f} M, connector {connector / 1e6:.2f} M, LLM {llm / 1e6:.1f} M, "
        f"total {(vision + connector + llm) / 1e6:.1f} M ({cfg.num_hidden_layers} layers, hidden {cfg.hidden_size})"
    )
    print(
        f"load time     {load_s:.2f} s (encoder {system.encoder_seconds:.2f} s, LLM "
        f"{system.load_seconds - system.encoder_seconds:.2f} s)"
    )
    run(system, max_new_tokens=2)  # warm-up
    result = run(system, max_new_tokens=args.max_new_tokens)
    print(
        f"one frame     {1000 * (result['encode_s'] + result['llm_frame_s']):.0f} ms (encode "
        f"{1000 * result['encode_s']:.0f} ms, LLM {1000 * result['llm_frame_s']:.0f} ms); "
        f"p(silence) = {result['p_silent']:.3f}"
    )
    per_token = result["answer_s"] / max(1, result["answer_tokens"])
    print(
        f'answer        "{result["answer"]}" ({result["answer_tokens"]} tokens in {result["answer_s"]:.2f} s, '
        f"{1000 * per_token:.0f} ms/token)"
    )
    mem = f"peak RSS {_peak_rss_mb():.0f} MB"
    if str(args.device).startswith("cuda"):
        mem += f", GPU peak {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB"
    print(f"memory        {mem}")
    return 0
