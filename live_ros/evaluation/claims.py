"""What a response claims, word by word: which objects it names and what it says they do.

:func:`claims` turns a response of the streaming assistant (VideoLLM-online, CVPR 2024,
section 3: the model narrates a video as it plays) into :class:`Claim` s, ``(object, kind)``
pairs, for :mod:`live_ros.evaluation.truth` to check against annotated events.

- **Objects** come from a vocabulary (the annotation's nouns plus any other known ones), on
  word boundaries, case-insensitively, plurals accepted (``cats``). Each noun's aliases are
  the noun and, for a noun of several words, its last word when that is no other noun's name
  or last word (``cup`` is the ``coffee cup``). The longest name at a place wins
  (``coffee cup`` before ``cup``). :data:`GENERIC_PHRASES` ("something", "an unknown
  object", ...) are the object :data:`GENERIC`: the right answer for an object the model
  was never trained to name.
- **Kinds** are the world's event verbs (``live_ros/data/world_scene.py``) plus ``stops``,
  each with the phrasings a person would accept (:data:`KIND_PHRASES`). A clause's kind is
  its first such phrase; without one, a presence phrase (:data:`PRESENCE_PHRASES`, "Now I see
  a cat") claims ``appears``. :data:`NEUTRAL_PHRASES` ("to the left") are read as nothing,
  so that a direction is no ``left``.
- **Clauses**: a response splits into sentences (``. ! ? ;``) and those into clauses
  (``,`` ``:`` and, but, then, while). A kind goes to the objects before its phrase (the
  subjects), or to those after it when there are none ("I see a cat"); other objects after
  it are mentions (kind None). A clause with objects and no kind continues the list of the
  clause before ("Now I see a cat and a rocket.") or joins the subjects of the next one
  ("The cat and the rocket appear."). A clause with a kind and no object takes the objects
  of the clause before in its sentence ("The cat appears and then leaves."), or of the clause
  before in the response after a pronoun ("The cat appears. It turns around."); "nothing",
  "none" block this ("Now nothing is on screen." claims nothing).

Negation beyond the listed phrases ("does not leave") is not read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable, NamedTuple, Sequence

GENERIC = "something"
KINDS = ("appears", "leaves", "moves", "stops", "turns", "grows", "shrinks")

# Phrase tables: lower-case regular-expression fragments, matched on word boundaries with
# any run of white space for each space. Where several match at one place the longest wins.
KIND_PHRASES: dict[str, tuple[str, ...]] = {
    "appears": (
        "appears?",
        "appeared",
        "appearing",
        "reappears?",
        "reappeared",
        "enters?",
        "entered",
        "entering",
        "(?:comes?|came|coming) in",
        "(?:comes?|came|coming) into (?:view|sight|the picture)",
        "(?:comes?|came|coming) back",
        "(?:shows?|showed|showing) up",
        "arrives?",
        "arrived",
        "arriving",
        "(?:pops?|popped|popping) up",
        "(?:is|are) here(?: now)?",
        "returns?",
        "returned",
    ),
    "leaves": (
        "leaves",
        "leave",
        "left",
        "leaving",
        "exits?",
        "exited",
        "exiting",
        "(?:goes|go|went|going|gone) away",
        "(?:is|are|has|have) gone",
        "disappears?",
        "disappeared",
        "disappearing",
        "vanish(?:es)?",
        "vanished",
        "no longer (?:in view|visible|there|here|on screen|in the picture)",
        "(?:can )?no longer see",
        "not (?:in view|visible|on screen)(?: anymore| any more)?",
        "(?:goes|go|went|going|moves?|moved|moving) out of (?:view|sight|the picture)",
        "out of (?:view|sight)",
    ),
    "moves": (
        "moves?",
        "moved",
        "moving",
        "(?:goes|go|went|going) (?:up|down|left|right|to the left|to the right)",
        "slides?",
        "slid",
        "sliding",
        "shifts?",
        "shifted",
        "shifting",
        "drifts?",
        "drifted",
    ),
    "stops": (
        "stops?",
        "stopped",
        "stopping",
        "(?:stops?|stopped) (?:moving|growing|shrinking|turning)",
        "(?:comes?|came) to (?:rest|a stop|a halt)",
        "(?:stands?|stood|holds?|held|keeps?|kept) still",
        "halts?",
        "halted",
    ),
    "turns": (
        "turns?(?: around| round)?",
        "turned(?: around| round)?",
        "turning(?: around| round)?",
        "(?:faces|faced|facing|looks|looked) the other (?:way|direction)",
        "flips?",
        "flipped",
        "flipping",
    ),
    "grows": (
        "grows?",
        "grew",
        "growing",
        "(?:gets?|got|getting|becomes?|became|becoming) (?:bigger|larger)",
        "(?:comes?|came|coming|moves?|moved|moving|gets?|got|getting) closer",
    ),
    "shrinks": (
        "shrinks?",
        "shrank",
        "shrunk",
        "shrinking",
        "(?:gets?|got|getting|becomes?|became|becoming) smaller",
        "(?:moves?|moved|moving|goes|went|going) (?:further )?away",
        "(?:moves?|moved|moving) further",
    ),
}
# A presence claim (no event verb): the objects named are there, read as ``appears``;
# "Now 2: a cat and a rocket." is the counting update of live_ros/data/dialogue_responders.py.
PRESENCE_PHRASES: tuple[str, ...] = (
    "(?:now )?i (?:can )?(?:now )?see",
    "there (?:is|are)",
    "there's",
    "here (?:is|are)",
    "(?:is|are) visible",
    "(?:is|are) (?:now )?(?:on screen|in view|in the picture)",
    "on screen",
    "in view",
    r"now (?:\d+|one|two|three|four|five|six)\s*:",
)
GENERIC_PHRASES: tuple[str, ...] = (
    "something(?: new| else)?(?: (?:that )?i (?:can't|cannot|can not|don't know how to|do not know how to) name)?",
    "(?:an|some|the|a new) (?:unknown |unfamiliar |new )?object(?: i (?:can't|cannot|can not) name)?",
    "unknown object",
    "i (?:don't|do not) know what",
)
NEUTRAL_PHRASES: tuple[str, ...] = (  # read as nothing: directions and places
    "(?:on|to|at|from|towards?|in) the (?:left|right|top|bottom)(?: side| edge)?",
    "(?:left|right)(?:-hand)? side",
)
NONE_PHRASES: tuple[str, ...] = ("nothing", "none", "no one", "nobody", "no objects?")
PRONOUN_PHRASES: tuple[str, ...] = ("it", "it's", "they", "they're")
SEPARATORS: tuple[str, ...] = (",", ":", "and", "but", "then", "while", "whereas", "as well as")
SENTENCE_END = r"[.!?;]+(?!\d)|\n"


@dataclass(frozen=True)
class Claim:
    object: str  # a vocabulary noun, or GENERIC
    kind: str | None  # one of KINDS, or None: the object is only mentioned


class _Tok(NamedTuple):
    start: int
    end: int
    type: str  # object / verb / presence / none / pronoun / neutral / sep / end
    value: str  # the noun or the kind


def _compile(fragment: str) -> re.Pattern[str]:
    if fragment in (",", ":", SENTENCE_END):  # punctuation: no word boundaries
        return re.compile(fragment)
    return re.compile(r"(?<!\w)" + fragment.replace(" ", r"\s+") + r"(?!\w)")


def _static() -> list[tuple[re.Pattern[str], str, str]]:
    out = [(_compile(f), "verb", kind) for kind, fs in KIND_PHRASES.items() for f in fs]
    for fragments, kind, value in (
        (PRESENCE_PHRASES, "presence", "appears"),
        (GENERIC_PHRASES, "object", GENERIC),
        (NEUTRAL_PHRASES, "neutral", ""),
        (NONE_PHRASES, "none", ""),
        (PRONOUN_PHRASES, "pronoun", ""),
        (SEPARATORS, "sep", ""),
        ((SENTENCE_END,), "end", ""),
    ):
        out += [(_compile(f), kind, value) for f in fragments]
    return out


_STATIC = _static()
_PRIORITY = {"object": 0, "verb": 1, "presence": 2, "none": 3, "neutral": 4, "pronoun": 5, "sep": 6, "end": 7}


def aliases(objects: Iterable[str]) -> dict[str, str]:
    """alias -> noun: each noun, and the last word of a noun of several words when that word
    is no other noun and no other noun's last word (``cup`` -> ``coffee cup``)."""
    nouns = sorted({" ".join(o.lower().split()) for o in objects if o and o.strip()})
    out = {n: n for n in nouns}
    lasts: dict[str, int] = {}
    for n in nouns:
        lasts[n.split()[-1]] = lasts.get(n.split()[-1], 0) + 1
    for n in nouns:
        last = n.split()[-1]
        if last != n and last not in out and lasts[last] == 1:
            out[last] = n
    return out


