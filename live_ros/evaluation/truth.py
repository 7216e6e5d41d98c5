"""The words of a streaming assistant checked against annotated ground truth (pure).

VideoLLM-online (CVPR 2024) scores *when* the model speaks (TimeDiff, Fluency; here
:mod:`live_ros.evaluation.score`); this module scores *what* it says: did a response name
the object of the event and say what happened to it, did it name objects that are not there,
did it say the same thing again while nothing changed. It takes plain inputs (an annotation,
:class:`~live_ros.evaluation.score.Said` responses), so an offline list of responses,
``evaluate-online`` and ``replay-eval`` score alike.

- **Truth** (:func:`truth_from_annotation`): the annotated events of the world's kinds
  (:data:`~live_ros.evaluation.claims.KINDS`; a segment with ``end`` and ``end_text`` adds a
  ``stops`` event at its end) and, per object, the intervals it is in view: from ``tracks``
  (a row's box not null, held until the next row), else from its events (an ``appears`` to
  the next ``leaves``, else to the end; an object with neither is in view throughout). With
  ``known_objects`` (the nouns the model was trained on) an event of any other object
  expects :data:`~live_ros.evaluation.claims.GENERIC` ("something"), never a trained name.
- **Matching** (:func:`score_words`): a proactive response may serve an event when its time
  minus the event's lies in ``window``. In three passes, each closest first (ties by response
  time, then event and response index): an event takes a response with a claim of its
  object and kind (one claim serves one event, so "The cat appears and the rocket leaves."
  serves two); then a response not yet used with a claim of its object; then any response
  not yet used (responded in time, wrong words).
- **Per response**: matched (serves an event) or spurious; hallucinated (a claim names a
  concrete object not in view at any time in ``[time - recent, time + ahead]``; a wrong
  kind about an object in view is no hallucination, the generic object never is); repeat
  (the normalized text of the proactive response before, with no event in between).
  Answers to questions (``proactive=False``) are listed, not counted.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from live_ros.data.annotations import VideoAnnotation
from live_ros.evaluation.claims import GENERIC, KINDS, Claim, claims
from live_ros.evaluation.score import Said, normalize

WINDOW = (-0.5, 1.5)  # a response may come this early / late for an event (seconds)
RECENT = 1.5  # an object counts as there when in view this long before a response...
AHEAD = 0.5  # ... or this long after it
EPS = 1e-9
# annotated kind -> scored kind (the world writes the KINDS; "<kind>-end" is a segment's end)
KIND_NAMES = {k: k for k in KINDS} | {
    "appear": "appears",
    "enter": "appears",
    "leave": "leaves",
    "exit": "leaves",
    "move": "moves",
    "stop": "stops",
    "turn": "turns",
    "grow": "grows",
    "shrink": "shrinks",
}
VERDICTS = ("OK", "WRONG EVENT", "WRONG OBJECT", "MISSED")


@dataclass(frozen=True)
class TruthEvent:
    time: float
    kind: str  # one of KINDS
    object: str  # the object a right claim names: the noun, or GENERIC for an untrained one
    noun: str  # the annotated noun
    text: str = ""


@dataclass
class Truth:
    events: list[TruthEvent]
    in_view: dict[str, list[tuple[float, float]]]  # noun -> [start, end) intervals, sorted
    objects: list[str]  # the vocabulary responses are parsed with
    duration: float | None = None
    video_id: str = ""
    skipped: int = 0  # annotated events of other kinds (steps, narrations): not scored

    def visible(self, noun: str, start: float, end: float) -> bool:
        """Whether ``noun`` is in view at some time in ``[start, end]``."""
        return any(s <= end + EPS and e >= start - EPS for s, e in self.in_view.get(noun, ()))

    def to_dict(self) -> dict:
        out = asdict(self)
        out["in_view"] = {n: [[s, None if math.isinf(e) else e] for s, e in v] for n, v in self.in_view.items()}
        return out


def _noun(name: Any) -> str:
    return " ".join(str(name or "").lower().split())


def _field(annotation: Any, key: str, default: Any) -> Any:
    if isinstance(annotation, Mapping):
        return annotation.get(key, default)
    return getattr(annotation, key, default)


def _merge(intervals: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for s, e in sorted(intervals):
        if out and s <= out[-1][1] + EPS:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        elif e > s - EPS:
            out.append((s, e))
    return out


def _track_intervals(rows: Sequence[Sequence[Any]], end: float) -> list[tuple[float, float]]:
    """[start, end) while a track's box is not null (a row holds until the next one)."""
    out, start = [], None
    for row in sorted(rows, key=lambda r: float(r[0])):
        t, box = float(row[0]), row[1]
        if box is not None and start is None:
            start = t
        elif box is None and start is not None:
            out.append((start, t))
            start = None
    if start is not None:
        out.append((start, max(end, start)))
    return out


