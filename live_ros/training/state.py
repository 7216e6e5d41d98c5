"""What a run leaves on disk to resume from and to use: ``checkpoint-STEP/`` folders
(adapter in fp32, tokenizer, live_config.json and ``training_state.pt``: optimizer,
scheduler, step, RNG, loss history and statistics), the newest ``keep`` of them kept, and
the ``final/`` checkpoint (adapter + connector in the save dtype). Every folder is written
aside and renamed into place, so a crash never leaves a half-written checkpoint.

Resuming gives the same result as an uninterrupted run: the data a step draws is a
function of (seed, epoch, stream) (:mod:`live_ros.training.data`), and the RNG state
(dropout) saved here is the one at the start of the next step.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from live_ros.training.config import ConfigError

if TYPE_CHECKING:
    from live_ros.model.config import LiveConfig

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
STATE_FILE = "training_state.pt"


def rng_state() -> dict:
    """The random number generators' state (torch, Python's, CUDA's): dropout draws."""
    import random

    import torch

    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    import random

    import torch

    torch.set_rng_state(state["torch"])
    if "python" in state:
        random.setstate(_tuples(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tuples(value):
    """Python's RNG state with the tuples that a save and load turned into lists."""
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def checkpoints(out_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints of a run, oldest first."""
    found = []
    if Path(out_dir).is_dir():
        for p in Path(out_dir).iterdir():
            m = CHECKPOINT_RE.match(p.name)
            if m and (p / STATE_FILE).is_file():
                found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(out_dir: Path) -> Path | None:
    found = checkpoints(out_dir)
    return found[-1][1] if found else None


def save_training_checkpoint(
    folder: Path,
    model,
    tokenizer,
    live: LiveConfig,
    optimizer,
    scheduler,
    step: int,
    rng: dict,
    history: list,
    stats: dict,
) -> Path:
    """A resumable checkpoint, written aside and renamed into place: the adapter in fp32
    (also loadable with ``checkpoint.load_checkpoint``), tokenizer, live_config.json, training_state.pt."""
    import torch

    from live_ros.model.checkpoint import save_checkpoint

    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    save_checkpoint(model, tokenizer, tmp, live, dtype=torch.float32)
    torch.save(
        {
            "step": step,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": rng,
            "history": history,
            "stats": stats,
        },
        tmp / STATE_FILE,
    )
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return folder


def load_training_checkpoint(folder: Path, model, optimizer, scheduler) -> dict:
    """Restore adapter, optimizer, scheduler and RNG from ``folder``; the saved state."""
    import torch
    from peft.utils import set_peft_model_state_dict
    from safetensors.torch import load_file

    from live_ros.model.checkpoint import ADAPTER_WEIGHTS

    state = torch.load(Path(folder) / STATE_FILE, map_location="cpu", weights_only=True)
    weights = load_file(str(Path(folder) / ADAPTER_WEIGHTS))
    device = next(p for p in model.parameters()).device
    try:
        set_peft_model_state_dict(model, {k: v.to(device) for k, v in weights.items()})
        optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as err:
        raise ConfigError(
            f"{folder} does not fit this run's model ({err}): resume with the config the run was "
            f"started with (its train_config.json), or train into another --out"
        ) from err
    scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    return state


def prune_checkpoints(out_dir: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` (at least 1) checkpoints of a run."""
    for _, old in checkpoints(out_dir)[: -max(1, keep)]:
        shutil.rmtree(old, ignore_errors=True)


def save_final(model, tokenizer, folder: Path, live: LiveConfig, dtype: str = "float16") -> Path:
    """The final checkpoint (``checkpoint.save_checkpoint``: adapter + connector in
    ``dtype``, tokenizer with <v>, live_config.json)."""
    from live_ros.model.checkpoint import _dtype, save_checkpoint

    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    save_checkpoint(model, tokenizer, tmp, live, dtype=_dtype(dtype))
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return folder
