"""Streaming dialogue generation (VideoLLM-online, paper section 3.2): annotations ->
timed dialogues (:class:`~live_ros.data.streams.StreamSample`) on the model's fps grid.

Two routes, as in the paper:

- **Online** annotations (Ego4D narrations: dense, said when they happen) map directly:
  a user instruction ("Narrate what you see.") after the first frame, then each narration
  an assistant turn at its time (:func:`narration_stream`).
- **Offline** annotations (COIN steps ``[start, end]``, the world's events) go through a
  *plan* (:func:`build_plan`): questions sampled from a template library about the past,
  the present and the future (``assets/questions.json``, 50 each, including "tell me
  when ..." reminders), and for each a response at every critical timestamp (event times
  and segment ends) where it has something to say, written by a pluggable *responder*
  (:class:`TemplateResponder`, deterministic, the default; :class:`LLMResponder`, any
  local causal LM). At draw time (:func:`draw_turns`) up to 3 questions are inserted at
  random frames; a question's responses before its insertion are dropped and a response
  is added at the insertion (the answer to the state at that time); its later responses
  run until the next question replaces it. A reminder ("Tell me when the rocket
  appears.") is acknowledged when asked and answered when its event happens, whatever
  was asked in between.

Training streams carry their plan in ``sample.meta["plan"]``: :func:`redraw` gives fresh
insertions each time a sample is drawn. Evaluation streams keep the turns fixed by their
seed (``meta["fixed"] = True``).

Time: frame k of a stream is at ``k / fps`` (the contract's grid). Every turn time is a
grid time; an event's response is at the first grid frame at or after the event
(:func:`snap`), which ``StreamSample.to_turns`` places right after that frame.
"""

from __future__ import annotations

import copy
import json
import math
import re
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Protocol, Sequence

import numpy as np

from live_ros.data.annotations import Event, VideoAnnotation, timeline_text, visible_objects
from live_ros.data.streams import StreamSample, TimedTurn

EPS = 1e-6
QUESTIONS_FILE = Path(__file__).resolve().parent / "assets" / "questions.json"
CATEGORIES = ("past", "present", "future")
MAX_QUESTIONS = 3
PLAN_VERSION = 1


# ------------------------------------------------------------------------------- grid


def num_grid_frames(duration: float, fps: float) -> int:
    """Frames of a stream on the grid 0, 1/fps, ... up to ``duration`` (as StreamSample)."""
    return int(math.floor(duration * fps + EPS)) + 1


def snap(time: float, fps: float) -> float:
    """The grid time of the first frame at or after ``time``."""
    return math.ceil(time * fps - EPS) / fps


def grid_index(time: float, fps: float) -> int:
    return int(math.ceil(time * fps - EPS))


# -------------------------------------------------------------------------- templates


@lru_cache(maxsize=4)
def _load_templates(path: str) -> dict:
    data = json.loads(Path(path).read_text())
    for cat in CATEGORIES:
        for entry in data[cat]:
            entry["category"] = cat
    return data


def templates(path: Path | None = None) -> dict:
    """The question library: ``{"past": [...], "present": [...], "future": [...],
    "narration": [...], "acknowledgements": [...]}``; entries ``{q, mode, domain, category}``."""
    return _load_templates(str(path or QUESTIONS_FILE))


def _rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _join(items: Sequence[str], last: str = "and") -> str:
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + f" {last} " + items[-1]


def _sentence(text: str) -> str:
    text = text.strip()
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text[-1] in ".!?" else text + "."


def _article(noun: str) -> str:
    return ("an " if noun[:1].lower() in "aeiou" else "a ") + noun


# ----------------------------------------------------------------------- online streams