def _event_intervals(events: Sequence[TruthEvent], end: float) -> list[tuple[float, float]]:
    """In view from an ``appears`` to the next ``leaves`` (else to ``end``); a ``leaves``
    before any ``appears``: from 0; neither: all along (it moves, turns, ... in view)."""
    out: list[tuple[float, float]] = []
    start = None
    for e in events:
        if e.kind == "appears" and start is None:
            start = e.time
        elif e.kind == "leaves" and start is not None:
            out.append((start, e.time))
            start = None
        elif e.kind == "leaves" and not out:
            out.append((0.0, e.time))
    if start is not None:
        out.append((start, max(end, start)))
    if not any(e.kind in ("appears", "leaves") for e in events):
        out.append((0.0, end))
    return out


def truth_from_annotation(
    annotation: VideoAnnotation | Mapping[str, Any],
    known_objects: Iterable[str] | None = None,
    vocabulary: Iterable[str] = (),
) -> Truth:
    """The ground truth of ``annotation`` (a ``VideoAnnotation`` or its dict). ``known_objects``:
    the nouns the model was trained to name (None: all are); ``vocabulary``: more nouns to
    recognise in responses (e.g. the world's whole catalogue), so that naming an object of
    no annotation counts as naming it."""
    known = None if known_objects is None else {_noun(o) for o in known_objects}
    raw = [e.to_dict() if hasattr(e, "to_dict") else dict(e) for e in _field(annotation, "events", [])]
    duration = _field(annotation, "duration", None)
    end = float(duration) if duration is not None else math.inf
    events, skipped = [], 0
    for e in raw:
        kind = str(e.get("kind", "")).lower()
        kind = "stops" if kind.endswith("-end") else KIND_NAMES.get(kind, "")
        noun = _noun(e.get("object"))
        if not kind or not noun:
            skipped += 1
            continue
        expect = GENERIC if known is not None and noun not in known else noun
        events.append(TruthEvent(float(e["time"]), kind, expect, noun, str(e.get("text", ""))))
        if e.get("end") is not None and e.get("end_text"):
            events.append(TruthEvent(float(e["end"]), "stops", expect, noun, str(e["end_text"])))
    events.sort(key=lambda e: e.time)
    actors = (_field(annotation, "meta", {}) or {}).get("actors", {}) or {}
    tracked: dict[str, list[tuple[float, float]]] = {}
    for actor, rows in (_field(annotation, "tracks", {}) or {}).items():
        noun = _noun(actors.get(actor) or re.sub(r"#\d+$", "", actor))
        tracked.setdefault(noun, []).extend(_track_intervals(rows, end))
    nouns = {e.noun for e in events} | set(tracked)
    in_view = {
        n: _merge(tracked[n]) if n in tracked else _event_intervals([e for e in events if e.noun == n], end)
        for n in sorted(nouns)
    }
    names = [*(_field(annotation, "objects", []) or []), *nouns, *(known or ()), *vocabulary]
    objects = sorted({_noun(o) for o in names} - {"", GENERIC})
    video_id = str(_field(annotation, "video_id", "") or "")
    return Truth(events, in_view, objects, None if math.isinf(end) else end, video_id, skipped)


def world_vocabulary() -> list[str]:
    """Every noun of the world's object catalogue (live_ros/data/assets/objects.json, the
    named and the never-trained ones): a response that names one not in view is a
    hallucination even when the video's annotation never mentions it."""
    from live_ros.data.world_objects import object_catalog

    return sorted(object_catalog())