@lru_cache(maxsize=64)
def _object_patterns(objects: tuple[str, ...]) -> list[tuple[re.Pattern[str], str, str]]:
    out = []
    for alias, noun in aliases(objects).items():
        body = r"\s+".join(re.escape(w) for w in alias.split())
        out.append((re.compile(rf"(?<!\w){body}(?:e?s)?(?!\w)"), "object", noun))
    return out


def _scan(text: str, objects: Sequence[str]) -> list[_Tok]:
    """The phrases of ``text``, leftmost-longest and not overlapping, in order."""
    low = text.lower().replace("\u2019", "'")
    found = []
    for pattern, kind, value in _object_patterns(tuple(sorted(set(objects)))) + _STATIC:
        for m in pattern.finditer(low):
            if m.end() > m.start():
                found.append(_Tok(m.start(), m.end(), kind, value))
    found.sort(key=lambda t: (t.start, t.start - t.end, _PRIORITY[t.type]))
    out: list[_Tok] = []
    for tok in found:
        if not out or tok.start >= out[-1].end:
            out.append(tok)
    return out


def _split(toks: list[_Tok], at: str) -> list[list[_Tok]]:
    parts: list[list[_Tok]] = [[]]
    for tok in toks:
        if tok.type == at:
            parts.append([])
        else:
            parts[-1].append(tok)
    return parts