def narration_stream(annotation: VideoAnnotation, fps: float = 2.0, rng: np.random.Generator | int | None = 0,
                     instruction: str | None = None, start: float = 0.0, duration: float | None = None) -> StreamSample:
    """An online annotation as a stream: the instruction (a user turn) after the first
    frame, each event's text an assistant turn at the first grid frame at or after it.
    Narrations that fall on the same frame are merged into one turn.

    ``start``/``duration`` cut a window of the video (``start`` is rounded to the grid; turn
    times are then relative to it and ``meta["start"]`` says where the window begins)."""
    rng = _rng(rng)
    start = round(start * fps) / fps
    total = annotation.duration - start if duration is None else min(duration, annotation.duration - start)
    n = num_grid_frames(total, fps)
    if instruction is None:
        options = templates()["narration"]
        instruction = options[int(rng.integers(len(options)))]
    turns = [TimedTurn("user", 0.0, instruction, kind="instruction")]
    by_time: dict[float, list[tuple[str, str]]] = {}
    for e in annotation.events:
        t = e.time - start
        if t < -EPS:
            continue
        k = grid_index(t, fps)
        if k >= n:
            continue
        text = e.text or f"{e.object} {e.kind}".strip()
        if text:
            by_time.setdefault(k / fps, []).append((text, _event_id(e, "start")))
    for t in sorted(by_time):
        texts = _unique([x for x, _ in by_time[t]])
        turns.append(TimedTurn("assistant", t, " ".join(texts), kind="narration",
                               event="; ".join(_unique([x for _, x in by_time[t]]))))
    vid = annotation.video_id if start == 0 and duration is None else f"{annotation.video_id}@{start:g}"
    meta = {"source": annotation.source, "kind": "narration", "instruction": instruction}
    if start:
        meta["start"] = start
    return StreamSample(vid, round(total, 6), fps, turns, video=annotation.video, meta=meta)


def narration_windows(annotation: VideoAnnotation, fps: float = 2.0, window: float | None = None,
                      rng: np.random.Generator | int | None = 0) -> list[StreamSample]:
    """:func:`narration_stream` over consecutive windows of ``window`` seconds (None: the
    whole video). Windows without narrations are skipped."""
    rng = _rng(rng)
    if not window:
        return [narration_stream(annotation, fps, rng)]
    out = []
    start = 0.0
    while start < annotation.duration - EPS:
        sample = narration_stream(annotation, fps, rng, start=start, duration=window)
        if any(t.role == "assistant" for t in sample.turns):
            out.append(sample)
        start += round(window * fps) / fps
    return out


def _unique(items: Iterable[str]) -> list[str]:
    seen, out = set(), []
    for x in items:
        if x and x not in seen:
            seen.add(x)
            out.append(x)
    return out


def _event_id(e: Event, phase: str) -> str:
    what = e.object or e.text
    return f"{e.kind}:{what}@{e.time:g}" + (":end" if phase == "end" else "")


# ------------------------------------------------------------------------- responders


@dataclass
class Context:
    """What a responder knows when it writes one response."""

    annotation: VideoAnnotation
    question: dict                   # {q, text, mode, domain, category, target?}
    time: float                      # grid time of the response
    kind: str                        # "ask" (answer at insertion) or "update" (at a critical time)
    past: list[tuple[Event, str]]    # (event, "start"/"end") happened at or before `time`
    new: list[tuple[Event, str]] = field(default_factory=list)   # those at `time` (updates)
    rng: np.random.Generator | None = None


class Responder(Protocol):
    def respond(self, ctx: Context) -> str | None:
        """The response text, or None when this question has nothing to say now."""


def _scene_clause(e: Event, phase: str) -> str | None:
    the = f"the {e.object}"
    if phase == "end":
        return None
    return {"appears": f"{the} appeared", "leaves": f"{the} left", "turns": f"{the} turned around",
            "grows": f"{the} got bigger", "shrinks": f"{the} got smaller",
            "moves": f"{the} moved {e.meta.get('direction', '')}".rstrip()}.get(e.kind, e.text.rstrip("."))


def _update_text(e: Event, phase: str, domain: str) -> str:
    if domain == "procedure":
        label = e.object or e.text
        return f"Now: {label}." if phase == "start" else f"Done: {label}."
    if phase == "end":
        return _sentence(e.end_text) if e.end_text else ""
    return _sentence(e.text)


def _visible(past: list[tuple[Event, str]]) -> list[str]:
    return visible_objects(e for e, phase in past if phase == "start")


