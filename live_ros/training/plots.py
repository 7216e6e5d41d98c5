"""The loss curve of a run (``loss_curve.png``): the loss per optimizer step, its moving
average and the learning rate."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence


def plot_losses(history: Sequence[dict], path: Path, title: str = "") -> Path | None:
    """The loss per optimizer step, its moving average and the learning rate, as a PNG."""
    if not history:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [h["step"] for h in history]
    losses = [h["loss"] for h in history]
    smooth, ema = [], None
    alpha = 2.0 / (max(2, len(losses) // 20) + 1)  # an exponential moving average over ~5 % of the run
    for x in losses:
        ema = x if ema is None else (1 - alpha) * ema + alpha * x
        smooth.append(ema)
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    ax.plot(steps, losses, color="tab:blue", alpha=0.35, lw=1, label="loss")
    ax.plot(steps, smooth, color="tab:blue", lw=2, label="moving average")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("streaming EOS loss")
    ax.grid(alpha=0.3)
    ax2 = ax.twinx()
    ax2.plot(steps, [h["lr"] for h in history], color="tab:orange", lw=1, label="learning rate")
    ax2.set_ylabel("learning rate", color="tab:orange")
    handles, labels = ax.get_legend_handles_labels()
    handles2, labels2 = ax2.get_legend_handles_labels()
    ax.legend(handles + handles2, labels + labels2, loc="upper right", fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)
    return path
