"""The replay-eval report (pure): what was played, what came back, the scores; JSON and PNG.

The player's raw results (messages with wall-clock receive times) become plain records
here: decisions and responses with their video time (stamp minus the bag's first image
stamp), the proactive responses (those a ``live/decision`` names), latencies in real-time
mode, and the scores of :mod:`live_ros.evaluation.score`.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from live_ros.evaluation.offline import finite
from live_ros.evaluation.score import Asked, EventRef, Said, format_report, score

FORMAT = "live_ros.replay-eval/1"


def _stamp(header) -> float:
    return float(header.stamp.sec) + float(header.stamp.nanosec) * 1e-9


def _keys(stamps) -> set[int]:
    return {int(round(s * 1e5)) for s in stamps}


def _in(keys: set[int], stamp: float) -> bool:
    """``stamp`` is in ``keys`` within 10 us (stamps go through the nodes as float seconds)."""
    k = int(round(stamp * 1e5))
    return k in keys or k - 1 in keys or k + 1 in keys


@dataclass
class Collected:
    decisions: list[dict] = field(default_factory=list)
    responses: list[dict] = field(default_factory=list)
    said: list[Said] = field(default_factory=list)
    lags: list[float] = field(default_factory=list)
    unexpected: int = 0
    decided: set = field(default_factory=set)


def collect(play, t0: float, realtime: bool) -> Collected:
    """Records from a :class:`live_ros.ros.replay.PlayResult` (messages stay untouched)."""
    out = Collected()
    planned = _keys(p.stamp for p in play.plans if p.acked)
    for d, wall in play.decisions:
        s = _stamp(d.header)
        pub = play.published.get(s)
        out.decisions.append(
            {
                "time": s - t0,
                "stamp": s,
                "frame_index": int(d.frame_index),
                "video_time": d.video_time,
                "p_interval": float(d.p_interval),
                "theta": float(d.theta),
                "spoke": bool(d.spoke),
                "suppressed": d.suppressed,
                "batch": int(d.batch),
                "response_id": int(d.response_id),
                "lag": (wall - pub) if (realtime and pub is not None) else None,
            }
        )
        if realtime and pub is not None:
            out.lags.append(wall - pub)
        if not _in(planned, s):
            out.unexpected += 1
    out.decided = _keys(d["stamp"] for d in out.decisions)
    proactive = {d["response_id"] for d in out.decisions if d["spoke"]}
    first_seen: dict[int, float] = {}
    for r, wall in play.responses:
        first_seen.setdefault(r.response_id, wall)
        if not r.final:
            continue
        s = _stamp(r.header)
        pub = play.published.get(s) if realtime else None
        is_pro = r.response_id in proactive
        rec = {
            "response_id": int(r.response_id),
            "query_id": int(r.query_id),
            "kind": r.kind,
            "text": r.text,
            "final": True,
            "time": s - t0,
            "stamp": s,
            "video_time": r.video_time,
            "proactive": is_pro,
            "latency": (wall - pub) if (pub is not None and is_pro) else None,
            "first_latency": (first_seen[r.response_id] - pub) if (pub is not None and is_pro) else None,
            "node_latency": float(r.latency),
        }
        out.responses.append(rec)
        out.said.append(
            Said(
                rec["response_id"],
                rec["query_id"],
                r.kind,
                r.text,
                rec["time"],
                is_pro,
                r.video_time,
                rec["latency"],
                rec["first_latency"],
            )
        )
    return out


def resolve_answers(asked: list[Asked], responses: list[dict], window: tuple[float, float] = (-0.5, 3.0)) -> None:
    """Each accepted question's answer: its first final response (answer or refusal); for a
    question with ``expected_at`` (a reminder), the first response with its query id within
    ``expected_at + window`` (spoken on a frame or not): a later one is no answer."""
    for q in asked:
        if not q.query_id:
            continue
        if q.expected_at is not None:
            first = next(
                (
                    r
                    for r in responses
                    if r["query_id"] == q.query_id
                    and r["kind"] != "refusal"
                    and q.expected_at + window[0] <= r["time"] <= q.expected_at + window[1]
                ),
                None,
            )
        else:
            first = next((r for r in responses if r["query_id"] == q.query_id and not r["proactive"]), None)
        if first is None:
            continue
        if first["kind"] == "refusal":
            q.refused = first["text"]
        else:
            q.answer, q.answer_time = first["text"], first["time"]


def build_report(
    *,
    scan,
    play,
    mode: str,
    settings: dict,
    events: list[EventRef],
    asked: list[Asked],
    annotation_source: str | None,
    offline: dict | None = None,
    offline_note: str = "",
    notes: list[str] | None = None,
    truth=None,
) -> dict:
    """The report of a replay: ``truth`` (:class:`live_ros.evaluation.truth.Truth`, None
    without an annotation) scores the words of what the graph said, the events and answers
    its timing and answers (:mod:`live_ros.evaluation.score`)."""
    from live_ros.evaluation.truth import score_words

    realtime = mode == "realtime"
    t0 = scan.images[0].stamp
    got = collect(play, t0, realtime)
    resolve_answers(asked, got.responses, tuple(settings["window"]))
    thetas = {round(d["theta"], 6) for d in got.decisions if not math.isnan(d["theta"])}
    if len(thetas) == 1:
        settings = {**settings, "theta": thetas.pop()}
    sc = score(
        events,
        got.said,
        asked,
        window=tuple(settings["window"]),
        prefer_object=settings["prefer_object"],
        fuzzy_threshold=settings["fuzzy_threshold"],
        decision_lags=got.lags if realtime else None,
    )
    acked = [p for p in play.plans if p.acked]
    dropped = [p for p in acked if not _in(got.decided, p.stamp)]
    notes = list(notes or [])
    refused = [p for p in play.plans if p.note and ("refused" in p.note or "refuses" in p.note)]
    if refused:
        notes.append(
            f"{len(refused)} sampled images are refused by the graph (first: image {refused[0].order}: "
            f"{refused[0].note})"
        )
    if got.unexpected:
        notes.append(
            f"{got.unexpected} decisions for images the sampling rule did not pick: camera_subscriber's "
            f"fps or grid differs from the plan ({settings['fps']:g} fps)"
            + (" or images were lost and later ones taken instead" if realtime else "")
        )
    if realtime and play.late:
        notes.append(
            f"player: publication behind schedule p50 {sorted(play.late)[len(play.late) // 2]:.3f} s, "
            f"max {max(play.late):.3f} s"
        )
    report = {
        "format": FORMAT,
        "bag": str(scan.bag),
        "topic": scan.topic,
        "type": scan.msgtype,
        "mode": mode,
        "settings": settings,
        "annotation": annotation_source,
        "frames": {
            "images": len(play.plans),
            "sampled": sum(p.sampled for p in play.plans),
            "acked": len(acked),
            "decisions": len(got.decisions),
            "dropped": len(dropped),
            "unexpected": got.unexpected,
            "spoke": sum(d["spoke"] for d in got.decisions),
        },
        "stamps": scan.report.to_dict(),
        "stamp_notes": scan.report.lines() + list(scan.notes),
        "notes": notes,
        "words": score_words(truth, got.said).to_dict(),
        "score": sc.to_dict(),
        "offline": offline,
        "offline_note": offline_note,
        "decisions": got.decisions,
        "responses": got.responses,
        "plan": [p.to_dict() for p in play.plans if p.sampled or p.note],
    }
    return report


def write_outputs(report: dict, out_dir: str | Path, png: bool = True) -> dict:
    """``report.json`` (atomic), ``timeline.png`` and ``table.txt`` in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "report.json", "table": out_dir / "table.txt"}
    tmp = out_dir / f".report.json.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(finite(report), indent=1, allow_nan=False))
    os.replace(tmp, paths["json"])
    paths["table"].write_text(format_report(report) + "\n")
    if png:
        from live_ros.evaluation.plots import write_timeline

        paths["png"] = write_timeline(report, out_dir / "timeline.png")
    return {k: str(v) for k, v in paths.items()}