def _steps(past: list[tuple[Event, str]]) -> tuple[list[str], list[str]]:
    """(finished step labels, steps in progress) from the happened items."""
    started, done = [], []
    ended = {id(e) for e, phase in past if phase == "end"}
    for e, phase in past:
        if phase == "start" and e.kind == "step":
            (done if id(e) in ended else started).append(e.object or e.text)
    return done, started


class TemplateResponder:
    """Deterministic responses from the structured timeline (no model). Decides *when* a
    question has something to say (used by :class:`LLMResponder` too) and *what*."""

    def respond(self, ctx: Context) -> str | None:
        mode, domain = ctx.question["mode"], ctx.annotation.domain
        if ctx.kind == "ask":
            return self._ask(ctx, mode, domain)
        return self._update(ctx, mode, domain)

    # -- answer when asked
    def _ask(self, ctx: Context, mode: str, domain: str) -> str:
        if mode.startswith("remind") or mode.startswith("watch"):
            acks = templates()["acknowledgements"]
            return acks[zlib.crc32(ctx.question["text"].encode()) % len(acks)]
        if domain == "procedure":
            done, current = _steps(ctx.past)
            if mode == "summary":
                text = f"So far you have done: {_join(done)}." if done else "You have not finished any step yet."
                return text + (f" Now you are on: {_join(current)}." if current else "")
            if mode == "last":
                return f"Your last finished step: {done[-1]}." if done else "You have not finished a step yet."
            if mode == "current":
                return f"You are on the step: {_join(current)}." if current else "No step is in progress right now."
            if mode == "next":
                upcoming = self._upcoming_steps(ctx)
                if upcoming:
                    return f"Next: {upcoming[0]}."
                return f"This is the last step: {_join(current)}." if current else "That was the last step."
            return "I am not sure."
        clauses = [c for c in (_scene_clause(e, p) for e, p in ctx.past) if c]
        visible = _visible(ctx.past)
        if mode == "summary":
            if not clauses:
                return "Nothing has happened yet."
            if len(clauses) > 4:
                return f"So far {len(clauses)} things happened; most recently {_join(clauses[-3:], 'then')}."
            return f"So far, {_join(clauses, 'then')}."
        if mode == "last":
            return _sentence(f"the last thing: {clauses[-1]}") if clauses else "Nothing has happened yet."
        if mode == "count":
            if not visible:
                return "None: nothing is on screen."
            word = ["no", "one", "two", "three", "four", "five", "six"][min(len(visible), 6)]
            return _sentence(f"{word} {'object' if len(visible) == 1 else 'objects'}: "
                             f"{_join([_article(v) for v in visible])}")
        # current
        if not visible:
            return "Nothing is on screen, only the background."
        return f"I see {_join([_article(v) for v in visible])}."

    def _upcoming_steps(self, ctx: Context) -> list[str]:
        happened = {id(e) for e, phase in ctx.past if phase == "start"}
        return [e.object or e.text for e in sorted(ctx.annotation.events, key=lambda e: e.time)
                if e.kind == "step" and id(e) not in happened]

    # -- responses at critical timestamps after the question
    def _update(self, ctx: Context, mode: str, domain: str) -> str | None:
        new = ctx.new
        if mode.startswith("remind"):
            target = ctx.question.get("target") or {}
            hits = [(e, p) for e, p in new if _event_id(e, p) == target.get("id")]
            if not hits:
                return None
            e, p = hits[0]
            if domain == "procedure":
                label = e.object or e.text
                return f"You are starting it now: {label}." if p == "start" else f"You have finished: {label}."
            return _update_text(e, p, domain)
        if domain == "procedure":
            if mode in ("summary", "last"):
                texts = [_update_text(e, p, domain) for e, p in new if p == "end"]
            elif mode == "next":
                if not any(p == "end" for _, p in new):
                    return None
                upcoming = self._upcoming_steps(ctx)
                texts = [f"Next: {upcoming[0]}." if upcoming else "That was the last step."]
            else:  # current, watch
                texts = [_update_text(e, p, domain) for e, p in new]
            texts = _unique(texts)
            return " ".join(texts) if texts else None
        if mode == "watch-appears":
            new = [(e, p) for e, p in new if e.kind == "appears" and p == "start"]
        elif mode == "watch-leaves":
            new = [(e, p) for e, p in new if e.kind == "leaves" and p == "start"]
        elif mode in ("summary", "last"):
            clauses = [c for c in (_scene_clause(e, p) for e, p in new) if c]
            return _sentence("then " + _join(clauses)) if clauses else None
        elif mode in ("current", "count"):
            if any(e.kind in ("appears", "leaves") for e, _ in new):
                visible = _visible(ctx.past)
                if mode == "count":
                    return f"Now {len(visible)}: {_join([_article(v) for v in visible])}." if visible \
                        else "Now none: the scene is empty."
                return f"Now I see {_join([_article(v) for v in visible])}." if visible \
                    else "Now nothing is on screen."
            if mode == "count":
                return None
        texts = _unique(_update_text(e, p, domain) for e, p in new)
        return " ".join(texts) if texts else None


