"""Plans of offline streaming dialogues (VideoLLM-online, paper section 3.2): for an
offline annotation (COIN steps ``[start, end]``, the world's events), :func:`build_plan`
samples questions from the template library and has a responder write, in advance, every
response at every critical timestamp (event times and segment ends) where a question has
something to say. :func:`draw_turns` then inserts up to 3 questions at random frames: a
question's responses before its insertion are dropped and a response is added at the
insertion (the answer to the state at that time); its later responses run until the next
question replaces it. A reminder ("Tell me when the rocket appears.") is acknowledged when
asked and answered when its event happens, whatever was asked in between.

A standing instruction (a narration request before the first frame, live_ros/data/streams.py)
changes the schedule: the plan's ``narration`` (one response per critical timestamp, the
event's own sentence: "The cat appears.") is said from the first frame on; a question is
answered on top of it (its answer at the insertion, a reminder's response at its event)
and narration goes on after the answer (:func:`assemble_turns`). :func:`draw_instruction`
draws whether a training stream has one (:data:`P_SILENT` of them stay silent until asked).

Time: frame k of a stream is at ``k / fps`` (the fps grid of live_ros/model/frames.py). Every turn time is a
grid time; an event's response is at the first grid frame at or after the event
(:func:`snap`), which ``StreamSample.to_turns`` places right after that frame.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from live_ros.data.annotations import Event, VideoAnnotation
from live_ros.data.dialogue_responders import (
    CATEGORIES,
    Context,
    Responder,
    TemplateResponder,
    event_id,
    templates,
    unique,
)
from live_ros.data.generic import GENERIC_NOUN
from live_ros.data.streams import TimedTurn

EPS = 1e-6
MAX_QUESTIONS = 3
PLAN_VERSION = 2  # 2: the plan's narration (responses to a standing instruction)
P_SILENT = 0.2  # training streams without a standing instruction (silent until asked)
P_DEFAULT_INSTRUCTION = 0.5  # of those with one: live_llm's default, else another narration request


def draw_instruction(rng: np.random.Generator | int | None, p_silent: float = P_SILENT) -> str:
    """The standing instruction of a training stream: none with ``p_silent``, else the
    default (live_ros/model/format.py: DEFAULT_INSTRUCTION) or another narration request of
    the template library, as often."""
    from live_ros.model.format import DEFAULT_INSTRUCTION

    rng = as_rng(rng)
    if rng.random() < p_silent:
        return ""
    if rng.random() < P_DEFAULT_INSTRUCTION:
        return DEFAULT_INSTRUCTION
    options = [t for t in templates()["narration"] if t != DEFAULT_INSTRUCTION]
    return options[int(rng.integers(len(options)))]


def num_grid_frames(duration: float, fps: float) -> int:
    """Frames of a stream on the grid 0, 1/fps, ... up to ``duration`` (as StreamSample)."""
    return int(math.floor(duration * fps + EPS)) + 1


def snap(time: float, fps: float) -> float:
    """The grid time of the first frame at or after ``time``."""
    return math.ceil(time * fps - EPS) / fps


def grid_index(time: float, fps: float) -> int:
    return int(math.ceil(time * fps - EPS))


def as_rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _moments(annotation: VideoAnnotation, fps: float, n: int) -> list[tuple[float, list[tuple[Event, str]]]]:
    """Critical timestamps on the grid: (time, [(event, phase), ...]) sorted; an event's
    start (and a segment's end) at the first grid frame at or after it."""
    items: dict[int, list[tuple[Event, str]]] = {}
    for e in sorted(annotation.events, key=lambda e: e.time):
        k = grid_index(e.time, fps)
        if k < n:
            items.setdefault(k, []).append((e, "start"))
        if e.end is not None:
            k_end = max(grid_index(e.end, fps), k)
            if k_end < n:
                items.setdefault(k_end, []).append((e, "end"))
    return [(k / fps, items[k]) for k in sorted(items)]


def _reminder_candidates(annotation: VideoAnnotation, fps: float, n: int) -> list[dict]:
    """Possible reminder targets: {mode, slot, id, time, window=(lo, hi)} where an insertion
    at a grid time t with lo <= t < hi is answered at ``time``."""
    events = sorted(annotation.events, key=lambda e: e.time)
    out: list[dict[str, Any]] = []
    if annotation.domain == "procedure":
        last_start: dict[str, float] = {}
        last_end: dict[str, float] = {}
        for e in events:
            if e.kind != "step":
                continue
            label = e.object or e.text
            t = snap(e.time, fps)
            if grid_index(e.time, fps) < n:
                out.append(
                    {
                        "mode": "remind-start",
                        "slot": label,
                        "id": event_id(e, "start"),
                        "time": t,
                        "window": (last_start.get(label, 0.0), t),
                    }
                )
            if e.end is not None and grid_index(e.end, fps) < n:
                te = max(snap(e.end, fps), t)
                out.append(
                    {
                        "mode": "remind-end",
                        "slot": label,
                        "id": event_id(e, "end"),
                        "time": te,
                        "window": (last_end.get(label, 0.0), te),
                    }
                )
                last_end[label] = te
            last_start[label] = t
        return [c for c in out if c["window"][1] > c["window"][0]]
    gone_since: dict[str, float] = {}  # object -> grid time it last left (or 0)
    here_since: dict[str, float] = {}  # object -> grid time it appeared / last moved
    for e in events:
        t = snap(e.time, fps)
        if grid_index(e.time, fps) >= n:
            break
        obj = e.object
        if e.kind == "appears":
            out.append(
                {
                    "mode": "remind-appears",
                    "slot": obj,
                    "id": event_id(e, "start"),
                    "time": t,
                    "window": (gone_since.get(obj, 0.0), t),
                }
            )
            here_since[obj] = t
        elif e.kind == "leaves" and obj in here_since:
            out.append(
                {
                    "mode": "remind-leaves",
                    "slot": obj,
                    "id": event_id(e, "start"),
                    "time": t,
                    "window": (here_since[obj], t),
                }
            )
            gone_since[obj] = t
            here_since.pop(obj, None)
        elif e.kind == "moves" and obj in here_since:
            out.append(
                {
                    "mode": "remind-moves",
                    "slot": obj,
                    "id": event_id(e, "start"),
                    "time": t,
                    "window": (here_since[obj], t),
                }
            )
            here_since[obj] = t
    return [c for c in out if c["window"][1] > c["window"][0]]


def _fits(entry: dict, domain: str) -> bool:
    return entry["domain"] in ("any", domain)


def build_plan(
    annotation: VideoAnnotation,
    fps: float = 2.0,
    rng: np.random.Generator | int | None = 0,
    responder: Responder | None = None,
    per_category: int = 4,
    max_reminders: int = 8,
    must_remind: Sequence[tuple[str, str]] = (),
    library: dict | None = None,
) -> dict:
    """Sample questions for an offline annotation and write every response in advance.

    Per question: ``answers`` [[t, text], ...] (the answer if asked at a grid time >= t, up
    to the next entry: the state only changes at critical timestamps), ``updates`` [[t,
    text], ...] (said at critical timestamp t if the question is active), ``window`` [lo,
    hi) (grid times where it may be inserted). ``must_remind``: (mode suffix, object)
    reminders that must be in the plan, e.g. ``[("appears", "rocket")]``."""
    rng = as_rng(rng)
    responder = responder or TemplateResponder()
    lib = library or templates()
    domain = annotation.domain
    n = num_grid_frames(annotation.duration, fps)
    last_t = (n - 1) / fps
    moments = _moments(annotation, fps, n)
    questions: list[dict] = []

    for cat in CATEGORIES:
        pool = [e for e in lib[cat] if _fits(e, domain) and not e["mode"].startswith("remind")]
        if not pool:
            continue
        picks = rng.choice(len(pool), size=min(per_category, len(pool)), replace=False)
        for i in sorted(int(p) for p in picks):
            entry = pool[i]
            questions.append(
                {"text": entry["q"], "category": cat, "mode": entry["mode"], "target": None, "window": [0.0, last_t]}
            )

    # no reminder of an object the model cannot name ("Tell me when the object I can't name appears.")
    candidates = [c for c in _reminder_candidates(annotation, fps, n) if c["slot"] != GENERIC_NOUN]
    forced = []
    for suffix, obj in must_remind:
        hits = [c for c in candidates if c["mode"] == f"remind-{suffix}" and c["slot"] == obj]
        if not hits:
            raise ValueError(f"{annotation.video_id}: no '{suffix}' event of {obj!r} to remind of")
        forced.append(hits[0])
    rest = [c for c in candidates if c not in forced]
    order = rng.permutation(len(rest))[: max(0, max_reminders - len(forced))]
    for cand in forced + [rest[int(i)] for i in sorted(order)]:
        pool = [e for e in lib["future"] if e["mode"] == cand["mode"] and _fits(e, domain)]
        if not pool:
            continue
        entry = pool[int(rng.integers(len(pool)))]
        text = entry["q"].replace("{object}", cand["slot"]).replace("{step}", cand["slot"])
        questions.append(
            {
                "text": text,
                "category": "reminder",
                "mode": cand["mode"],
                "target": {"id": cand["id"], "time": cand["time"], "object": cand["slot"]},
                "window": [cand["window"][0], min(cand["window"][1], last_t)],
            }
        )

    for qid, q in enumerate(questions):
        q["id"] = qid
        past: list[tuple[Event, str]] = []
        answers, updates = [], []
        ctx = Context(annotation, q, 0.0, "ask", list(past), [], rng)
        answers.append([0.0, responder.respond(ctx)])
        for t, items in moments:
            past = past + items
            if t > 0:
                update = responder.respond(Context(annotation, q, t, "update", list(past), list(items), rng))
                if update:
                    updates.append([t, update])
            answer = responder.respond(Context(annotation, q, t, "ask", list(past), [], rng))
            if answers and answers[-1][0] == t:
                answers[-1][1] = answer
            elif answer != answers[-1][1]:
                answers.append([t, answer])
        q["answers"], q["updates"] = answers, updates
    return {
        "version": PLAN_VERSION,
        "fps": fps,
        "num_frames": n,
        "domain": domain,
        "max_questions": MAX_QUESTIONS,
        "responder": type(responder).__name__,
        "questions": questions,
        "narration": _narration(annotation, moments, responder, rng),
    }


def _narration(
    annotation: VideoAnnotation,
    moments: list[tuple[float, list[tuple[Event, str]]]],
    responder: Responder,
    rng: np.random.Generator,
) -> list[list]:
    """What a standing narration request says at each critical timestamp after the first
    frame: ``[[t, text, event ids], ...]`` (the responder's update for a question of mode
    ``narrate``: each new event's own sentence)."""
    from live_ros.model.format import DEFAULT_INSTRUCTION

    question = {"text": DEFAULT_INSTRUCTION, "category": "narration", "mode": "narrate", "target": None}
    out: list[list] = []
    past: list[tuple[Event, str]] = []
    for t, items in moments:
        past = past + items
        if t <= 0:
            continue
        text = responder.respond(Context(annotation, question, t, "update", list(past), list(items), rng))
        if text:
            out.append([t, text, "; ".join(unique(event_id(e, p) for e, p in items))])
    return out


def _answer_at(q: dict, t: float) -> str:
    text = q["answers"][0][1]
    for at, answer in q["answers"]:
        if at <= t + EPS:
            text = answer
    return text


def draw_turns(
    plan: dict,
    rng: np.random.Generator | int | None = None,
    max_questions: int | None = None,
    forced: Sequence[tuple[float, int]] = (),
    narrate: bool = False,
) -> list[TimedTurn]:
    """Insert up to ``max_questions`` (default the plan's, 3) questions at random grid
    frames (never the last) and build the timed turns.

    ``forced``: (grid time, question id) insertions that are always made (e.g. a reminder
    asked early in a long stream); the random ones are added around them. ``narrate``: the
    stream has a standing instruction (the plan's narration is said, see
    :func:`assemble_turns`)."""
    rng = as_rng(rng)
    fps, n = plan["fps"], plan["num_frames"]
    max_q = plan.get("max_questions", MAX_QUESTIONS) if max_questions is None else max_questions
    qs = plan["questions"]
    chosen: list[tuple[float, dict]] = []
    used: set[int] = set()
    for t, qid in forced:
        t = snap(t, fps)
        chosen.append((t, qs[qid]))
        used.add(qid)
    k = max(0, int(rng.integers(1, max_q + 1)) - len(chosen)) if n > 1 else 0
    taken = {round(t * fps) for t, _ in chosen}
    free = [f for f in range(n - 1) if f not in taken]
    frames = sorted(int(f) for f in rng.choice(free, size=min(k, len(free)), replace=False)) if free and k else []
    for f in frames:
        t = f / fps
        ok = [q for q in qs if q["id"] not in used and q["window"][0] - EPS <= t < q["window"][1] - EPS]
        if not ok:
            continue
        cats = sorted({q["category"] for q in ok})
        cat = cats[int(rng.integers(len(cats)))]
        pool = [q for q in ok if q["category"] == cat]
        q = pool[int(rng.integers(len(pool)))]
        chosen.append((t, q))
        used.add(q["id"])
    chosen.sort(key=lambda x: x[0])
    return assemble_turns(chosen, plan.get("narration", []) if narrate else None)


def assemble_turns(chosen: Sequence[tuple[float, dict]], narration: Sequence[list] | None = None) -> list[TimedTurn]:
    """Turns for questions inserted at grid times: each question, its answer at the
    insertion, its updates after it until the next question (reminders: until answered).

    ``narration`` (a plan's, for a stream with a standing instruction): its responses at
    their times (kind "narration"), and of the questions only the answers and the
    reminders' responses (which take the narration's place at their moment); without it
    the model is silent until the first question."""
    scheduled: dict[float, list[tuple[str, str, str]]] = {}  # time -> [(text, kind, event)]
    for tn, text, event in narration or ():
        scheduled.setdefault(round(tn, 6), []).append((text, "narration", event))
    for i, (t, q) in enumerate(chosen):
        next_t = chosen[i + 1][0] if i + 1 < len(chosen) else math.inf
        reminder = q["category"] == "reminder"
        if narration is not None and not reminder:
            continue  # narration goes on after the answer
        for tu, text in q["updates"]:
            if tu <= t + EPS:
                continue  # responses before the insertion are dropped
            if not reminder and tu >= next_t - EPS:
                break  # the next question takes over
            kind = "reminder" if reminder else "update"
            event = q["target"]["id"] if reminder else ""
            slot = scheduled.setdefault(round(tu, 6), [])
            if reminder:  # said first; the moment's narration keeps only the other events
                rest = [(x.replace(text, "").strip(), k, e) if k == "narration" else (x, k, e) for x, k, e in slot]
                slot[:] = [(text, kind, event)] + [r for r in rest if r[0]]
            else:
                slot.append((text, kind, event))
    asks = {round(t, 6): q for t, q in chosen}
    turns: list[TimedTurn] = []
    for t in sorted(set(scheduled) | set(asks)):
        if t in scheduled:
            items = scheduled[t]
            texts = unique(x for x, _, _ in items)
            kinds = [k for _, k, _ in items]
            turns.append(
                TimedTurn(
                    "assistant",
                    t,
                    " ".join(texts),
                    kind="reminder" if "reminder" in kinds else ("narration" if "narration" in kinds else "update"),
                    event="; ".join(unique(e for _, _, e in items)),
                )
            )
        if t in asks:
            q = asks[t]
            turns.append(TimedTurn("user", t, q["text"], kind=q["category"]))
            turns.append(TimedTurn("assistant", t, _answer_at(q, t), kind="answer"))
    return turns