def said_from_records(records: Iterable[Mapping[str, Any]]) -> list[Said]:
    """Final responses saved as JSON (``live-ros demo --json``, replay-eval's report,
    evaluate-online's ``said``) as :class:`Said`: the time is ``time`` or ``video_time``;
    a record without ``proactive`` is proactive unless it is the answer to a query or a
    refusal."""
    out = []
    for i, r in enumerate(records):
        if r.get("final") is False:
            continue
        kind = str(r.get("kind", "narration"))
        time = r.get("time", r.get("video_time"))
        if time is None:
            raise ValueError(f"response {i} has no time (time or video_time): {dict(r)}")
        proactive = r.get("proactive")
        out.append(
            Said(
                int(r.get("response_id", i + 1)),
                int(r.get("query_id", 0)),
                kind,
                str(r.get("text", "")),
                float(time),
                kind == "narration" if proactive is None else bool(proactive),
            )
        )
    return out


@dataclass
class WordScore:
    scored: bool  # False: no annotated events to score against
    summary: dict
    events: list[dict] = field(default_factory=list)  # one row per ground-truth event
    responses: list[dict] = field(default_factory=list)  # one row per response, in time order
    video_id: str = ""
    settings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _pairs(truth: Truth, said: Sequence[Said], window: tuple[float, float]) -> list[tuple[float, float, int, int]]:
    """(|offset|, response time, event, response) of every in-window pair, closest first."""
    lo, hi = window
    return sorted(
        (abs(r.time - e.time), r.time, i, j)
        for i, e in enumerate(truth.events)
        for j, r in enumerate(said)
        if r.proactive and lo - EPS <= r.time - e.time <= hi + EPS
    )


def _match(
    truth: Truth, said: Sequence[Said], parsed: list[list[Claim]], window: tuple[float, float]
) -> dict[int, tuple[int, str]]:
    """{event: (response, how)}; how: ``claim`` (object and kind), ``object``, ``time``."""
    pairs = _pairs(truth, said, window)
    served: dict[int, tuple[int, str]] = {}
    used: set[int] = set()
    used_claims: set[tuple[int, int]] = set()
    for _, _, i, j in pairs:
        e = truth.events[i]
        if i in served:
            continue
        for k, c in enumerate(parsed[j]):
            if c.object == e.object and c.kind == e.kind and (j, k) not in used_claims:
                served[i] = (j, "claim")
                used.add(j)
                used_claims.add((j, k))
                break
    for how in ("object", "time"):
        for _, _, i, j in pairs:
            if i in served or j in used:
                continue
            if how == "time" or any(c.object == truth.events[i].object for c in parsed[j]):
                served[i] = (j, how)
                used.add(j)
    return served


def _verdict(row: Mapping[str, Any]) -> str:
    if row["response"] is None:
        return "MISSED"
    return "OK" if row["correct"] else "WRONG EVENT" if row["right_object"] else "WRONG OBJECT"


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _summarize(events: Sequence[dict], responses: Sequence[dict]) -> dict:
    """The summary of event and response rows (of one stream or several)."""
    responded = [r for r in events if r["response"] is not None]
    scored = [r for r in responses if r["proactive"]]
    hallucinated = sum(1 for r in scored if r["hallucinated"])
    by_kind: dict[str, dict[str, int]] = {}
    for r in events:
        k = by_kind.setdefault(r["kind"], {"events": 0, "responded": 0, "correct": 0})
        k["events"] += 1
        k["responded"] += r["response"] is not None
        k["correct"] += r["correct"]
    return {
        "scored": True,
        "events": len(events),
        "responded": len(responded),
        "missed": len(events) - len(responded),
        "right_object": sum(1 for r in events if r["right_object"]),
        "right_kind": sum(1 for r in events if r["right_kind"]),
        "correct": sum(1 for r in events if r["correct"]),
        "correct_rate": sum(1 for r in events if r["correct"]) / len(events) if events else None,
        "mean_abs_offset": _mean([abs(r["offset"]) for r in responded]),
        "mean_signed_offset": _mean([r["offset"] for r in responded]),
        "responses": len(scored),
        "answers": len(responses) - len(scored),
        "matched": sum(1 for r in scored if r["matched"]),
        "spurious": sum(1 for r in scored if r["spurious"]),
        "hallucinated": hallucinated,
        "hallucinated_per_100": 100.0 * hallucinated / len(scored) if scored else None,
        "repeats": sum(1 for r in scored if r["repeat"]),
        "longest_repeat_run": max((r["run"] for r in scored), default=0),
        "by_kind": {k: by_kind[k] for k in (*KINDS, *sorted(set(by_kind) - set(KINDS))) if k in by_kind},
    }


