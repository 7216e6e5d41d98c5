"""Who writes the responses of a streaming dialogue (VideoLLM-online, paper section 3.2,
step 3): given what happened until a moment (:class:`Context`), a *responder* says whether
a question has something to say and what. :class:`TemplateResponder` is deterministic (the
default) and decides *when* for every responder; :class:`LLMResponder` has any local
causal LM write *what*, keeping the template's text when the LM gives nothing usable.

The template library (``assets/questions.json``, :func:`templates`) holds the questions
about the past, the present and the future that plans sample (50 each, including "tell
me when ..." reminders), the narration instructions and the acknowledgements said when a
reminder is asked.
"""

from __future__ import annotations

import json
import re
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Protocol, Sequence

import numpy as np

from live_ros.data.annotations import Event, VideoAnnotation, timeline_text, visible_objects

QUESTIONS_FILE = Path(__file__).resolve().parent / "assets" / "questions.json"
CATEGORIES = ("past", "present", "future")


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


def unique(items: Iterable[str]) -> list[str]:
    seen, out = set(), []
    for x in items:
        if x and x not in seen:
            seen.add(x)
            out.append(x)
    return out


def event_id(e: Event, phase: str) -> str:
    what = e.object or e.text
    return f"{e.kind}:{what}@{e.time:g}" + (":end" if phase == "end" else "")


@dataclass
class Context:
    """What a responder knows when it writes one response."""

    annotation: VideoAnnotation
    question: dict  # {q, text, mode, domain, category, target?}
    time: float  # grid time of the response
    kind: str  # "ask" (answer at insertion) or "update" (at a critical time)
    past: list[tuple[Event, str]]  # (event, "start"/"end") happened at or before `time`
    new: list[tuple[Event, str]] = field(default_factory=list)  # those at `time` (updates)
    rng: np.random.Generator | None = None


class Responder(Protocol):
    def respond(self, ctx: Context) -> str | None:
        """The response text, or None when this question has nothing to say now."""


def _scene_clause(e: Event, phase: str) -> str | None:
    the = f"the {e.object}"
    if phase == "end":
        return None
    return {
        "appears": f"{the} appeared",
        "leaves": f"{the} left",
        "turns": f"{the} turned around",
        "grows": f"{the} got bigger",
        "shrinks": f"{the} got smaller",
        "moves": f"{the} moved {e.meta.get('direction', '')}".rstrip(),
    }.get(e.kind, e.text.rstrip("."))


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
    started: list[str] = []
    done: list[str] = []
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
            return _sentence(
                f"{word} {'object' if len(visible) == 1 else 'objects'}: {_join([_article(v) for v in visible])}"
            )
        # current
        if not visible:
            return "Nothing is on screen, only the background."
        return f"I see {_join([_article(v) for v in visible])}."

    def _upcoming_steps(self, ctx: Context) -> list[str]:
        happened = {id(e) for e, phase in ctx.past if phase == "start"}
        return [
            e.object or e.text
            for e in sorted(ctx.annotation.events, key=lambda e: e.time)
            if e.kind == "step" and id(e) not in happened
        ]

    # -- responses at critical timestamps after the question
    def _update(self, ctx: Context, mode: str, domain: str) -> str | None:
        new = ctx.new
        if mode.startswith("remind"):
            target = ctx.question.get("target") or {}
            hits = [(e, p) for e, p in new if event_id(e, p) == target.get("id")]
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
            texts = unique(texts)
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
                    return (
                        f"Now {len(visible)}: {_join([_article(v) for v in visible])}."
                        if visible
                        else "Now none: the scene is empty."
                    )
                return f"Now I see {_join([_article(v) for v in visible])}." if visible else "Now nothing is on screen."
            if mode == "count":
                return None
        texts = unique(_update_text(e, p, domain) for e, p in new)
        return " ".join(texts) if texts else None


class LLMResponder:
    """Responses written by a local causal LM (a transformers folder, loaded with
    ``local_files_only=True``; e.g. ``live_ros.assets.smollm2_dir()``), given the timeline as
    text, the question and the time, as in the paper's step (3). When to speak is decided
    by the template logic (so reminders fire at their event); the LM writes what is said,
    and the template text is kept when the LM gives nothing usable."""

    SYSTEM = (
        "You are watching a video with the user. Answer the user's question in one short sentence, "
        "using the facts given."
    )

    def __init__(
        self,
        model_dir: str | Path,
        max_new_tokens: int = 40,
        device: str = "cpu",
        fallback: TemplateResponder | None = None,
    ):
        from live_ros import runtime

        runtime.prepare_torch()  # the torchvision fix, before transformers
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model_dir = Path(model_dir)
        if not (model_dir / "config.json").is_file():
            raise FileNotFoundError(
                f"LLM folder {model_dir} has no config.json: give a local transformers causal LM "
                f"folder (e.g. the SmolLM2 folder `python -m live_ros.assets prepare` writes)"
            )
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
            happened = " ".join(unique(_update_text(e, p, ann.domain) for e, p in ctx.new))
            lines.append(f"Now: {ctx.time:.1f} s. Just now: {happened}")
        else:
            lines.append(f"Now: {ctx.time:.1f} s (only what happened until now is visible).")
        lines.append(f"Facts: {draft}")
        ask = (
            ctx.question["text"]
            if ctx.kind == "ask"
            else f'Earlier I asked: "{ctx.question["text"]}" What do you tell me now?'
        )
        return [
            {"role": "system", "content": self.SYSTEM},
            {"role": "user", "content": "\n".join(lines)},
            {"role": "assistant", "content": "Noted."},
            {"role": "user", "content": ask},
        ]

    def _clean(self, text: str, ctx: Context) -> str | None:
        text = re.sub(r"\s+", " ", text.strip().split("\n")[0]).strip()
        text = re.sub(r"^(facts|answer|the answer is|assistant|reply)\s*:\s*", "", text, flags=re.IGNORECASE)
        text = text.strip().strip('"')
        if (
            len(text) < 2
            or text.lower().rstrip(".!") == "noted"
            or "the user ask" in text.lower()
            or ctx.question["text"].lower() in text.lower()
            or re.search(r"\d+(\.\d+)?(-\d+(\.\d+)?)? s:", text)
            or re.match(r"^\d+\.", text)
        ):
            return None  # the LM echoed the prompt or the timeline: keep the template's text
        return text

    def respond(self, ctx: Context) -> str | None:
        import torch

        draft = self.fallback.respond(ctx)
        if draft is None:
            return None
        messages = self.messages(ctx, draft)
        if getattr(self.tokenizer, "chat_template", None):
            ids = self.tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
            )["input_ids"]
        else:
            plain = "\n\n".join(m["content"] for m in messages if m["role"] != "assistant")
            ids = self.tokenizer(plain + "\nAnswer:", return_tensors="pt").input_ids
        with torch.inference_mode():
            out = self.model.generate(
                ids.to(self.device),
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
            )
        text = self._clean(self.tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True), ctx)
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