class LLMResponder:
    """Responses written by a local causal LM (a transformers folder, loaded with
    ``local_files_only=True``; e.g. ``live_ros.assets.smollm2_dir()``), given the timeline as
    text, the question and the time, as in the paper's step (3). When to speak is decided
    by the template logic (so reminders fire at their event); the LM writes what is said,
    and the template text is kept when the LM gives nothing usable."""

    SYSTEM = ("You are watching a video with the user. Answer the user's question in one short sentence, "
              "using the facts given.")

    def __init__(self, model_dir: str | Path, max_new_tokens: int = 40, device: str = "cpu",
                 fallback: TemplateResponder | None = None):
        import live_ros  # noqa: F401  (the torchvision fix, before transformers)
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model_dir = Path(model_dir)
        if not (model_dir / "config.json").is_file():
            raise FileNotFoundError(f"LLM folder {model_dir} has no config.json: give a local transformers causal LM "
                                    f"folder (e.g. the SmolLM2 folder `python -m live_ros.assets prepare` writes)")
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
        self.model = AutoModelForCausalLM.from_pretrained(str(model_dir), local_files_only=True, dtype=torch.float32)
        self.model.to(device).eval()
        self.device = device
        self.max_new_tokens = int(max_new_tokens)
        self.fallback = fallback or TemplateResponder()
        self.name = model_dir.name

    def messages(self, ctx: Context, draft: str) -> list[dict]:
        """Chat messages: the timeline as text, the time, the template's draft as the facts
        (it keeps a small LM factual; a large one rephrases freely), then the question."""
        ann = ctx.annotation
        lines = ["Timeline:", timeline_text(ann) or "(nothing happens)"]
        if ctx.kind == "update":
            happened = " ".join(_unique(_update_text(e, p, ann.domain) for e, p in ctx.new))
            lines.append(f"Now: {ctx.time:.1f} s. Just now: {happened}")
        else:
            lines.append(f"Now: {ctx.time:.1f} s (only what happened until now is visible).")
        lines.append(f"Facts: {draft}")
        ask = ctx.question["text"] if ctx.kind == "ask" else \
            f'Earlier I asked: "{ctx.question["text"]}" What do you tell me now?'
        return [{"role": "system", "content": self.SYSTEM}, {"role": "user", "content": "\n".join(lines)},
                {"role": "assistant", "content": "Noted."}, {"role": "user", "content": ask}]

    def _clean(self, text: str, ctx: Context) -> str | None:
        text = re.sub(r"\s+", " ", text.strip().split("\n")[0]).strip()
        text = re.sub(r"^(facts|answer|the answer is|assistant|reply)\s*:\s*", "", text, flags=re.IGNORECASE)
        text = text.strip().strip('"')
        if (len(text) < 2 or text.lower().rstrip(".!") == "noted" or "the user ask" in text.lower() or ctx.question["text"].lower() in text.lower()
                or re.search(r"\d+(\.\d+)?(-\d+(\.\d+)?)? s:", text) or re.match(r"^\d+\.", text)):
            return None   # the LM echoed the prompt or the timeline: keep the template's text
        return text

    def respond(self, ctx: Context) -> str | None:
        import torch

        draft = self.fallback.respond(ctx)
        if draft is None:
            return None
        messages = self.messages(ctx, draft)
        if getattr(self.tokenizer, "chat_template", None):
            ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                     return_dict=True)["input_ids"]
        else:
            plain = "\n\n".join(m["content"] for m in messages if m["role"] != "assistant")
            ids = self.tokenizer(plain + "\nAnswer:", return_tensors="pt").input_ids
        with torch.inference_mode():
            out = self.model.generate(ids.to(self.device), max_new_tokens=self.max_new_tokens, do_sample=False,
                                      pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id)
        text = self._clean(self.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True), ctx)
        return text or draft