def score_words(
    truth: Truth | None,
    said: Sequence[Said],
    *,
    window: tuple[float, float] = WINDOW,
    recent: float = RECENT,
    ahead: float = AHEAD,
) -> WordScore:
    """Scores of the words of ``said`` (one stream's final responses) against ``truth``."""
    settings = {"window": list(window), "recent": recent, "ahead": ahead}
    vocabulary = truth.objects if truth is not None else []
    parsed = [claims(r.text, vocabulary) for r in said]
    order = sorted(range(len(said)), key=lambda j: (said[j].time, j))
    rows: dict[int, dict] = {}
    for j in order:
        r = said[j]
        rows[j] = {
            "index": j,
            "response_id": r.response_id,
            "query_id": r.query_id,
            "kind": r.kind,
            "time": r.time,
            "text": r.text,
            "proactive": r.proactive,
            "claims": [[c.object, c.kind] for c in parsed[j]],
        }
    video_id = truth.video_id if truth is not None else ""
    if truth is None or not truth.events:
        summary = {"scored": False, "events": 0, "responses": sum(1 for r in said if r.proactive)}
        summary["answers"] = len(said) - summary["responses"]
        summary["skipped"] = truth.skipped if truth is not None else 0
        return WordScore(False, summary, [], [rows[j] for j in order], video_id, settings)

    served = _match(truth, said, parsed, window)
    serves: dict[int, list[int]] = {}
    event_rows = []
    for i, e in enumerate(truth.events):
        m, how = served.get(i, (None, ""))
        row: dict[str, Any] = {**asdict(e), "response": m, "how": how or None, "response_id": None}
        row.update(said_at=None, offset=None, said=None, right_object=False, right_kind=False, correct=False)
        if m is not None:
            serves.setdefault(m, []).append(i)
            cs = parsed[m]
            row.update(response_id=said[m].response_id, said_at=said[m].time, said=said[m].text)
            row.update(offset=said[m].time - e.time, correct=how == "claim")
            row.update(right_object=any(c.object == e.object for c in cs), right_kind=any(c.kind == e.kind for c in cs))
        row["verdict"] = _verdict(row)
        event_rows.append(row)

    prev: Said | None = None
    run = 0
    for j in order:
        r, row = said[j], rows[j]
        seen = [c.object for c in parsed[j] if c.object != GENERIC]
        row["hallucinated"] = [
            o for k, o in enumerate(seen) if o not in seen[:k] and not truth.visible(o, r.time - recent, r.time + ahead)
        ]
        row["events"] = serves.get(j, [])
        row["matched"] = bool(row["events"])
        row["spurious"] = r.proactive and not row["events"]
        row["repeat"], row["run"] = False, 0
        if r.proactive:
            row["repeat"] = (
                prev is not None
                and normalize(r.text) == normalize(prev.text)
                and not any(prev.time < e.time <= r.time for e in truth.events)
            )
            run = run + 1 if row["repeat"] else 1
            row["run"] = run
            prev = r
        marks = ["matched" if row["matched"] else "spurious" if r.proactive else "answer"]
        marks += ["repeat"] if row["repeat"] else []
        marks += [f"HALLUCINATED {o}" for o in row["hallucinated"]]
        row["verdict"] = ", ".join(marks)
    response_rows = [rows[j] for j in order]
    return WordScore(True, _summarize(event_rows, response_rows), event_rows, response_rows, video_id, settings)


def merge_scores(scores: Sequence[WordScore | Mapping[str, Any]]) -> dict:
    """The summary over several streams (e.g. a held-out split): counts summed, means and
    rates over all events and responses, the longest repeat run of any stream. Streams that
    could not be scored only count in ``unscored``."""
    data = [s.to_dict() if isinstance(s, WordScore) else dict(s) for s in scores]
    scored = [d for d in data if d["scored"]]
    events = [r for d in scored for r in d["events"]]
    responses = [r for d in scored for r in d["responses"]]
    return {"streams": len(data), "unscored": len(data) - len(scored), **_summarize(events, responses)}