@dataclass
class _Clause:
    objects: list[str]
    kind: str | None
    subjects: list[str]
    mentions: list[str]
    trailing: bool  # the subjects follow the kind phrase ("I see a cat"): a list may go on
    blocked: bool  # "nothing" before the kind phrase: no subject to take from elsewhere
    pronoun: bool
    sentence: int


def _clause(toks: list[_Tok], sentence: int) -> _Clause:
    objs = [t for t in toks if t.type == "object"]
    phrase = next((t for t in toks if t.type == "verb"), None) or next((t for t in toks if t.type == "presence"), None)
    names = [t.value for t in objs]
    if phrase is None:
        return _Clause(names, None, [], [], False, False, False, sentence)
    before = [t.value for t in objs if t.start < phrase.start]
    after = [t.value for t in objs if t.start > phrase.start]
    blocked = any(t.type == "none" and t.start < phrase.start for t in toks)
    pronoun = any(t.type == "pronoun" and t.start < phrase.start for t in toks)
    if before or blocked:
        return _Clause(names, phrase.value, before, after, False, blocked, pronoun, sentence)
    return _Clause(names, phrase.value, after, [], bool(after), False, pronoun, sentence)


def claims(text: str, objects: Sequence[str]) -> list[Claim]:
    """The claims of ``text`` (in order, each once) about the nouns ``objects`` (and
    :data:`GENERIC`); an object whose only claims have no kind appears once with kind None."""
    clauses: list[_Clause] = []
    for s, sentence in enumerate(_split(_scan(text, objects), "end")):
        for part in _split(sentence, "sep"):
            if any(t.type not in ("neutral", "pronoun") for t in part):
                clauses.append(_clause(part, s))
    for i, c in enumerate(clauses):
        prev = clauses[i - 1] if i else None
        if c.kind is None and c.objects:
            if prev is not None and prev.sentence == c.sentence and prev.kind and prev.trailing:
                c.kind, c.subjects, c.trailing = prev.kind, c.objects, True  # "I see a cat and a rocket"
                continue
            later = next((d for d in clauses[i + 1 :] if d.sentence == c.sentence and d.kind), None)
            if later is not None and later.subjects and not later.trailing:
                c.kind, c.subjects = later.kind, c.objects  # "The cat and the rocket appear"
        elif c.kind and not c.subjects and not c.blocked and prev is not None:
            if prev.sentence == c.sentence or c.pronoun:
                c.subjects = list(prev.subjects or prev.objects)  # "... and then leaves"
    out: list[Claim] = []
    for c in clauses:
        if c.kind is None:
            out += [Claim(o, None) for o in c.objects]
        else:
            out += [Claim(o, c.kind) for o in c.subjects] + [Claim(o, None) for o in c.mentions]
    kinded = {c.object for c in out if c.kind}
    unique: list[Claim] = []
    for claim in out:
        if claim not in unique and (claim.kind or claim.object not in kinded):
            unique.append(claim)
    return unique