def build_responder(kind: str = "template", llm: str | Path | None = None, max_new_tokens: int = 40) -> Responder:
    if kind == "template":
        return TemplateResponder()
    if kind == "llm":
        if llm is None:
            from live_ros.assets import smollm2_dir

            llm = smollm2_dir()
        return LLMResponder(llm, max_new_tokens=max_new_tokens)
    raise ValueError(f"unknown responder {kind!r}: use template or llm")


# ----------------------------------------------------------------------------- plans


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
    out = []
    if annotation.domain == "procedure":
        last_start: dict[str, float] = {}
        last_end: dict[str, float] = {}
        for e in events:
            if e.kind != "step":
                continue
            label = e.object or e.text
            t = snap(e.time, fps)
            if grid_index(e.time, fps) < n:
                out.append({"mode": "remind-start", "slot": label, "id": _event_id(e, "start"), "time": t,
                            "window": (last_start.get(label, 0.0), t)})
            if e.end is not None and grid_index(e.end, fps) < n:
                te = max(snap(e.end, fps), t)
                out.append({"mode": "remind-end", "slot": label, "id": _event_id(e, "end"), "time": te,
                            "window": (last_end.get(label, 0.0), te)})
                last_end[label] = te
            last_start[label] = t
        return [c for c in out if c["window"][1] > c["window"][0]]
    gone_since: dict[str, float] = {}   # object -> grid time it last left (or 0)
    here_since: dict[str, float] = {}   # object -> grid time it appeared / last moved
    for e in events:
        t = snap(e.time, fps)
        if grid_index(e.time, fps) >= n:
            break
        obj = e.object
        if e.kind == "appears":
            out.append({"mode": "remind-appears", "slot": obj, "id": _event_id(e, "start"), "time": t,
                        "window": (gone_since.get(obj, 0.0), t)})
            here_since[obj] = t
        elif e.kind == "leaves" and obj in here_since:
            out.append({"mode": "remind-leaves", "slot": obj, "id": _event_id(e, "start"), "time": t,
                        "window": (here_since[obj], t)})
            gone_since[obj] = t
            here_since.pop(obj, None)
        elif e.kind == "moves" and obj in here_since:
            out.append({"mode": "remind-moves", "slot": obj, "id": _event_id(e, "start"), "time": t,
                        "window": (here_since[obj], t)})
            here_since[obj] = t
    return [c for c in out if c["window"][1] > c["window"][0]]


def _fits(entry: dict, domain: str) -> bool:
    return entry["domain"] in ("any", domain)