# -- text ----------------------------------------------------------------------------------
def _num(value: float | None, fmt: str = "{:.2f}") -> str:
    return "-" if value is None else fmt.format(value)


def _clip(text: str | None, width: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 3] + "..."


def _summary_lines(s: Mapping[str, Any]) -> list[str]:
    rate = f" ({100 * s['correct_rate']:.0f} %)" if s.get("correct_rate") is not None else ""
    per100 = f" ({s['hallucinated_per_100']:.1f} per 100)" if s.get("hallucinated_per_100") is not None else ""
    lines = [
        f"events {s['events']}: responded in time {s['responded']}, right object {s['right_object']}, right kind "
        f"{s['right_kind']}, right event {s['correct']}{rate}, mean |offset| {_num(s['mean_abs_offset'])} s "
        f"(signed {_num(s['mean_signed_offset'], '{:+.2f}')} s)",
        f"responses {s['responses']}: matched {s['matched']}, spurious {s['spurious']}, hallucinated "
        f"{s['hallucinated']}{per100}, repeats {s['repeats']} (longest run {s['longest_repeat_run']})"
        + (f"; answers to questions {s['answers']} (not scored)" if s.get("answers") else ""),
    ]
    if s.get("by_kind"):
        lines.append(
            "right event by kind: " + ", ".join(f"{k} {v['correct']}/{v['events']}" for k, v in s["by_kind"].items())
        )
    return lines


def format_totals(summary: Mapping[str, Any]) -> str:
    """The printed summary of :func:`merge_scores`."""
    head = f"streams {summary.get('streams', 1)}" + (
        f" ({summary['unscored']} without annotated events, not scored)" if summary.get("unscored") else ""
    )
    return "\n".join([head, *_summary_lines(summary)])


def format_words(score: WordScore, max_rows: int = 60, responses: bool = True) -> str:
    """The printed word scores of one stream: the summary, the events, the responses (unless
    ``responses`` is False)."""
    rows = score.responses
    if not score.scored:
        lines = ["cannot score: no annotated events (give --annotations)"]
        if score.summary.get("skipped"):
            lines.append(
                f"  ({score.summary['skipped']} annotated events are steps or narrations: no objects to check)"
            )
        lines.append(f"the model said ({len(rows)} responses):")
        for r in rows[:max_rows]:
            kind = r["kind"] + ("" if r["proactive"] else f" to query {r['query_id']}")
            lines.append(f"  [{r['time']:7.2f} s] {kind}: {_clip(r['text'], 90)}")
        if len(rows) > max_rows:
            lines.append(f"  ... {len(rows) - max_rows} more")
        return "\n".join(lines if rows else [*lines, "  nothing"])
    lines = _summary_lines(score.summary) + [""]
    head = f"  {'time':>7} {'kind':<8} {'object':<14} {'said at':>8} {'offset':>7}  {'response':<46} verdict"
    lines += [head, "  " + "-" * (len(head) + 10)]
    for e in score.events[:max_rows]:
        lines.append(
            f"  {e['time']:>7.2f} {e['kind']:<8} {_clip(e['object'], 14):<14} {_num(e['said_at']):>8} "
            f"{_num(e['offset'], '{:+.2f}'):>7}  {_clip(e['said'], 46):<46} {e['verdict']}"
        )
    if len(score.events) > max_rows:
        lines.append(f"  ... {len(score.events) - max_rows} more events")
    if not responses:
        return "\n".join(lines)
    head = f"  {'time':>7} {'kind':<10} {'response':<60} verdict"
    lines += ["", head, "  " + "-" * (len(head) + 20)]
    for r in rows[:max_rows]:
        lines.append(f"  {r['time']:>7.2f} {_clip(r['kind'], 10):<10} {_clip(r['text'], 60):<60} {r['verdict']}")
    if len(rows) > max_rows:
        lines.append(f"  ... {len(rows) - max_rows} more responses")
    return "\n".join(lines)
