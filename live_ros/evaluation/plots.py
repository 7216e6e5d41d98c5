"""The timeline PNG of a replay-eval report (matplotlib, Agg: no display needed).

Top: P(interval token) of every frame the LLM took, with theta (the model speaks below
it). Bottom: annotated events (ticks with their text), proactive responses (green when
matched to an event, a line joins them; red when spurious), questions and their answers.
"""

from __future__ import annotations

from pathlib import Path


def _short(text: str | None, width: int = 28) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"


def write_timeline(report: dict, path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    decisions = report.get("decisions", [])
    events = report["score"]["events"]
    responses = [r for r in report.get("responses", []) if r.get("final")]
    answers = report["score"]["answers"]
    end = max([0.0] + [d["time"] for d in decisions] + [e["time"] for e in events] + [r["time"] for r in responses])
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(max(8.0, min(24.0, end / 5 + 6)), 6.5), sharex=True, gridspec_kw={"height_ratios": [1, 2]}
    )
    if decisions:
        times = [d["time"] for d in decisions]
        top.plot(
            times,
            [d["p_interval"] for d in decisions],
            ".-",
            color="tab:blue",
            lw=1,
            ms=3,
            label="P(interval) per frame",
        )
        spoke = [d for d in decisions if d["spoke"]]
        top.plot(
            [d["time"] for d in spoke], [d["p_interval"] for d in spoke], "v", color="tab:green", ms=6, label="spoke"
        )
    theta = report["settings"].get("theta")
    if theta is not None:
        top.axhline(theta, color="tab:red", ls="--", lw=1, label=f"theta {theta:g}")
    top.set_ylim(-0.02, 1.02)
    top.set_ylabel("P(interval)")
    top.legend(loc="lower left", fontsize=7, ncol=3)
    top.set_title(f"{Path(report['bag']).name}: {report['mode']} replay", fontsize=10)

    rows = {"events": 2.0, "responses": 1.0, "questions": 0.0}
    for e in events:
        bottom.plot([e["time"]], [rows["events"]], "|", color="black", ms=18, mew=2)
        bottom.annotate(
            _short(e["text"] or f"{e['object']} {e['kind']}"),
            (e["time"], rows["events"]),
            xytext=(2, 8),
            textcoords="offset points",
            rotation=30,
            fontsize=7,
        )
        if e["matched"]:
            bottom.plot(
                [e["time"], e["response_time"]],
                [rows["events"], rows["responses"]],
                "-",
                color="tab:green",
                lw=1,
                alpha=0.7,
            )
    matched_ids = {e.get("response_id") for e in events if e["matched"]}
    for r in responses:
        if not r["proactive"]:
            continue
        good = r["response_id"] in matched_ids
        color = "tab:green" if good else "tab:red" if events else "tab:blue"  # nothing to match: not spurious
        bottom.plot([r["time"]], [rows["responses"]], "o", color=color, ms=6)
        bottom.annotate(
            _short(r["text"], 24),
            (r["time"], rows["responses"]),
            xytext=(2, -14),
            textcoords="offset points",
            rotation=-25,
            fontsize=6,
            color="dimgray",
        )
    for i, a in enumerate(answers):
        bottom.plot([a["time"]], [rows["questions"]], "s", color="tab:purple", ms=6)
        bottom.annotate(
            _short(f"Q: {a['question']}  A: {a['answer'] or a['refused'] or '-'}", 60),
            (a["time"], rows["questions"]),
            xytext=(4, 6 if i % 2 == 0 else -14),
            textcoords="offset points",
            fontsize=7,
            color="tab:purple",
        )
    bottom.set_yticks(list(rows.values()), ["events", "responses\n(green: matched)", "questions"])
    bottom.set_ylim(-0.6, 2.9)
    bottom.set_xlim(-0.5, end + 1.0)
    bottom.set_xlabel("video time (s, from the bag's first image)")
    bottom.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path
