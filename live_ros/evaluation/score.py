"""Online scores of a replay against ground truth (pure): what the running graph said, and
when, compared with the annotated events and the expected answers.

- **Matching**: every proactive response (a frame made the model speak; ``live/decision``
  names it) may match one annotated event and every event one response, when the
  response's time (its triggering frame's stamp minus the bag's first image stamp) lies
  in ``[event + window[0], event + window[1]]``. Pairs are taken greedily by closeness
  (responses that mention the event's object first when ``prefer_object``), which gives
  one-to-one matches deterministically.
- **Online TimeDiff**: mean |response time - event time| over matched events (the signed
  mean says early or late); **missed**: events with no match; **spurious**: proactive
  responses that match no event.
- **Answers**: the first final response to each question (with ``expected_at``, e.g. a
  reminder, the first one within ``expected_at`` + ``window``, so that "Okay, I am
  watching." is not graded and a late one is no answer), against its ``expected`` text:
  exact (after lower-casing, dropping punctuation and extra spaces) and fuzzy
  (``difflib.SequenceMatcher`` ratio; correct when >= ``fuzzy_threshold``).
- **Latency** (real-time mode): percentiles of wall-clock receive time minus the wall
  time the triggering image was published.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

DEFAULT_WINDOW = (-0.5, 3.0)
FUZZY_THRESHOLD = 0.7


@dataclass
class EventRef:
    time: float
    kind: str
    object: str = ""
    text: str = ""


@dataclass
class Said:
    """One final response of the graph."""

    response_id: int
    query_id: int
    kind: str  # narration / answer / refusal
    text: str
    time: float  # triggering frame stamp - first image stamp
    proactive: bool  # triggered by a frame (not the immediate answer to a query)
    video_time: float = 0.0  # as the node reported it
    latency: float | None = None  # wall: final received - trigger image published (real time)
    first_latency: float | None = None  # wall: first partial received - trigger image published


@dataclass
class Asked:
    time: float
    text: str
    expected: str | None = None
    query_id: int = 0
    answer: str | None = None
    refused: str = ""
    expected_at: float | None = None
    answer_time: float | None = None


def events_from_annotation(annotation, include_ends: bool = True) -> list[EventRef]:
    """Annotated events (a ``VideoAnnotation`` or its dict), with segment ends that have an
    ``end_text`` as events of their own (``<kind>-end``), sorted by time."""
    events = annotation["events"] if isinstance(annotation, dict) else [asdict(e) for e in annotation.events]
    out = []
    for e in events:
        out.append(EventRef(float(e["time"]), str(e.get("kind", "")), str(e.get("object", "")), str(e.get("text", ""))))
        if include_ends and e.get("end") is not None and e.get("end_text"):
            out.append(
                EventRef(float(e["end"]), f"{e.get('kind', '')}-end", str(e.get("object", "")), str(e["end_text"]))
            )
    return sorted(out, key=lambda e: e.time)


def mentions(text: str, noun: str) -> bool:
    return bool(noun) and re.search(rf"\b{re.escape(noun.lower())}\b", text.lower()) is not None


def match_events(
    events: Sequence[EventRef],
    said: Sequence[Said],
    window: tuple[float, float] = DEFAULT_WINDOW,
    prefer_object: bool = True,
) -> dict[int, int]:
    """One-to-one matches {event index: response index} of proactive responses to events."""
    lo, hi = window
    pairs = []
    for i, e in enumerate(events):
        for j, r in enumerate(said):
            if not r.proactive:
                continue
            dt = r.time - e.time
            if lo - 1e-9 <= dt <= hi + 1e-9:
                named = 0 if (prefer_object and mentions(r.text, e.object)) else 1
                pairs.append((named, abs(dt), r.time, e.time, i, j))
    pairs.sort()
    matched: dict[int, int] = {}
    used: set[int] = set()
    for _, _, _, _, i, j in pairs:
        if i not in matched and j not in used:
            matched[i] = j
            used.add(j)
    return matched


def normalize(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def answer_scores(expected: str, answer: str | None) -> tuple[bool, float]:
    if answer is None:
        return False, 0.0
    a, e = normalize(answer), normalize(expected)
    return a == e, difflib.SequenceMatcher(None, a, e).ratio()


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (None for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def _pcts(values: Sequence[float]) -> dict:
    return {
        "count": len(values),
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "max": max(values) if values else None,
    }


@dataclass
class Score:
    events: list[dict] = field(default_factory=list)
    online: dict = field(default_factory=dict)
    answers: list[dict] = field(default_factory=list)
    answer_summary: dict = field(default_factory=dict)
    latency: dict | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def score(
    events: Sequence[EventRef],
    said: Sequence[Said],
    asked: Sequence[Asked] = (),
    *,
    window: tuple[float, float] = DEFAULT_WINDOW,
    prefer_object: bool = True,
    fuzzy_threshold: float = FUZZY_THRESHOLD,
    decision_lags: Sequence[float] | None = None,
) -> Score:
    """Scores of one replay. ``decision_lags`` (real-time mode): wall seconds from an image's
    publication to its decision."""
    matched = match_events(events, said, window, prefer_object)
    out = Score()
    diffs = []
    for i, e in enumerate(events):
        row = {
            "time": e.time,
            "kind": e.kind,
            "object": e.object,
            "text": e.text,
            "matched": i in matched,
            "response_time": None,
            "time_diff": None,
            "response": None,
            "names_object": None,
        }
        if i in matched:
            r = said[matched[i]]
            row.update(
                response_time=r.time,
                time_diff=r.time - e.time,
                response=r.text,
                response_id=r.response_id,
                names_object=mentions(r.text, e.object),
            )
            diffs.append(r.time - e.time)
        out.events.append(row)
    proactive = [r for r in said if r.proactive]
    used = set(matched.values())
    # without annotated events nothing can be called spurious: the responses are only listed
    spurious = [j for j, r in enumerate(said) if r.proactive and j not in used] if events else []
    out.online = {
        "events": len(events),
        "matched": len(matched),
        "missed": len(events) - len(matched),
        "proactive_responses": len(proactive),
        "spurious": len(spurious) if events else None,
        "time_diff": sum(abs(d) for d in diffs) / len(diffs) if diffs else None,
        "mean_signed_diff": sum(diffs) / len(diffs) if diffs else None,
        "names_object": sum(1 for row in out.events if row["names_object"]),
        "window": list(window),
        "prefer_object": prefer_object,
        "spurious_responses": [{"time": said[j].time, "text": said[j].text} for j in spurious],
    }
    graded: list[dict[str, Any]] = []
    for q in asked:
        row = {
            "time": q.time,
            "question": q.text,
            "expected": q.expected,
            "answer": q.answer,
            "query_id": q.query_id,
            "refused": q.refused,
            "exact": None,
            "fuzzy": None,
            "correct": None,
            "expected_at": q.expected_at,
            "answer_time": q.answer_time,
        }
        if q.expected is not None:
            exact, ratio = answer_scores(q.expected, q.answer)
            row.update(exact=exact, fuzzy=round(ratio, 4), correct=exact or ratio >= fuzzy_threshold)
            graded.append(row)
        out.answers.append(row)
    out.answer_summary = {
        "asked": len(asked),
        "answered": sum(1 for q in asked if q.answer is not None),
        "graded": len(graded),
        "exact": sum(1 for r in graded if r["exact"]),
        "correct": sum(1 for r in graded if r["correct"]),
        "mean_fuzzy": sum(r["fuzzy"] for r in graded) / len(graded) if graded else None,
        "fuzzy_threshold": fuzzy_threshold,
    }
    if decision_lags is not None:
        out.latency = {
            "decision": _pcts(list(decision_lags)),
            "first_partial": _pcts([r.first_latency for r in said if r.first_latency is not None]),
            "final": _pcts([r.latency for r in said if r.latency is not None]),
        }
    return out


# -- the table ----------------------------------------------------------------------------
def _s(value, fmt: str = "{:.2f}", none: str = "-") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return none
    return fmt.format(value)


def _clip(text: str | None, width: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 3] + "..."


def _said_lines(report: dict, max_rows: int) -> list[str]:
    """What the model said (final responses), for a replay with no annotated events."""
    said = [r for r in report.get("responses", []) if r.get("final", True)]
    lines = [
        f"  no annotated events to score against (give --annotations, or a bag made with bag-from-video "
        f"--annotations); the model said ({len(said)} final responses):"
    ]
    if not said:
        lines.append("    nothing")
    for r in said[:max_rows]:
        kind = r["kind"] + (f" to query {r['query_id']}" if r.get("query_id") else "")
        lines.append(f"    [{r['time']:7.2f} s] {kind}: {_clip(r['text'], 90)}")
    if len(said) > max_rows:
        lines.append(f"    ... {len(said) - max_rows} more in report.json")
    return lines


def format_report(report: dict, max_rows: int = 40) -> str:
    """The printed summary of a replay-eval report (see live_ros.ros.replay)."""
    lines = []
    fr, st = report["frames"], report["settings"]
    mode = report["mode"] + (f" x{st['speed']:g}" if report["mode"] == "realtime" else "")
    lines.append(f"replay-eval {report['bag']}  topic {report['topic']}  mode {mode}")
    lines.append(
        f"  images {fr['images']}, sampled at {st['fps']:g} fps {fr['sampled']}, taken by live_llm "
        f"{fr['decisions']} of {fr['acked']} expected ({fr['dropped']} dropped), model spoke at "
        f"{fr['spoke']}; theta {_s(st.get('theta'), '{:g}')}, preset {st.get('preset') or '-'}"
    )
    for note in report.get("stamp_notes", []) + report.get("notes", []):
        lines.append(f"  note: {note}")
    words = report.get("words")
    if words is not None:  # what was said, checked against the annotation, leads
        from live_ros.evaluation.truth import WordScore, format_words

        lines += ["", "  the words (live_ros/evaluation/truth.py):"]
        lines += ["  " + line for line in format_words(WordScore(**words), max_rows).splitlines()]
    events = report["score"]["events"] if words is None else []
    if events:
        lines.append("")
        head = f"  {'event':<34} {'time':>7} {'said at':>8} {'diff':>7}  response"
        lines += [head, "  " + "-" * (len(head) + 20)]
        for row in events[:max_rows]:
            name = _clip(row["text"] or f"{row['object']} {row['kind']}", 34)
            lines.append(
                f"  {name:<34} {row['time']:>7.2f} {_s(row['response_time']):>8} "
                f"{_s(row['time_diff'], '{:+.2f}'):>7}  {_clip(row['response'], 40) if row['matched'] else 'MISSED'}"
            )
        if len(events) > max_rows:
            lines.append(f"  ... {len(events) - max_rows} more events")
    on = report["score"]["online"]
    off = report.get("offline") or {}
    theta = st.get("theta")
    if not on.get("events") and words is None:
        lines += ["", *_said_lines(report, max_rows)]
    lines += ["", "  the paper's metrics:"]

    def table_row(name: str, online: str, offline: str) -> None:
        lines.append(f"  {name:<30} {online:>22} {offline:>28}")

    th = _s(theta, "{:g}")
    table_row("metric", "online (this replay)", "offline (live-ros evaluate)")
    table_row(f"TimeDiff@{th} (s)", _s(on.get("time_diff")), _s(off.get("time_diff_theta")) if off else "-")
    table_row("TimeDiff, argmax (s)", "-", _s(off.get("time_diff")) if off else "-")
    table_row(
        "events missed",
        f"{on.get('missed', '-')} of {on.get('events', 0)}",
        f"{off.get('missed_theta')} of {off.get('timed_turns')}" if off else "-",
    )
    table_row("mean signed diff (s)", _s(on.get("mean_signed_diff"), "{:+.2f}"), "-")
    if on.get("events"):
        table_row("spurious responses", f"{on.get('spurious', '-')} of {on.get('proactive_responses', 0)}", "-")
    else:
        table_row("responses (not scored)", f"{on.get('proactive_responses', 0)} proactive", "-")
    if off:
        table_row(
            f"Fluency, @{th} / LM-PPL",
            "-",
            f"{_s(off.get('fluency'), '{:.1%}')}, {_s(off.get('fluency_theta'), '{:.1%}')} / {_s(off.get('lm_ppl'))}",
        )
    if report.get("offline_note"):
        lines.append(f"  offline: {report['offline_note']}")
    for note in (off or {}).get("notes", []):
        lines.append(f"  offline note: {note}")
    ans = report["score"]["answer_summary"]
    if ans.get("asked"):
        lines.append("")
        lines.append(
            f"  questions {ans['asked']}, answered {ans['answered']}; graded {ans['graded']}: exact "
            f"{ans['exact']}, correct (fuzzy >= {ans['fuzzy_threshold']:g}) {ans['correct']}, mean fuzzy "
            f"{_s(ans['mean_fuzzy'])}"
        )
        for row in report["score"]["answers"]:
            lines.append(
                f"    [{row['time']:6.1f} s] {_clip(row['question'], 40)} -> "
                f"{_clip(row['answer'] if row['answer'] is not None else row['refused'] or 'NO ANSWER', 40)}"
                + (
                    f"  (expected: {_clip(row['expected'], 30)}, fuzzy {row['fuzzy']:.2f})"
                    if row["expected"] is not None
                    else ""
                )
                + (
                    f" at {row['answer_time']:.1f} s for {row['expected_at']:.1f} s"
                    if row.get("expected_at") is not None and row.get("answer_time") is not None
                    else ""
                )
            )
    lat = report["score"].get("latency")
    if lat:
        lines.append("")
        for key, what in (
            ("decision", "image -> decision"),
            ("first_partial", "image -> first words"),
            ("final", "image -> final response"),
        ):
            v = lat[key]
            if not v["count"]:
                lines.append(f"  latency {what:<24} none (no such response)")
                continue
            lines.append(
                f"  latency {what:<24} p50 {_s(v['p50'], '{:.3f}')} s  p90 {_s(v['p90'], '{:.3f}')} s  "
                f"p99 {_s(v['p99'], '{:.3f}')} s  max {_s(v['max'], '{:.3f}')} s  (n={v['count']})"
            )
    return "\n".join(lines)