def build_plan(annotation: VideoAnnotation, fps: float = 2.0, rng: np.random.Generator | int | None = 0,
               responder: Responder | None = None, per_category: int = 4, max_reminders: int = 8,
               must_remind: Sequence[tuple[str, str]] = (), library: dict | None = None) -> dict:
    """Sample questions for an offline annotation and write every response in advance.

    Per question: ``answers`` [[t, text], ...] (the answer if asked at a grid time >= t, up
    to the next entry: the state only changes at critical timestamps), ``updates`` [[t,
    text], ...] (said at critical timestamp t if the question is active), ``window`` [lo,
    hi) (grid times where it may be inserted). ``must_remind``: (mode suffix, object)
    reminders that must be in the plan, e.g. ``[("appears", "rocket")]``."""
    rng = _rng(rng)
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
            questions.append({"text": entry["q"], "category": cat, "mode": entry["mode"], "target": None,
                              "window": [0.0, last_t]})

    candidates = _reminder_candidates(annotation, fps, n)
    forced = []
    for suffix, obj in must_remind:
        hits = [c for c in candidates if c["mode"] == f"remind-{suffix}" and c["slot"] == obj]
        if not hits:
            raise ValueError(f"{annotation.video_id}: no '{suffix}' event of {obj!r} to remind of")
        forced.append(hits[0])
    rest = [c for c in candidates if c not in forced]
    order = rng.permutation(len(rest))[:max(0, max_reminders - len(forced))]
    for cand in forced + [rest[int(i)] for i in sorted(order)]:
        pool = [e for e in lib["future"] if e["mode"] == cand["mode"] and _fits(e, domain)]
        if not pool:
            continue
        entry = pool[int(rng.integers(len(pool)))]
        text = entry["q"].replace("{object}", cand["slot"]).replace("{step}", cand["slot"])
        questions.append({"text": text, "category": "reminder", "mode": cand["mode"],
                          "target": {"id": cand["id"], "time": cand["time"], "object": cand["slot"]},
                          "window": [cand["window"][0], min(cand["window"][1], last_t)]})

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
    return {"version": PLAN_VERSION, "fps": fps, "num_frames": n, "domain": domain,
            "max_questions": MAX_QUESTIONS, "responder": type(responder).__name__, "questions": questions}


def _answer_at(q: dict, t: float) -> str:
    text = q["answers"][0][1]
    for at, answer in q["answers"]:
        if at <= t + EPS:
            text = answer
    return text


def draw_turns(plan: dict, rng: np.random.Generator | int | None = None, max_questions: int | None = None,
               forced: Sequence[tuple[float, int]] = ()) -> list[TimedTurn]:
    """Insert up to ``max_questions`` (default the plan's, 3) questions at random grid
    frames (never the last) and build the timed turns.

    ``forced``: (grid time, question id) insertions that are always made (e.g. a reminder
    asked early in a long stream); the random ones are added around them."""
    rng = _rng(rng)
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
    return assemble_turns(chosen)


def assemble_turns(chosen: Sequence[tuple[float, dict]]) -> list[TimedTurn]:
    """Turns for questions inserted at grid times: each question, its answer at the
    insertion, its updates after it until the next question (reminders: until answered)."""
    scheduled: dict[float, list[tuple[str, str, str]]] = {}   # time -> [(text, kind, event)]
    for i, (t, q) in enumerate(chosen):
        next_t = chosen[i + 1][0] if i + 1 < len(chosen) else math.inf
        reminder = q["category"] == "reminder"
        for tu, text in q["updates"]:
            if tu <= t + EPS:
                continue              # responses before the insertion are dropped
            if not reminder and tu >= next_t - EPS:
                break                 # the next question takes over
            kind = "reminder" if reminder else "update"
            event = q["target"]["id"] if reminder else ""
            scheduled.setdefault(round(tu, 6), []).append((text, kind, event))
    asks = {round(t, 6): q for t, q in chosen}
    turns: list[TimedTurn] = []
    for t in sorted(set(scheduled) | set(asks)):
        if t in scheduled:
            items = scheduled[t]
            texts = _unique(x for x, _, _ in items)
            kinds = [k for _, k, _ in items]
            turns.append(TimedTurn("assistant", t, " ".join(texts), kind="reminder" if "reminder" in kinds else "update",
                                   event="; ".join(_unique(e for _, _, e in items))))
        if t in asks:
            q = asks[t]
            turns.append(TimedTurn("user", t, q["text"], kind=q["category"]))
            turns.append(TimedTurn("assistant", t, _answer_at(q, t), kind="answer"))
    return turns


