#!/usr/bin/env python
"""The paper's Table 1a ablation on our data (VideoLLM-online section 4.2): the embedded
model trained on the same streams with the streaming EOS objective, with per-frame
dialogue (EOS turns), with interleaved dialogue, untrained, and with stream weight w in
{0.5, 1, 2}; each evaluated on the held-out split in its own format.

    .venv/bin/python scripts/ablation.py [--out runs/ablation] [--arms streaming,per_frame,...]
                                         [--table-only] [-- key=value ...]

Every arm is one `live-ros train --config config/train_ablation.yaml` run (1 token per
frame, 30 steps of 4 streams; see the config). Arms already finished (their metrics.json
exists) are skipped, so an interrupted ablation continues where it stopped. Writes
OUT/table.md and OUT/table.json and prints the table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "config" / "train_ablation.yaml"

# arm name -> (label, overrides)
ARMS = {
    "streaming": ("streaming EOS, w=1 (LIVE)", ["objective.mode=streaming", "objective.stream_weight=1.0"]),
    "per_frame": ("per-frame dialogue (EOS turns)", ["objective.mode=per_frame"]),
    "interleaved": ("interleaved dialogue", ["objective.mode=interleaved"]),
    "untrained": ("untrained (LoRA B=0, random connector)", ["objective.mode=streaming", "optim.max_steps=0"]),
    "w0.5": ("streaming EOS, w=0.5", ["objective.mode=streaming", "objective.stream_weight=0.5"]),
    "w2": ("streaming EOS, w=2", ["objective.mode=streaming", "objective.stream_weight=2.0"]),
}


def run_arm(name: str, out: Path, extra: list[str]) -> float:
    _, overrides = ARMS[name]
    cmd = [
        str(Path(sys.executable).parent / "live-ros"),
        "train",
        "--config",
        str(CONFIG),
        "--out",
        str(out / name),
        *overrides,
        *extra,
    ]
    if any((out / name).glob("checkpoint-*")):
        cmd.append("--resume")
    print(f"[ablation] {name}: {' '.join(cmd[1:])}", flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT)
    return time.perf_counter() - t0


def row(name: str, out: Path) -> dict | None:
    path = out / name / "metrics.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    m, train = data.get("metrics", {}), data.get("train", {})
    label = ARMS[name][0]
    config = out / name / "train_config.json"
    init = json.loads(config.read_text()).get("model", {}).get("init_from") if config.is_file() else None
    if name == "untrained" and init:
        label = f"untrained: {init} as loaded"
    return {
        "arm": name,
        "label": label,
        "init_from": init,
        "mode": train.get("mode"),
        "w": train.get("stream_weight"),
        "lm_ppl": m.get("lm_ppl"),
        "time_diff": m.get("time_diff"),
        "time_diff_theta": m.get("time_diff_theta"),
        "fluency": m.get("fluency"),
        "lm_correctness": m.get("lm_correctness"),
        "missed": data.get("missed"),
        "timed_turns": data.get("timed_turns"),
        "train_tokens_per_stream": train.get("tokens_per_stream") if train.get("streams") else None,
        "train_seconds": train.get("seconds"),
        "steps": train.get("steps"),
    }


def _f(value, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def table(rows: list[dict]) -> str:
    lines = [
        "| arm | LM-PPL | TimeDiff (s) | TimeDiff@0.725 (s) | Fluency | LM-Correctness | missed | "
        "train tokens/stream | train time |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        missed = "-" if r["missed"] is None else f"{r['missed']}/{r['timed_turns']}"
        lines.append(
            f"| {r['label']} | {_f(r['lm_ppl'], '.2f')} | {_f(r['time_diff'], '.2f')} | "
            f"{_f(r['time_diff_theta'], '.2f')} | {_f(r['fluency'] and 100 * r['fluency'], '.1f')} % | "
            f"{_f(r['lm_correctness'] and 100 * r['lm_correctness'], '.1f')} % | {missed} | "
            f"{_f(r['train_tokens_per_stream'], '.0f')} | "
            f"{_f(r['steps'] and r['train_seconds'] / 60, '.1f')} min |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/ablation", help="folder of the arms (default: runs/ablation)")
    parser.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated arms (default: {','.join(ARMS)})")
    parser.add_argument("--table-only", action="store_true", help="only collect the table of finished arms")
    parser.add_argument("overrides", nargs="*", help="key=value overrides for every arm (e.g. run.threads=2)")
    args = parser.parse_args(argv)
    out = (ROOT / args.out) if not Path(args.out).is_absolute() else Path(args.out)
    arms = [a for a in args.arms.split(",") if a]
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        parser.error(f"unknown arm(s) {', '.join(unknown)}; choose from {', '.join(ARMS)}")
    if not args.table_only:
        for name in arms:
            if (out / name / "metrics.json").is_file():
                print(f"[ablation] {name}: done already ({out / name / 'metrics.json'})")
                continue
            seconds = run_arm(name, out, args.overrides)
            print(f"[ablation] {name}: {seconds / 60:.1f} min", flush=True)
    rows = [r for r in (row(a, out) for a in arms) if r is not None]
    text = table(rows)
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(text + "\n")
    (out / "table.json").write_text(json.dumps(rows, indent=1))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