def offline_stream(annotation: VideoAnnotation, fps: float = 2.0, rng: np.random.Generator | int | None = 0,
                   responder: Responder | None = None, fixed: bool = False, plan: dict | None = None,
                   forced: Sequence[tuple[float, int]] = (), **plan_args) -> StreamSample:
    """An offline annotation as a stream: a plan (kept in ``meta["plan"]`` for
    :func:`redraw`) and one draw of its insertions. ``fixed``: an evaluation stream (its
    draw is final, ``meta["fixed"] = True``)."""
    rng = _rng(rng)
    plan = plan or build_plan(annotation, fps, rng, responder, **plan_args)
    draw_seed = int(rng.integers(2**31))
    turns = draw_turns(plan, draw_seed, forced=forced)
    meta = {"source": annotation.source, "kind": "dialogue", "domain": annotation.domain, "plan": plan,
            "fixed": bool(fixed), "draw_seed": draw_seed}
    if forced:
        meta["forced"] = [[float(t), int(q)] for t, q in forced]
    return StreamSample(annotation.video_id, round(annotation.duration, 6), fps, turns, video=annotation.video,
                        meta=meta)


def redraw(sample: StreamSample, rng: np.random.Generator | int | None = None) -> StreamSample:
    """A fresh draw of a training stream's insertions (new question times, questions and
    dropped responses); fixed (evaluation) streams and streams without a plan come back
    unchanged."""
    plan = sample.meta.get("plan")
    if not plan or sample.meta.get("fixed"):
        return sample
    out = copy.copy(sample)
    out.meta = dict(sample.meta)
    forced = [(float(t), int(q)) for t, q in sample.meta.get("forced", [])]
    out.turns = draw_turns(plan, rng, forced=forced)
    return out


# --------------------------------------------------------------------------- sources


def world_stream(annotation: VideoAnnotation, fps: float = 2.0, rng: np.random.Generator | int | None = 0,
                 fixed: bool = False, responder: Responder | None = None) -> StreamSample:
    """A world annotation as a dialogue stream; long streams (``meta["late_object"]``) get
    the reminder of the late object's appearance asked early (in the first 20 s)."""
    rng = _rng(rng)
    late = annotation.meta.get("late_object")
    if late:
        plan = build_plan(annotation, fps, rng, responder, must_remind=[("appears", late)])
        qid = next(q["id"] for q in plan["questions"] if q["category"] == "reminder"
                   and q["mode"] == "remind-appears" and q["target"]["object"] == late)
        asked = float(rng.uniform(5.0, 20.0))
        sample = offline_stream(annotation, fps, rng, fixed=fixed, plan=plan, forced=[(asked, qid)])
    else:
        sample = offline_stream(annotation, fps, rng, responder, fixed=fixed)
    sample.meta["split"] = annotation.meta.get("split", "")
    return sample


def streams_from_annotations(annotations: Sequence[VideoAnnotation], fps: float = 2.0, seed: int = 0,
                             responder: Responder | None = None, fixed: bool = False,
                             window: float | None = None) -> list[StreamSample]:
    """Online annotations -> narration streams (optionally in windows of ``window`` s);
    offline ones -> dialogue streams with plans. Deterministic in ``seed``."""
    out = []
    for i, ann in enumerate(annotations):
        rng = np.random.default_rng([int(seed), i])
        if ann.online:
            out.extend(narration_windows(ann, fps, window, rng))
        elif ann.source == "world":
            out.append(world_stream(ann, fps, rng, fixed=fixed, responder=responder))
        else:
            out.append(offline_stream(ann, fps, rng, responder, fixed=fixed))
    return out


def format_dialogue(sample: StreamSample) -> str:
    """A readable transcript: ``[  12.5 s] User: ...``."""
    lines = [f"# {sample.video_id}  ({sample.duration:.1f} s, {sample.num_frames} frames at {sample.fps:g} fps)"]
    for turn in sample.turns:
        who = "User" if turn.role == "user" else "Assistant"
        tag = f" ({turn.kind})" if turn.kind else ""
        lines.append(f"[{turn.time:7.1f} s] {who}{tag}: {turn.text}")
    return "\n".join(lines)
